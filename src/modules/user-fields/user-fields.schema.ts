import { z } from 'zod'
import { OBJECT_ID } from '../../lib/ids.ts'
import { FIELD_TYPES } from './field-types.ts'

const objectId = (what: string) =>
  z.string().regex(OBJECT_ID, 'must be a 24-hex id').describe(`${what} id, 24 hex`)

export const communityParams = z.object({ communityId: objectId('Community') }).strict()
export const fieldParams = z
  .object({ communityId: objectId('Community'), fieldId: objectId('User field') })
  .strict()

/** A stored custom value: JSON scalars only (text, number, boolean, date as text) or null. */
export const fieldValueSchema = z.union([z.string(), z.number(), z.boolean(), z.null()])

const fieldType = z
  .enum(FIELD_TYPES)
  .describe(
    'Data type; the union of every documented enum (numerical = number, single-/multi-line-text = text)',
  )
const options = z
  .array(z.string().trim().min(1).max(100))
  .max(200)
  .describe('Choices of a select field, e.g. ["Beginner","Intermediate","Advanced"]')

/**
 * Create accepts the three documented bodies: mid/latest `{field, name, type}` and the oldest
 * `{name, type, description?, required?, defaultValue?, options?}` (the key is then derived from name).
 */
export const createUserFieldBody = z
  .object({
    field: z
      .string()
      .trim()
      .min(1)
      .max(50)
      .optional()
      .describe('Key of the field (1-50); spaces become hyphens ("deposit amount" → "deposit-amount")'),
    name: z.string().trim().min(1).max(100).describe('Display name (1-100)'),
    type: fieldType,
    description: z.string().max(1000).optional(),
    required: z.boolean().optional().describe('Default false'),
    defaultValue: fieldValueSchema.optional().describe('Checked against the type'),
    options: options.optional(),
  })
  .strict()

/** The documented body is `{name, type}`; the rest are optional extras. The key cannot change. */
export const updateUserFieldBody = z
  .object({
    name: z.string().trim().min(1).max(100),
    type: fieldType,
    description: z.string().max(1000).optional(),
    required: z.boolean().optional(),
    defaultValue: fieldValueSchema.optional().describe('Checked against the (new) type; null clears it'),
    options: options.optional().describe('Replaces the choices of a select field'),
  })
  .strict()

export type CreateUserFieldBody = z.infer<typeof createUserFieldBody>
export type UpdateUserFieldBody = z.infer<typeof updateUserFieldBody>

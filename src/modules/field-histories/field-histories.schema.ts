import { z } from 'zod'
import { OBJECT_ID } from '../../lib/ids.ts'
import { parseIsoDate } from '../user-fields/field-types.ts'
import { fieldValueSchema } from '../user-fields/user-fields.schema.ts'

const objectId = (what: string) =>
  z.string().regex(OBJECT_ID, 'must be a 24-hex id').describe(`${what} id, 24 hex`)
const communityId = objectId('Community')

export const historyParams = z.object({ communityId }).strict()
export const fieldHistoryParams = z.object({ communityId, fieldId: objectId('User field') }).strict()
export const userHistoryParams = z.object({ communityId, userId: objectId('User') }).strict()
export const fieldUserHistoryParams = z
  .object({ communityId, fieldId: objectId('User field'), userId: objectId('User') })
  .strict()

const isoDate = z
  .string()
  .refine((s) => parseIsoDate(s) !== null, 'must be an ISO 8601 date (YYYY-MM-DD[THH:mm[:ss]][Z|±hh:mm])')

export const historyQuery = z
  .object({
    page: z.coerce.number().int().min(1).default(1).describe('Page, from 1'),
    limit: z.coerce.number().int().min(1).max(100).default(20).describe('Rows per page, at most 100'),
    from: isoDate
      .optional()
      .describe('Changes at or after this instant (YYYY-MM-DD = start of that day, UTC)'),
    to: isoDate.optional().describe('Changes at or before this instant (YYYY-MM-DD = the whole day, UTC)'),
  })
  .strict()
export type HistoryQuery = z.infer<typeof historyQuery>

export const createHistoryBody = z
  .object({
    fieldId: objectId('User field').optional().describe('The custom field, by id (or send `field`)'),
    field: z
      .string()
      .trim()
      .min(1)
      .max(50)
      .optional()
      .describe('The custom field, by key (or send `fieldId`)'),
    value: fieldValueSchema.describe(
      "The user's new value, checked against the field's type; null clears it",
    ),
  })
  .strict()
export type CreateHistoryBody = z.infer<typeof createHistoryBody>

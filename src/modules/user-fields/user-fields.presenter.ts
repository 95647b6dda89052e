import { z } from 'zod'
import type { DefaultField } from '../users/default-fields.ts'
import { type FieldValue, kindOf } from './field-types.ts'
import type { UserFieldRow } from './user-fields.repo.ts'
import { fieldValueSchema } from './user-fields.schema.ts'

export const creatorSchema = z
  .object({
    _id: z.string(),
    id: z.number().describe('Legacy numeric user id'),
    avatar: z.string().nullable(),
    displayName: z.string().nullable(),
    username: z.string().nullable(),
  })
  .meta({ id: 'UserFieldCreator' })

const fieldShape = {
  _id: z.string().nullable().describe('User field id (null for default fields)'),
  field: z.string().describe('Key in users.custom_fields, CSV headers and filters'),
  name: z.string(),
  type: z.string(),
  description: z.string(),
  required: z.boolean(),
  defaultValue: fieldValueSchema,
  options: z.array(z.string()).nullable(),
  isDefault: z.boolean(),
  creator: creatorSchema.nullable().describe('The admin who created it; null when an API key did'),
  communityId: z.string(),
  createdAt: z.string().nullable(),
  updatedAt: z.string().nullable(),
}

/** A field in Get All User Fields: default (system) or custom. */
export const userFieldSchema = z.object(fieldShape).meta({ id: 'UserField' })

/** A custom field, as create, get, update and delete answer. */
export const customUserFieldSchema = z
  .object({
    ...fieldShape,
    _id: z.string().describe('User field id, 24 hex'),
    isDefault: z.literal(false),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'CustomUserField' })

export type CustomUserField = z.infer<typeof customUserFieldSchema>

const iso = (d: Date | string) => new Date(d).toISOString()

export function presentCustomField(r: UserFieldRow): CustomUserField {
  return {
    _id: r.id,
    field: r.field,
    name: r.name,
    type: r.type,
    description: r.description,
    required: r.required,
    defaultValue: (r.default_value ?? null) as FieldValue,
    options: kindOf(r.type) === 'select' ? ((r.options ?? []) as string[]) : null,
    isDefault: false,
    creator: r.creator_user_id
      ? {
          _id: r.creator_user_id,
          id: Number(r.creator_seq),
          avatar: r.creator_avatar,
          displayName: r.creator_display_name,
          username: r.creator_username,
        }
      : null,
    communityId: r.community_id,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  }
}

export function presentDefaultField(f: DefaultField, communityId: string): z.infer<typeof userFieldSchema> {
  return {
    _id: null,
    field: f.column,
    name: f.name,
    type: f.type,
    description: '',
    required: f.column === 'email',
    defaultValue: null,
    options: null,
    isDefault: true,
    creator: null,
    communityId,
    createdAt: null,
    updatedAt: null,
  }
}

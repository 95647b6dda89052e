import { sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'

const fieldColumns = [
  'f.id',
  'f.community_id',
  'f.field',
  'f.name',
  'f.type',
  'f.description',
  'f.required',
  'f.default_value',
  'f.options',
  'f.creator_id',
  'f.created_at',
  'f.updated_at',
] as const

/** A field definition with its creator (null when an API key created it or the account is gone). */
function selectFields(db: Tx, communityId: string) {
  return db
    .selectFrom('user_fields as f')
    .leftJoin('users as c', (j) =>
      j.onRef('c.id', '=', 'f.creator_id').onRef('c.community_id', '=', 'f.community_id'),
    )
    .select(fieldColumns)
    .select(['c.id as creator_user_id', 'c.seq as creator_seq', 'c.avatar as creator_avatar'])
    .select(['c.display_name as creator_display_name', 'c.username as creator_username'])
    .where('f.community_id', '=', communityId)
}

export type UserFieldRow = Awaited<ReturnType<typeof findField>> & {}

export function findField(db: Tx, communityId: string, id: string) {
  return selectFields(db, communityId).where('f.id', '=', id).executeTakeFirst()
}

/** Locks the definition for the rest of the transaction (update, delete, value writes). */
export function lockField(tx: Tx, communityId: string, id: string) {
  return tx
    .selectFrom('user_fields')
    .select('id')
    .where('community_id', '=', communityId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst()
}

export function listFields(db: Tx, communityId: string) {
  return selectFields(db, communityId).orderBy('f.created_at').orderBy('f.id').execute()
}

/** The custom field whose key equals `key` ignoring case, if any. */
export function findKeyClash(db: Tx, communityId: string, key: string) {
  return db
    .selectFrom('user_fields')
    .select(['id', 'field'])
    .where('community_id', '=', communityId)
    .where(sql<string>`lower(field)`, '=', key.toLowerCase())
    .executeTakeFirst()
}

export interface NewUserField {
  id: string
  communityId: string
  field: string
  name: string
  type: string
  description: string
  required: boolean
  defaultValue: unknown
  options: string[] | null
  creatorId: string | null
}

const jsonOrNull = (v: unknown) => (v === null || v === undefined ? null : JSON.stringify(v))

export async function insertField(db: Tx, f: NewUserField) {
  await db
    .insertInto('user_fields')
    .values({
      id: f.id,
      community_id: f.communityId,
      field: f.field,
      name: f.name,
      type: f.type,
      description: f.description,
      required: f.required,
      default_value: jsonOrNull(f.defaultValue),
      options: jsonOrNull(f.options),
      creator_id: f.creatorId,
    })
    .execute()
}

export interface UserFieldPatch {
  name: string
  type: string
  description?: string
  required?: boolean
  defaultValue: unknown
  options: string[] | null
}

export async function updateField(db: Tx, communityId: string, id: string, p: UserFieldPatch) {
  await db
    .updateTable('user_fields')
    .set({
      name: p.name,
      type: p.type,
      ...(p.description !== undefined ? { description: p.description } : {}),
      ...(p.required !== undefined ? { required: p.required } : {}),
      default_value: jsonOrNull(p.defaultValue),
      options: jsonOrNull(p.options),
      updated_at: new Date(),
    })
    .where('community_id', '=', communityId)
    .where('id', '=', id)
    .execute()
}

export async function deleteField(db: Tx, communityId: string, id: string) {
  await db.deleteFrom('user_fields').where('community_id', '=', communityId).where('id', '=', id).execute()
}

/** Removes the field's value from every user of the community in one statement. */
export async function removeValues(db: Tx, communityId: string, key: string) {
  await db
    .updateTable('users')
    .set({ custom_fields: sql`custom_fields - ${key}::text`, updated_at: new Date() })
    .where('community_id', '=', communityId)
    .where(sql<boolean>`custom_fields ? ${key}::text`)
    .execute()
}

export async function identifierFieldOf(db: Tx, communityId: string) {
  const c = await db
    .selectFrom('communities')
    .select('identifier_field')
    .where('id', '=', communityId)
    .executeTakeFirst()
  return c?.identifier_field ?? null
}

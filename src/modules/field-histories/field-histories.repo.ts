import { sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'
import type { FieldValue } from '../user-fields/field-types.ts'

const historyColumns = [
  'id',
  'community_id',
  'user_id',
  'field_id',
  'field',
  'old_value',
  'new_value',
  'source',
  'changed_by',
  'created_at',
] as const

export interface HistoryFilter {
  communityId: string
  fieldId?: string
  userId?: string
  from?: Date
  /** Inclusive upper bound (an ISO instant). */
  until?: Date
  /** Exclusive upper bound (the day after a YYYY-MM-DD `to`). */
  before?: Date
}

function filtered(db: Tx, f: HistoryFilter) {
  let q = db.selectFrom('field_histories').where('community_id', '=', f.communityId)
  if (f.fieldId) q = q.where('field_id', '=', f.fieldId)
  if (f.userId) q = q.where('user_id', '=', f.userId)
  if (f.from) q = q.where('created_at', '>=', f.from)
  if (f.until) q = q.where('created_at', '<=', f.until)
  if (f.before) q = q.where('created_at', '<', f.before)
  return q
}

export type HistoryRow = Awaited<ReturnType<typeof listHistories>>['rows'][number]

/** One page, newest first, and the total matching rows. */
export async function listHistories(db: Tx, f: HistoryFilter, page: number, limit: number) {
  const rows = await filtered(db, f)
    .select(historyColumns)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit)
    .offset((page - 1) * limit)
    .execute()
  const { total } = await filtered(db, f)
    .select((eb) => eb.fn.countAll<number>().as('total'))
    .executeTakeFirstOrThrow()
  return { rows, total: Number(total) }
}

/** The history row this transaction wrote for a user's field (created_at is the transaction's now()). */
export function findWrittenNow(tx: Tx, communityId: string, userId: string, fieldId: string) {
  return tx
    .selectFrom('field_histories')
    .select(historyColumns)
    .where('community_id', '=', communityId)
    .where('user_id', '=', userId)
    .where('field_id', '=', fieldId)
    .where('created_at', '=', sql<Date>`now()`)
    .orderBy('id', 'desc')
    .executeTakeFirst()
}

/** A field is known when it is defined, or was and left histories behind. */
export async function fieldKnown(db: Tx, communityId: string, fieldId: string) {
  const def = await db
    .selectFrom('user_fields')
    .select('id')
    .where('community_id', '=', communityId)
    .where('id', '=', fieldId)
    .executeTakeFirst()
  if (def) return true
  const row = await db
    .selectFrom('field_histories')
    .select('id')
    .where('community_id', '=', communityId)
    .where('field_id', '=', fieldId)
    .limit(1)
    .executeTakeFirst()
  return !!row
}

export function findUser(db: Tx, communityId: string, userId: string) {
  return db
    .selectFrom('users')
    .select(['id', 'deleted_at'])
    .where('community_id', '=', communityId)
    .where('id', '=', userId)
    .executeTakeFirst()
}

export function lockUser(tx: Tx, communityId: string, userId: string) {
  return tx
    .selectFrom('users')
    .select(['id', 'custom_fields', 'deleted_at'])
    .where('community_id', '=', communityId)
    .where('id', '=', userId)
    .forUpdate()
    .executeTakeFirst()
}

/** The definition a value is written under, locked against a concurrent delete or retype. */
export function findDefinition(tx: Tx, communityId: string, by: { id?: string; field?: string }) {
  let q = tx
    .selectFrom('user_fields')
    .select(['id', 'field', 'type', 'options', 'required'])
    .where('community_id', '=', communityId)
  if (by.id) q = q.where('id', '=', by.id)
  else q = q.where('field', '=', by.field ?? '')
  return q.forShare().executeTakeFirst()
}

export function externalIdOwner(tx: Tx, communityId: string, externalId: string, exceptUserId: string) {
  return tx
    .selectFrom('users')
    .select('id')
    .where('community_id', '=', communityId)
    .where('external_id', '=', externalId)
    .where('id', '<>', exceptUserId)
    .executeTakeFirst()
}

/** Sets (or, for null, removes) one custom value; `externalId` also moves users.external_id. */
export async function setUserValue(
  tx: Tx,
  communityId: string,
  userId: string,
  key: string,
  value: FieldValue,
  externalId?: string | null,
) {
  const customFields =
    value === null
      ? sql<string>`custom_fields - ${key}::text`
      : sql<string>`custom_fields || jsonb_build_object(${key}::text, ${JSON.stringify(value)}::jsonb)`
  await tx
    .updateTable('users')
    .set({
      custom_fields: customFields,
      ...(externalId !== undefined ? { external_id: externalId } : {}),
      updated_at: new Date(),
    })
    .where('community_id', '=', communityId)
    .where('id', '=', userId)
    .execute()
}

import { type RawBuilder, sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'
import { currentValue } from '../field-histories/set-based.ts'
import type { FieldKind } from './field-types.ts'

/*
 * When a field changes type, the values users already hold must fit the new type, checked in SQL
 * over users.custom_fields (a community may hold millions of users). The rules mirror
 * coerceFieldValue (type-change.test.ts checks them side by side); values that fit are then rewritten
 * into the new type's stored form. One gap: SQL checks a date's shape, not the calendar, so a stored
 * "2025-02-30" passes here though coerceFieldValue refuses it.
 */

const NUMBER_TEXT = '^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$'
const DATE_TEXT =
  '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?$'
const TRUE_WORDS = ['true', '1', 'yes', 'y']
const BOOL_WORDS = [...TRUE_WORDS, 'false', '0', 'no', 'n']

const words = (list: string[]) => sql.join(list.map((w) => sql.lit(w)))

/** Whether the value `v` (JSON, never SQL NULL here) fits a field of this kind. */
export function fits(v: RawBuilder<unknown>, kind: FieldKind, options: string[] | null): RawBuilder<boolean> {
  const text = sql`btrim(${v} #>> '{}')`
  switch (kind) {
    case 'text':
      return sql<boolean>`jsonb_typeof(${v}) IN ('string', 'number', 'boolean', 'null')`
    case 'number':
      return sql<boolean>`CASE jsonb_typeof(${v}) WHEN 'number' THEN true WHEN 'null' THEN true
        WHEN 'string' THEN ${text} ~ ${NUMBER_TEXT}::text ELSE false END`
    case 'boolean':
      return sql<boolean>`CASE jsonb_typeof(${v}) WHEN 'boolean' THEN true WHEN 'null' THEN true
        WHEN 'number' THEN (${v} #>> '{}')::numeric IN (0, 1)
        WHEN 'string' THEN lower(${text}) IN (${words(BOOL_WORDS)}) ELSE false END`
    case 'date':
      return sql<boolean>`CASE jsonb_typeof(${v}) WHEN 'null' THEN true
        WHEN 'string' THEN ${text} ~ ${DATE_TEXT}::text ELSE false END`
    case 'select': {
      const inOptions = sql`${JSON.stringify(options ?? [])}::jsonb ? (${v} #>> '{}')`
      return sql<boolean>`CASE jsonb_typeof(${v}) WHEN 'null' THEN true
        WHEN 'string' THEN ${inOptions} WHEN 'number' THEN ${inOptions} WHEN 'boolean' THEN ${inOptions}
        ELSE false END`
    }
  }
}

/** The stored form of a fitting value `v` under the new kind. */
export function converted(v: RawBuilder<unknown>, kind: FieldKind): RawBuilder<unknown> {
  switch (kind) {
    case 'number':
      return sql`CASE WHEN jsonb_typeof(${v}) = 'string' THEN to_jsonb(btrim(${v} #>> '{}')::numeric) ELSE ${v} END`
    case 'boolean':
      return sql`CASE jsonb_typeof(${v})
        WHEN 'string' THEN to_jsonb(lower(btrim(${v} #>> '{}')) IN (${words(TRUE_WORDS)}))
        WHEN 'number' THEN to_jsonb((${v} #>> '{}')::numeric = 1) ELSE ${v} END`
    case 'date':
      return sql`CASE WHEN jsonb_typeof(${v}) = 'string' THEN to_jsonb(btrim(${v} #>> '{}')) ELSE ${v} END`
    default: // text and select hold text
      return sql`CASE WHEN jsonb_typeof(${v}) IN ('number', 'boolean') THEN to_jsonb(${v} #>> '{}') ELSE ${v} END`
  }
}

/** How many users of the community hold a value of `key` that does not fit the new kind. */
export async function countMisfits(
  tx: Tx,
  communityId: string,
  key: string,
  kind: FieldKind,
  options: string[] | null,
) {
  const v = currentValue(key)
  const res = await sql<{ count: number | string }>`
    SELECT count(*) AS count FROM users u
    WHERE u.community_id = ${communityId}::text AND u.custom_fields ? ${key}::text AND NOT (${fits(v, kind, options)})`.execute(
    tx,
  )
  return Number(res.rows[0]?.count ?? 0)
}

/** Rewrites every value of `key` into the new kind's stored form, in one UPDATE. */
export async function convertValues(tx: Tx, communityId: string, key: string, kind: FieldKind) {
  const v = currentValue(key)
  const next = converted(v, kind)
  await sql`
    UPDATE users u SET custom_fields = jsonb_set(u.custom_fields, ARRAY[${key}::text], ${next}), updated_at = now()
    WHERE u.community_id = ${communityId}::text AND u.custom_fields ? ${key}::text AND ${next} <> ${v}`.execute(
    tx,
  )
}

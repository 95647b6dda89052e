import { type RawBuilder, sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'
import type { HistorySource } from './field-histories.writer.ts'

/** The current value of `key` for the user row aliased `u`. */
export const currentValue = (key: string) => sql<unknown>`u.custom_fields -> ${key}::text`

/**
 * A 24-hex id made in SQL, shaped like newId() (see migration 000070): lets one INSERT … SELECT
 * write a history row per user, with ids that arrive in order.
 */
export const sqlObjectId = sql<string>`hearth_object_id()`

export interface Rewrite {
  communityId: string
  fieldId: string | null
  field: string
  /** The value each user will hold, as an SQL expression over `u` (SQL NULL = removed). */
  next: RawBuilder<unknown>
  source: HistorySource
  changedBy: string | null
}

/**
 * Writes one history row for every user of the community whose value of `field` will change,
 * set-based, before the caller rewrites users.custom_fields in the same transaction. A JSON null and
 * an absent key are the same value, as in recordFieldChanges.
 */
export async function recordRewrites(tx: Tx, r: Rewrite): Promise<number> {
  const res = await sql`
    INSERT INTO field_histories (id, community_id, user_id, field_id, field, old_value, new_value, source, changed_by)
    SELECT ${sqlObjectId}, s.community_id, s.id, ${r.fieldId}::text, ${r.field}::text, s.old_value, s.new_value,
           ${r.source}::text, ${r.changedBy}::text
    FROM (
      SELECT u.id, u.community_id, ${currentValue(r.field)} AS old_value, ${r.next} AS new_value
      FROM users u
      WHERE u.community_id = ${r.communityId}::text AND u.custom_fields ? ${r.field}::text
    ) s
    WHERE coalesce(s.old_value, 'null'::jsonb) <> coalesce(s.new_value, 'null'::jsonb)`.execute(tx)
  return Number(res.numAffectedRows ?? 0n)
}

import type { Tx } from '../../lib/db/database.ts'
import { newId } from '../../lib/ids.ts'
import type { FieldValue } from '../user-fields/field-types.ts'

/** Who or what changed a custom field value. */
export type HistorySource = 'api' | 'user' | 'admin' | 'bulk_import' | 'bulk_update' | 'webhook' | 'system'

export interface FieldChange {
  communityId: string
  userId: string
  fieldId: string | null
  field: string
  oldValue: FieldValue | undefined
  newValue: FieldValue | undefined
  source: HistorySource
  /** The API key, user or bulk job id behind the change. */
  changedBy: string | null
}

const json = (v: FieldValue | undefined) => (v === undefined ? null : JSON.stringify(v))

/**
 * Writes one history row per real change (old and new differ); call it in the transaction that
 * changes users.custom_fields, so a value never changes without its history. Bulk jobs write
 * their histories set-based in SQL instead (see modules/bulk).
 */
export async function recordFieldChanges(tx: Tx, changes: FieldChange[]): Promise<number> {
  const real = changes.filter(
    (c) => JSON.stringify(c.oldValue ?? null) !== JSON.stringify(c.newValue ?? null),
  )
  if (real.length === 0) return 0
  await tx
    .insertInto('field_histories')
    .values(
      real.map((c) => ({
        id: newId(),
        community_id: c.communityId,
        user_id: c.userId,
        field_id: c.fieldId,
        field: c.field,
        old_value: json(c.oldValue),
        new_value: json(c.newValue),
        source: c.source,
        changed_by: c.changedBy,
      })),
    )
    .execute()
  return real.length
}

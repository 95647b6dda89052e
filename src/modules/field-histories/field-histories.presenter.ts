import { z } from 'zod'
import type { FieldValue } from '../user-fields/field-types.ts'
import { fieldValueSchema } from '../user-fields/user-fields.schema.ts'
import type { HistoryRow } from './field-histories.repo.ts'

export const fieldHistorySchema = z
  .object({
    _id: z.string(),
    userId: z.string(),
    fieldId: z.string().nullable(),
    field: z.string().describe('Key of the custom field at the time of the change'),
    oldValue: fieldValueSchema,
    newValue: fieldValueSchema,
    source: z
      .string()
      .describe(
        'api, admin, user, bulk_import, bulk_update, webhook, system, or migration (a change a database upgrade made)',
      ),
    changedBy: z.string().nullable().describe('API key, user or bulk job id behind the change'),
    createdAt: z.string(),
  })
  .meta({ id: 'UserFieldHistory' })

/** Values are JSON scalars by contract; anything else is shown as its JSON text rather than failing. */
function scalar(v: unknown): FieldValue {
  if (v === null || v === undefined) return null
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v
  return JSON.stringify(v)
}

export function presentHistory(r: HistoryRow): z.infer<typeof fieldHistorySchema> {
  return {
    _id: r.id,
    userId: r.user_id,
    fieldId: r.field_id,
    field: r.field,
    oldValue: scalar(r.old_value),
    newValue: scalar(r.new_value),
    source: r.source,
    changedBy: r.changed_by,
    createdAt: new Date(r.created_at).toISOString(),
  }
}

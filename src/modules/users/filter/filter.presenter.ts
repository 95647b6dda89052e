import { z } from 'zod'
import { iso, scalarSchema, toScalar } from '../users.presenter.ts'
import type { FilteredRow } from './filter.repo.ts'
import type { FilterPlan } from './filter-plan.ts'

/** One user of Get Users with Filters: _id, id, then the requested fields by database name. */
export const filteredUserSchema = z
  .object({ _id: z.string(), id: z.number().int() })
  .catchall(scalarSchema)
  .meta({ id: 'FilteredUser' })
export type FilteredUser = z.infer<typeof filteredUserSchema>

export function presentFilteredUser(row: FilteredRow, plan: FilterPlan): FilteredUser {
  const out: FilteredUser = { _id: row.id, id: Number(row.seq) }
  for (const c of plan.columns) {
    const v = row[c.column]
    out[c.column] =
      c.type === 'date' ? iso(v as Date | null) : c.type === 'number' && v !== null ? Number(v) : toScalar(v)
  }
  const custom = (row.custom_fields ?? {}) as Record<string, unknown>
  for (const def of plan.customFields) out[def.field] = toScalar(custom[def.field])
  return out
}

import type { Tx } from '../../lib/db/database.ts'
import { shareFieldDefinitions } from '../user-fields/definitions-lock.ts'
import { kindOf } from '../user-fields/field-types.ts'
import { identifierFieldOf } from '../user-fields/user-fields.repo.ts'
import type { CustomFieldDef, Plan } from './bulk.plan.ts'
import { currentFieldDefs } from './bulk.repo.ts'

/**
 * A job's column plan is made once, from the community's field definitions when the job starts,
 * and those definitions are stored with the job (bulk_jobs.plan_context) so that a job resumed after
 * a crash plans its columns the same way. If, while the job runs, an admin deletes a custom field
 * the plan writes, changes its kind (text to number, say) or its options, or changes the community's
 * identifier field, writing on would put values under a field that is gone, or in a form the field
 * no longer takes. So each chunk checks that the plan still holds, in its own transaction, and the
 * job stops with `fields_changed` if not. The chunk shares the community's definitions lock until
 * it commits (definitions-lock.ts): a change waits for the chunks in flight, and the next chunk sees it.
 */
export class PlanOutdated extends Error {
  readonly code = 'fields_changed'
}

/** The custom fields the plan writes (for premium-currency plans, none). */
export function plannedFields(plan: Plan): CustomFieldDef[] {
  if (plan.type === 'premium_currency') return []
  return plan.targets.flatMap((t) => (t.kind === 'custom' ? [t.def] : []))
}

const STOPPED =
  'The job stopped: the rows it had processed stay applied (its details list them), the others were not.'

const sameOptions = (a: string[] | null, b: string[] | null) =>
  JSON.stringify(a ? [...a].sort() : null) === JSON.stringify(b ? [...b].sort() : null)

/** What changed since the plan was made, in words, or null when the plan still holds. */
export function describePlanChange(
  plan: Plan,
  now: { identifierField: string | null; fields: CustomFieldDef[] },
): string | null {
  if (now.identifierField !== plan.identifierField) {
    const name = (f: string | null) => (f === null ? 'none' : `"${f}"`)
    return `The community's identifier field changed from ${name(plan.identifierField)} to ${name(now.identifierField)} while this job ran. ${STOPPED}`
  }
  const current = new Map(now.fields.map((f) => [f.id, f]))
  for (const planned of plannedFields(plan)) {
    const f = current.get(planned.id)
    const what = `The custom field "${planned.field}"`
    if (!f) return `${what} was deleted while this job ran. ${STOPPED}`
    // Types of one kind (text, multi-line-text) check and store values alike.
    if (kindOf(f.type) !== kindOf(planned.type))
      return `${what} changed type (${planned.type} to ${f.type}) while this job ran. ${STOPPED}`
    if (!sameOptions(f.options, planned.options))
      return `The options of the custom field "${planned.field}" changed while this job ran. ${STOPPED}`
  }
  return null
}

/** Throws PlanOutdated unless the definitions the plan was made from still hold (see above). */
export async function checkPlanHolds(tx: Tx, communityId: string, plan: Plan): Promise<void> {
  await shareFieldDefinitions(tx, communityId)
  const identifierField = await identifierFieldOf(tx, communityId)
  const fields = await currentFieldDefs(
    tx,
    communityId,
    plannedFields(plan).map((f) => f.id),
  )
  const change = describePlanChange(plan, { identifierField, fields })
  if (change) throw new PlanOutdated(change)
}

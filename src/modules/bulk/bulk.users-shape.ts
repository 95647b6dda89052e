import type { ImportPlan } from './bulk.plan.ts'

/** What the two ways of applying user rows share: bulk.apply-users.ts (per wave) and bulk.users-play.ts. */
export type RowOutcome = {
  rowNo: number
  action: 'c' | 'u' | 's' | 'f'
  /** The user a created or updated row changed (a dry run keeps its state for later chunks). */
  userId?: string
  code?: string
  field?: string
  message?: string
}

export interface UsersCtx {
  plan: ImportPlan
  communityId: string
  jobId: string
  source: 'bulk_import' | 'bulk_update'
}

/** The user columns a bulk import or update writes. */
export const WRITTEN = [
  'email',
  'username',
  'first_name',
  'last_name',
  'display_name',
  'phone',
  'country',
  'language',
  'avatar',
  'join_date',
  'xp',
  'coins',
] as const

/** The balances a plan's columns move (premium is not a bulk-update column). */
export const currenciesOf = (plan: ImportPlan) =>
  plan.targets.flatMap((t) =>
    t.kind === 'default' && (t.def.currency === 'xp' || t.def.currency === 'coins') ? [t.def.currency] : [],
  )

export const keyColumn = (plan: ImportPlan) => (plan.keyKind === 'external_id' ? 'external_id' : 'email')

/** How a username a row gives appears among a chunk's claims and a dry run's names. */
export const usernameName = (lowerCased: string) => `username:${lowerCased}`

import type { RowOutcome } from './bulk.users-shape.ts'

/**
 * How a row fails once the database is asked, worded once for every job type and for both ways of
 * applying rows (set-based SQL and played): the same code always comes with the same message.
 */

/** A plan's key column, as the CSV names it (email, userId, or the community's external id field). */
type Keyed = { columns: string[]; keyIndex: number }

export const userNotFound = (plan: Keyed, r: { rowNo: number; key: string }): RowOutcome => {
  const column = plan.columns[plan.keyIndex]
  return {
    rowNo: r.rowNo,
    action: 'f',
    code: 'user_not_found',
    field: column,
    message: `No user with ${column} "${r.key}" in this community`,
  }
}

export const rowFailure = {
  /** A new user without an email. */
  missingEmail: { action: 'f', code: 'missing_email', field: 'email', message: 'A new user needs an email' },
  /** A username another user of the community holds (compared in any case). */
  usernameTaken: {
    action: 'f',
    code: 'username_taken',
    field: 'username',
    message: 'Another user already has this username',
  },
} as const

export const usernameTaken = (rowNo: number): RowOutcome => ({ rowNo, ...rowFailure.usernameTaken })

/** A user row whose xp or coins would end below zero (xp named first when both would). */
export const negativeBalance = (rowNo: number, field: 'xp' | 'coins'): RowOutcome => ({
  rowNo,
  action: 'f',
  code: 'negative_balance',
  field,
  message: `${field} cannot go below zero`,
})

/** A premium row whose balance would end below zero. */
export const INSUFFICIENT = {
  action: 'f',
  code: 'insufficient_balance',
  field: 'amount',
  message: 'The balance cannot go below zero',
} as const

export const userDeleted = (plan: Keyed, rowNo: number): RowOutcome => ({
  rowNo,
  action: 'f',
  code: 'user_deleted',
  field: plan.columns[plan.keyIndex],
  message: 'This user is deleted; restore it first',
})

/**
 * What a database error says about its cause, from its SQLSTATE (PostgreSQL and PGlite alike).
 * https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
const sqlState = (err: unknown): string | null => {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : null
}

/**
 * The statement's data was at fault: a data exception (class 22: a value that does not fit its
 * type), an integrity constraint (23: an email another user holds) or a program limit (54: a value
 * too big for an index). Retrying the same rows gives the same error; anything else (a deadlock, a
 * lost connection, a full disk) says nothing about the rows and must not fail them.
 */
export function isDataError(err: unknown): boolean {
  const state = sqlState(err)
  return state !== null && ['22', '23', '54'].includes(state.slice(0, 2))
}

/** A unique index refused the row (an email or a key another row holds). */
export const isUniqueViolation = (err: unknown): boolean => sqlState(err) === '23505'

/** Lost a race with another transaction (serialization failure, deadlock, lock not available): try again. */
export function isTransientError(err: unknown): boolean {
  const state = sqlState(err)
  return state === '40001' || state === '40P01' || state === '55P03'
}

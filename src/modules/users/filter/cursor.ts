import { badRequest } from '../../../lib/errors.ts'
import { OBJECT_ID } from '../../../lib/ids.ts'

/**
 * Keyset position of Get Users with Filters: the last row's (created_at, id). created_at keeps
 * PostgreSQL's microseconds (a JS Date would drop them and repeat or skip rows created in the
 * same millisecond), so it travels as UTC text in the fixed form `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
 */
export interface UserCursor {
  createdAt: string
  id: string
}

const MICRO_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/

/** The SQL that renders created_at in the cursor's form. */
export const CURSOR_TIME_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'

export function encodeCursor(c: UserCursor): string {
  return Buffer.from(JSON.stringify([c.createdAt, c.id])).toString('base64url')
}

/** Parses a cursor from the client; anything we did not issue is a 400, never a SQL error. */
export function decodeCursor(raw: string): UserCursor {
  const invalid = () => badRequest('invalid_cursor', 'The cursor is not one this API issued', 'cursor')
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'))
  } catch {
    throw invalid()
  }
  if (!Array.isArray(parsed) || parsed.length !== 2) throw invalid()
  const [createdAt, id] = parsed
  if (typeof createdAt !== 'string' || typeof id !== 'string') throw invalid()
  if (!MICRO_ISO.test(createdAt) || !OBJECT_ID.test(id)) throw invalid()
  // Round-trip the calendar part so 2025-02-31 or 25:00 are refused here, not by PostgreSQL.
  const millis = new Date(`${createdAt.slice(0, 23)}Z`)
  if (Number.isNaN(millis.getTime()) || millis.toISOString().slice(0, 19) !== createdAt.slice(0, 19))
    throw invalid()
  return { createdAt, id }
}

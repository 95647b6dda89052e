import { badRequest } from '../../lib/errors.ts'
import { OBJECT_ID } from '../../lib/ids.ts'

/**
 * A keyset position in the newest-first log: the row's created_at with its full microsecond
 * precision (as UTC text, because a JS Date would drop the microseconds and skip or repeat rows)
 * and its id as the tie-breaker.
 */
export interface LogCursor {
  createdAt: string
  id: string
}

const MICRO_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/

/** Opaque to clients: base64url of a small JSON array. */
export function encodeCursor(c: LogCursor): string {
  return Buffer.from(JSON.stringify([c.createdAt, c.id])).toString('base64url')
}

/** Parses a client-supplied cursor; anything that did not come from encodeCursor is a 400. */
export function decodeCursor(text: string): LogCursor {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'))
  } catch {
    throw invalidCursor()
  }
  if (!Array.isArray(parsed) || parsed.length !== 2) throw invalidCursor()
  const [createdAt, id] = parsed
  if (typeof createdAt !== 'string' || !MICRO_ISO.test(createdAt) || Number.isNaN(Date.parse(createdAt))) {
    throw invalidCursor()
  }
  if (typeof id !== 'string' || !OBJECT_ID.test(id)) throw invalidCursor()
  return { createdAt, id }
}

const invalidCursor = () =>
  badRequest('invalid_cursor', 'The cursor is invalid; use meta.nextCursor as given', 'cursor')

import { conflict } from '../../lib/errors.ts'
import { OBJECT_ID } from '../../lib/ids.ts'

/**
 * One string that names a user (`idOrEmail` of Get User Data, `user` of Manage User Account):
 * the 24-hex `_id`, the numeric legacy id, an email, an external id or a username. Which of those
 * an endpoint accepts, and in which priority, is the order of the kinds it passes.
 */
export type ReferenceKind = 'id' | 'seq' | 'email' | 'externalId' | 'username'

export interface ReferencedRow {
  id: string
  seq: number
  email: string
  external_id: string | null
  username: string | null
  /**
   * Whether the username is the reference's, as the database compares names (lower() on both
   * sides, like the unique index): JS cannot fold case the same way for every letter.
   */
  username_match?: boolean | null
}

export interface Candidate {
  kind: ReferenceKind
  value: string | number
}

const NUMERIC_ID = /^\d{1,15}$/

/** The lookups worth running for `ref`: an `_id` must be 24 hex, a numeric id digits, an email hold an @. */
export function referenceCandidates(ref: string, kinds: readonly ReferenceKind[]): Candidate[] {
  const s = ref.trim()
  if (!s) return []
  const out: Candidate[] = []
  for (const kind of kinds) {
    if (kind === 'id' && OBJECT_ID.test(s)) out.push({ kind, value: s.toLowerCase() })
    if (kind === 'seq' && NUMERIC_ID.test(s)) out.push({ kind, value: Number(s) })
    if (kind === 'email' && s.includes('@')) out.push({ kind, value: s.toLowerCase() })
    if (kind === 'externalId') out.push({ kind, value: s })
    if (kind === 'username') out.push({ kind, value: s }) // as written: the database folds its case
  }
  return out
}

function matches(c: Candidate, row: ReferencedRow): boolean {
  switch (c.kind) {
    case 'id':
      return row.id === c.value
    case 'seq':
      return Number(row.seq) === c.value
    case 'email':
      return row.email === c.value
    case 'externalId':
      return row.external_id === c.value
    case 'username':
      return row.username_match === true
  }
}

/**
 * Picks the row matched by the highest-priority kind. Every kind is unique in a community (usernames
 * in any case since migration 000160); should several rows still match, the reference is ambiguous
 * and the caller must use another one (409, never a guess).
 */
export function pickReferenced<R extends ReferencedRow>(
  candidates: Candidate[],
  rows: R[],
  field: string,
): R | null {
  for (const c of candidates) {
    const hit = rows.filter((r) => matches(c, r))
    if (hit.length === 1) return hit[0]
    if (hit.length > 1) {
      throw conflict(
        'ambiguous_user',
        `Several users match "${String(c.value)}"; use the _id, numeric id or email`,
        field,
      )
    }
  }
  return null
}

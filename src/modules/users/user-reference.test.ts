import { describe, expect, it } from 'vitest'
import { pickReferenced, referenceCandidates } from './user-reference.ts'

const row = (
  over: Partial<{
    id: string
    seq: number
    email: string
    external_id: string | null
    username: string | null
    username_match: boolean | null
  }>,
) => ({
  id: '61100af5c548eb5c7ebc7819',
  seq: 1,
  email: 'a@example.com',
  external_id: null,
  username: null,
  ...over,
})

describe('referenceCandidates', () => {
  it('only tries the kinds a reference can be', () => {
    expect(referenceCandidates('42', ['id', 'seq', 'email', 'externalId'])).toEqual([
      { kind: 'seq', value: 42 },
      { kind: 'externalId', value: '42' },
    ])
    expect(referenceCandidates(' Bob@Example.com ', ['id', 'seq', 'email', 'username'])).toEqual([
      { kind: 'email', value: 'bob@example.com' },
      { kind: 'username', value: 'Bob@Example.com' }, // the database folds a username's case
    ])
    expect(referenceCandidates('61100AF5C548EB5C7EBC7819', ['id', 'seq'])).toEqual([
      { kind: 'id', value: '61100af5c548eb5c7ebc7819' },
    ])
    expect(referenceCandidates('   ', ['externalId'])).toEqual([])
  })
})

describe('pickReferenced', () => {
  it('prefers the earlier kind when two users match differently', () => {
    const bySeq = row({ id: 'a'.repeat(24), seq: 42 })
    const byExternal = row({ id: 'b'.repeat(24), seq: 7, external_id: '42' })
    const candidates = referenceCandidates('42', ['id', 'seq', 'email', 'externalId'])
    expect(pickReferenced(candidates, [byExternal, bySeq], 'idOrEmail')).toBe(bySeq)
  })

  it('refuses two users with the same username, case aside', () => {
    const candidates = referenceCandidates('Twin', ['username'])
    const rows = [
      row({ id: 'a'.repeat(24), username: 'twin', username_match: true }),
      row({ id: 'b'.repeat(24), username: 'TWIN', username_match: true }),
    ]
    expect(() => pickReferenced(candidates, rows, 'user')).toThrow(
      expect.objectContaining({ status: 409, code: 'ambiguous_user' }),
    )
  })

  it("takes the database's word on which username matched, not JS lower-casing", () => {
    // PostgreSQL's lower('İvan') is 'ivan'; JS 'İvan'.toLowerCase() is 'i̇van' (i + combining dot).
    const ivan = row({ id: 'a'.repeat(24), username: 'İvan', username_match: true })
    expect(pickReferenced(referenceCandidates('ivan', ['email', 'username']), [ivan], 'user')).toBe(ivan)
    const other = row({ id: 'b'.repeat(24), seq: 2, username: 'ivan', username_match: false })
    expect(pickReferenced(referenceCandidates('ivan', ['username']), [other], 'user')).toBeNull()
  })

  it('returns null when nothing matches', () => {
    expect(pickReferenced(referenceCandidates('x@y.z', ['email']), [row({})], 'user')).toBeNull()
  })
})

import { describe, expect, it } from 'vitest'
import { pickReferenced, referenceCandidates } from './user-reference.ts'

const row = (
  over: Partial<{
    id: string
    seq: number
    email: string
    external_id: string | null
    username: string | null
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
      { kind: 'username', value: 'bob@example.com' },
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
      row({ id: 'a'.repeat(24), username: 'twin' }),
      row({ id: 'b'.repeat(24), username: 'TWIN' }),
    ]
    expect(() => pickReferenced(candidates, rows, 'user')).toThrow(
      expect.objectContaining({ status: 409, code: 'ambiguous_user' }),
    )
  })

  it('returns null when nothing matches', () => {
    expect(pickReferenced(referenceCandidates('x@y.z', ['email']), [row({})], 'user')).toBeNull()
  })
})

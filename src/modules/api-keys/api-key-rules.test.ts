import { describe, expect, it } from 'vitest'
import { AppError } from '../../lib/errors.ts'
import { maskKey, normalizePermissions, resolveExpireDate } from './api-key-rules.ts'

describe('normalizePermissions', () => {
  it('sorts and de-duplicates known community permissions', () => {
    expect(normalizePermissions('community', ['sendMessage', 'createUser', 'sendMessage'])).toEqual([
      'createUser',
      'sendMessage',
    ])
  })

  it('collapses a list containing "all" to ["all"] for community keys', () => {
    expect(normalizePermissions('community', ['createUser', 'all'])).toEqual(['all'])
  })

  it('rejects "all" and community names on user keys', () => {
    for (const names of [['all'], ['createUser']]) {
      try {
        normalizePermissions('user', names)
        expect.unreachable()
      } catch (err) {
        expect(err).toBeInstanceOf(AppError)
        expect(err).toMatchObject({ status: 400, code: 'invalid_permission', field: 'permissions' })
      }
    }
  })

  it('names every unknown permission in the details', () => {
    try {
      normalizePermissions('community', ['createUser', 'fly', 'swim'])
      expect.unreachable()
    } catch (err) {
      expect((err as AppError).details).toMatchObject({ unknown: ['fly', 'swim'] })
    }
  })
})

describe('resolveExpireDate', () => {
  const now = new Date('2026-01-01T00:00:00Z')

  it('counts expirePeriod days from now, 0 meaning never', () => {
    expect(resolveExpireDate({ expirePeriod: 30 }, now)?.toISOString()).toBe('2026-01-31T00:00:00.000Z')
    expect(resolveExpireDate({ expirePeriod: 0 }, now)).toBeNull()
  })

  it('lets an explicit expireDate win over the period, even a past one', () => {
    expect(
      resolveExpireDate({ expirePeriod: 180, expireDate: '2025-06-30T23:59:59Z' }, now)?.toISOString(),
    ).toBe('2025-06-30T23:59:59.000Z')
  })

  it('treats an empty expireDate as none and falls back to the period', () => {
    expect(resolveExpireDate({ expirePeriod: 0, expireDate: '' }, now)).toBeNull()
    expect(resolveExpireDate({ expirePeriod: 1, expireDate: '' }, now)?.toISOString()).toBe(
      '2026-01-02T00:00:00.000Z',
    )
    expect(resolveExpireDate({ expireDate: null }, now)).toBeNull()
  })

  it('returns undefined when nothing about expiry was sent', () => {
    expect(resolveExpireDate({}, now)).toBeUndefined()
  })
})

describe('maskKey', () => {
  it('shows the prefix and an ellipsis', () => {
    expect(maskKey('abc123')).toBe('abc123…')
  })
})

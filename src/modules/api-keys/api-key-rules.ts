import { COMMUNITY_KEY_PERMISSIONS, USER_KEY_PERMISSIONS } from '../../lib/auth/permissions.ts'
import { badRequest } from '../../lib/errors.ts'

export type ApiKeyKind = 'community' | 'user'

const DAY_MS = 24 * 3600 * 1000

/**
 * Checks permission names against the kind's list and normalises them (sorted, no duplicates).
 * Community keys may instead hold `all`; mixed with other names it still means everything.
 */
export function normalizePermissions(kind: ApiKeyKind, names: readonly string[]): string[] {
  const allowed: readonly string[] = kind === 'community' ? COMMUNITY_KEY_PERMISSIONS : USER_KEY_PERMISSIONS
  if (kind === 'community' && names.includes('all')) return ['all']
  const unknown = names.filter((n) => !allowed.includes(n))
  if (unknown.length > 0) {
    throw badRequest(
      'invalid_permission',
      `Unknown permission ${unknown.map((n) => `"${n}"`).join(', ')}; allowed: ${[...allowed, ...(kind === 'community' ? ['all'] : [])].join(', ')}`,
      'permissions',
      { unknown, allowed },
    )
  }
  return [...new Set(names)].sort()
}

export interface ExpiryInput {
  /** Days until expiry; 0 = never. */
  expirePeriod?: number
  /** ISO timestamp; '' or null = none. */
  expireDate?: string | null
}

/**
 * Works out the stored expiry. An explicit expireDate wins (a past date is kept: the key is then
 * refused as expired, which is what the caller asked for). Otherwise expirePeriod counts days from
 * `now`, so updating the period renews the key. Returns undefined when the input says nothing.
 */
export function resolveExpireDate(input: ExpiryInput, now = new Date()): Date | null | undefined {
  if (input.expireDate) return new Date(input.expireDate)
  if (input.expirePeriod !== undefined) {
    return input.expirePeriod > 0 ? new Date(now.getTime() + input.expirePeriod * DAY_MS) : null
  }
  if (input.expireDate === '' || input.expireDate === null) return null
  return undefined
}

/** What a stored key looks like after creation: its first six characters and an ellipsis. */
export const maskKey = (prefix: string) => `${prefix}…`

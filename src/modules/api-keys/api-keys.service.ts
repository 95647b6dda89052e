import { hashToken, randomToken, safeEqual } from '../../lib/auth/secrets.ts'
import type { Database } from '../../lib/db/database.ts'
import { badRequest, conflict, notFound, unauthorized } from '../../lib/errors.ts'
import { assertKeyLive, noteKeyUse } from '../../lib/http/auth.ts'
import { newId } from '../../lib/ids.ts'
import { normalizePermissions, resolveExpireDate } from './api-key-rules.ts'
import * as repo from './api-keys.repo.ts'

/** Most keys one user may hold, so the unpaginated list of a user's keys stays complete. */
export const MAX_USER_KEYS = 100

/** The path parameter naming the key: community routes say apiKeyId, user routes keyId. */
const keyField = (scope: repo.KeyScope) => (scope.kind === 'user' ? 'keyId' : 'apiKeyId')

export interface CreateKeyInput {
  name: string
  permissions: string[]
  expirePeriod: number
  expireDate?: string | null
}

export interface UpdateKeyInput {
  name?: string
  permissions?: string[]
  expirePeriod?: number
  expireDate?: string | null
  isActive?: boolean
}

/**
 * API keys of both kinds. The raw key (64 hex) exists only in the create answer; the table keeps
 * its SHA-256 and its first six characters for display.
 */
export function createApiKeyService(deps: { database: Database }) {
  const { db } = deps.database

  async function mustFind(scope: repo.KeyScope, id: string) {
    const row = await repo.findKey(db, scope, id)
    if (!row) throw notFound('api_key', keyField(scope))
    return row
  }

  return {
    async create(scope: repo.KeyScope, input: CreateKeyInput, createdBy: string | null) {
      const permissions = normalizePermissions(scope.kind, input.permissions)
      if (scope.kind === 'user' && (await repo.countKeys(db, scope)) >= MAX_USER_KEYS) {
        throw conflict(
          'api_key_limit_reached',
          `A user may hold at most ${MAX_USER_KEYS} API keys; delete one first`,
        )
      }
      const key = randomToken(32)
      const row = await repo.insertKey(db, scope, {
        id: newId(),
        name: input.name,
        keyHash: hashToken(key),
        keyPrefix: key.slice(0, 6),
        permissions,
        expirePeriod: input.expirePeriod,
        expireDate: resolveExpireDate(input) ?? null,
        createdBy,
      })
      return { row, key }
    },

    async list(scope: repo.KeyScope, page: number, limit: number) {
      const [rows, total] = await Promise.all([
        repo.listKeys(db, scope, { offset: (page - 1) * limit, limit }),
        repo.countKeys(db, scope),
      ])
      return { rows, total }
    },

    get: mustFind,

    async update(scope: repo.KeyScope, id: string, input: UpdateKeyInput) {
      if (Object.values(input).every((v) => v === undefined)) {
        throw badRequest(
          'empty_update',
          'Send at least one of name, permissions, expirePeriod, expireDate, isActive',
        )
      }
      const patch: repo.ApiKeyPatch = {
        name: input.name,
        permissions: input.permissions && normalizePermissions(scope.kind, input.permissions),
        expirePeriod: input.expirePeriod,
        expireDate: resolveExpireDate(input),
        isActive: input.isActive,
      }
      const row = await repo.updateKey(db, scope, id, patch)
      if (!row) throw notFound('api_key', keyField(scope))
      return row
    },

    /** Deletes for good: the next request with the key gets 401. */
    async remove(scope: repo.KeyScope, id: string) {
      const row = await repo.deleteKey(db, scope, id)
      if (!row) throw notFound('api_key', keyField(scope))
      return row
    },

    /** Throws 401 unless this community key still exists, is active and unexpired. */
    async assertCommunityKeyUsable(communityId: string, id: string) {
      const key = await repo.findKey(db, { communityId, kind: 'community' }, id)
      if (!key) throw unauthorized('This API key no longer exists', 'invalid_api_key')
      assertKeyLive(key)
    },

    /**
     * Resolves a raw community API key presented outside the Authorization header (Secure Auth's
     * `apiKey` header), with the same refusals as src/lib/http/auth.ts.
     */
    async authenticateCommunityKey(raw: string | undefined) {
      if (!raw) throw unauthorized('The apiKey header is required', 'api_key_required')
      const hash = hashToken(raw)
      const key = await repo.findKeyByHash(db, hash)
      if (key?.kind !== 'community' || !safeEqual(key.key_hash, hash)) {
        throw unauthorized('Invalid API key', 'invalid_api_key')
      }
      assertKeyLive(key)
      noteKeyUse(db, key)
      const { key_hash: _omit, ...row } = key
      return row
    },
  }
}
export type ApiKeyService = ReturnType<typeof createApiKeyService>

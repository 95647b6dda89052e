import type { AppDeps } from '../../lib/deps.ts'
import { badRequest, notFound, unauthorized } from '../../lib/errors.ts'
import type { AuthContext } from '../../lib/http/auth.ts'
import { newId } from '../../lib/ids.ts'
import type { ApiKeyService } from '../api-keys/api-keys.service.ts'
import * as repo from './auth.repo.ts'
import type { AuthService } from './auth.service.ts'
import { consumeToken, issueToken } from './one-time-tokens.ts'

const SECURE_AUTH_TTL_SECONDS = 5 * 60

export interface SecureAuthInput {
  apiKey: string | undefined
  hostname: string
  userId: string
  accessLevel?: string
  action?: string
}

/**
 * Secure Auth: a broker's backend, holding a community API key, asks for a one-time login URL for
 * one of its users; the browser opening that URL gets a session. The raw key never enters the URL
 * (the key id stands in for the docs' [API_KEY]); the token is stored hashed, lives 5 minutes and
 * works once.
 */
export function createSecureAuthService(
  deps: Pick<AppDeps, 'database'>,
  keys: ApiKeyService,
  auth: AuthService,
) {
  const { db } = deps.database

  return {
    async createLoginUrl(input: SecureAuthInput) {
      const key = await keys.authenticateCommunityKey(input.apiKey)
      const user = await repo.findUserByIdentifier(db, key.community_id, input.userId)
      if (!user) throw notFound('user', 'userId')
      const accessLevel = input.accessLevel ?? String(user.access_level)
      const sessionId = newId()
      const token = await issueToken(db, {
        purpose: 'secure_auth',
        communityId: key.community_id,
        userId: user.id,
        ttlSeconds: SECURE_AUTH_TTL_SECONDS,
        data: { keyId: key.id, accessLevel, action: input.action ?? 'login', sessionId },
      })
      const loginUrl = `https://${input.hostname}/v2/app/loginApi/${key.id}/${accessLevel}?token=${token}`
      const context: AuthContext = {
        credential: 'communityKey',
        communityId: key.community_id,
        apiKeyId: key.id,
        userId: null,
        role: null,
        permissions: new Set(key.permissions),
      }
      return { loginUrl, sessionId, context }
    },

    /** Exchanges the one-time token for a session; the URL's key id and access level must be the issued ones. */
    async exchange(keyId: string, accessLevel: string, token: string) {
      const t = await consumeToken(db, 'secure_auth', token)
      if (t.data.keyId !== keyId.toLowerCase() || t.data.accessLevel !== accessLevel) {
        throw badRequest('invalid_token', 'This token is invalid or was already used', 'token')
      }
      // A key deleted or disabled since the URL was issued no longer logs anyone in.
      await keys.assertCommunityKeyUsable(t.communityId, keyId.toLowerCase())
      const user = await repo.findLiveUser(db, t.communityId, t.userId)
      if (!user) throw unauthorized('This account can no longer log in', 'invalid_credentials')
      await repo.touchLastLogin(db, user.community_id, user.id)
      const sessionId = String(t.data.sessionId)
      const session = await auth.issueSession(user, { accessLevel: Number(accessLevel), sessionId })
      return { ...session, sessionId, user }
    },
  }
}

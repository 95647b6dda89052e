import type { FastifyRequest } from 'fastify'
import { sql } from 'kysely'
import type { Jwt } from '../auth/jwt.ts'
import type { Permission, UserPermission } from '../auth/permissions.ts'
import { hashToken, safeEqual } from '../auth/secrets.ts'
import type { Database, Tx } from '../db/database.ts'
import { AppError, forbidden, unauthorized } from '../errors.ts'

export type Credential = 'public' | 'communityKey' | 'systemKey' | 'userKey' | 'session'

/** What a route accepts; declared once in the route's `config.auth`. */
export interface AuthSpec {
  any: readonly Credential[]
  /** Required of community API keys (a key with `all` passes). */
  permission?: Permission
  /** Required of user API keys. */
  userPermission?: UserPermission
  /** Sessions must belong to an owner or admin of the community. */
  adminOnly?: boolean
}

export interface AuthContext {
  credential: Exclude<Credential, 'public'>
  communityId: string
  /** The API key used (community, user or the community's system key id). */
  apiKeyId: string | null
  /** The acting user for sessions and user API keys. */
  userId: string | null
  role: 'member' | 'admin' | 'owner' | null
  permissions: ReadonlySet<string>
}

interface Presented {
  kind: 'bearer' | 'system'
  token: string
}

function presented(req: FastifyRequest): Presented | null {
  const system = req.headers['x-api-key']
  if (typeof system === 'string' && system.length > 0) return { kind: 'system', token: system }
  const header = req.headers.authorization
  if (typeof header === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header)
    if (!m)
      throw unauthorized('The Authorization header must be "Bearer <token>"', 'invalid_authorization_header')
    return { kind: 'bearer', token: m[1] }
  }
  return null
}

/** Resolves whatever credential the request carries; throws 401 for a bad one, returns null for none. */
export async function resolveCredential(
  req: FastifyRequest,
  database: Database,
  jwt: Jwt,
): Promise<AuthContext | null> {
  const p = presented(req)
  if (!p) return null
  const { db } = database
  const hash = hashToken(p.token)
  if (p.kind === 'system') {
    const c = await db
      .selectFrom('communities')
      .select(['id', 'system_key_hash'])
      .where('system_key_hash', '=', hash)
      .executeTakeFirst()
    if (!c || !safeEqual(c.system_key_hash, hash)) throw unauthorized('Invalid x-api-key', 'invalid_api_key')
    return {
      credential: 'systemKey',
      communityId: c.id,
      apiKeyId: `system:${c.id}`,
      userId: null,
      role: null,
      permissions: new Set(['all']),
    }
  }
  if (p.token.split('.').length === 3) {
    const claims = await jwt.verify(p.token)
    if (!claims || claims.purpose) throw unauthorized('Invalid or expired token', 'invalid_token')
    const user = await db
      .selectFrom('users')
      .select(['id', 'community_id', 'role', 'deleted_at'])
      .where('id', '=', claims._id)
      .executeTakeFirst()
    if (!user || user.deleted_at) throw unauthorized('Invalid or expired token', 'invalid_token')
    return {
      credential: 'session',
      communityId: user.community_id,
      apiKeyId: null,
      userId: user.id,
      role: user.role,
      permissions: new Set(),
    }
  }
  const key = await db
    .selectFrom('api_keys')
    .select([
      'id',
      'community_id',
      'kind',
      'user_id',
      'key_hash',
      'permissions',
      'expire_date',
      'is_active',
      'last_used_at',
    ])
    .where('key_hash', '=', hash)
    .executeTakeFirst()
  if (!key || !safeEqual(key.key_hash, hash)) throw unauthorized('Invalid API key', 'invalid_api_key')
  assertKeyLive(key)
  if (key.user_id) {
    // A user API key dies with its user (soft delete included).
    const owner = await db
      .selectFrom('users')
      .select('deleted_at')
      .where('id', '=', key.user_id)
      .executeTakeFirst()
    if (!owner || owner.deleted_at)
      throw unauthorized('The owner of this API key is deleted', 'api_key_owner_deleted')
  }
  noteKeyUse(db, key)
  return {
    credential: key.kind === 'user' ? 'userKey' : 'communityKey',
    communityId: key.community_id,
    apiKeyId: key.id,
    userId: key.user_id,
    role: null,
    permissions: new Set(key.permissions),
  }
}

const KEY_USE_RESOLUTION_MS = 60_000

/** Refuses a disabled or expired key (also where a key is checked outside a request's auth). */
export function assertKeyLive(key: { is_active: boolean; expire_date: Date | string | null }) {
  if (!key.is_active) throw unauthorized('This API key is disabled', 'api_key_disabled')
  if (key.expire_date && new Date(key.expire_date).getTime() < Date.now()) {
    throw unauthorized('This API key has expired', 'api_key_expired')
  }
}

/**
 * Records when an API key was last used (shown as lastUsedAt), to the minute: a busy key does not
 * write its row on every request, and the request never waits for the write.
 */
export function noteKeyUse(db: Tx, key: { id: string; last_used_at: Date | string | null }) {
  if (key.last_used_at && Date.now() - new Date(key.last_used_at).getTime() < KEY_USE_RESOLUTION_MS) return
  db.updateTable('api_keys')
    .set({ last_used_at: sql`now()` })
    .where('id', '=', key.id)
    .where((eb) =>
      eb.or([
        eb('last_used_at', 'is', null),
        eb('last_used_at', '<', sql<Date>`now() - make_interval(secs => ${KEY_USE_RESOLUTION_MS / 1000})`),
      ]),
    )
    .execute()
    .catch(() => {}) // best effort: a lost timestamp must not fail or slow the request
}

/** Checks a resolved credential against a route's spec. */
export function authorize(spec: AuthSpec, auth: AuthContext | null): void {
  if (!auth) {
    if (spec.any.includes('public')) return
    throw unauthorized('Authentication required', 'unauthorized')
  }
  if (!spec.any.includes(auth.credential)) {
    throw new AppError(
      401,
      'credential_not_accepted',
      `This endpoint does not accept a ${describe(auth.credential)}`,
    )
  }
  if (auth.credential === 'communityKey' && spec.permission) {
    if (!auth.permissions.has(spec.permission) && !auth.permissions.has('all')) {
      throw forbidden(`This API key lacks the ${spec.permission} permission`, 'missing_permission')
    }
  }
  if (auth.credential === 'userKey' && spec.userPermission && !auth.permissions.has(spec.userPermission)) {
    throw forbidden(`This API key lacks the ${spec.userPermission} permission`, 'missing_permission')
  }
  if (auth.credential === 'session' && spec.adminOnly && auth.role !== 'owner' && auth.role !== 'admin') {
    throw forbidden('Only community owners and admins may do this', 'admin_only')
  }
}

function describe(c: AuthContext['credential']): string {
  return {
    communityKey: 'community API key',
    systemKey: 'system key (x-api-key)',
    userKey: 'user API key',
    session: 'user session token',
  }[c]
}

/** The community a request acts in; a path naming another community is refused. */
export function requireCommunity(auth: AuthContext | null, communityId?: string): string {
  if (!auth) throw unauthorized()
  if (communityId !== undefined && communityId !== auth.communityId) {
    throw forbidden('This credential cannot reach that community', 'community_forbidden')
  }
  return auth.communityId
}

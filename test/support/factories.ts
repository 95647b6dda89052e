import { randomBytes } from 'node:crypto'
import { COMMUNITY_KEY_PERMISSIONS } from '../../src/lib/auth/permissions.ts'
import { hashPassword, hashToken, randomToken } from '../../src/lib/auth/secrets.ts'
import type { AppDeps } from '../../src/lib/deps.ts'
import { newId } from '../../src/lib/ids.ts'
import { createCommunityService } from '../../src/modules/communities/communities.service.ts'

const uniq = () => randomBytes(4).toString('hex')

/** Inserts random, unique data so test files never depend on each other or on order. */
export function createFactories(deps: AppDeps) {
  const { db } = deps.database
  const communities = createCommunityService(deps)
  return {
    /** A community with its system key and a community API key holding every permission. */
    async community(name = `Community ${uniq()}`) {
      const { community, systemKey } = await communities.create({ name })
      const apiKey = await this.apiKey(community.id)
      return { id: community.id, community, systemKey, apiKey, bearer: { authorization: `Bearer ${apiKey}` } }
    },

    /** A custom user field of the community; returns its id. */
    async userField(communityId: string, field: string, type = 'text', name = field) {
      const id = newId()
      await db
        .insertInto('user_fields')
        .values({ id, community_id: communityId, field, name, type })
        .execute()
      return id
    },

    /** A community whose users are keyed by the custom text field `field` (its external id). */
    async externalIdCommunity(field = 'crm_id') {
      const c = await this.community()
      await this.userField(c.id, field)
      await db.updateTable('communities').set({ identifier_field: field }).where('id', '=', c.id).execute()
      return c
    },

    async apiKey(
      communityId: string,
      permissions: readonly string[] = COMMUNITY_KEY_PERMISSIONS,
      extra: { expireDate?: Date } = {},
    ) {
      const key = randomToken(32)
      await db
        .insertInto('api_keys')
        .values({
          id: newId(),
          community_id: communityId,
          kind: 'community',
          name: `key ${uniq()}`,
          key_hash: hashToken(key),
          key_prefix: key.slice(0, 6),
          permissions: [...permissions],
          expire_date: extra.expireDate ?? null,
        })
        .execute()
      return key
    },

    async user(
      communityId: string,
      over: {
        email?: string
        role?: 'member' | 'admin' | 'owner'
        password?: string
        externalId?: string
        username?: string
      } = {},
    ) {
      const id = newId()
      const email = over.email ?? `user-${uniq()}@example.com`
      const row = await db
        .insertInto('users')
        .values({
          id,
          community_id: communityId,
          email: email.toLowerCase(),
          username: over.username ?? `user_${uniq()}`,
          first_name: 'Test',
          last_name: 'User',
          role: over.role ?? 'member',
          external_id: over.externalId ?? null,
          password_hash: over.password ? await hashPassword(over.password) : null,
          email_verified_at: new Date(),
        })
        .returningAll()
        .executeTakeFirstOrThrow()
      return row
    },

    /** A session token for a user, as the login endpoint would issue. */
    async session(user: {
      id: string
      seq: number
      community_id: string
      role: 'member' | 'admin' | 'owner'
    }) {
      const token = await deps.jwt.sign({
        _id: user.id,
        id: user.seq,
        communityId: user.community_id,
        role: user.role,
      })
      return { authorization: `Bearer ${token}` }
    },
  }
}

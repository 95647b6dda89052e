import { hashToken, randomToken } from '../../lib/auth/secrets.ts'
import type { Database } from '../../lib/db/database.ts'
import { badRequest, notFound } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import * as repo from './communities.repo.ts'

export interface CreateCommunityInput {
  name: string
  description?: string
  appearance?: Record<string, unknown>
}

/** Communities (the public API's "servers"): creation hands out the system key exactly once. */
export function createCommunityService(deps: { database: Database }) {
  const { db } = deps.database
  return {
    async create(input: CreateCommunityInput, tx = db) {
      const systemKey = randomToken(32)
      const community = await repo.insertCommunity(tx, {
        id: newId(),
        name: input.name,
        description: input.description ?? '',
        appearance: input.appearance ?? {},
        systemKeyHash: hashToken(systemKey),
        systemKeyPrefix: systemKey.slice(0, 6),
      })
      return { community, systemKey }
    },

    async get(id: string) {
      const c = await repo.findCommunity(db, id)
      if (!c) throw notFound('community', 'communityId')
      return c
    },

    list: (ids: string[]) => repo.listCommunities(db, ids),

    async update(id: string, patch: repo.CommunityPatch) {
      if (patch.identifierField) {
        const field = await db
          .selectFrom('user_fields')
          .select('id')
          .where('community_id', '=', id)
          .where('field', '=', patch.identifierField)
          .executeTakeFirst()
        if (!field) {
          throw badRequest(
            'unknown_user_field',
            `No custom user field "${patch.identifierField}"`,
            'identifierField',
          )
        }
      }
      const c = await repo.updateCommunity(db, id, patch)
      if (!c) throw notFound('community', 'id')
      return c
    },

    /** Replaces the system key; the old one stops working at once. */
    async rotateSystemKey(id: string) {
      const systemKey = randomToken(32)
      const res = await db
        .updateTable('communities')
        .set({
          system_key_hash: hashToken(systemKey),
          system_key_prefix: systemKey.slice(0, 6),
          updated_at: new Date(),
        })
        .where('id', '=', id)
        .executeTakeFirst()
      if (res.numUpdatedRows === 0n) throw notFound('community', 'id')
      return systemKey
    },
  }
}
export type CommunityService = ReturnType<typeof createCommunityService>

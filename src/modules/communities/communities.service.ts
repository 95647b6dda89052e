import { hashToken, randomToken } from '../../lib/auth/secrets.ts'
import type { Database, Tx } from '../../lib/db/database.ts'
import { transact } from '../../lib/db/transact.ts'
import { badRequest, notFound } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import { lockFieldDefinitions } from '../user-fields/definitions-lock.ts'
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
      // A new identifier field changes what a running bulk job's key column means: wait for its
      // chunks in flight (definitions-lock.ts); the next one sees the change and stops the job.
      if (patch.identifierField === undefined) return updateCommunity(db, id, patch)
      return transact(db, async (tx) => {
        await lockFieldDefinitions(tx, id)
        return updateCommunity(tx, id, patch)
      })
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

/** Checks a new identifier field names a custom field of the community, then writes the patch. */
async function updateCommunity(db: Tx, id: string, patch: repo.CommunityPatch) {
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
}

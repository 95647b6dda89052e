import { transact } from '../../lib/db/transact.ts'
import type { AppDeps } from '../../lib/deps.ts'
import type { AuthContext } from '../../lib/http/auth.ts'
import { newId } from '../../lib/ids.ts'
import type { CommunityService, CreateCommunityInput } from './communities.service.ts'

/**
 * Creating a server from a session makes the caller its owner: accounts are per community,
 * so the owner's account (email, names, password hash) is copied into the new community.
 */
export async function createOwnedCommunity(
  deps: Pick<AppDeps, 'database'>,
  service: CommunityService,
  input: CreateCommunityInput,
  auth: AuthContext,
) {
  return transact(deps.database.db, async (tx) => {
    const created = await service.create(input, tx)
    if (auth.credential !== 'session' || !auth.userId) return created
    const me = await tx
      .selectFrom('users')
      .select([
        'email',
        'username',
        'first_name',
        'last_name',
        'display_name',
        'password_hash',
        'email_verified_at',
      ])
      .where('id', '=', auth.userId)
      .executeTakeFirstOrThrow()
    const ownerId = newId()
    await tx
      .insertInto('users')
      .values({ id: ownerId, community_id: created.community.id, ...me, role: 'owner' })
      .execute()
    const community = await tx
      .updateTable('communities')
      .set({ owner_user_id: ownerId })
      .where('id', '=', created.community.id)
      .returningAll()
      .executeTakeFirstOrThrow()
    return { community, systemKey: created.systemKey }
  })
}

/** The communities a credential can see: its own, plus (for sessions) every one the same email belongs to. */
export async function communitiesOfUser(
  deps: Pick<AppDeps, 'database'>,
  auth: AuthContext,
): Promise<string[]> {
  if (auth.credential !== 'session' || !auth.userId) return [auth.communityId]
  const rows = await deps.database.db
    .selectFrom('users as me')
    .innerJoin('users as other', 'other.email', 'me.email')
    .select('other.community_id')
    .where('me.id', '=', auth.userId)
    .where('other.deleted_at', 'is', null)
    .execute()
  return [...new Set(rows.map((r) => r.community_id))]
}

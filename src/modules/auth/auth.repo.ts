import type { Tx } from '../../lib/db/database.ts'
import { isObjectId } from '../../lib/ids.ts'
import { sameUsername } from '../users/users.repo.ts'

/** What authentication needs of a user; the password hash never leaves the service. */
export const authUserColumns = [
  'id',
  'seq',
  'community_id',
  'email',
  'username',
  'role',
  'access_level',
  'password_hash',
  'email_verified_at',
] as const

export type AuthUserRow = Awaited<ReturnType<typeof findLiveUser>> & {}

export function findCommunityName(db: Tx, communityId: string) {
  return db.selectFrom('communities').select(['id', 'name']).where('id', '=', communityId).executeTakeFirst()
}

export async function emailTaken(db: Tx, communityId: string, email: string): Promise<boolean> {
  const row = await db
    .selectFrom('users')
    .select('id')
    .where('community_id', '=', communityId)
    .where('email', '=', email)
    .executeTakeFirst()
  return row !== undefined
}

export interface NewUser {
  id: string
  communityId: string
  email: string
  passwordHash: string
  username: string | null
  firstName: string | null
  lastName: string | null
  displayName: string | null
}

export function insertUser(db: Tx, u: NewUser) {
  return db
    .insertInto('users')
    .values({
      id: u.id,
      community_id: u.communityId,
      email: u.email,
      password_hash: u.passwordHash,
      username: u.username,
      first_name: u.firstName,
      last_name: u.lastName,
      display_name: u.displayName,
      role: 'member',
    })
    .returning(authUserColumns)
    .executeTakeFirstOrThrow()
}

/**
 * Accounts (not soft-deleted) with this email: in one community, or in any when communityId is
 * omitted. At most two rows: the caller only needs to know "none, one or several".
 */
export function findLoginCandidates(db: Tx, email: string, communityId: string | undefined) {
  return db
    .selectFrom('users')
    .select(authUserColumns)
    .where('email', '=', email)
    .where('deleted_at', 'is', null)
    .$if(communityId !== undefined, (qb) => qb.where('community_id', '=', communityId!))
    .orderBy('community_id')
    .limit(2)
    .execute()
}

export function findLiveUser(db: Tx, communityId: string, userId: string) {
  return db
    .selectFrom('users')
    .select(authUserColumns)
    .where('community_id', '=', communityId)
    .where('id', '=', userId)
    .where('deleted_at', 'is', null)
    .executeTakeFirst()
}

export function markEmailVerified(db: Tx, communityId: string, userId: string) {
  return db
    .updateTable('users')
    .set((eb) => ({
      email_verified_at: eb.fn.coalesce('email_verified_at', eb.val(new Date())),
      updated_at: new Date(),
    }))
    .where('community_id', '=', communityId)
    .where('id', '=', userId)
    .returning(authUserColumns)
    .executeTakeFirst()
}

export function touchLastLogin(db: Tx, communityId: string, userId: string) {
  return db
    .updateTable('users')
    .set({ last_login: new Date() })
    .where('community_id', '=', communityId)
    .where('id', '=', userId)
    .execute()
}

/**
 * Secure Auth's `userId`: the 24-hex id, then the community's external id, then the email, then the
 * username (in any case: unique in the community), first match wins.
 */
export async function findUserByIdentifier(db: Tx, communityId: string, identifier: string) {
  const live = () =>
    db
      .selectFrom('users')
      .select(authUserColumns)
      .where('community_id', '=', communityId)
      .where('deleted_at', 'is', null)
  if (isObjectId(identifier)) {
    const byId = await live().where('id', '=', identifier.toLowerCase()).executeTakeFirst()
    if (byId) return byId
  }
  const byExternal = await live().where('external_id', '=', identifier).executeTakeFirst()
  if (byExternal) return byExternal
  if (identifier.includes('@')) {
    const byEmail = await live().where('email', '=', identifier.toLowerCase()).executeTakeFirst()
    if (byEmail) return byEmail
  }
  // lower() on both sides, in the database, as the unique index compares usernames.
  return live().where(sameUsername(identifier)).executeTakeFirst()
}

import { sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'
import { isUniqueViolation } from '../../lib/db/sql-errors.ts'
import type { FieldDef } from '../user-fields/field-types.ts'
import { pickReferenced, type ReferenceKind, referenceCandidates } from './user-reference.ts'

/** Every column the users presenters read; never password_hash. */
export const userColumns = [
  'users.id',
  'users.community_id',
  'users.seq',
  'users.email',
  'users.username',
  'users.first_name',
  'users.last_name',
  'users.display_name',
  'users.avatar',
  'users.language',
  'users.access_level',
  'users.role',
  'users.is_online',
  'users.last_login',
  'users.join_date',
  'users.xp',
  'users.coins',
  'users.premium',
  'users.custom_fields',
  'users.external_id',
  'users.referred_by',
  'users.total_messages',
  'users.total_reactions',
  'users.visit_count',
  'users.reply_sent',
  'users.time_spent',
  'users.login_streak',
  'users.deleted_at',
  'users.created_at',
] as const

export type UserRow = Awaited<ReturnType<typeof findUserById>> & {}

/** A live (not deleted) user of the community by its 24-hex id. */
export function findUserById(db: Tx, communityId: string, id: string) {
  return db
    .selectFrom('users')
    .select(userColumns)
    .where('users.community_id', '=', communityId)
    .where('users.id', '=', id)
    .where('users.deleted_at', 'is', null)
    .executeTakeFirst()
}

/**
 * Whether the user's username is `name` in any case, as the unique index (community_id,
 * lower(username)) compares them: lower() on both sides, in the database. JS toLowerCase() folds
 * some letters otherwise (e.g. 'İ': 'i̇' in JS, 'i' in PostgreSQL), so a name lowered in JS may miss
 * the user the index says holds it.
 */
export const sameUsername = (name: string) => sql<boolean>`lower(users.username) = lower(${name})`

/** The unique index keeping a username to one user of a community, in any case (migration 000160). */
export const USERNAME_INDEX = 'users_community_username'

/** A unique violation of USERNAME_INDEX: another user of the community holds the name. */
export const isUsernameTakenError = (err: unknown): boolean =>
  isUniqueViolation(err) && (err as { constraint?: unknown }).constraint === USERNAME_INDEX

/**
 * The user of the community that `ref` names, trying `kinds` in priority order (see
 * user-reference.ts). Usernames are unique per community in any case (migration 000160) and compare
 * as sameUsername does; the database also says which row matched the username (username_match).
 */
export async function findUserByReference(
  db: Tx,
  communityId: string,
  ref: string,
  kinds: readonly ReferenceKind[],
  opts: { includeDeleted: boolean; field: string },
): Promise<UserRow | null> {
  const candidates = referenceCandidates(ref, kinds)
  if (candidates.length === 0) return null
  const username = candidates.find((c) => c.kind === 'username')
  const rows = await db
    .selectFrom('users')
    .select(userColumns)
    .$if(username !== undefined, (q) => q.select(sameUsername(String(username?.value)).as('username_match')))
    .where('users.community_id', '=', communityId)
    .$if(!opts.includeDeleted, (q) => q.where('users.deleted_at', 'is', null))
    .where((eb) =>
      eb.or(
        candidates.map((c) => {
          switch (c.kind) {
            case 'id':
              return eb('users.id', '=', String(c.value))
            case 'seq':
              return eb('users.seq', '=', Number(c.value))
            case 'email':
              return eb('users.email', '=', String(c.value))
            case 'externalId':
              return eb('users.external_id', '=', String(c.value))
            default:
              return sameUsername(String(c.value))
          }
        }),
      ),
    )
    .limit(50)
    .execute()
  const picked = pickReferenced(candidates, rows, opts.field)
  if (!picked) return null
  const { username_match: _match, ...user } = picked
  return user
}

export type NewUser = {
  id: string
  communityId: string
  email: string
  username: string | null
  firstName: string | null
  lastName: string | null
  displayName: string | null
  passwordHash: string | null
  accessLevel: number | undefined
  customFields: Record<string, unknown>
  externalId: string | null
  referredBy: string | null
}

export function insertUser(tx: Tx, u: NewUser) {
  return tx
    .insertInto('users')
    .values({
      id: u.id,
      community_id: u.communityId,
      email: u.email,
      username: u.username,
      first_name: u.firstName,
      last_name: u.lastName,
      display_name: u.displayName,
      password_hash: u.passwordHash,
      ...(u.accessLevel !== undefined ? { access_level: u.accessLevel } : {}),
      custom_fields: JSON.stringify(u.customFields),
      external_id: u.externalId,
      referred_by: u.referredBy,
    })
    .returning(userColumns)
    .executeTakeFirstOrThrow()
}

/** Soft delete (a date) or restore (null); only touches a row whose state actually changes. */
export function setDeletedAt(db: Tx, communityId: string, userId: string, deletedAt: Date | null) {
  return db
    .updateTable('users')
    .set({ deleted_at: deletedAt, updated_at: new Date() })
    .where('community_id', '=', communityId)
    .where('id', '=', userId)
    .where('deleted_at', deletedAt ? 'is' : 'is not', null)
    .executeTakeFirst()
}

/** Any user (deleted ones too: they keep their email and external id) holding this value. */
export function findUserHolding(db: Tx, communityId: string, column: 'email' | 'external_id', value: string) {
  return db
    .selectFrom('users')
    .select(['users.id', 'users.seq'])
    .where('users.community_id', '=', communityId)
    .where(`users.${column}`, '=', value)
    .executeTakeFirst()
}

/** Whether any user of the community (deleted ones too: the unique index holds them) has this username. */
export function usernameTaken(db: Tx, communityId: string, username: string) {
  return db
    .selectFrom('users')
    .select('users.id')
    .where('users.community_id', '=', communityId)
    .where(sameUsername(username))
    .executeTakeFirst()
    .then(Boolean)
}

/** The live referrer whose identifier (users.external_id, mirrored from the identifier field) is `ref`. */
export function findReferrer(db: Tx, communityId: string, ref: string, identifierField: string | null) {
  return db
    .selectFrom('users')
    .select(['users.id'])
    .where('users.community_id', '=', communityId)
    .where('users.deleted_at', 'is', null)
    .where((eb) =>
      eb.or([
        eb('users.external_id', '=', ref),
        ...(identifierField ? [eb(sql`users.custom_fields ->> ${identifierField}::text`, '=', ref)] : []),
      ]),
    )
    .orderBy('users.created_at')
    .executeTakeFirst()
}

export interface FieldDefRow extends FieldDef {
  id: string
  name: string
}

/** The community's custom field definitions. */
export async function listFieldDefs(db: Tx, communityId: string): Promise<FieldDefRow[]> {
  const rows = await db
    .selectFrom('user_fields')
    .select(['id', 'field', 'name', 'type', 'options'])
    .where('community_id', '=', communityId)
    .orderBy('created_at')
    .orderBy('id')
    .execute()
  return rows.map((r) => ({ ...r, options: Array.isArray(r.options) ? (r.options as string[]) : null }))
}

/** What creating a user needs of its community. */
export function findCommunitySettings(db: Tx, communityId: string) {
  return db
    .selectFrom('communities')
    .select(['identifier_field', 'name'])
    .where('id', '=', communityId)
    .executeTakeFirstOrThrow()
}

/** Positive XP and coin amounts credited since `since` (the start of today, UTC). */
export async function earnedSince(db: Tx, communityId: string, userId: string, since: Date) {
  const rows = await db
    .selectFrom('currency_ledger')
    .select(['currency', sql<number>`sum(amount)`.as('earned')])
    .where('community_id', '=', communityId)
    .where('user_id', '=', userId)
    .where('currency', 'in', ['xp', 'coins'])
    .where('amount', '>', 0)
    .where('created_at', '>=', since)
    .groupBy('currency')
    .execute()
  const of = (c: string) => Number(rows.find((r) => r.currency === c)?.earned ?? 0)
  return { xp: of('xp'), coins: of('coins') }
}

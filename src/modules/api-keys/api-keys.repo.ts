import type { Tx } from '../../lib/db/database.ts'

/** Columns a caller may ever see, directly or through a presenter; never the hash. */
export const apiKeyColumns = [
  'id',
  'community_id',
  'kind',
  'user_id',
  'name',
  'key_prefix',
  'permissions',
  'expire_period',
  'expire_date',
  'is_active',
  'last_used_at',
  'created_at',
  'updated_at',
] as const

/** Which keys a request may reach: one community's keys, or one user's keys in that community. */
export type KeyScope =
  | { communityId: string; kind: 'community' }
  | { communityId: string; kind: 'user'; userId: string }

export type ApiKeyRow = Awaited<ReturnType<typeof findKey>> & {}

export interface NewApiKey {
  id: string
  name: string
  keyHash: string
  keyPrefix: string
  permissions: string[]
  expirePeriod: number
  expireDate: Date | null
  createdBy: string | null
}

export interface ApiKeyPatch {
  name?: string
  permissions?: string[]
  expirePeriod?: number
  expireDate?: Date | null
  isActive?: boolean
}

const userOf = (scope: KeyScope) => (scope.kind === 'user' ? scope.userId : null)

export function insertKey(db: Tx, scope: KeyScope, k: NewApiKey) {
  return db
    .insertInto('api_keys')
    .values({
      id: k.id,
      community_id: scope.communityId,
      kind: scope.kind,
      user_id: userOf(scope),
      name: k.name,
      key_hash: k.keyHash,
      key_prefix: k.keyPrefix,
      permissions: k.permissions,
      expire_period: k.expirePeriod,
      expire_date: k.expireDate,
      created_by: k.createdBy,
    })
    .returning(apiKeyColumns)
    .executeTakeFirstOrThrow()
}

export function findKey(db: Tx, scope: KeyScope, id: string) {
  return db
    .selectFrom('api_keys')
    .select(apiKeyColumns)
    .where('community_id', '=', scope.communityId)
    .where('kind', '=', scope.kind)
    .$if(scope.kind === 'user', (qb) => qb.where('user_id', '=', userOf(scope)))
    .where('id', '=', id)
    .executeTakeFirst()
}

export function listKeys(db: Tx, scope: KeyScope, page: { offset: number; limit: number }) {
  return db
    .selectFrom('api_keys')
    .select(apiKeyColumns)
    .where('community_id', '=', scope.communityId)
    .where('kind', '=', scope.kind)
    .$if(scope.kind === 'user', (qb) => qb.where('user_id', '=', userOf(scope)))
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .offset(page.offset)
    .limit(page.limit)
    .execute()
}

export async function countKeys(db: Tx, scope: KeyScope): Promise<number> {
  const row = await db
    .selectFrom('api_keys')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('community_id', '=', scope.communityId)
    .where('kind', '=', scope.kind)
    .$if(scope.kind === 'user', (qb) => qb.where('user_id', '=', userOf(scope)))
    .executeTakeFirstOrThrow()
  return Number(row.n)
}

export function updateKey(db: Tx, scope: KeyScope, id: string, p: ApiKeyPatch) {
  return db
    .updateTable('api_keys')
    .set({
      ...(p.name !== undefined ? { name: p.name } : {}),
      ...(p.permissions !== undefined ? { permissions: p.permissions } : {}),
      ...(p.expirePeriod !== undefined ? { expire_period: p.expirePeriod } : {}),
      ...(p.expireDate !== undefined ? { expire_date: p.expireDate } : {}),
      ...(p.isActive !== undefined ? { is_active: p.isActive } : {}),
      updated_at: new Date(),
    })
    .where('community_id', '=', scope.communityId)
    .where('kind', '=', scope.kind)
    .$if(scope.kind === 'user', (qb) => qb.where('user_id', '=', userOf(scope)))
    .where('id', '=', id)
    .returning(apiKeyColumns)
    .executeTakeFirst()
}

export function deleteKey(db: Tx, scope: KeyScope, id: string) {
  return db
    .deleteFrom('api_keys')
    .where('community_id', '=', scope.communityId)
    .where('kind', '=', scope.kind)
    .$if(scope.kind === 'user', (qb) => qb.where('user_id', '=', userOf(scope)))
    .where('id', '=', id)
    .returning(apiKeyColumns)
    .executeTakeFirst()
}

/** The key a raw secret belongs to (any community: the hash is the lookup), with its hash for a constant-time check. */
export function findKeyByHash(db: Tx, keyHash: string) {
  return db
    .selectFrom('api_keys')
    .select([...apiKeyColumns, 'key_hash'])
    .where('key_hash', '=', keyHash)
    .executeTakeFirst()
}

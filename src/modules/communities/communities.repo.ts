import type { Tx } from '../../lib/db/database.ts'

export const communityColumns = [
  'id',
  'name',
  'description',
  'appearance',
  'identifier_field',
  'allow_public_bulk_import',
  'owner_user_id',
  'created_at',
  'updated_at',
] as const

export type CommunityRow = Awaited<ReturnType<typeof findCommunity>> & {}

export function findCommunity(db: Tx, id: string) {
  return db.selectFrom('communities').select(communityColumns).where('id', '=', id).executeTakeFirst()
}

export function listCommunities(db: Tx, ids: string[]) {
  if (ids.length === 0) return Promise.resolve([])
  return db
    .selectFrom('communities')
    .select(communityColumns)
    .where('id', 'in', ids)
    .orderBy('created_at')
    .execute()
}

export interface NewCommunity {
  id: string
  name: string
  description: string
  appearance: Record<string, unknown>
  systemKeyHash: string
  systemKeyPrefix: string
}

export function insertCommunity(db: Tx, c: NewCommunity) {
  return db
    .insertInto('communities')
    .values({
      id: c.id,
      name: c.name,
      description: c.description,
      appearance: JSON.stringify(c.appearance),
      system_key_hash: c.systemKeyHash,
      system_key_prefix: c.systemKeyPrefix,
    })
    .returning(communityColumns)
    .executeTakeFirstOrThrow()
}

export interface CommunityPatch {
  name?: string
  description?: string
  appearance?: Record<string, unknown>
  identifierField?: string | null
  allowPublicBulkImport?: boolean
  ownerUserId?: string
}

export function updateCommunity(db: Tx, id: string, p: CommunityPatch) {
  return db
    .updateTable('communities')
    .set({
      ...(p.name !== undefined ? { name: p.name } : {}),
      ...(p.description !== undefined ? { description: p.description } : {}),
      ...(p.appearance !== undefined ? { appearance: JSON.stringify(p.appearance) } : {}),
      ...(p.identifierField !== undefined ? { identifier_field: p.identifierField } : {}),
      ...(p.allowPublicBulkImport !== undefined ? { allow_public_bulk_import: p.allowPublicBulkImport } : {}),
      ...(p.ownerUserId !== undefined ? { owner_user_id: p.ownerUserId } : {}),
      updated_at: new Date(),
    })
    .where('id', '=', id)
    .returning(communityColumns)
    .executeTakeFirst()
}

import { z } from 'zod'
import { maskKey } from './api-key-rules.ts'
import type { ApiKeyRow } from './api-keys.repo.ts'

const iso = (d: Date | string) => new Date(d).toISOString()

const keyShape = {
  _id: z.string().describe('API key id, 24 hex'),
  name: z.string(),
  key: z.string().describe('The key masked as its first six characters and "…"'),
  permissions: z.array(z.string()).describe('Permission names; community keys may hold ["all"]'),
  expirePeriod: z.number().int().describe('Days of validity from creation or last period change; 0 = never'),
  expireDate: z.string().nullable().describe('When the key stops working (ISO 8601); null = never'),
  isActive: z.boolean().describe('A disabled key is refused with 401 api_key_disabled'),
  lastUsedAt: z.string().nullable(),
  updatedAt: z.string(),
  createdAt: z.string(),
}
const userKeyShape = {
  ...keyShape,
  userId: z.string().describe('Owner of the key'),
  communityId: z.string(),
}
const rawKey = z.string().describe('The raw key (64 hex). Shown once, in this answer only; store it now.')

export const communityKeySchema = z.object(keyShape).meta({ id: 'CommunityApiKey' })
export const createdCommunityKeySchema = z
  .object({ ...keyShape, key: rawKey })
  .meta({ id: 'CreatedCommunityApiKey' })
export const userKeySchema = z.object(userKeyShape).meta({ id: 'UserApiKey' })
export const createdUserKeySchema = z
  .object({ ...userKeyShape, key: rawKey })
  .meta({ id: 'CreatedUserApiKey' })

export function presentCommunityKey(k: ApiKeyRow): z.infer<typeof communityKeySchema> {
  return {
    _id: k.id,
    name: k.name,
    key: maskKey(k.key_prefix),
    permissions: [...k.permissions],
    expirePeriod: k.expire_period,
    expireDate: k.expire_date ? iso(k.expire_date) : null,
    isActive: k.is_active,
    lastUsedAt: k.last_used_at ? iso(k.last_used_at) : null,
    updatedAt: iso(k.updated_at),
    createdAt: iso(k.created_at),
  }
}

export function presentUserKey(k: ApiKeyRow): z.infer<typeof userKeySchema> {
  return { ...presentCommunityKey(k), userId: k.user_id ?? '', communityId: k.community_id }
}

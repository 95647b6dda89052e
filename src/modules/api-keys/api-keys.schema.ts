import { z } from 'zod'
import { OBJECT_ID } from '../../lib/ids.ts'

const objectId = (what: string) => z.string().regex(OBJECT_ID, 'must be a 24-hex id').describe(what)

const name = z.string().trim().min(1).max(100).describe('A label for the key')
const permissions = z
  .array(z.string().min(1).max(64))
  .min(1)
  .max(64)
  .describe('Permission names; unknown names get 400 invalid_permission')
const expirePeriod = z
  .number()
  .int()
  .min(0)
  .max(3650)
  .describe('Days until the key expires, counted from now; 0 = never')
const expireDate = z
  .union([z.iso.datetime({ offset: true }), z.literal('')])
  .nullable()
  .describe('Explicit expiry (ISO 8601); wins over expirePeriod. "" or null = none')

export const communityParams = z.object({ communityId: objectId('Community id') }).strict()
export const communityKeyParams = z
  .object({ communityId: objectId('Community id'), apiKeyId: objectId('API key id') })
  .strict()

export const listQuery = z
  .object({
    page: z.coerce.number().int().min(1).default(1).describe('Page, from 1'),
    limit: z.coerce.number().int().min(1).max(100).default(20).describe('Keys per page (max 100)'),
  })
  .strict()

export const createCommunityKeyBody = z
  .object({
    name,
    permissions: permissions.describe(
      'Community permission names (see COMMUNITY_KEY_PERMISSIONS), or ["all"]',
    ),
    expirePeriod,
    expireDate: expireDate.optional(),
  })
  .strict()

export const updateKeyBody = z
  .object({
    name: name.optional(),
    permissions: permissions.optional(),
    expirePeriod: expirePeriod.optional(),
    expireDate: expireDate.optional(),
    isActive: z.boolean().optional().describe('false disables the key at once'),
  })
  .strict()

export const createUserKeyQuery = z.object({ userId: objectId('The session user (must be you)') }).strict()
export const createUserKeyBody = z
  .object({
    name,
    permissions: permissions.describe(
      'User permission names: sendMessages, readOwnProfile, updateOwnProfile, readOwnMessages',
    ),
    expirePeriod,
    expireDate: expireDate.optional(),
    communityId: objectId('Your community; must be the session community').optional(),
  })
  .strict()

export const userParams = z.object({ userId: objectId('The session user (must be you)') }).strict()
export const userKeyParams = z
  .object({ userId: objectId('The session user (must be you)'), keyId: objectId('API key id') })
  .strict()

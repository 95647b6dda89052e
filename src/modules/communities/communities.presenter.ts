import { z } from 'zod'
import type { CommunityRow } from './communities.repo.ts'

export const serverSchema = z
  .object({
    _id: z.string().describe('Community (server) id, 24 hex'),
    name: z.string(),
    description: z.string(),
    appearance: z.record(z.string(), z.unknown()),
    identifierField: z.string().nullable().describe('Custom user field used as the external id'),
    allowPublicBulkImport: z.boolean().describe('Whether the unauthenticated bulk import is switched on'),
    ownerId: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Server' })

export function presentServer(c: CommunityRow): z.infer<typeof serverSchema> {
  return {
    _id: c.id,
    name: c.name,
    description: c.description,
    appearance: (c.appearance ?? {}) as Record<string, unknown>,
    identifierField: c.identifier_field,
    allowPublicBulkImport: c.allow_public_bulk_import,
    ownerId: c.owner_user_id,
    createdAt: new Date(c.created_at).toISOString(),
    updatedAt: new Date(c.updated_at).toISOString(),
  }
}

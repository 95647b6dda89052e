import { z } from 'zod'
import { OBJECT_ID } from '../../lib/ids.ts'

export const createServerBody = z
  .object({
    name: z.string().trim().min(1).max(100).describe('Server name'),
    description: z.string().max(1000).optional(),
    appearance: z
      .record(z.string(), z.unknown())
      .optional()
      .describe('Colours, logo and other display settings'),
  })
  .strict()

export const updateServerBody = z
  .object({
    name: z.string().trim().min(1).max(100).optional(),
    description: z.string().max(1000).optional(),
    appearance: z.record(z.string(), z.unknown()).optional(),
    identifierField: z
      .string()
      .min(1)
      .max(50)
      .nullable()
      .optional()
      .describe('Key of the custom user field that holds the external id (externalId, bulk CSV key)'),
    allowPublicBulkImport: z
      .boolean()
      .optional()
      .describe(
        'Allow POST /apis/v1/users/bulk-import without a key (the documented behaviour); off by default',
      ),
  })
  .strict()

export const serverIdParams = z.object({ id: z.string().regex(OBJECT_ID, 'must be a 24-hex id') }).strict()

import { z } from 'zod'
import { OBJECT_ID } from '../../lib/ids.ts'

const objectId = (what: string) => z.string().regex(OBJECT_ID, 'must be a 24-hex id').describe(what)

export const communityParams = z.object({ communityId: objectId('Community (server) id') }).strict()

export const logParams = z
  .object({ communityId: objectId('Community (server) id'), logId: objectId('API log entry id') })
  .strict()

export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const
export const HTTP_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'] as const

export const MAX_LIMIT = 200
export const DEFAULT_LIMIT = 50

export const listLogsQuery = z
  .object({
    kind: z.enum(['request', 'bulk_job']).optional().describe('Plain requests or bulk job entries'),
    method: z
      .preprocess((m) => (typeof m === 'string' ? m.toUpperCase() : m), z.enum(HTTP_METHODS))
      .optional()
      .describe('HTTP method (any case)'),
    status: z.coerce.number().int().min(100).max(599).optional().describe('Exact HTTP status'),
    statusClass: z
      .enum(STATUS_CLASSES)
      .optional()
      .describe('Status class such as 2xx; not together with status'),
    apiKeyId: z
      .string()
      .min(1)
      .max(100)
      .optional()
      .describe('Key id; `system:<communityId>` for the system key'),
    path: z
      .string()
      .regex(/^\//, 'must start with /')
      .max(500)
      .optional()
      .describe('Path prefix, e.g. /apis/v1/users'),
    from: z.iso.datetime({ offset: true }).optional().describe('Entries at or after this ISO 8601 time'),
    to: z.iso.datetime({ offset: true }).optional().describe('Entries at or before this ISO 8601 time'),
    limit: z.coerce
      .number()
      .int()
      .min(1)
      .max(MAX_LIMIT)
      .default(DEFAULT_LIMIT)
      .describe(`Page size, at most ${MAX_LIMIT}`),
    cursor: z.string().min(1).max(200).optional().describe('`meta.nextCursor` of the previous page'),
  })
  .strict()

export type ListLogsQuery = z.infer<typeof listLogsQuery>

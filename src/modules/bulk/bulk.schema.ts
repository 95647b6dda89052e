import { z } from 'zod'
import { integrationOk } from '../../lib/http/envelope.ts'
import { OBJECT_ID } from '../../lib/ids.ts'
import { detailRowSchema, JOB_STATES, jobSchema } from './bulk.presenter.ts'
import type { TemplateKind } from './bulk.template.ts'

export const jobIdParams = z
  .object({ jobId: z.string().regex(OBJECT_ID, 'must be a 24-hex job id').toLowerCase() })
  .strict()

// Row numbers are compared as int4 in the details queries: a page past 1,000,000 (100M rows at the
// largest limit, far past any file) is refused rather than overflowing into a 500.
const page = z.coerce.number().int().min(1).max(1_000_000).default(1)

/**
 * A job type as a request may spell it: jobs report `premium_currency`, the upload path says
 * `premium-currency`; every query that takes a type accepts both.
 */
const jobType = z.enum(['import', 'update', 'premium_currency', 'premium-currency'])

export const listQuery = z
  .object({
    type: jobType.optional(),
    status: z.enum(JOB_STATES).optional(),
    page,
    limit: z.coerce.number().int().min(1).max(100).default(20),
  })
  .strict()

export const detailsQuery = z
  .object({
    page,
    limit: z.coerce.number().int().min(1).max(1000).default(100),
    status: z.enum(['failed']).optional().describe('Only the failed rows'),
    format: z
      .enum(['json', 'csv'])
      .default('json')
      .describe('csv: the failed rows with an error column, ready to fix and upload again'),
  })
  .strict()

export const templateQuery = z
  .object({
    type: jobType
      .default('import')
      .transform((t): TemplateKind => (t === 'premium_currency' ? 'premium-currency' : t)),
  })
  .strict()

/** The multipart form, described for OpenAPI (multipart bodies are read as a stream, not validated by schema). */
export const uploadForm = z.object({
  data: z.string().describe('The CSV file (binary)').meta({ format: 'binary' }),
  communityId: z
    .string()
    .regex(OBJECT_ID)
    .optional()
    .describe('Target community; required without a key (bulk import only)'),
  dryRun: z
    .enum(['true', 'false'])
    .optional()
    .describe('Validate and report what would happen, writing nothing'),
})

export const queuedResponse = integrationOk(z.object({ message: z.string(), jobId: z.string() }))

export const pagination = z.object({
  page: z.number(),
  limit: z.number(),
  total: z.number(),
  total_pages: z.number(),
})

export const listResponse = integrationOk(z.object({ jobs: z.array(jobSchema), pagination }))
export const jobResponse = integrationOk(jobSchema)
export const detailsResponse = integrationOk(
  z.object({ job: jobSchema, rows: z.array(detailRowSchema), pagination }),
)

import { Readable } from 'node:stream'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { App } from '../../app.ts'
import type { BulkJobType } from '../../lib/db/schema.ts'
import type { AppDeps } from '../../lib/deps.ts'
import { badRequest } from '../../lib/errors.ts'
import type { AuthSpec } from '../../lib/http/auth.ts'
import { requireCommunity } from '../../lib/http/auth.ts'
import { integration } from '../../lib/http/envelope.ts'
import { failedRowsCsv } from './bulk.failed-rows-csv.ts'
import { presentJob } from './bulk.presenter.ts'
import {
  detailsQuery,
  detailsResponse,
  jobIdParams,
  jobResponse,
  listQuery,
  listResponse,
  queuedResponse,
  templateQuery,
  uploadForm,
} from './bulk.schema.ts'
import { createBulkService } from './bulk.service.ts'
import { templateCsv } from './bulk.template.ts'
import { readUploadForm, streamBodyValidator } from './bulk.upload-form.ts'

const family = 'integration' as const
const bulkAuth: AuthSpec = { any: ['communityKey', 'session'], permission: 'bulkUpdateUser', adminOnly: true }
const tags = ['Bulk Operations']

const UPLOADS: {
  url: string
  type: BulkJobType
  operationId: string
  summary: string
  label: string
  public: boolean
}[] = [
  {
    url: '/apis/v1/users/bulk-import',
    type: 'import',
    operationId: 'bulkImportUsers',
    summary: 'Bulk Import',
    label: 'Bulk import user',
    public: true,
  },
  {
    url: '/apis/v1/users/bulk-update',
    type: 'update',
    operationId: 'bulkUpdateUsers',
    summary: 'Bulk Update',
    label: 'Bulk update user',
    public: false,
  },
  {
    url: '/apis/v1/users/bulk-update/premium-currency',
    type: 'premium_currency',
    operationId: 'bulkUpdatePremiumCurrency',
    summary: 'Premium Currency Bulk Update',
    label: 'Premium currency bulk update',
    public: false,
  },
]

export async function registerBulk(app: App, deps: AppDeps) {
  const service = createBulkService(deps)

  for (const u of UPLOADS) {
    app.route({
      method: 'POST',
      url: u.url,
      config: { family, auth: u.public ? { ...bulkAuth, any: ['public', ...bulkAuth.any] } : bulkAuth },
      validatorCompiler: streamBodyValidator as never,
      schema: {
        operationId: u.operationId,
        tags,
        summary: u.summary,
        description:
          `${u.summary}: multipart/form-data with the CSV in \`data\`. Answers at once; the job runs in the background ` +
          'and its progress shows in the API log and at GET /apis/v1/users/bulk-updates/{jobId}. ' +
          (u.public
            ? 'Without a key this works only where the community admin switched on allowPublicBulkImport (off by default).'
            : 'Needs a community API key with bulkUpdateUser.') +
          ' Send an Idempotency-Key header to make retries safe: the same key answers with the job it started.',
        consumes: ['multipart/form-data'],
        body: uploadForm,
        response: { 200: queuedResponse },
      },
      handler: async (req, reply) => {
        // Checked before the file is read, so a bad header stores nothing.
        const idempotencyKey = idempotencyKeyOf(req.headers['idempotency-key'])
        const form = await readUploadForm(req, service, deps.database, {
          allowPublic: u.public,
          maxFileBytes: deps.config.bulk.maxFileBytes,
        })
        const job = await service.enqueue(form.stored, {
          communityId: form.communityId,
          type: u.type,
          dryRun: form.dryRun,
          fileName: form.fileName,
          apiKeyId: req.auth?.apiKeyId ?? null,
          createdBy: req.auth?.userId ?? req.auth?.apiKeyId ?? 'public',
          requestPath: u.url,
          requestId: req.id,
          idempotencyKey,
        })
        // A new job's API log row is this request's: one row per upload, its progress live.
        if (job.id === form.stored.uploadId) reply.loggedInApiLog = true
        const message = `${u.label} process is queued`
        return integration(
          { message: `${message}. You can check in Api Log ( community settings )`, jobId: job.id },
          message,
        )
      },
    })
  }

  app.route({
    method: 'GET',
    url: '/apis/v1/users/bulk-import/template',
    config: { family, auth: bulkAuth },
    schema: {
      operationId: 'bulkImportTemplate',
      tags,
      summary: 'Download the bulk CSV template',
      description:
        'Default fields plus one column per custom field; type=update adds <field>_op columns before numeric ones.',
      querystring: templateQuery,
      response: { 200: z.string().describe('text/csv') },
    },
    handler: async (req, reply) => {
      const csv = await templateCsv(deps.database.db, req.auth!.communityId, req.query.type)
      return reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="hearth-${req.query.type}-template.csv"`)
        .send(csv)
    },
  })

  app.route({
    method: 'GET',
    url: '/apis/v1/users/bulk-updates',
    config: { family, auth: bulkAuth },
    schema: {
      operationId: 'listBulkJobs',
      tags,
      summary: 'Get All Bulk Update',
      description: "Every bulk job of the credential's community, newest first.",
      querystring: listQuery,
      response: { 200: listResponse },
    },
    handler: async (req) => {
      const q = req.query
      const type = q.type === 'premium-currency' ? 'premium_currency' : q.type
      const { rows, total } = await service.list(requireCommunity(req.auth), {
        type,
        status: q.status,
        page: q.page,
        limit: q.limit,
      })
      return integration(
        {
          jobs: rows.map(presentJob),
          pagination: { page: q.page, limit: q.limit, total, total_pages: Math.ceil(total / q.limit) },
        },
        'Bulk jobs fetched successfully',
      )
    },
  })

  app.route({
    method: 'GET',
    url: '/apis/v1/users/bulk-updates/:jobId',
    config: { family, auth: bulkAuth },
    schema: {
      operationId: 'getBulkJob',
      tags,
      summary: 'Check Bulk Update Status',
      params: jobIdParams,
      response: { 200: jobResponse },
    },
    handler: async (req) =>
      integration(
        presentJob(await service.get(requireCommunity(req.auth), req.params.jobId)),
        'Bulk job fetched successfully',
      ),
  })

  app.route({
    method: 'GET',
    url: '/apis/v1/users/bulk-updates/:jobId/details',
    config: { family, auth: bulkAuth },
    schema: {
      operationId: 'getBulkJobDetails',
      tags,
      summary: 'Check Bulk Update Details',
      description:
        'Per-row outcomes in file order. format=csv returns the failed rows as text/csv: the original columns, then line and error ' +
        '(a name the file already uses, in any case, gets hearth_ before it: hearth_line, hearth_error); ' +
        'for a job that stopped midway (unreachedRowsInCsv), also the rows it never reached (error not_applied), in file order. ' +
        "Uploaded again, such a CSV's last two columns are recognised as Hearth's and ignored.",
      params: jobIdParams,
      querystring: detailsQuery,
      response: { 200: detailsResponse.or(z.string().describe('text/csv')) },
    },
    handler: async (req, reply) => {
      const communityId = requireCommunity(req.auth)
      const q = req.query
      if (q.format === 'csv') {
        const first = await service.get(communityId, req.params.jobId)
        const stream = Readable.from(failedRowsCsv(service.failedRows(communityId, first.id)))
        return reply
          .type('text/csv; charset=utf-8')
          .header('content-disposition', `attachment; filename="failed-rows-${first.id}.csv"`)
          .send(stream as never)
      }
      const { job, rows, total } = await service.details(communityId, req.params.jobId, {
        page: q.page,
        limit: q.limit,
        only: q.status,
      })
      return integration(
        {
          job: presentJob(job),
          rows,
          pagination: { page: q.page, limit: q.limit, total, total_pages: Math.ceil(total / q.limit) },
        },
        'Bulk job details fetched successfully',
      )
    },
  })

  // Many clients send `Content-Type: application/json` with every POST, even one without a body:
  // in its own scope the cancel route reads an empty JSON body as no body.
  await app.register(async (scope) => {
    const json = scope.getDefaultJsonParser('error', 'error')
    scope.removeContentTypeParser('application/json')
    scope.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) =>
      body === '' ? done(null, undefined) : json(req, body as string, done),
    )
    scope.withTypeProvider<ZodTypeProvider>().route({
      method: 'POST',
      url: '/apis/v1/users/bulk-updates/:jobId/cancel',
      config: { family, auth: bulkAuth },
      schema: {
        operationId: 'cancelBulkJob',
        tags,
        summary: 'Cancel a bulk job',
        description:
          'A queued job is cancelled at once. A running job stops at the chunk in flight, which is rolled ' +
          'back whole: the rows of the chunks already committed stay applied, and the counts stay exact ' +
          '(they cover exactly those rows). Cancelling a cancelled job again answers it as it is (a retried ' +
          'cancel is safe); a job that ended otherwise answers 409 job_finished. Takes no body: send none, an empty one or {}.',
        params: jobIdParams,
        body: z.object({}).strict().nullish().describe('No fields'),
        response: { 200: jobResponse },
      },
      handler: async (req) =>
        integration(
          presentJob(await service.cancel(requireCommunity(req.auth), req.params.jobId)),
          'Bulk job cancel requested',
        ),
    })
  })
}

function idempotencyKeyOf(header: string | string[] | undefined): string | null {
  if (header === undefined) return null
  const key = Array.isArray(header) ? header[0] : header
  if (!/^[\x21-\x7e]{1,200}$/.test(key)) {
    throw badRequest(
      'invalid_field',
      'Idempotency-Key must be 1 to 200 visible ASCII characters',
      'Idempotency-Key',
    )
  }
  return key
}

import { z } from 'zod'
import { percentage, UNREACHED_ROWS, unreachedRowsInCsv } from '../bulk/bulk.presenter.ts'
import type { LogRow } from './api-log.repo.ts'

export const logBulkJobSchema = z
  .object({
    _id: z.string(),
    type: z.enum(['import', 'update', 'premium_currency']),
    dryRun: z.boolean().describe('A dry run: its counts say what the file would do; nothing was written'),
    status: z
      .string()
      .describe('queued, validating, processing, completed, completed_with_errors, failed or cancelled'),
    total: z.number(),
    processed: z.number(),
    created: z.number(),
    updated: z.number(),
    skipped: z.number(),
    failed: z.number(),
    percentage: z.number().describe('processed / total × 100, one decimal; 100 for a finished empty job'),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
    unreachedRowsInCsv: z.boolean().describe(UNREACHED_ROWS),
    error: z
      .object({ code: z.string(), message: z.string() })
      .nullable()
      .describe('Why a failed job failed as a whole (its header, say); null otherwise'),
  })
  .meta({ id: 'ApiLogBulkJob' })

export const apiLogSchema = z
  .object({
    _id: z.string(),
    kind: z.enum(['request', 'bulk_job']),
    method: z.string(),
    path: z.string().describe('Path without the query string'),
    status: z.number().describe('HTTP status of the answer'),
    durationMs: z.number(),
    requestId: z.string(),
    apiKeyId: z.string().nullable().describe('Key id, or `system:<communityId>` for the system key'),
    summary: z.record(z.string(), z.unknown()).describe('Query and body with secrets redacted'),
    createdAt: z.string(),
    bulkJob: logBulkJobSchema.nullable().describe('The linked bulk job with its current progress'),
  })
  .meta({ id: 'ApiLogEntry' })

const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString())

export function presentLog(r: LogRow): z.infer<typeof apiLogSchema> {
  return {
    _id: r.id,
    kind: r.kind,
    method: r.method,
    path: r.path,
    status: r.status,
    durationMs: r.duration_ms,
    requestId: r.request_id,
    apiKeyId: r.api_key_id,
    summary: (r.summary ?? {}) as Record<string, unknown>,
    createdAt: iso(r.created_at)!,
    bulkJob:
      r.job_id === null || r.job_type === null || r.job_status === null
        ? null
        : {
            _id: r.job_id,
            type: r.job_type,
            dryRun: r.job_dry_run ?? false,
            status: r.job_status,
            total: r.job_total ?? 0,
            processed: r.job_processed ?? 0,
            created: r.job_created ?? 0,
            updated: r.job_updated ?? 0,
            skipped: r.job_skipped ?? 0,
            failed: r.job_failed ?? 0,
            percentage: percentage({
              processed: r.job_processed ?? 0,
              total: r.job_total ?? 0,
              status: r.job_status,
            }),
            startedAt: iso(r.job_started_at),
            finishedAt: iso(r.job_finished_at),
            unreachedRowsInCsv: unreachedRowsInCsv({
              status: r.job_status,
              dryRun: r.job_dry_run ?? false,
              planned: r.job_planned === true,
              processed: r.job_processed ?? 0,
              total: r.job_total ?? 0,
            }),
            error: r.job_error_code ? { code: r.job_error_code, message: r.job_error_message ?? '' } : null,
          },
  }
}

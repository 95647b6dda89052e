import { z } from 'zod'
import type { JobRow } from './bulk.repo.ts'

export const JOB_TYPES = ['import', 'update', 'premium_currency'] as const
export const JOB_STATES = [
  'queued',
  'validating',
  'processing',
  'completed',
  'completed_with_errors',
  'failed',
  'cancelled',
] as const
export const TERMINAL: ReadonlySet<string> = new Set([
  'completed',
  'completed_with_errors',
  'failed',
  'cancelled',
])

export const UNREACHED_ROWS =
  'The job stopped midway (cancelled, or failed after reading its header) before its last row: the failed-rows CSV (details?format=csv) also lists the rows it never reached, with the error not_applied, to upload again'

export const jobSchema = z
  .object({
    _id: z.string(),
    jobId: z.string(),
    type: z.enum(JOB_TYPES),
    status: z
      .enum(JOB_STATES)
      .describe('queued → validating → processing → completed | completed_with_errors | failed | cancelled'),
    dryRun: z.boolean(),
    fileName: z.string(),
    fileBytes: z.number(),
    total: z.number().describe('Data rows in the file'),
    processed: z.number(),
    created: z.number(),
    updated: z.number(),
    skipped: z.number().describe('Rows that matched a user but changed nothing'),
    failed: z.number(),
    percentage: z.number(),
    rowsPerSecond: z
      .number()
      .nullable()
      .describe(
        'Rows processed per second since the job started (until it finished); null before the first chunk',
      ),
    secondsLeft: z
      .number()
      .nullable()
      .describe('Estimated seconds until a processing job is done, at its pace so far; null otherwise'),
    columns: z.array(z.string()),
    unknownColumns: z.array(z.string()).describe('Header columns that match no field: reported and ignored'),
    cancelRequested: z.boolean(),
    unreachedRowsInCsv: z.boolean().describe(UNREACHED_ROWS),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    createdAt: z.string(),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
    updatedAt: z.string(),
  })
  .meta({ id: 'BulkJob' })
export type JobView = z.infer<typeof jobSchema>

const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString())

/** See UNREACHED_ROWS; `planned`: the job read its header (its file is then kept when it stops). */
export function unreachedRowsInCsv(j: {
  status: string
  dryRun: boolean
  planned: boolean
  processed: number
  total: number
}): boolean {
  return (
    (j.status === 'failed' || j.status === 'cancelled') && !j.dryRun && j.planned && j.processed < j.total
  )
}

export function percentage(j: { total: number; processed: number; status: string }): number {
  if (j.total > 0) return Math.min(100, Math.round((j.processed / j.total) * 1000) / 10)
  return TERMINAL.has(j.status) ? 100 : 0
}

/** The job's pace so far, and what it predicts for a job still processing. */
export function pace(
  j: Pick<JobRow, 'status' | 'total' | 'processed' | 'started_at' | 'finished_at'>,
  now = Date.now(),
): { rowsPerSecond: number | null; secondsLeft: number | null } {
  if (j.started_at === null || j.processed === 0) return { rowsPerSecond: null, secondsLeft: null }
  const seconds =
    ((j.finished_at === null ? now : new Date(j.finished_at).getTime()) - new Date(j.started_at).getTime()) /
    1000
  if (seconds <= 0) return { rowsPerSecond: null, secondsLeft: null }
  const rate = j.processed / seconds
  const left = j.status === 'processing' ? Math.ceil(Math.max(0, j.total - j.processed) / rate) : null
  return { rowsPerSecond: Math.round(rate), secondsLeft: left }
}

export function presentJob(j: JobRow): JobView {
  return {
    _id: j.id,
    jobId: j.id,
    type: j.type,
    status: j.status,
    dryRun: j.dry_run,
    fileName: j.file_name,
    fileBytes: j.file_bytes,
    total: j.total,
    processed: j.processed,
    created: j.created,
    updated: j.updated,
    skipped: j.skipped,
    failed: j.failed,
    percentage: percentage(j),
    ...pace(j),
    columns: (j.columns ?? []) as string[],
    unknownColumns: (j.unknown_columns ?? []) as string[],
    cancelRequested: j.cancel_requested,
    unreachedRowsInCsv: unreachedRowsInCsv({ ...j, dryRun: j.dry_run, planned: j.plan_context !== null }),
    error: j.error_code ? { code: j.error_code, message: j.error_message ?? '' } : null,
    createdAt: iso(j.created_at)!,
    startedAt: iso(j.started_at),
    finishedAt: iso(j.finished_at),
    updatedAt: iso(j.updated_at)!,
  }
}

export const ACTION_NAMES = { c: 'created', u: 'updated', s: 'skipped', f: 'failed' } as const

export const detailRowSchema = z
  .object({
    row: z.number().describe('1-based data row (the header is not counted)'),
    line: z.number().describe('Line of the file where the row starts (the header is line 1)'),
    key: z.string().nullable().describe('The user key of the row (email, external id or user id)'),
    action: z.enum(['created', 'updated', 'skipped', 'failed']),
    error: z.object({ code: z.string(), field: z.string().nullable(), message: z.string() }).nullable(),
  })
  .meta({ id: 'BulkJobRow' })
export type DetailRow = z.infer<typeof detailRowSchema>

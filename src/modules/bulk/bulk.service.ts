import { sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'
import type { BulkJobType } from '../../lib/db/schema.ts'
import { transact } from '../../lib/db/transact.ts'
import type { AppDeps } from '../../lib/deps.ts'
import { badRequest, conflict, notFound, tooMany } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import { inRanges, numberedRecords } from './bulk.file-rows.ts'
import { deleteUpload, type StoredUpload, storeUpload } from './bulk.files.ts'
import { ACTION_NAMES, type DetailRow } from './bulk.presenter.ts'
import * as repo from './bulk.repo.ts'
import { checkCount } from './bulk.rows.ts'
import { type CsvRecord, isCsvError } from './csv/csv-parser.ts'

export interface UploadMeta {
  communityId: string
  type: BulkJobType
  dryRun: boolean
  fileName: string
  apiKeyId: string | null
  createdBy: string | null
  /** The client's Idempotency-Key: a retried upload with the same key gets the same job. */
  idempotencyKey?: string | null
  /** Where the upload came from, for the API log row of the job. */
  requestPath?: string
  requestId?: string
}

/** Bulk jobs: uploads become queued jobs; status, per-row details, failed rows and cancel. */
export function createBulkService(deps: AppDeps) {
  const { db } = deps.database
  const limits = { maxBytes: deps.config.bulk.maxFileBytes, maxRows: deps.config.bulk.maxRows }

  async function ensureCapacity(communityId: string) {
    const active = await repo.countActiveJobs(db, communityId)
    if (active >= deps.config.bulk.maxActiveJobs) {
      throw tooMany(
        'too_many_jobs',
        `This community already has ${active} bulk jobs queued or running; wait for one to finish`,
      )
    }
  }

  /** Stores an upload under a new job id; the community may be unknown until the form is read. */
  async function upload(
    source: AsyncIterable<Buffer | Uint8Array | string>,
    communityId: string | null,
    opts: { refuseEarlyWhenFull?: boolean } = {},
  ) {
    // Refusing before the file is read saves the transfer; a retry with an Idempotency-Key skips
    // this, since its answer is the job it already started (checked after the upload).
    if (communityId && opts.refuseEarlyWhenFull !== false) await ensureCapacity(communityId)
    const jobId = newId()
    return storeUpload(deps.database, communityId ?? '', jobId, source, limits)
  }

  /** Turns a stored upload into a queued job; the job row, its API log row and the queue message commit together. */
  async function enqueue(stored: StoredUpload, meta: UploadMeta) {
    if (stored.bytes === 0) {
      await deleteUpload(db, stored.uploadId)
      throw badRequest('empty_file', 'The uploaded file is empty', 'data')
    }
    try {
      return await transact(db, async (tx) => {
        await sql`SELECT pg_advisory_xact_lock(hashtext(${`bulk:${meta.communityId}`}))`.execute(tx)
        if (meta.idempotencyKey) {
          const earlier = await tx
            .selectFrom('bulk_jobs')
            .selectAll()
            .where('community_id', '=', meta.communityId)
            .where('idempotency_key', '=', meta.idempotencyKey)
            .executeTakeFirst()
          if (earlier) {
            refuseReusedKey(earlier, stored, meta)
            await deleteUpload(tx, stored.uploadId)
            return earlier
          }
        }
        const active = await repo.countActiveJobs(tx, meta.communityId)
        if (active >= deps.config.bulk.maxActiveJobs) {
          throw tooMany(
            'too_many_jobs',
            `This community already has ${active} bulk jobs queued or running; wait for one to finish`,
          )
        }
        await tx
          .updateTable('bulk_files')
          .set({ community_id: meta.communityId })
          .where('upload_id', '=', stored.uploadId)
          .execute()
        const job = await tx
          .insertInto('bulk_jobs')
          .values({
            id: stored.uploadId,
            community_id: meta.communityId,
            type: meta.type,
            status: 'queued',
            dry_run: meta.dryRun,
            file_name: meta.fileName.slice(0, 255),
            file_bytes: stored.bytes,
            file_chunks: stored.pieces,
            file_sha256: stored.sha256,
            total: stored.rows,
            api_key_id: meta.apiKeyId,
            created_by: meta.createdBy,
            idempotency_key: meta.idempotencyKey ?? null,
          })
          .returningAll()
          .executeTakeFirstOrThrow()
        await tx
          .insertInto('api_log')
          .values({
            id: newId(),
            community_id: meta.communityId,
            api_key_id: meta.apiKeyId,
            kind: 'bulk_job',
            method: 'POST',
            path: meta.requestPath ?? `bulk ${meta.type}`,
            status: 200, // the answer of the upload this row stands for
            duration_ms: 0,
            request_id: meta.requestId ?? job.id,
            summary: JSON.stringify({
              type: meta.type,
              fileName: job.file_name,
              rows: stored.rows,
              dryRun: meta.dryRun,
            }),
            bulk_job_id: job.id,
          })
          .execute()
        await deps.queue.enqueue('bulk.run', { jobId: job.id }, { tx })
        return job
      })
    } catch (err) {
      await deleteUpload(db, stored.uploadId)
      throw err
    }
  }

  async function get(communityId: string, jobId: string) {
    const job = await repo.findJob(db, communityId, jobId)
    if (!job) throw notFound('bulk_job', 'jobId')
    return job
  }

  return {
    upload,
    enqueue,
    get,
    discard: (stored: StoredUpload) => deleteUpload(db, stored.uploadId),

    async submit(meta: UploadMeta & { source: AsyncIterable<Buffer | Uint8Array | string> }) {
      return enqueue(await upload(meta.source, meta.communityId), meta)
    },

    list: (communityId: string, filter: repo.JobFilter) => repo.listJobs(db, communityId, filter),

    /** Per-row outcomes, in file order (all rows, or only the failed ones). */
    async details(communityId: string, jobId: string, q: { page: number; limit: number; only?: 'failed' }) {
      const job = await get(communityId, jobId)
      const offset = (q.page - 1) * q.limit
      if (q.only === 'failed') {
        const errs = await db
          .selectFrom('bulk_job_errors')
          .select(['row_no', 'line', 'key', 'code', 'field', 'message'])
          .where('job_id', '=', job.id)
          .orderBy('row_no')
          .limit(q.limit)
          .offset(offset)
          .execute()
        const rows: DetailRow[] = errs.map((e) => ({
          row: e.row_no,
          line: e.line,
          key: e.key,
          action: 'failed',
          error: { code: e.code, field: e.field, message: e.message },
        }))
        return { job, rows, total: job.failed }
      }
      const from = offset + 1
      const to = offset + q.limit
      const [chunks, errs] = await Promise.all([
        db
          .selectFrom('bulk_job_chunks')
          .select(['first_row', 'lines', 'keys', 'actions'])
          .where('job_id', '=', job.id)
          .where('first_row', '<=', to)
          .where(sql<boolean>`first_row + cardinality(lines) - 1 >= ${from}`)
          .orderBy('first_row')
          .execute(),
        db
          .selectFrom('bulk_job_errors')
          .select(['row_no', 'code', 'field', 'message'])
          .where('job_id', '=', job.id)
          .where('row_no', '>=', from)
          .where('row_no', '<=', to)
          .execute(),
      ])
      const errByRow = new Map(errs.map((e) => [e.row_no, e]))
      const rows: DetailRow[] = []
      for (const c of chunks) {
        for (let i = 0; i < c.lines.length; i++) {
          const row = c.first_row + i
          if (row < from || row > to) continue
          const action = ACTION_NAMES[c.actions[i] as keyof typeof ACTION_NAMES]
          const e = errByRow.get(row)
          rows.push({
            row,
            line: c.lines[i],
            key: c.keys[i] || null,
            action,
            error: e ? { code: e.code, field: e.field, message: e.message } : null,
          })
        }
      }
      return { job, rows, total: job.processed }
    },

    /**
     * The rows to fix and upload again, in file order, for the failed-rows CSV: the failed rows as
     * stored (original cells), and for a job that stopped midway (cancelled, or failed after its
     * header was read) the rows it never reached, read from its kept file.
     */
    async *failedRows(communityId: string, jobId: string) {
      const job = await get(communityId, jobId)
      const columns = (job.columns ?? []) as string[]
      yield { columns }
      const failed = failedRowsPages(db, job.community_id, job.id)
      const stopped = job.status === 'failed' || job.status === 'cancelled'
      if (!stopped || !(await repo.hasUpload(db, job.community_id, job.id))) {
        for await (const f of failed) yield { row: f.row }
        return
      }
      const isCommitted = inRanges(await repo.committedChunks(db, job.community_id, job.id))
      let next = await failed.next()
      for await (const item of numberedRecords(db, job.id, job.file_chunks)) {
        if ('header' in item) continue
        const { rowNo, record } = item
        for (; !next.done && next.value.rowNo <= rowNo; next = await failed.next())
          yield { row: next.value.row }
        if (isCommitted(rowNo)) continue // applied, or failed above
        yield { row: notApplied(job.status, columns, record) }
      }
      for (; !next.done; next = await failed.next()) yield { row: next.value.row }
    },

    /**
     * Cancels a queued job at once, or asks a running one to stop: its committed chunks stay applied,
     * the chunk in flight rolls back. Cancelling a cancelled job again answers with it.
     */
    async cancel(communityId: string, jobId: string) {
      const job = await get(communityId, jobId)
      // A retried cancel (its answer lost on the way) gets the same answer, not an error.
      if (job.status === 'cancelled') return job
      if (!repo.ACTIVE_STATES.includes(job.status)) {
        throw conflict('job_finished', `The job is already ${job.status}`, 'jobId')
      }
      const queued = await db
        .updateTable('bulk_jobs')
        .set({ status: 'cancelled', cancel_requested: true, finished_at: sql`now()`, updated_at: sql`now()` })
        .where('id', '=', job.id)
        .where('status', '=', 'queued')
        .where('lease_owner', 'is', null)
        .returningAll()
        .executeTakeFirst()
      if (queued) {
        await deleteUpload(db, job.id)
        return queued
      }
      return (await db
        .updateTable('bulk_jobs')
        .set({ cancel_requested: true, updated_at: sql`now()` })
        .where('id', '=', job.id)
        .returningAll()
        .executeTakeFirst())!
    },
  }
}
export type BulkService = ReturnType<typeof createBulkService>

/** The stored failed rows of a job in file order, read in pages of 5,000. */
async function* failedRowsPages(db: Tx, communityId: string, jobId: string) {
  let after = 0
  for (;;) {
    const page = await db
      .selectFrom('bulk_job_errors')
      .select(['row_no', 'line', 'code', 'message', 'cells'])
      .where('community_id', '=', communityId)
      .where('job_id', '=', jobId)
      .where('row_no', '>', after)
      .orderBy('row_no')
      .limit(5000)
      .execute()
    if (page.length === 0) return
    for (const r of page)
      yield {
        rowNo: r.row_no,
        row: { line: r.line, code: r.code, message: r.message, cells: (r.cells ?? []) as string[] },
      }
    after = page[page.length - 1].row_no
  }
}

/**
 * A row the job never reached, as uploaded. A row that cannot be read, or whose cells do not match
 * the header, says so: the CSV writes every row as wide as the header, so unmarked it would read
 * as a sound row with its cells cut off or padded.
 */
function notApplied(status: string, columns: string[], record: CsvRecord) {
  if (isCsvError(record))
    return { line: record.line, code: record.error.code, message: record.error.message, cells: [record.raw] }
  const mismatch = checkCount(record.cells, { columns })
  if (mismatch)
    return { line: record.line, code: mismatch.code, message: mismatch.message, cells: record.cells }
  return {
    line: record.line,
    code: 'not_applied',
    message: `The job ${status === 'cancelled' ? 'was cancelled' : 'failed'} before reaching this row: it was not applied`,
    cells: record.cells,
  }
}

/**
 * An Idempotency-Key names one request: sent again with another kind of job, another run (a dry run
 * then the real one) or another file, it is a mistake to report, not a replay whose answer would be
 * a job that did something else.
 */
function refuseReusedKey(earlier: repo.JobRow, stored: StoredUpload, meta: UploadMeta) {
  const reused = (what: string) =>
    conflict(
      'idempotency_key_reused',
      `This Idempotency-Key was used for ${what}: send a new key for a new request`,
      'Idempotency-Key',
    )
  if (earlier.type !== meta.type) throw reused('another kind of bulk job')
  if (earlier.dry_run !== meta.dryRun)
    throw reused(earlier.dry_run ? 'a dry run' : 'a real run, not a dry run')
  if (earlier.file_sha256 !== null && earlier.file_sha256 !== stored.sha256) throw reused('another file')
}

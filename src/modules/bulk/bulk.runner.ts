import { sql } from 'kysely'
import type { BulkJobStatus } from '../../lib/db/schema.ts'
import type { AppDeps } from '../../lib/deps.ts'
import { releaseGarbage } from '../../lib/memory.ts'
import { printPhases, sampleMemory, timed } from '../../lib/phase-timer.ts'
import {
  CancelRequested,
  type Checked,
  commitChunkRetrying,
  LeaseLost,
  type Prepared,
  sentLedgerKeys,
  userNamesOf,
  usernameClaims,
} from './bulk.chunk.ts'
import { forgetDryRun } from './bulk.dry-run.ts'
import { inRanges, numberedRecords, type RowRange } from './bulk.file-rows.ts'
import { emailsMayMove, givesUsernames, namedColumns, type Plan, planColumns } from './bulk.plan.ts'
import { PlanOutdated } from './bulk.plan-guard.ts'
import * as repo from './bulk.repo.ts'
import {
  checkImportRow,
  checkPremiumRow,
  type ImportRow,
  isRowError,
  type PremiumRow,
  type RowError,
} from './bulk.rows.ts'
import { UsersStatistics } from './bulk.stats.ts'
import { type CsvRecord, isCsvError } from './csv/csv-parser.ts'

class ShuttingDown extends Error {}

/** Attempts in a row that commit no chunk before a job fails too_many_attempts. */
const MAX_ATTEMPTS = 5

/**
 * Heap (MB) past which a chunk's end forces a collection. On PostgreSQL, 96: at 64 a collection ran
 * after every chunk (a 1M-row import: 33.6 s of server CPU); at 128, 24.7 s, but bulk updates of 200k
 * rows peaked at 277-316 MB; at 96 they peaked at 263-269 MB and imports at 243-247. On PGlite, 64:
 * at 128 a 100k-row import ran 5-10 % faster but peaked at 450-458 MB, not 368-386.
 */
const garbageMB = (deps: AppDeps) => (deps.database.kind === 'postgres' ? 96 : 64)

export function chunkRows(deps: AppDeps): number {
  return deps.config.bulk.chunkRows ?? (deps.database.kind === 'postgres' ? 10_000 : 5_000)
}

/**
 * Runs (or resumes) one bulk job. Each chunk of rows is applied, recorded and counted in ONE
 * transaction that also checks this worker still holds the job's lease, so after a crash the job
 * resumes at the first row no committed chunk covers: no row lost, none applied twice.
 */
export async function runBulkJob(deps: AppDeps, jobId: string): Promise<void> {
  // A second queue message for a job this process is already running (a retry, a sweep) is a no-op.
  if (running.has(jobId)) return
  running.add(jobId)
  try {
    await claimAndRun(deps, jobId)
  } finally {
    running.delete(jobId)
  }
}

const running = new Set<string>()

async function claimAndRun(deps: AppDeps, jobId: string): Promise<void> {
  const { db } = deps.database
  const me = deps.instanceId
  const job = await repo.claimJob(db, jobId, me, deps.config.bulk.leaseSeconds)
  if (!job) return
  if (job.attempts > MAX_ATTEMPTS)
    return finish(deps, job, 'failed', { code: 'too_many_attempts', message: 'The job failed repeatedly' })
  if (job.cancel_requested) return finish(deps, job, 'cancelled')
  try {
    await processJob(deps, job)
  } catch (err) {
    if (err instanceof LeaseLost) return
    if (err instanceof ShuttingDown) return releaseLease(deps, job.id)
    if (err instanceof CancelRequested) return finish(deps, job, 'cancelled')
    if (err instanceof PlanOutdated)
      return finish(deps, job, 'failed', { code: err.code, message: err.message })
    throw err // pg-boss retries; the lease expires and the next attempt resumes
  }
}

type Batch = { rowNo: number; record: CsvRecord }[]

/**
 * Chunks applied at once: several only on PostgreSQL, whose claims (claimsOf) cannot overlap. One at
 * a time where a claim cannot name every user a row touches: premium rows keyed by userId (one user
 * has two ids, the 24-hex one and the numeric one), and files keyed by external id that carry
 * emails (a row may give a user the email another row takes away, held only in the table). Rows
 * that give usernames claim them, and the names their users hold (read at dispatch).
 */
function parallelChunks(deps: AppDeps, job: repo.JobRow, plan: Plan): number {
  if (deps.database.kind !== 'postgres') return 1
  if (plan.type === 'premium_currency' && plan.keyKind === 'user_id') return 1
  if (emailsMayMove(plan)) return 1
  // A dry run's users hold, in its world, names the table does not show (see usernameClaims).
  if (job.dry_run && givesUsernames(plan)) return 1
  return deps.config.bulk.parallelChunks
}

/**
 * What a chunk in flight holds: the users its rows name, and the idempotency keys of its premium
 * rows (of two rows sending one key, the earlier in the file must be the one that applies).
 */
function claimsOf(job: repo.JobRow, rows: (ImportRow | PremiumRow)[]): Set<string> {
  const claims = userNamesOf(rows)
  for (const key of sentLedgerKeys(job, rows)) claims.add(`ledger:${key}`)
  return claims
}

function overlaps(a: Set<string>, b: Set<string>): boolean {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a]
  for (const k of small) if (large.has(k)) return true
  return false
}

async function processJob(deps: AppDeps, job: repo.JobRow) {
  // A resumed job plans from the definitions it started with; its chunks then check they still hold.
  const ctx =
    (job.plan_context as repo.StoredPlanContext | null) ??
    (await repo.loadPlanContext(deps.database.db, job.community_id))
  const committed = await repo.committedChunks(deps.database.db, job.community_id, job.id)
  const source = preparedBatches(deps, job, ctx, committed)
  const first = await source.next()
  if (first.done) {
    const failure = first.value
    if (failure) await finish(deps, job, 'failed', failure)
    return
  }
  const { plan } = first.value
  const lanes = parallelChunks(deps, job, plan)
  const stats = new UsersStatistics(deps)
  await stats.refresh()
  let chunkNo = committed.reduce((n, c) => Math.max(n, c.chunkNo + 1), 0)
  const flights = new Set<{ done: Promise<void>; claims: Set<string> }>()
  // The first chunk runs alone. Planned on the statistics of a community with no users yet, the
  // key lookups of a chunk may take the index on (community_id, created_at) and then scan, for
  // each row, the thousands of rows a parallel chunk is inserting (measured: a 50k-row import on
  // a fresh database took 72 s instead of 4 s, one run in two). Once a chunk has committed and
  // the statistics are refreshed (UsersStatistics), lookups plan on the key index.
  let warm = false
  let failure: unknown = null
  // Read, parse and check the next chunk while the database applies the ones in flight: one chunk
  // ready ahead is enough (the next is read once it leaves), so a job holds lanes + 1 chunks of rows.
  let pending = source.next()
  for (;;) {
    const { value, done } = await timed('wait.prefetch', () => pending)
    if (done) break
    const prepared = value.prepared!
    const claims = lanes > 1 ? claimsOf(job, prepared.valid) : new Set<string>()
    const shares = () => [...flights].some((f) => overlaps(f.claims, claims))
    const blocked = () => flights.size >= (warm ? lanes : 1) || shares()
    const waitWhile = async (busy: () => boolean) => {
      while (failure === null && busy()) await Promise.race([...flights].map((f) => f.done))
    }
    if (lanes > 1 && givesUsernames(plan)) {
      // Names pass between users: a chunk claims those its rows give and those its users hold now,
      // read once no chunk in flight names its users (only it can change them until it commits),
      // while the chunks in flight still fill the lanes.
      await waitWhile(shares)
      const names = await timed('claims.usernames', () =>
        usernameClaims(deps.database.db, job.community_id, plan, prepared.valid as ImportRow[]),
      )
      for (const name of names) claims.add(name)
    }
    await waitWhile(blocked)
    if (failure !== null) break
    if (deps.shutdown.signal.aborted) {
      failure = new ShuttingDown()
      break
    }
    const flight = {
      claims,
      done: timed('commit', () => commitChunkRetrying(deps, job, plan, prepared, chunkNo++))
        .then((created) => stats.afterChunk(created))
        .then(() => {
          warm = true
        })
        .catch((err) => {
          failure ??= err
        })
        .finally(() => {
          flights.delete(flight)
          sampleMemory()
          releaseGarbage(garbageMB(deps))
        }),
    }
    flights.add(flight)
    pending = source.next()
  }
  await Promise.all([...flights].map((f) => f.done))
  if (failure !== null) throw failure
  await finish(deps, job, 'done')
  printPhases(job.id)
}

/**
 * Yields the plan first (prepared: null), then each chunk of rows not yet committed, checked in JS.
 * A chunk is a run of consecutive rows; rows an earlier attempt committed are skipped.
 * Returns a failure when the header makes the job impossible.
 */
async function* preparedBatches(
  deps: AppDeps,
  job: repo.JobRow,
  ctx: repo.StoredPlanContext,
  committed: RowRange[],
): AsyncGenerator<{ plan: Plan; prepared: Prepared | null }, { code: string; message: string } | null> {
  const size = chunkRows(deps)
  const maxChars = deps.config.bulk.chunkChars
  let chars = 0 // the batch's characters so far
  const isCommitted = inRanges(committed)
  let plan: Plan | null = null
  let batch: Batch = []
  for await (const item of numberedRecords(deps.database.db, job.id, job.file_chunks)) {
    if ('header' in item) {
      const { header } = item
      if (isCsvError(header)) return { code: 'malformed_header', message: `Header: ${header.error.message}` }
      const p = planColumns(header.cells.slice(0, namedColumns(header.cells)), { type: job.type, ...ctx })
      if (!p.ok) return { code: p.code, message: p.message }
      plan = p.plan
      await startProcessing(deps, job, plan, ctx)
      yield { plan, prepared: null }
      continue
    }
    if (!plan) continue // unreachable: the header comes first
    const { rowNo, record } = item
    if (isCommitted(rowNo)) {
      // Committed by an earlier attempt: close the batch so every chunk stays a run of consecutive rows.
      if (batch.length > 0) yield { plan, prepared: prepare(plan, batch) }
      batch = []
      chars = 0
      continue
    }
    batch.push({ rowNo, record })
    chars += charsOf(record)
    if (batch.length >= size || chars >= maxChars) {
      yield { plan, prepared: prepare(plan, batch) }
      batch = []
      chars = 0
    }
  }
  if (!plan) return { code: 'empty_file', message: 'The file has no header row' }
  if (batch.length > 0) yield { plan, prepared: prepare(plan, batch) }
  return null
}

function charsOf(record: CsvRecord): number {
  if (isCsvError(record)) return record.raw.length
  let n = record.cells.length
  for (const c of record.cells) n += c.length
  return n
}

/**
 * On a graceful stop the lease is handed back at once, so another worker resumes without waiting for
 * it to expire, and so is the attempt: a worker shutting down is not the job failing.
 */
async function releaseLease(deps: AppDeps, jobId: string) {
  await deps.database.db
    .updateTable('bulk_jobs')
    .set({ lease_until: sql`now()`, attempts: sql`greatest(attempts - 1, 0)` })
    .where('id', '=', jobId)
    .where('lease_owner', '=', deps.instanceId)
    .execute()
    .catch(() => {})
}

async function startProcessing(deps: AppDeps, job: repo.JobRow, plan: Plan, ctx: repo.StoredPlanContext) {
  const res = await deps.database.db
    .updateTable('bulk_jobs')
    .set({
      status: 'processing',
      columns: JSON.stringify(plan.columns),
      unknown_columns: JSON.stringify(plan.unknown),
      plan_context: sql`coalesce(plan_context, ${JSON.stringify(ctx)}::jsonb)`,
      updated_at: sql`now()`,
    })
    .where('id', '=', job.id)
    .where('lease_owner', '=', deps.instanceId)
    .executeTakeFirst()
  if (res.numUpdatedRows === 0n) throw new LeaseLost()
}

function prepare(plan: Plan, batch: Batch): Prepared {
  const checked = checkRows(plan, batch)
  return { checked, valid: checked.flatMap((c) => (c.ok ? [c.ok] : [])) }
}

function checkRows(plan: Plan, batch: { rowNo: number; record: CsvRecord }[]): Checked[] {
  return batch.map(({ rowNo, record }) => {
    if (isCsvError(record)) {
      const error: RowError = {
        rowNo,
        line: record.line,
        key: null,
        code: record.error.code,
        field: null,
        message: record.error.message,
        cells: [record.raw],
      }
      return { rowNo, line: record.line, key: null, cells: null, ok: null, error }
    }
    const r =
      plan.type === 'premium_currency'
        ? checkPremiumRow(plan, record.cells, rowNo, record.line)
        : checkImportRow(plan, record.cells, rowNo, record.line)
    return isRowError(r)
      ? { rowNo, line: record.line, key: r.key, cells: record.cells, ok: null, error: r }
      : { rowNo, line: record.line, key: r.key, cells: record.cells, ok: r, error: null }
  })
}

/** Ends a job: final state, exact total, the file removed (unless it stopped midway), the lease released — in one transaction. */
async function finish(
  deps: AppDeps,
  job: repo.JobRow,
  outcome: 'done' | 'failed' | 'cancelled',
  error?: { code: string; message: string },
) {
  await deps.database.db.transaction().execute(async (tx) => {
    const status =
      outcome === 'done'
        ? sql<BulkJobStatus>`CASE WHEN failed > 0 THEN 'completed_with_errors' ELSE 'completed' END`
        : sql<BulkJobStatus>`${outcome}::text`
    const res = await tx
      .updateTable('bulk_jobs')
      .set({
        status,
        ...(outcome === 'done' ? { total: sql`processed` } : {}),
        error_code: error?.code ?? null,
        error_message: error?.message ?? null,
        finished_at: sql`now()`,
        lease_owner: null,
        lease_until: null,
        updated_at: sql`now()`,
      })
      .where('id', '=', job.id)
      .where('lease_owner', '=', deps.instanceId)
      .returning(['status', 'created_at', sql<boolean>`plan_context IS NOT NULL`.as('planned')])
      .executeTakeFirst()
    if (!res) throw new LeaseLost()
    // A real job that stopped midway keeps its file: the failed-rows CSV then also gives the rows it
    // never reached, to upload again. (Retention deletes it with the job, or the abandoned-upload sweep.)
    const stoppedMidway = outcome !== 'done' && !job.dry_run && res.planned
    if (!stoppedMidway) await tx.deleteFrom('bulk_files').where('upload_id', '=', job.id).execute()
    if (job.dry_run) await forgetDryRun(tx, job.id)
    await tx
      .updateTable('api_log')
      .set({
        duration_ms: sql`(extract(epoch from now() - ${new Date(job.created_at)}::timestamptz) * 1000)::int`,
      })
      .where('community_id', '=', job.community_id)
      .where('bulk_job_id', '=', job.id)
      .execute()
  })
  job.status = outcome === 'failed' ? 'failed' : outcome === 'cancelled' ? 'cancelled' : 'completed'
}

import { sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'
import type { AppDeps } from '../../lib/deps.ts'

/**
 * Rows per DELETE (log entries; jobs fewer, their outcomes cascade): short transactions, so
 * requests (and PGlite's one connection) never wait long.
 */
const BATCH = 5_000
const JOB_BATCH = 50
const EVERY_MS = 60 * 60 * 1000

/**
 * Deletes what is older than `days`: API log entries, and finished bulk jobs with their per-row
 * outcomes (the entries that showed them go at the same age). Walks community by community so
 * every DELETE runs on an index that leads with the community.
 */
export async function pruneOldRecords(
  db: Tx,
  days: number,
): Promise<{ logEntries: number; bulkJobs: number }> {
  const cutoff = sql<Date>`now() - make_interval(days => ${days})`
  const communities = await db.selectFrom('communities').select('id').execute()
  let logEntries = 0
  let bulkJobs = 0
  for (const { id } of communities) {
    logEntries += await inBatches(BATCH, (limit) =>
      db
        .deleteFrom('api_log')
        .where('id', 'in', (eb) =>
          eb
            .selectFrom('api_log')
            .select('id')
            .where('community_id', '=', id)
            .where('created_at', '<', cutoff)
            .limit(limit),
        )
        .executeTakeFirst(),
    )
    // Their chunks and errors go with them (ON DELETE CASCADE).
    bulkJobs += await inBatches(JOB_BATCH, (limit) =>
      db
        .deleteFrom('bulk_jobs')
        .where('id', 'in', (eb) =>
          eb
            .selectFrom('bulk_jobs')
            .select('id')
            .where('community_id', '=', id)
            .where('created_at', '<', cutoff)
            .where('finished_at', 'is not', null)
            .limit(limit),
        )
        .executeTakeFirst(),
    )
  }
  return { logEntries, bulkJobs }
}

/** Runs a DELETE of at most `limit` rows until one deletes fewer; the rows deleted in all. */
async function inBatches(limit: number, deleteSome: (limit: number) => Promise<{ numDeletedRows: bigint }>) {
  let total = 0
  for (;;) {
    const n = Number((await deleteSome(limit)).numDeletedRows)
    total += n
    if (n < limit) return total
  }
}

/** Prunes once an hour in each `hearth serve`/`hearth worker` that runs the worker (API_LOG_RETENTION_DAYS; 0 keeps everything). */
export function startRetention(deps: AppDeps, log: (m: string) => void): () => void {
  const days = deps.config.apiLogRetentionDays
  if (days === 0) return () => {}
  const prune = async () => {
    try {
      const n = await pruneOldRecords(deps.database.db, days)
      if (n.logEntries || n.bulkJobs)
        log(
          `retention: deleted ${n.logEntries} API log entries and ${n.bulkJobs} bulk jobs older than ${days} days`,
        )
    } catch (err) {
      log(`retention failed: ${String(err)}`)
    }
  }
  const timer = setInterval(prune, EVERY_MS)
  timer.unref()
  void prune()
  return () => clearInterval(timer)
}

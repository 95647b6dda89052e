import { sql } from 'kysely'
import type { Tx } from './database.ts'

/**
 * PGlite has no autovacuum worker: without one, every updated or deleted row (a bulk update, a
 * dry run rolled back, the job queue's churn) stays in its table and indexes for good, and the
 * planner's statistics stay those of the last explicit ANALYZE. A server on PGlite therefore runs
 * this pass now and then. It applies PostgreSQL's own autovacuum thresholds to the tables'
 * activity counters and VACUUMs or ANALYZEs only the tables that cross them.
 * On PostgreSQL the server's autovacuum does this; the pass is not started there.
 */

/** PostgreSQL's defaults: autovacuum_vacuum_threshold / _scale_factor, and their analyze and insert twins. */
const VACUUM = { base: 50, scale: 0.2 }
const INSERT_VACUUM = { base: 1000, scale: 0.2 }
const ANALYZE = { base: 50, scale: 0.1 }

export interface HousekeepingAction {
  table: string
  command: 'VACUUM (ANALYZE)' | 'ANALYZE'
}

/** The tables whose counters cross the thresholds, and what each needs. */
export async function tablesDue(db: Tx): Promise<HousekeepingAction[]> {
  const res = await sql<{ schema: string; table: string; vacuum: boolean; analyze: boolean }>`
    SELECT s.schemaname AS schema, s.relname AS table,
      (s.n_dead_tup > ${VACUUM.base} + ${VACUUM.scale} * greatest(c.reltuples, 0)
        OR s.n_ins_since_vacuum > ${INSERT_VACUUM.base} + ${INSERT_VACUUM.scale} * greatest(c.reltuples, 0)) AS vacuum,
      s.n_mod_since_analyze > ${ANALYZE.base} + ${ANALYZE.scale} * greatest(c.reltuples, 0) AS analyze
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE c.relpersistence <> 't'
    ORDER BY s.schemaname, s.relname`.execute(db)
  return res.rows.flatMap((r): HousekeepingAction[] => {
    const table = `${quoteIdent(r.schema)}.${quoteIdent(r.table)}`
    if (r.vacuum) return [{ table, command: 'VACUUM (ANALYZE)' }]
    if (r.analyze) return [{ table, command: 'ANALYZE' }]
    return []
  })
}

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`

/** One pass: VACUUMs and ANALYZEs what is due, one table at a time. Returns what it did. */
export async function housekeepingPass(db: Tx): Promise<HousekeepingAction[]> {
  const due = await tablesDue(db)
  if (due.length === 0) return due
  await db.connection().execute(async (conn) => {
    // VACUUM cannot run in a transaction, so no SET LOCAL: set and reset on one connection. Kept
    // small because PGlite's WebAssembly memory keeps whatever size it once grew to.
    await sql`SET maintenance_work_mem = '8MB'`.execute(conn)
    try {
      for (const a of due) await sql.raw(`${a.command} ${a.table}`).execute(conn)
    } finally {
      await sql`RESET maintenance_work_mem`.execute(conn)
    }
  })
  return due
}

export interface HousekeepingOptions {
  everyMs: number
  log: (msg: string) => void
  /** When it answers true the pass waits for the next tick (a bulk job holds PGlite's one connection chunk after chunk). */
  busy?: () => Promise<boolean>
}

/** Runs a pass every `everyMs` (never two at once, none while busy) until the returned function is called. */
export function startHousekeeping(db: Tx, opts: HousekeepingOptions): () => Promise<void> {
  let running: Promise<unknown> | null = null
  const { everyMs, log, busy = async () => false } = opts
  const timer = setInterval(() => {
    if (running) return
    running = busy()
      .then((b) => (b ? [] : housekeepingPass(db)))
      .catch((err) => log(`housekeeping: ${String(err)}`))
      .finally(() => {
        running = null
      })
  }, everyMs)
  timer.unref()
  return async () => {
    clearInterval(timer)
    await running
  }
}

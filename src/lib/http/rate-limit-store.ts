import { sql } from 'kysely'
import type { Tx } from '../db/database.ts'

type Callback = (err: Error | null, res?: { current: number; ttl: number }) => void

/** Old windows are swept at most this often per process. */
const SWEEP_EVERY_MS = 60_000

/**
 * A @fastify/rate-limit store in PostgreSQL, so that API processes on several machines count one
 * limit together. Fixed windows aligned on the database's clock (the same for every process); one
 * upsert per request.
 */
export function postgresRateLimitStore(db: Tx) {
  let lastSweep = 0
  const sweep = () => {
    if (Date.now() - lastSweep < SWEEP_EVERY_MS) return
    lastSweep = Date.now()
    sql`DELETE FROM rate_limit_hits WHERE window_start < now() - interval '1 hour'`
      .execute(db)
      .catch(() => {})
  }
  const count = (key: string, timeWindowMs: number, increment: boolean) =>
    sql<{ current: number; ttl: number }>`
      WITH w AS (SELECT to_timestamp(floor(extract(epoch FROM now()) * 1000 / ${timeWindowMs}) * ${timeWindowMs} / 1000.0) AS start),
      hit AS (
        INSERT INTO rate_limit_hits (key, window_start, hits)
        SELECT ${key}, w.start, 1 FROM w WHERE ${increment}
        ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_hits.hits + 1
        RETURNING hits)
      SELECT coalesce((SELECT hits FROM hit),
          (SELECT h.hits FROM rate_limit_hits h, w WHERE h.key = ${key} AND h.window_start = w.start), 0)::int AS current,
        ceil(extract(epoch FROM (SELECT start FROM w) - now()) * 1000 + ${timeWindowMs})::int AS ttl`.execute(
      db,
    )

  const answer = (key: string, timeWindowMs: number, increment: boolean, cb: Callback) =>
    count(key, timeWindowMs, increment).then(
      (r) => cb(null, r.rows[0]),
      (err) => cb(err as Error),
    )

  return class PostgresRateLimitStore {
    incr(key: string, cb: Callback, timeWindow: number) {
      sweep()
      answer(key, timeWindow, true, cb)
    }
    read(key: string, cb: Callback, timeWindow: number) {
      answer(key, timeWindow, false, cb)
    }
    child() {
      return this
    }
  }
}

import { CompiledQuery, type Kysely } from 'kysely'
import PgBoss from 'pg-boss'
import type { Database } from './db/database.ts'

/** Every job name Hearth enqueues, with its payload: one map types both producers and handlers. */
export interface JobPayloads {
  'bulk.run': { jobId: string }
  'mail.send': { to: string; subject: string; text: string }
}
export type JobName = keyof JobPayloads

export interface EnqueueOptions {
  /** Enqueue inside this transaction: the job exists only if the surrounding write commits. */
  tx?: Kysely<any>
  startAfterSeconds?: number
  retryLimit?: number
  /** At most one message with this key per window of `seconds` (pg-boss's singleton slots). */
  oncePer?: { key: string; seconds: number }
}

export interface Queue {
  enqueue<K extends JobName>(name: K, payload: JobPayloads[K], opts?: EnqueueOptions): Promise<string | null>
  work<K extends JobName>(
    name: K,
    opts: { concurrency: number },
    handler: (payload: JobPayloads[K]) => Promise<void>,
  ): Promise<void>
  start(): Promise<void>
  stop(): Promise<void>
}

/** pg-boss's `db` adapter over a Kysely executor, so its SQL goes through Hearth's drivers (and PGlite's lock). */
function bossDb(db: Kysely<any>) {
  return {
    async executeSql(text: string, values: unknown[] = []) {
      const res = await db.executeQuery(CompiledQuery.raw(text, values))
      return { rows: res.rows as any[] }
    },
  }
}

const QUEUES: JobName[] = ['bulk.run', 'mail.send']

/** The pg-boss queue on Hearth's own database (PostgreSQL or PGlite). */
export function createQueue(database: Database, opts: { onError?: (err: unknown) => void } = {}): Queue {
  const boss = new PgBoss({
    db: bossDb(database.db),
    schema: 'pgboss',
    supervise: true,
    schedule: false,
    migrate: true,
  })
  boss.on('error', (err) => opts.onError?.(err))
  let started: Promise<void> | null = null
  const ensureStarted = () => {
    started ??= (async () => {
      await boss.start()
      for (const name of QUEUES) await boss.createQueue(name)
    })()
    return started
  }
  return {
    async enqueue(name, payload, o = {}) {
      if (!started)
        throw new Error('queue.start() must run before enqueue (at start-up, outside any transaction)')
      await started
      return boss.send(name, payload as object, {
        retryLimit: o.retryLimit ?? 5,
        retryBackoff: true,
        ...(o.startAfterSeconds ? { startAfter: o.startAfterSeconds } : {}),
        ...(o.oncePer ? { singletonKey: o.oncePer.key, singletonSeconds: o.oncePer.seconds } : {}),
        ...(o.tx ? { db: bossDb(o.tx) } : {}),
      })
    },
    async work(name, o, handler) {
      await ensureStarted()
      for (let i = 0; i < o.concurrency; i++) {
        await boss.work(name, { batchSize: 1, pollingIntervalSeconds: 0.5 }, async (jobs) => {
          for (const job of jobs) await handler(job.data as any)
        })
      }
    },
    start: ensureStarted,
    async stop() {
      if (started) {
        await started.catch(() => {})
        await boss.stop({ graceful: true, wait: true, close: false, timeout: 5000 })
      }
    },
  }
}

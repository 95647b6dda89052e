import { sql } from 'kysely'
import { createJwt } from './lib/auth/jwt.ts'
import type { Config } from './lib/config.ts'
import { type Database, openConfiguredDatabase } from './lib/db/database.ts'
import { migrate } from './lib/db/migrate.ts'
import type { AppDeps } from './lib/deps.ts'
import { loadSecret, newInstanceId } from './lib/instance.ts'
import { consoleMailer, type Mailer, smtpMailer } from './lib/mailer.ts'
import { createQueue } from './lib/queue.ts'

export interface RuntimeOptions {
  mailer?: Mailer
  log?: (msg: string) => void
  /** Open an already-open database instead (tests). */
  database?: Database
}

/** Opens the database, migrates it and builds the dependencies every role shares. */
export async function createRuntime(config: Config, opts: RuntimeOptions = {}): Promise<AppDeps> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`))
  const database = opts.database ?? (await openConfiguredDatabase(config))
  await migrate(database.db)
  const secret = await loadSecret(database, config.secret)
  const queue = createQueue(database, { onError: (err) => log(`queue error: ${String(err)}`) })
  // Started here, never lazily inside a transaction: on PGlite that would wait on the transaction's own lock.
  await startQueueOnce(database, queue)
  const mailer =
    opts.mailer ?? (config.smtpUrl ? smtpMailer(config.smtpUrl, config.mailFrom) : consoleMailer(log))
  return {
    config,
    database,
    queue,
    mailer,
    jwt: createJwt(secret),
    secret,
    instanceId: newInstanceId(),
    shutdown: new AbortController(),
  }
}

/**
 * pg-boss installs its schema on first start; two processes doing that at once on PostgreSQL
 * collide on CREATE SCHEMA, so starts are serialised with a session advisory lock held on one
 * pooled connection while pg-boss works through the others. (PGlite has one process, one start.)
 */
async function startQueueOnce(database: Database, queue: ReturnType<typeof createQueue>) {
  if (database.kind !== 'postgres') return queue.start()
  await database.db.connection().execute(async (conn) => {
    await sql`SELECT pg_advisory_lock(724118002)`.execute(conn)
    try {
      await queue.start()
    } finally {
      await sql`SELECT pg_advisory_unlock(724118002)`.execute(conn)
    }
  })
}

export async function closeRuntime(deps: AppDeps) {
  deps.shutdown.abort()
  await deps.queue.stop()
  await deps.database.close()
}

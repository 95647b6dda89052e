import type { Server } from 'node:http'
import { buildApp } from './app.ts'
import { startControlSocket } from './cli/control.ts'
import type { Config } from './lib/config.ts'
import { acquireDataLock } from './lib/data-lock.ts'
import { startHousekeeping } from './lib/db/housekeeping.ts'
import { startRetention } from './modules/api-log/api-log.retention.ts'
import { bulkJobRunning } from './modules/bulk/bulk.repo.ts'
import { closeRuntime, createRuntime } from './runtime.ts'
import { startWorker } from './worker.ts'

export interface ServeOptions {
  api: boolean
  worker: boolean
}

/** `hearth serve` / `hearth worker`: one program, several roles. Resolves once listening. */
export async function serve(config: Config, opts: ServeOptions) {
  const releaseLock = config.databaseUrl ? () => {} : acquireDataLock(config.dataDir)
  const deps = await createRuntime(config)
  const app = opts.api ? await buildApp(deps, { logger: { level: config.logLevel } }) : null
  let control: Server | null = null
  if (!config.databaseUrl) control = await startControlSocket(deps)
  const stopWorker = opts.worker ? await startWorker(deps) : null
  // In the long-lived worker role only: a `hearth import` runs a worker too, and deletes nothing.
  const stopRetention = opts.worker ? startRetention(deps, (m) => process.stderr.write(`${m}\n`)) : null
  // On PGlite this is the only process on the data folder (the data lock): it stands in for autovacuum.
  const stopHousekeeping =
    deps.database.kind === 'pglite' && config.pgliteHousekeepingSeconds > 0
      ? startHousekeeping(deps.database.db, {
          everyMs: config.pgliteHousekeepingSeconds * 1000,
          log: (m) => process.stderr.write(`${m}\n`),
          busy: () => bulkJobRunning(deps.database.db),
        })
      : null
  let where = ''
  if (app) {
    await app.listen({ port: config.port, host: config.host })
    const address = app.server.address()
    const port = typeof address === 'object' && address ? address.port : config.port
    where = ` on http://${config.host}:${port}`
  }
  process.stderr.write(
    `hearth ${opts.api ? 'api' : ''}${opts.api && opts.worker ? '+' : ''}${opts.worker ? 'worker' : ''} ready${where} (${deps.database.kind})\n`,
  )

  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    deps.shutdown.abort()
    // A stop that hangs must not keep the process alive: leases let another worker finish the work.
    setTimeout(() => process.exit(1), 15_000).unref()
    await app?.close()
    await stopWorker?.()
    stopRetention?.()
    await stopHousekeeping?.()
    control?.close()
    await closeRuntime(deps).catch(() => {})
    releaseLock()
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      void stop().then(() => process.exit(0))
    })
  }
  return { app, deps, stop }
}

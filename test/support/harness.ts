import { type App, buildApp } from '../../src/app.ts'
import { type Config, loadConfig } from '../../src/lib/config.ts'
import type { AppDeps } from '../../src/lib/deps.ts'
import type { Mail, Mailer } from '../../src/lib/mailer.ts'
import { closeRuntime, createRuntime } from '../../src/runtime.ts'
import { createTestDatabase, type TestDatabase } from './database.ts'
import { createFactories } from './factories.ts'

export interface TestApp {
  app: App
  deps: AppDeps
  testDb: TestDatabase
  /** Mails the app sent, newest last. */
  mails: Mail[]
  factory: ReturnType<typeof createFactories>
  close(): Promise<void>
}

export interface TestAppOptions {
  env?: Record<string, string>
  /** Run the background worker in this process (bulk jobs). */
  worker?: boolean
}

/** The fully wired app on this file's own database, with a capturing mailer. */
export async function startTestApp(opts: TestAppOptions = {}): Promise<TestApp> {
  const testDb = await createTestDatabase()
  const config: Config = loadConfig({ LOG_LEVEL: 'silent', RATE_LIMIT_PER_MINUTE: '100000', ...opts.env })
  const mails: Mail[] = []
  const mailer: Mailer = {
    async send(mail) {
      mails.push(mail)
    },
  }
  const deps = await createRuntime(config, { database: testDb.database, mailer, log: () => {} })
  const app = await buildApp(deps)
  await app.ready()
  let stopWorker: (() => Promise<void>) | null = null
  if (opts.worker) {
    const { startWorker } = await import('../../src/worker.ts')
    stopWorker = await startWorker(deps, { log: () => {} })
  }
  return {
    app,
    deps,
    testDb,
    mails,
    factory: createFactories(deps),
    async close() {
      await stopWorker?.()
      await app.close()
      await closeRuntime(deps).catch(() => {})
      await testDb.drop()
    },
  }
}

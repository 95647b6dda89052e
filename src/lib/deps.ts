import type { Jwt } from './auth/jwt.ts'
import type { Config } from './config.ts'
import type { Database } from './db/database.ts'
import type { Mailer } from './mailer.ts'
import type { Queue } from './queue.ts'

/** What every module's `register(app, deps)` receives. Built once in src/server.ts (or by tests). */
export interface AppDeps {
  config: Config
  database: Database
  queue: Queue
  mailer: Mailer
  jwt: Jwt
  /** The instance secret (signs sessions, encrypts stored secrets). */
  secret: string
  /** Identifies this process in job leases. */
  instanceId: string
  /** Aborted when the process shuts down: long work (bulk jobs) stops between chunks. */
  shutdown: AbortController
}

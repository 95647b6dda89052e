import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { sql } from 'kysely'
import { randomToken } from './auth/secrets.ts'
import type { Database } from './db/database.ts'

/** A name for this process in job leases and logs. */
export const newInstanceId = () => `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`

/**
 * The instance secret: HEARTH_SECRET when set, else one generated on first start and kept in the
 * database, so every process on the same database (API and workers on other machines) shares it.
 */
export async function loadSecret(database: Database, configured: string | undefined): Promise<string> {
  if (configured) return configured
  const fresh = randomToken(32)
  await sql`INSERT INTO hearth_settings (key, value) VALUES ('secret', ${fresh}) ON CONFLICT (key) DO NOTHING`.execute(
    database.db,
  )
  const row = await database.db
    .selectFrom('hearth_settings')
    .select('value')
    .where('key', '=', 'secret')
    .executeTakeFirstOrThrow()
  return row.value
}

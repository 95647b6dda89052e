import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Kysely, sql } from 'kysely'

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../../migrations')
// Any constant works; it only has to be the same in every Hearth process.
const MIGRATION_LOCK = 724_118_001

export interface Migration {
  version: number
  name: string
  sql: string
}

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{6}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((file) => ({
      version: Number(file.slice(0, 6)),
      name: file.slice(7, -4),
      sql: readFileSync(join(dir, file), 'utf8'),
    }))
}

/**
 * Applies pending migrations, each in its own transaction under an advisory lock, recording the
 * version in the same transaction: two processes starting at once apply each migration once.
 * Refuses to run when the database holds a version this code does not know.
 */
export async function migrate(db: Kysely<any>, migrations = loadMigrations()): Promise<number[]> {
  await db.transaction().execute(async (tx) => {
    await sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`.execute(tx)
    await sql`CREATE TABLE IF NOT EXISTS hearth_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`.execute(
      tx,
    )
  })
  const applied: number[] = []
  const known = new Set(migrations.map((m) => m.version))
  const existing = await sql<{ version: number }>`SELECT version FROM hearth_migrations`.execute(db)
  const ahead = existing.rows.filter((r) => !known.has(r.version))
  if (ahead.length > 0) {
    throw new Error(
      `The database has migrations this Hearth does not know (${ahead.map((r) => r.version).join(', ')}): upgrade Hearth.`,
    )
  }
  for (const m of migrations) {
    await db.transaction().execute(async (tx) => {
      await sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`.execute(tx)
      const done = await sql`SELECT 1 FROM hearth_migrations WHERE version = ${m.version}`.execute(tx)
      if (done.rows.length > 0) return
      await sql`INSERT INTO hearth_migrations (version, name) VALUES (${m.version}, ${m.name})`.execute(tx)
      await sql.raw(m.sql).execute(tx)
      applied.push(m.version)
    })
  }
  return applied
}

import { randomBytes } from 'node:crypto'
import { sql } from 'kysely'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { type Database, openDatabase } from '../../src/lib/db/database.ts'
import { loadMigrations, migrate } from '../../src/lib/db/migrate.ts'
import { withDatabase } from '../support/global-setup.ts'

const migrations = loadMigrations()
const allVersions = migrations.map((m) => m.version)

async function appliedVersions(database: Database) {
  const { rows } = await sql<{
    version: number
  }>`SELECT version FROM hearth_migrations ORDER BY version`.execute(database.db)
  return rows.map((r) => r.version)
}

/** Records a version this code has never heard of, as a newer Hearth would. */
async function addFutureVersion(database: Database) {
  await sql`INSERT INTO hearth_migrations (version, name) VALUES (999999, 'from_the_future')`.execute(
    database.db,
  )
}

describe('migrate', () => {
  it('has uniquely numbered migrations, in order', () => {
    expect(migrations.length).toBeGreaterThan(0)
    expect(new Set(allVersions).size).toBe(allVersions.length)
    expect([...allVersions].sort((a, b) => a - b)).toEqual(allVersions)
  })

  describe('on PGlite', () => {
    let database: Database
    beforeAll(async () => {
      database = await openDatabase({ dataDir: 'memory://' })
    })
    afterAll(() => database.close())

    it('applies every migration once; a second run applies nothing', async () => {
      expect(await migrate(database.db)).toEqual(allVersions)
      expect(await migrate(database.db)).toEqual([])
      expect(await appliedVersions(database)).toEqual(allVersions)
    })

    it('refuses a database that holds an unknown (newer) version and asks for an upgrade', async () => {
      await addFutureVersion(database)
      await expect(migrate(database.db)).rejects.toThrow(/999999.*upgrade/i)
      expect(await appliedVersions(database)).toEqual([...allVersions, 999999])
    })
  })

  // Registered only when a PostgreSQL server is configured (the PGlite run has its own block above).
  if (process.env.DATABASE_URL)
    describe('on PostgreSQL', () => {
      const base = process.env.DATABASE_URL!
      const created: string[] = []

      /** A fresh, empty database (named with the run id so the global teardown drops it too). */
      async function emptyDatabase(): Promise<string> {
        const name = `hearth_mig_${inject('runId')}_${randomBytes(4).toString('hex')}`
        const admin = new pg.Client({ connectionString: base })
        await admin.connect()
        try {
          await admin.query(`CREATE DATABASE ${name}`)
        } finally {
          await admin.end()
        }
        created.push(name)
        return withDatabase(base, name)
      }

      afterAll(async () => {
        const admin = new pg.Client({ connectionString: base })
        await admin.connect()
        for (const name of created) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
        await admin.end()
      })

      it('two processes migrating at once both succeed and apply each migration exactly once', async () => {
        const url = await emptyDatabase()
        const a = await openDatabase({ databaseUrl: url, poolSize: 2 })
        const b = await openDatabase({ databaseUrl: url, poolSize: 2 })
        try {
          const [ra, rb] = await Promise.allSettled([migrate(a.db), migrate(b.db)])
          expect(ra.status).toBe('fulfilled')
          expect(rb.status).toBe('fulfilled')
          const appliedA = (ra as PromiseFulfilledResult<number[]>).value
          const appliedB = (rb as PromiseFulfilledResult<number[]>).value
          // Between them every version, and no version by both.
          expect([...appliedA, ...appliedB].sort((x, y) => x - y)).toEqual(allVersions)
          expect(appliedA.filter((v) => appliedB.includes(v))).toEqual([])
          expect(await appliedVersions(a)).toEqual(allVersions)
          const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM hearth_migrations`.execute(
            b.db,
          )
          expect(rows[0].n).toBe(migrations.length)
          expect(await migrate(a.db)).toEqual([])
        } finally {
          await a.close()
          await b.close()
        }
      })

      it('refuses a database that holds an unknown (newer) version and asks for an upgrade', async () => {
        const database = await openDatabase({ databaseUrl: await emptyDatabase(), poolSize: 2 })
        try {
          await migrate(database.db)
          await addFutureVersion(database)
          await expect(migrate(database.db)).rejects.toThrow(/999999.*upgrade/i)
          expect(await appliedVersions(database)).toEqual([...allVersions, 999999])
        } finally {
          await database.close()
        }
      })
    })
})

import { randomBytes } from 'node:crypto'
import { sql } from 'kysely'
import pg from 'pg'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { type Database, openDatabase } from '../../src/lib/db/database.ts'
import { loadMigrations, migrate } from '../../src/lib/db/migrate.ts'
import { withDatabase } from '../support/global-setup.ts'

/**
 * 000160 makes usernames unique per community in any case. A database that already holds one name
 * several times (bulk jobs and sign-up did not check) must still migrate: a live account keeps the
 * name before a deleted one, then the oldest; the others lose it, and each loss is in the field
 * history.
 */
const all = loadMigrations()
const before = all.filter((m) => m.version < 160)
const m160 = all.find((m) => m.version === 160)!

async function seed(db: Database['db']) {
  await migrate(db, before)
  for (const c of ['ca', 'cb']) {
    await sql`INSERT INTO communities (id, name, system_key_hash, system_key_prefix)
      VALUES (${c}, ${c}, ${`hash-${c}`}, ${`pre-${c}`})`.execute(db)
  }
  // In insertion order (seq).
  const users: [string, string, string | null, boolean][] = [
    ['u01', 'ca', 'bob', false], // the oldest holder of "bob" in ca, in any case: keeps it
    ['u02', 'ca', 'BOB', false],
    ['u03', 'ca', 'Bob', true], // deleted users hold names too
    ['u04', 'ca', 'ann', false],
    ['u05', 'cb', 'bob', false], // another community's bob is not a duplicate
    ['u06', 'ca', null, false],
    ['u07', 'ca', 'Cat', true], // the oldest holder of "cat", but deleted: loses it to u08
    ['u08', 'ca', 'cat', false],
    ['u09', 'ca', 'CAT', false],
    ['u10', 'ca', 'dan', true], // only deleted holders: the oldest keeps it
    ['u11', 'ca', 'Dan', true],
  ]
  for (const [id, community, username, deleted] of users) {
    await sql`INSERT INTO users (id, community_id, email, username, deleted_at)
      VALUES (${id}, ${community}, ${`${id}@x.io`}, ${username}, ${deleted ? sql`now()` : null})`.execute(db)
  }
}

/** What 000160 leaves: one holder per name, the losses in the field history, and the index enforcing it. */
async function expectMigrated(db: Database['db']) {
  const names = await sql<{
    id: string
    username: string | null
  }>`SELECT id, username FROM users ORDER BY id`.execute(db)
  expect(names.rows).toEqual([
    { id: 'u01', username: 'bob' },
    { id: 'u02', username: null },
    { id: 'u03', username: null },
    { id: 'u04', username: 'ann' },
    { id: 'u05', username: 'bob' },
    { id: 'u06', username: null },
    { id: 'u07', username: null },
    { id: 'u08', username: 'cat' },
    { id: 'u09', username: null },
    { id: 'u10', username: 'dan' },
    { id: 'u11', username: null },
  ])
  const history =
    await sql`SELECT community_id, user_id, field_id, field, old_value, new_value, source, changed_by
    FROM field_histories ORDER BY user_id`.execute(db)
  const lost = (user: string, name: string) => ({
    community_id: 'ca',
    user_id: user,
    field_id: null,
    field: 'username',
    old_value: name,
    new_value: null,
    source: 'migration',
    changed_by: '000160',
  })
  expect(history.rows).toEqual([
    lost('u02', 'BOB'),
    lost('u03', 'Bob'),
    lost('u07', 'Cat'),
    lost('u09', 'CAT'),
    lost('u11', 'Dan'),
  ])
  const indexes = await sql<{
    indexname: string
    indexdef: string
  }>`SELECT indexname, indexdef FROM pg_indexes
    WHERE tablename = 'users' AND indexname LIKE 'users_community_username%'`.execute(db)
  expect(indexes.rows).toEqual([
    {
      indexname: 'users_community_username',
      indexdef: expect.stringMatching(/^CREATE UNIQUE INDEX users_community_username ON .*lower\(username\)/),
    },
  ])
  await expect(
    sql`INSERT INTO users (id, community_id, email, username) VALUES ('u20', 'ca', 'u20@x.io', 'ANN')`.execute(
      db,
    ),
  ).rejects.toThrow(/users_community_username/)
  await sql`INSERT INTO users (id, community_id, email, username) VALUES ('u21', 'cb', 'u21@x.io', 'ANN')`.execute(
    db,
  )
}

async function seedAndMigrate(database: Database) {
  await seed(database.db)
  expect(await migrate(database.db)).toEqual(all.filter((m) => m.version >= 160).map((m) => m.version))
  await expectMigrated(database.db)
}

/** The migration's statements, in order (none holds a semicolon of its own). */
const statements = m160.sql
  .split(/;\s*$/m)
  .map((s) => s.trim())
  .filter((s) => s.replace(/^--.*$/gm, '').trim() !== '')

describe('migration 000160 (unique usernames)', () => {
  it('keeps each name for a live holder, else the oldest, on PGlite, and records the others in the field history', async () => {
    const database = await openDatabase({ dataDir: 'memory://' })
    try {
      await seedAndMigrate(database)
    } finally {
      await database.close()
    }
  })

  if (process.env.DATABASE_URL) {
    const base = process.env.DATABASE_URL
    const names: string[] = []
    afterAll(async () => {
      const admin = new pg.Client({ connectionString: base })
      await admin.connect()
      for (const name of names) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await admin.end()
    })

    async function freshDatabase() {
      const name = `hearth_mig160_${inject('runId')}_${randomBytes(4).toString('hex')}`
      names.push(name)
      const admin = new pg.Client({ connectionString: base })
      await admin.connect()
      await admin.query(`CREATE DATABASE ${name}`)
      await admin.end()
      return withDatabase(base, name)
    }

    it('does the same on PostgreSQL', async () => {
      const database = await openDatabase({ databaseUrl: await freshDatabase(), poolSize: 2 })
      try {
        await seedAndMigrate(database)
      } finally {
        await database.close()
      }
    })

    // Deterministic: the migration's transaction is ours and waits between statements, so each probe
    // meets exactly the locks it holds at that point; lock_timeout turns a wait into an error (55P03).
    it('lets readers on while it dedupes and builds the index, but no writer; only the drop and rename lock reads out, until the commit', async () => {
      const url = await freshDatabase()
      const database = await openDatabase({ databaseUrl: url, poolSize: 2 })
      const mig = new pg.Client({ connectionString: url })
      const other = new pg.Client({ connectionString: url })
      try {
        await seed(database.db)
        await Promise.all([mig.connect(), other.connect()])
        await other.query(`SET lock_timeout = '300ms'`)
        const read = () => other.query(`SELECT count(*)::int AS n FROM users WHERE community_id = 'ca'`)
        const write = () =>
          other.query(
            `INSERT INTO users (id, community_id, email, username) VALUES ('w1', 'ca', 'w1@x.io', 'bob')`,
          )
        const kinds = statements.map(
          (s) => /^(LOCK|WITH|CREATE|DROP|ALTER)\b/m.exec(s.replace(/^--.*$/gm, ''))?.[1],
        )
        expect(kinds).toEqual(['LOCK', 'WITH', 'CREATE', 'DROP', 'ALTER'])

        await mig.query('BEGIN')
        await mig.query(
          `INSERT INTO hearth_migrations (version, name) VALUES (${m160.version}, '${m160.name}')`,
        )
        for (const s of statements.slice(0, 3)) {
          await mig.query(s)
          // A reader answers at once; a writer waits (here: gives up), so nobody adds a duplicate.
          expect((await read()).rows).toEqual([{ n: 10 }])
          await expect(write()).rejects.toMatchObject({ code: '55P03' })
        }
        await mig.query(statements[3]) // DROP INDEX: ACCESS EXCLUSIVE from here to the commit
        await expect(read()).rejects.toMatchObject({ code: '55P03' })
        await mig.query(statements[4])
        await mig.query('COMMIT')
        expect((await read()).rows).toEqual([{ n: 10 }])
        await expect(write()).rejects.toThrow(/users_community_username/)
        expect(await migrate(database.db)).toEqual(all.filter((m) => m.version > 160).map((m) => m.version))
        await expectMigrated(database.db)
      } finally {
        await Promise.allSettled([mig.end(), other.end()])
        await database.close()
      }
    })
  }
})

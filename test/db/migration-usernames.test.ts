import { randomBytes } from 'node:crypto'
import { sql } from 'kysely'
import pg from 'pg'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { type Database, openDatabase } from '../../src/lib/db/database.ts'
import { loadMigrations, migrate } from '../../src/lib/db/migrate.ts'
import { withDatabase } from '../support/global-setup.ts'

/**
 * 000160 makes usernames unique per community in any case. A database that already holds one name
 * several times (bulk jobs and sign-up did not check) must still migrate: the oldest account keeps
 * the name, the others lose it, and each loss is in the field history.
 */
const all = loadMigrations()
const before = all.filter((m) => m.version < 160)

async function seedAndMigrate(database: Database) {
  const db = database.db
  await migrate(db, before)
  for (const c of ['ca', 'cb']) {
    await sql`INSERT INTO communities (id, name, system_key_hash, system_key_prefix)
      VALUES (${c}, ${c}, ${`hash-${c}`}, ${`pre-${c}`})`.execute(db)
  }
  // In insertion order (seq): u1 is the oldest holder of "bob" in ca, in any case.
  const users: [string, string, string | null, boolean][] = [
    ['u1', 'ca', 'bob', false],
    ['u2', 'ca', 'BOB', false],
    ['u3', 'ca', 'Bob', true], // deleted users keep their names too
    ['u4', 'ca', 'ann', false],
    ['u5', 'cb', 'bob', false], // another community's bob is not a duplicate
    ['u6', 'ca', null, false],
  ]
  for (const [id, community, username, deleted] of users) {
    await sql`INSERT INTO users (id, community_id, email, username, deleted_at)
      VALUES (${id}, ${community}, ${`${id}@x.io`}, ${username}, ${deleted ? sql`now()` : null})`.execute(db)
  }
  expect(await migrate(db)).toEqual(all.filter((m) => m.version >= 160).map((m) => m.version))
  const names = await sql<{ id: string; username: string | null }>`SELECT id, username FROM users ORDER BY id`.execute(
    db,
  )
  expect(names.rows).toEqual([
    { id: 'u1', username: 'bob' },
    { id: 'u2', username: null },
    { id: 'u3', username: null },
    { id: 'u4', username: 'ann' },
    { id: 'u5', username: 'bob' },
    { id: 'u6', username: null },
  ])
  const history = await sql`SELECT community_id, user_id, field_id, field, old_value, new_value, source, changed_by
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
  expect(history.rows).toEqual([lost('u2', 'BOB'), lost('u3', 'Bob')])
  await expect(
    sql`INSERT INTO users (id, community_id, email, username) VALUES ('u7', 'ca', 'u7@x.io', 'ANN')`.execute(db),
  ).rejects.toThrow(/users_community_username/)
  await sql`INSERT INTO users (id, community_id, email, username) VALUES ('u8', 'cb', 'u8@x.io', 'ANN')`.execute(db)
}

describe('migration 000160 (unique usernames)', () => {
  it('keeps each name for its oldest holder on PGlite, and records the others in the field history', async () => {
    const database = await openDatabase({ dataDir: 'memory://' })
    try {
      await seedAndMigrate(database)
    } finally {
      await database.close()
    }
  })

  if (process.env.DATABASE_URL) {
    const base = process.env.DATABASE_URL
    const name = `hearth_mig160_${inject('runId')}_${randomBytes(4).toString('hex')}`
    afterAll(async () => {
      const admin = new pg.Client({ connectionString: base })
      await admin.connect()
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await admin.end()
    })

    it('does the same on PostgreSQL', async () => {
      const admin = new pg.Client({ connectionString: base })
      await admin.connect()
      await admin.query(`CREATE DATABASE ${name}`)
      await admin.end()
      const database = await openDatabase({ databaseUrl: withDatabase(base, name), poolSize: 2 })
      try {
        await seedAndMigrate(database)
      } finally {
        await database.close()
      }
    })
  }
})

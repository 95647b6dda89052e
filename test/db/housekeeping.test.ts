import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/lib/config.ts'
import type { Tx } from '../../src/lib/db/database.ts'
import { housekeepingPass, startHousekeeping, tablesDue } from '../../src/lib/db/housekeeping.ts'
import { serve } from '../../src/server.ts'
import { createTestDatabase, type TestDatabase } from '../support/database.ts'

/**
 * The autovacuum stand-in a PGlite server runs (checked on both databases; the tables here have
 * the server's own autovacuum switched off so it cannot step in first).
 */

let testDb: TestDatabase
const db = () => testDb.database.db
beforeAll(async () => {
  testDb = await createTestDatabase()
})
afterAll(() => testDb.drop())

async function churn(table: string, rows: number, on: Tx = db()) {
  await sql
    .raw(`CREATE TABLE ${table} (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false)`)
    .execute(on)
  await sql.raw(`INSERT INTO ${table} SELECT g, g FROM generate_series(1, ${rows}) g`).execute(on)
  await sql.raw(`UPDATE ${table} SET v = v + 1 WHERE id <= ${rows / 2}`).execute(on)
  await sql.raw(`DELETE FROM ${table} WHERE id > ${rows - rows / 10}`).execute(on)
}

/** Activity counters reach the statistics a moment after the transaction: wait until `table` shows up as due. */
async function untilDue(table: string) {
  for (let i = 0; i < 150; i++) {
    if ((await tablesDue(db())).some((a) => a.table === `"public"."${table}"`)) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${table} never became due`)
}

const statsOf = async (table: string, on: Tx = db()) =>
  (
    await sql<{ dead: number; vacuumed: boolean; analyzed: boolean }>`
      SELECT n_dead_tup::int AS dead, last_vacuum IS NOT NULL AS vacuumed, last_analyze IS NOT NULL AS analyzed
      FROM pg_stat_user_tables WHERE relname = ${table}`.execute(on)
  ).rows[0]

describe('housekeeping (PGlite has no autovacuum)', () => {
  it('vacuums and analyzes the tables past the autovacuum thresholds, and only those', async () => {
    await churn('hk_churn', 10_000)
    await sql`CREATE TABLE hk_quiet (id int PRIMARY KEY) WITH (autovacuum_enabled = false)`.execute(db())
    await sql`INSERT INTO hk_quiet SELECT generate_series(1, 10)`.execute(db())
    await untilDue('hk_churn')
    expect((await statsOf('hk_churn')).dead).toBeGreaterThan(5000)

    const done = await housekeepingPass(db())
    expect(done).toContainEqual({ table: '"public"."hk_churn"', command: 'VACUUM (ANALYZE)' })
    expect(done.map((a) => a.table)).not.toContain('"public"."hk_quiet"')
    expect(await statsOf('hk_churn')).toEqual({ dead: 0, vacuumed: true, analyzed: true })
    expect(await statsOf('hk_quiet')).toMatchObject({ vacuumed: false, analyzed: false })
    // Nothing changed since: the next pass leaves the table alone.
    expect((await tablesDue(db())).map((a) => a.table)).not.toContain('"public"."hk_churn"')
  })

  it('runs on its own, every interval, not while busy, until stopped', async () => {
    await churn('hk_timer', 4000)
    await untilDue('hk_timer')
    let busy = true
    const stop = startHousekeeping(db(), { everyMs: 50, log: () => {}, busy: async () => busy })
    await new Promise((r) => setTimeout(r, 300))
    expect((await statsOf('hk_timer')).vacuumed).toBe(false) // waits while busy
    busy = false
    try {
      for (let i = 0; i < 100 && !(await statsOf('hk_timer')).vacuumed; i++)
        await new Promise((r) => setTimeout(r, 50))
    } finally {
      await stop()
    }
    expect(await statsOf('hk_timer')).toMatchObject({ dead: 0, vacuumed: true })
  })

  it('a server on PGlite runs it by itself (PGLITE_HOUSEKEEPING_SECONDS)', async () => {
    // A PGlite feature: this test uses PGlite whichever database the suite runs on.
    const dataDir = mkdtempSync(join(tmpdir(), 'hearth-housekeeping-'))
    const config = loadConfig({ DATA_DIR: dataDir, PGLITE_HOUSEKEEPING_SECONDS: '1', LOG_LEVEL: 'silent' })
    const server = await serve(config, { api: false, worker: false })
    try {
      const on = server.deps.database.db
      // In one transaction, so a pass cannot run between its statements.
      await on.transaction().execute((tx) => churn('hk_served', 4000, tx))
      const done = { dead: 0, vacuumed: true, analyzed: true }
      let stats = await statsOf('hk_served', on)
      for (let i = 0; i < 100 && JSON.stringify(stats) !== JSON.stringify(done); i++) {
        await new Promise((r) => setTimeout(r, 100))
        stats = await statsOf('hk_served', on)
      }
      expect(stats).toEqual(done)
    } finally {
      await server.stop()
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})

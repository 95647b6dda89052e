/**
 * The floor of a bulk import: `npm run bench:floor -- --rows N [--lanes L]`.
 *
 * What the data model alone costs, with no HTTP, CSV, staging, lookups or checks: N new users
 * with two custom fields, their two opening ledger rows (xp, coins) and their two field-history
 * rows, written by INSERT … SELECT from generate_series into Hearth's real, migrated tables (on
 * DATABASE_URL's server in a fresh database, else PGlite in a temporary folder). The baseline is the
 * same N rows inserted the same way into a plain table of the same columns with one unique index on
 * (community, email): the table bench:bulk's raw COPY fills. The ratio of the two is what no import
 * code can beat. With --lanes L (PostgreSQL), the users are split over L connections at once, as
 * BULK_PARALLEL_CHUNKS does; the baseline stays one connection, like the raw COPY.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type Kysely, sql } from 'kysely'
import { openDatabase } from '../src/lib/db/database.ts'
import { migrate } from '../src/lib/db/migrate.ts'
import { createScratchDatabase, dropScratchDatabase } from './scratch-database.ts'

const { values } = parseArgs({
  options: { rows: { type: 'string', default: '100000' }, lanes: { type: 'string', default: '1' } },
})
const rows = Number(values.rows)
const databaseUrl = process.env.DATABASE_URL
const lanes = databaseUrl ? Number(values.lanes) : 1
const work = mkdtempSync(join(tmpdir(), 'hearth-floor-'))
const floorDb = `hearth_floor_${process.pid}`
const COMMUNITY = 'c0000000000000000000000f'

// The same values bench:bulk's generated file holds.
const email = sql`'user' || g || '@bench.example'`
const userId = sql`lpad(to_hex(g), 24, '0')`

const seconds = async (fn: () => Promise<unknown>) => {
  const started = performance.now()
  await fn()
  return (performance.now() - started) / 1000
}

async function baseline(db: Kysely<any>) {
  await sql`CREATE TABLE floor_raw (community_id text NOT NULL, email text, username text, first_name text,
    last_name text, display_name text, phone text, country text, join_date text, xp text, coins text,
    deposit text, tier text)`.execute(db)
  await sql`CREATE UNIQUE INDEX floor_raw_key ON floor_raw (community_id, email)`.execute(db)
  return seconds(() =>
    sql`INSERT INTO floor_raw SELECT ${COMMUNITY}, ${email}, 'user_' || g, 'First' || g, 'Last' || g, 'User ' || g,
      '+4477009' || lpad(g::text, 5, '0'), 'GB', '2025-01-01', (g % 1000)::text, (g % 500)::text,
      ((g % 10000) / 4.0)::text, 'gold' FROM generate_series(1, ${rows}) g`.execute(db),
  )
}

/** Users [from, to], their ledger rows and field histories, one statement each, in one transaction. */
async function writeUsers(db: Kysely<any>, from: number, to: number, times: Record<string, number>) {
  await db.transaction().execute(async (tx) => {
    const add = (k: string, s: number) => {
      times[k] = (times[k] ?? 0) + s
    }
    add(
      'users',
      await seconds(() =>
        sql`INSERT INTO users (id, community_id, email, username, first_name, last_name, display_name, phone,
          country, join_date, xp, coins, custom_fields)
        SELECT ${userId}, ${COMMUNITY}, ${email}, 'user_' || g, 'First' || g, 'Last' || g, 'User ' || g,
          '+4477009' || lpad(g::text, 5, '0'), 'GB', '2025-01-01', g % 1000 + 1, g % 500 + 1,
          jsonb_build_object('deposit', (g % 10000) / 4.0, 'tier', 'gold')
        FROM generate_series(${from}::int, ${to}::int) g`.execute(tx),
      ),
    )
    add(
      'ledger',
      await seconds(() =>
        sql`INSERT INTO currency_ledger (community_id, user_id, currency, amount, balance_after, source, reason, idempotency_key)
        SELECT ${COMMUNITY}, ${userId}, c.cur, g % 1000 + 1, g % 1000 + 1, 'bulk_import', 'bulk job floor',
          'bulk:floor:' || g || ':' || c.cur
        FROM generate_series(${from}::int, ${to}::int) g CROSS JOIN (VALUES ('xp'), ('coins')) c(cur)`.execute(
          tx,
        ),
      ),
    )
    add(
      'histories',
      await seconds(() =>
        sql`INSERT INTO field_histories (id, community_id, user_id, field_id, field, old_value, new_value, source, changed_by)
        SELECT hearth_object_id(), ${COMMUNITY}, ${userId}, f.fid, f.k, NULL, to_jsonb(f.k), 'bulk_import', 'floor'
        FROM generate_series(${from}::int, ${to}::int) g
          CROSS JOIN (VALUES ('deposit', 'f1'), ('tier', 'f2')) f(k, fid)`.execute(tx),
      ),
    )
  })
}

async function main() {
  const url = databaseUrl ? await createScratchDatabase(databaseUrl, floorDb) : undefined
  const database = await openDatabase({
    databaseUrl: url,
    dataDir: join(work, 'data'),
    poolSize: lanes + 1,
  })
  try {
    const { db } = database
    await migrate(db)
    await sql`INSERT INTO communities (id, name, system_key_hash, system_key_prefix)
      VALUES (${COMMUNITY}, 'Floor', 'floor', 'floor')`.execute(db)
    const baselineSeconds = await baseline(db)
    const times: Record<string, number> = {}
    const per = Math.ceil(rows / lanes)
    const wall = await seconds(() =>
      Promise.all(
        Array.from({ length: lanes }, (_, i) =>
          writeUsers(db, i * per + 1, Math.min(rows, (i + 1) * per), times),
        ),
      ),
    )
    const round = (n: number) => Math.round(n * 100) / 100
    console.log(
      JSON.stringify({
        database: database.kind,
        rows,
        lanes,
        // Summed over lanes: the time each table's statements took.
        usersSeconds: round(times.users),
        ledgerSeconds: round(times.ledger),
        historiesSeconds: round(times.histories),
        seconds: round(wall),
        rowsPerSecond: Math.round(rows / wall),
        baselineSeconds: round(baselineSeconds),
        ratioToBaseline: round(wall / baselineSeconds),
      }),
    )
  } finally {
    await database.close()
    if (databaseUrl) await dropScratchDatabase(databaseUrl, floorDb)
    rmSync(work, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})

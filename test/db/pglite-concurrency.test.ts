import { type Kysely, sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Database, openDatabase } from '../../src/lib/db/database.ts'
import { migrate } from '../../src/lib/db/migrate.ts'
import { createQueue, type Queue } from '../../src/lib/queue.ts'
import { createTestDatabase, type TestDatabase } from '../support/database.ts'

/**
 * PGlite has one connection, so Hearth's driver turns a transaction into a lock on it (see
 * pglite-dialect.ts). Here ~50 transactions, plain queries and pg-boss enqueues race on one table
 * and the outcome must be the same as on a real PostgreSQL server: rolled-back work vanishes,
 * committed work stays, and nobody reads another transaction's uncommitted rows.
 */

interface Target {
  name: string
  open(): Promise<{ database: Database; close(): Promise<void> }>
}

const targets: Target[] = [
  {
    name: 'PGlite',
    async open() {
      const database = await openDatabase({ dataDir: 'memory://' })
      await migrate(database.db)
      return { database, close: () => database.close() }
    },
  },
]
if (process.env.DATABASE_URL) {
  targets.push({
    name: 'PostgreSQL',
    async open() {
      const testDb: TestDatabase = await createTestDatabase()
      return { database: testDb.database, close: () => testDb.drop() }
    },
  })
}

const TRANSACTIONS = 50
const ROWS_PER_TX = 3
const PLAIN_WRITES = 20
const doomed = (i: number) => i % 3 === 0
const enqueuesInside = (i: number) => i % 5 === 0

class Rollback extends Error {}

const pause = () => new Promise((r) => setTimeout(r, Math.floor(Math.random() * 4)))

async function count(db: Kysely<any>, where: ReturnType<typeof sql>) {
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM tx_probe WHERE ${where}`.execute(
    db,
  )
  return rows[0].n
}

describe.each(targets)('concurrent transactions on $name', (target) => {
  let database: Database
  let close: () => Promise<void>
  let queue: Queue
  const seen: Array<{ tx: number; own: number; dirty: number }> = []
  const plainDirtyReads: number[] = []
  const outcomes: PromiseSettledResult<unknown>[] = []

  beforeAll(async () => {
    ;({ database, close } = await target.open())
    await sql`CREATE TABLE tx_probe (id serial PRIMARY KEY, tx_no integer NOT NULL, doomed boolean NOT NULL, marker text NOT NULL)`.execute(
      database.db,
    )
    queue = createQueue(database)
    // Started up front: starting pg-boss inside a PGlite transaction would wait for the lock that transaction holds.
    await queue.start()

    const { db } = database
    const transaction = (i: number) =>
      db.transaction().execute(async (tx) => {
        for (let k = 0; k < ROWS_PER_TX; k++) {
          await tx
            .insertInto('tx_probe' as never)
            .values({ tx_no: i, doomed: doomed(i), marker: `tx-${i}` } as never)
            .execute()
          await pause()
        }
        if (enqueuesInside(i)) {
          await queue.enqueue(
            'mail.send',
            { to: `tx-${i}@probe.test`, subject: 'inside', text: String(i) },
            { tx },
          )
        }
        const own = await count(tx, sql`tx_no = ${i}`)
        // Rows of doomed transactions are never committed: seeing one would be a dirty read.
        const dirty = await count(tx, sql`doomed AND tx_no <> ${i}`)
        seen.push({ tx: i, own, dirty })
        await pause()
        if (doomed(i)) throw new Rollback(`tx ${i} rolls back`)
        return i
      })
    const plainWrite = async (j: number) => {
      await pause()
      await db
        .insertInto('tx_probe' as never)
        .values({ tx_no: 1000 + j, doomed: false, marker: `plain-${j}` } as never)
        .execute()
      plainDirtyReads.push(await count(db, sql`doomed`))
      await queue.enqueue('mail.send', { to: `plain-${j}@probe.test`, subject: 'outside', text: String(j) })
    }

    const work: Promise<unknown>[] = []
    for (let i = 0; i < TRANSACTIONS; i++) {
      work.push(transaction(i))
      if (i % 2 === 0 && i / 2 < PLAIN_WRITES) work.push(plainWrite(i / 2))
    }
    outcomes.push(...(await Promise.allSettled(work)))
  })

  afterAll(async () => {
    await queue?.stop()
    await close?.()
  })

  it('rolls back exactly the transactions that threw, and commits the rest', () => {
    const rejected = outcomes.filter((o) => o.status === 'rejected') as PromiseRejectedResult[]
    expect(rejected.every((o) => o.reason instanceof Rollback)).toBe(true)
    expect(rejected).toHaveLength(Array.from({ length: TRANSACTIONS }, (_, i) => i).filter(doomed).length)
  })

  it('leaves no row of a rolled-back transaction and every row of a committed one', async () => {
    const { db } = database
    expect(await count(db, sql`doomed`)).toBe(0)
    const { rows } = await sql<{ tx_no: number; n: number }>`
      SELECT tx_no, count(*)::int AS n FROM tx_probe WHERE tx_no < 1000 GROUP BY tx_no ORDER BY tx_no`.execute(
      db,
    )
    const committed = Array.from({ length: TRANSACTIONS }, (_, i) => i).filter((i) => !doomed(i))
    expect(rows).toEqual(committed.map((i) => ({ tx_no: i, n: ROWS_PER_TX })))
  })

  it('keeps every plain write made while transactions were open', async () => {
    expect(await count(database.db, sql`tx_no >= 1000`)).toBe(PLAIN_WRITES)
  })

  it("never lets a transaction or a plain query see another transaction's uncommitted rows", () => {
    expect(seen).toHaveLength(TRANSACTIONS)
    for (const s of seen) expect(s, `tx ${s.tx}`).toEqual({ tx: s.tx, own: ROWS_PER_TX, dirty: 0 })
    expect(plainDirtyReads).toHaveLength(PLAIN_WRITES)
    expect(plainDirtyReads.every((n) => n === 0)).toBe(true)
  })

  it('keeps a job enqueued in a transaction only when that transaction commits', async () => {
    const { rows } = await sql<{ to: string }>`
      SELECT data->>'to' AS to FROM pgboss.job WHERE name = 'mail.send' AND data->>'to' LIKE '%@probe.test'`.execute(
      database.db,
    )
    const got = rows.map((r) => r.to).sort()
    const insideCommitted = Array.from({ length: TRANSACTIONS }, (_, i) => i)
      .filter((i) => enqueuesInside(i) && !doomed(i))
      .map((i) => `tx-${i}@probe.test`)
    const outside = Array.from({ length: PLAIN_WRITES }, (_, j) => `plain-${j}@probe.test`)
    expect(got).toEqual([...insideCommitted, ...outside].sort())
    // The doomed ones (0, 15, 30, 45) enqueued too, inside their transaction: nothing may remain of them.
    expect(got.some((to) => /^tx-(0|15|30|45)@/.test(to))).toBe(false)
  })
})

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { detailRows, PREMIUM, runJob, startPlayedAndOneByOne } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * A premium file that names users many times is played in JS, chunk by chunk (bulk.premium-play.ts);
 * a chunk of distinct users goes through one set-based statement. With BULK_CHUNK_ROWS=1 every row
 * is a chunk of its own, applied alone: the one-by-one reference the played chunks must equal.
 */
let played: TestApp
let oneByOne: TestApp
/** Chunks of five rows, up to four in flight (on PostgreSQL; PGlite applies one at a time). */
let parallel: TestApp
beforeAll(async () => {
  ;[played, oneByOne] = await startPlayedAndOneByOne()
  parallel = await startTestApp({ worker: true, env: { BULK_CHUNK_ROWS: '5', BULK_PARALLEL_CHUNKS: '4' } })
})
afterAll(() => Promise.all([played?.close(), oneByOne?.close(), parallel?.close()]))

const EMAILS = ['ann@x.io', 'bob@x.io', 'cat@x.io', 'dan@x.io']

/** 120 rows over four users (one deleted) and one unknown address, every outcome among them. */
function repeatedFile(): string {
  const ops = ['add', 'subtract', 'overwrite', '', 'add', 'subtract']
  const lines = ['email,amount_op,amount,reason,idempotency_key']
  for (let i = 0; i < 120; i++) {
    const email = i % 11 === 10 ? 'nobody@x.io' : EMAILS[i % 4]
    const op = i % 17 === 16 ? 'add' : ops[i % 6]
    // Every 17th row changes nothing (adds 0); some rows carry a key: one an earlier job wrote, and
    // keys re-sent within the file.
    const unchanged = i % 17 === 16
    const amount = unchanged ? 0 : ops[i % 6] === 'overwrite' ? (i * 7) % 40 : (i * 13) % 50
    const key = unchanged ? '' : i % 9 === 0 ? 'earlier' : i % 5 === 0 ? `order-${i % 3}` : ''
    lines.push(`${email},${op},${amount},${i % 2 ? `row ${i}` : ''},${key}`)
  }
  return `${lines.join('\n')}\n`
}

async function run(t: TestApp) {
  const db = t.deps.database.db
  const c = await t.factory.community()
  const users = []
  for (const email of EMAILS) users.push(await t.factory.user(c.id, { email }))
  await db.updateTable('users').set({ premium: 25 }).where('community_id', '=', c.id).execute()
  await db.updateTable('users').set({ deleted_at: new Date() }).where('id', '=', users[2].id).execute()
  const earlier = await runJob(t, PREMIUM, c.bearer, {
    file: 'email,amount,reason,idempotency_key\nbob@x.io,1,first,earlier\n',
  })
  expect(earlier).toMatchObject({ updated: 1 })
  return outcomeOf(t, c, await runJob(t, PREMIUM, c.bearer, { file: repeatedFile() }))
}

/** What a premium job left: its counts, each row's outcome, the balances and each user's ledger. */
async function outcomeOf(t: TestApp, c: { id: string; bearer: Record<string, string> }, job: any) {
  const db = t.deps.database.db
  const rows = await detailRows(t, c.bearer, job.jobId, 'limit=500')
  const balances = await db
    .selectFrom('users')
    .select(['email', 'premium'])
    .where('community_id', '=', c.id)
    .orderBy('email')
    .execute()
  const ledger = await db
    .selectFrom('currency_ledger')
    .innerJoin('users', 'users.id', 'currency_ledger.user_id')
    .select(['users.email', 'amount', 'balance_after', 'reason', 'idempotency_key'])
    .where('currency_ledger.community_id', '=', c.id)
    // Each user's entries in the order written; different users' chunks may commit in any order.
    .orderBy('users.email')
    .orderBy('currency_ledger.id')
    .execute()
  const ownJob = (s: string | null) => s?.replaceAll(job.jobId, 'JOB')
  return {
    counts: [job.updated, job.skipped, job.failed],
    rows: rows.map((r) => [r.row, r.action, r.error?.code ?? null]),
    balances,
    ledger: ledger.map((l) => ({
      ...l,
      reason: ownJob(l.reason),
      idempotency_key: ownJob(l.idempotency_key),
    })),
  }
}

describe('premium rows naming users many times', () => {
  it('played chunks end exactly as rows applied one by one: outcomes, balances and ledger', async () => {
    const [fast, reference] = await Promise.all([run(played), run(oneByOne)])
    expect(reference.rows).toHaveLength(120)
    // Every kind of outcome occurs, so the comparison covers each rule.
    const codes = new Set(reference.rows.map((r) => r[2] ?? r[1]))
    expect([...codes].sort()).toEqual([
      'insufficient_balance',
      'skipped',
      'updated',
      'user_deleted',
      'user_not_found',
    ])
    expect(fast.counts).toEqual(reference.counts)
    expect(fast.rows).toEqual(reference.rows)
    expect(fast.balances).toEqual(reference.balances)
    expect(fast.ledger).toEqual(reference.ledger)
  })

  it('two users sent with one idempotency key in one chunk: the earlier row applies, as one by one', async () => {
    const file = 'email,amount,idempotency_key\nann@x.io,5,k\nbob@x.io,7,k\ndan@x.io,9,other\n'
    const outcomes = async (t: TestApp) => {
      const c = await t.factory.community()
      for (const email of EMAILS) await t.factory.user(c.id, { email })
      const job = await runJob(t, PREMIUM, c.bearer, { file })
      return (await detailRows(t, c.bearer, job.jobId, 'limit=10')).map((r) => [r.row, r.action])
    }
    const [fast, reference] = await Promise.all([outcomes(played), outcomes(oneByOne)])
    expect(reference).toEqual([
      [1, 'updated'],
      [2, 'skipped'],
      [3, 'updated'],
    ])
    expect(fast).toEqual(reference)
  })
})

describe('premium chunks in flight at once', () => {
  const USERS = Array.from({ length: 40 }, (_, i) => `p${i}@x.io`)

  /**
   * 200 rows over 40 users: each user comes back every 40 rows (eight chunks later), and rows 3 and
   * 8 of every ten (neighbouring chunks, different users) send one idempotency key.
   */
  function spreadFile(): string {
    const lines = ['email,amount_op,amount,idempotency_key']
    for (let i = 0; i < 200; i++) {
      const subtract = i % 3 === 2
      const amount = subtract ? (i % 11) + 1 : (i % 7) + 1
      const key = i % 10 === 3 || i % 10 === 8 ? `k${Math.floor(i / 10)}` : ''
      lines.push(`${USERS[(i * 3) % 40]},${subtract ? 'subtract' : 'add'},${amount},${key}`)
    }
    return `${lines.join('\n')}\n`
  }

  async function spreadRun(t: TestApp) {
    const db = t.deps.database.db
    const c = await t.factory.community()
    for (const email of USERS) await t.factory.user(c.id, { email })
    await db.updateTable('users').set({ premium: 10 }).where('community_id', '=', c.id).execute()
    const job = await runJob(t, PREMIUM, c.bearer, { file: spreadFile() })
    const chunks = await db
      .selectFrom('bulk_job_chunks')
      .select(['started_at', 'booked_at'])
      .where('job_id', '=', job.jobId)
      .orderBy('chunk_no')
      .execute()
    return {
      outcome: await outcomeOf(t, c, job),
      chunks: chunks.map((ch) => ({ started: +ch.started_at!, booked: +ch.booked_at! })),
    }
  }

  it('end exactly as rows applied one by one, keys re-sent across chunks included', async () => {
    const [fast, reference] = await Promise.all([spreadRun(parallel), spreadRun(oneByOne)])
    const actions = new Set(reference.outcome.rows.map((r) => r[2] ?? r[1]))
    expect([...actions].sort()).toEqual(['insufficient_balance', 'skipped', 'updated'])
    expect(fast.outcome).toEqual(reference.outcome)
    // On PostgreSQL the chunks did run at once: one began before another had booked its rows.
    const rest = fast.chunks.slice(1)
    const overlapping = rest.some((a, i) => rest.slice(i + 1).some((b) => b.started < a.booked))
    expect(overlapping).toBe(parallel.deps.database.kind === 'postgres')
  })
})

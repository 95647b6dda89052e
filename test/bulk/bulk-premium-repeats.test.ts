import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { detailRows, runJob, startPlayedAndOneByOne } from '../support/bulk.ts'
import type { TestApp } from '../support/harness.ts'

/**
 * A premium file that names users many times is played in JS, chunk by chunk (bulk.premium-play.ts);
 * a chunk of distinct users goes through one set-based statement. With BULK_CHUNK_ROWS=1 every row
 * is a chunk of its own, applied alone: the one-by-one reference the played chunks must equal.
 */
let played: TestApp
let oneByOne: TestApp
beforeAll(async () => {
  ;[played, oneByOne] = await startPlayedAndOneByOne()
})
afterAll(() => Promise.all([played?.close(), oneByOne?.close()]))

const PREMIUM = '/apis/v1/users/bulk-update/premium-currency'
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
  const job = await runJob(t, PREMIUM, c.bearer, { file: repeatedFile() })
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

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runBulkJob } from '../../src/modules/bulk/bulk.runner.ts'
import { detailRows, IMPORT, upload, waitForJob } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * Chunks of one job applied at once (BULK_PARALLEL_CHUNKS, PostgreSQL; PGlite applies one at a
 * time and must give the same answers), and a job resumed around a chunk an earlier attempt
 * committed out of order.
 */

let t: TestApp
beforeAll(async () => {
  // Chunks of 5 rows, up to 4 in flight: a user named in rows 20 apart sits in chunks 4 apart.
  // No background worker: each test runs its job itself, so it can stage what an earlier attempt left.
  t = await startTestApp({ env: { BULK_CHUNK_ROWS: '5', BULK_PARALLEL_CHUNKS: '4' } })
})
afterAll(() => t.close())

const db = () => t.deps.database.db

async function queue(auth: Record<string, string>, csv: string): Promise<string> {
  const res = await upload(t, IMPORT, auth, { file: csv })
  expect(res.statusCode, res.body).toBe(200)
  return res.json().data.jobId
}

function ledgerOf(communityId: string) {
  return db()
    .selectFrom('currency_ledger')
    .innerJoin('users', 'users.id', 'currency_ledger.user_id')
    .select(['users.email', 'currency_ledger.amount', 'currency_ledger.balance_after'])
    .where('currency_ledger.community_id', '=', communityId)
    .where('currency_ledger.currency', '=', 'xp')
    .orderBy('currency_ledger.id')
    .execute()
}

describe('chunks in flight at once', () => {
  it('give the result of applying the rows one by one in file order', async () => {
    const c = await t.factory.community()
    // Users u0..u19 appear at rows i, i+20 and i+40 (create 10, add 5, overwrite 30);
    // rows 61..100 create users of their own, so several chunks can run at once.
    const lines = ['email,xp_op,xp,country']
    for (let i = 0; i < 20; i++) lines.push(`u${i}@x.io,,10,GB`)
    for (let i = 0; i < 20; i++) lines.push(`u${i}@x.io,add,5,DE`)
    for (let i = 0; i < 20; i++) lines.push(`u${i}@x.io,overwrite,30,`)
    for (let i = 0; i < 40; i++) lines.push(`solo${i}@x.io,,${i},SG`)
    const jobId = await queue(c.bearer, `${lines.join('\n')}\n`)
    await runBulkJob(t.deps, jobId)
    const job = await waitForJob(t, c.bearer, jobId)
    expect(job).toMatchObject({ status: 'completed', total: 100, processed: 100, created: 60, updated: 40 })

    const users = await db()
      .selectFrom('users')
      .select(['email', 'xp', 'country'])
      .where('community_id', '=', c.id)
      .execute()
    expect(users).toHaveLength(60)
    for (let i = 0; i < 20; i++) {
      expect(users.find((u) => u.email === `u${i}@x.io`)).toMatchObject({ xp: 30, country: 'DE' })
    }
    // Per user, the ledger reads 10, +5, +15 in that order: the rows applied in file order.
    const ledger = await ledgerOf(c.id)
    for (let i = 0; i < 20; i++) {
      const mine = ledger.filter((l) => l.email === `u${i}@x.io`)
      expect(mine.map((l) => [l.amount, l.balance_after])).toEqual([
        [10, 10],
        [5, 15],
        [15, 30],
      ])
    }
    // Every row has exactly one outcome, in file order.
    const rows = await detailRows(t, c.bearer, jobId, 'limit=100')
    expect(rows.map((r) => r.row)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
    expect(rows.slice(0, 20).every((r) => r.action === 'created')).toBe(true)
    expect(rows.slice(20, 60).every((r) => r.action === 'updated')).toBe(true)
  })
  it('the first chunk commits before any other begins; later ones run at once on PostgreSQL', async () => {
    // Planned on the statistics of a community with no users, a chunk running beside the first
    // one could scan the rows the other inserts, row by row (see processJob).
    const c = await t.factory.community()
    const lines = ['email,xp']
    for (let i = 0; i < 200; i++) lines.push(`first${i}@x.io,${i}`)
    const jobId = await queue(c.bearer, `${lines.join('\n')}\n`)
    await runBulkJob(t.deps, jobId)
    expect(await waitForJob(t, c.bearer, jobId)).toMatchObject({ status: 'completed', created: 200 })
    const chunks = await db()
      .selectFrom('bulk_job_chunks')
      .select(['chunk_no', 'started_at', 'booked_at'])
      .where('job_id', '=', jobId)
      .orderBy('chunk_no')
      .execute()
    expect(chunks).toHaveLength(40)
    const [first, ...rest] = chunks.map((ch) => ({ started: +ch.started_at!, booked: +ch.booked_at! }))
    for (const later of rest) expect(later.started).toBeGreaterThanOrEqual(first.booked)
    // Two chunks overlap when one began before the other booked its rows.
    const overlapping = rest.some((a, i) => rest.slice(i + 1).some((b) => b.started < a.booked))
    expect(overlapping).toBe(t.deps.database.kind === 'postgres')
  })

  it('keyed by external id, an email one chunk frees is taken by the next as in a one-by-one run', async () => {
    const c = await t.factory.externalIdCommunity()
    const ids: Record<string, string> = {}
    for (const k of ['A', 'B', 'C1', 'C2', 'C3', 'C4', 'C5', 'C6', 'C7', 'C8']) {
      ids[k] = (await t.factory.user(c.id, { email: `${k.toLowerCase()}@x.io`, externalId: k })).id
    }
    // Chunk 1 (rows 1-5) moves A off a@x.io in its last row; chunk 2 (rows 6-10) gives a@x.io to B
    // in its first. Their keys and new emails differ: only the table knows a@x.io is A's.
    const file =
      'crm_id,email,xp\nC1,,1\nC2,,1\nC3,,1\nC4,,1\nA,a2@x.io,1\nB,a@x.io,1\nC5,,1\nC6,,1\nC7,,1\nC8,,1\n'
    const res = await upload(t, '/apis/v1/users/bulk-update', c.bearer, { file })
    expect(res.statusCode, res.body).toBe(200)
    const jobId = res.json().data.jobId
    await runBulkJob(t.deps, jobId)
    expect(await waitForJob(t, c.bearer, jobId)).toMatchObject({
      status: 'completed',
      updated: 10,
      failed: 0,
    })
    const emails = await db()
      .selectFrom('users')
      .select(['id', 'email'])
      .where('id', 'in', [ids.A, ids.B])
      .execute()
    expect(Object.fromEntries(emails.map((u) => [u.id, u.email]))).toEqual({
      [ids.A]: 'a2@x.io',
      [ids.B]: 'a@x.io',
    })

    // The other way round: chunk 1 asks for an email A still holds; chunk 2 frees it too late.
    const back =
      'crm_id,email,xp\nC1,,2\nC2,,2\nC3,,2\nC4,,2\nC5,a2@x.io,2\nA,a3@x.io,2\nC6,,2\nC7,,2\nC8,,2\nB,,2\n'
    const res2 = await upload(t, '/apis/v1/users/bulk-update', c.bearer, { file: back })
    const jobId2 = res2.json().data.jobId
    await runBulkJob(t.deps, jobId2)
    expect(await waitForJob(t, c.bearer, jobId2)).toMatchObject({ updated: 9, failed: 1 })
    const c5 = await db()
      .selectFrom('users')
      .select('email')
      .where('id', '=', ids.C5)
      .executeTakeFirstOrThrow()
    expect(c5.email).toBe('c5@x.io')
  })
})

describe('usernames in chunks in flight at once', () => {
  it('a name one chunk frees is free for the next, and a name one chunk takes first stays taken', async () => {
    const c = await t.factory.community()
    // Odd pairs' names are equal only as the database lowers them ('İVAN' is 'ivan' to it).
    const held = (k: number) => (k % 2 ? `ivan${k}` : `x${k}`)
    const given = (k: number) => (k % 2 ? `İVAN${k}` : `X${k}`)
    for (let k = 0; k < 4; k++) {
      await t.factory.user(c.id, { email: `x${k}@x.io`, username: held(k) })
      await t.factory.user(c.id, { email: `y${k}@x.io`, username: `y${k}` })
    }
    const fillers = (tag: string) => Array.from({ length: 4 }, (_, i) => `${tag}-${i}@x.io,`)
    // Chunks of 5. The first runs alone; then, in pairs of neighbouring chunks: x_k leaves its name
    // in the last row of one chunk and n_k takes it (another case) in the first row of the next;
    // m_k asks for y_k's name in the last row of one chunk and y_k leaves it only in the next.
    const lines = ['email,username', ...fillers('first'), 'first-4@x.io,']
    for (let k = 0; k < 4; k++) {
      lines.push(...fillers(`a${k}`), `x${k}@x.io,x${k}-moved`)
      lines.push(`n${k}@x.io,${given(k)}`, ...fillers(`b${k}`))
      lines.push(...fillers(`c${k}`), `m${k}@x.io,y${k}`)
      lines.push(`y${k}@x.io,y${k}-moved`, ...fillers(`d${k}`))
    }
    const jobId = await queue(c.bearer, `${lines.join('\n')}\n`)
    await runBulkJob(t.deps, jobId)
    expect(await waitForJob(t, c.bearer, jobId)).toMatchObject({ status: 'completed_with_errors', failed: 4 })
    const rows = await detailRows(t, c.bearer, jobId, 'limit=100')
    expect(rows.filter((r) => r.action === 'failed').map((r) => [r.key, r.error?.code])).toEqual(
      [0, 1, 2, 3].map((k) => [`m${k}@x.io`, 'username_taken']),
    )
    const names = await db()
      .selectFrom('users')
      .select(['email', 'username'])
      .where('community_id', '=', c.id)
      .where('email', '~', '^[xyn][0-9]@')
      .orderBy('email')
      .execute()
    expect(names).toEqual(
      [0, 1, 2, 3]
        .flatMap((k) => [
          { email: `n${k}@x.io`, username: given(k) },
          { email: `x${k}@x.io`, username: `x${k}-moved` },
          { email: `y${k}@x.io`, username: `y${k}-moved` },
        ])
        .sort((a, b) => a.email.localeCompare(b.email)),
    )
  })
})

describe('resuming a job', () => {
  it('skips exactly the rows of chunks already committed, even past a gap, and applies the rest once', async () => {
    const c = await t.factory.community()
    const lines = ['email,xp']
    for (let i = 1; i <= 20; i++) lines.push(`r${i}@x.io,${i}`)
    // As if an earlier attempt had committed rows 6-10 (a chunk that finished before the one in
    // front of it) and then died.
    const jobId = await queue(c.bearer, `${lines.join('\n')}\n`)
    await db()
      .insertInto('bulk_job_chunks')
      .values({
        community_id: c.id,
        job_id: jobId,
        chunk_no: 1,
        first_row: 6,
        lines: [7, 8, 9, 10, 11],
        keys: ['r6@x.io', 'r7@x.io', 'r8@x.io', 'r9@x.io', 'r10@x.io'],
        actions: 'sssss',
      })
      .execute()
    await db().updateTable('bulk_jobs').set({ processed: 5, skipped: 5 }).where('id', '=', jobId).execute()
    await runBulkJob(t.deps, jobId)

    const job = await db()
      .selectFrom('bulk_jobs')
      .selectAll()
      .where('id', '=', jobId)
      .executeTakeFirstOrThrow()
    expect(job).toMatchObject({ status: 'completed', processed: 20, created: 15, skipped: 5, failed: 0 })
    const emails = (
      await db().selectFrom('users').select('email').where('community_id', '=', c.id).execute()
    ).map((u) => u.email)
    expect(emails.sort()).toEqual(
      [1, 2, 3, 4, 5, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20].map((i) => `r${i}@x.io`).sort(),
    )
    const chunks = await db()
      .selectFrom('bulk_job_chunks')
      .select(['chunk_no', 'first_row'])
      .where('job_id', '=', jobId)
      .orderBy('first_row')
      .execute()
    // Rows 1-5 became a chunk of their own (the committed chunk closed it); numbering went on after it.
    expect(chunks.map((ch) => ch.first_row)).toEqual([1, 6, 11, 16])
    expect(new Set(chunks.map((ch) => ch.chunk_no)).size).toBe(4)
  })
})

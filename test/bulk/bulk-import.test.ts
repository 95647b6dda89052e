import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { detailRows, IMPORT, runJob, upload } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

let t: TestApp
beforeAll(async () => {
  t = await startTestApp({ worker: true })
})
afterAll(() => t.close())

async function usersOf(communityId: string) {
  return t.deps.database.db
    .selectFrom('users')
    .select(['email', 'username', 'first_name', 'xp', 'coins', 'custom_fields'])
    .where('community_id', '=', communityId)
    .orderBy('email')
    .execute()
}

describe('POST /apis/v1/users/bulk-import', () => {
  it('answers at once in the documented envelope and imports the rows in the background', async () => {
    const c = await t.factory.community()
    const res = await upload(t, IMPORT, c.bearer, {
      file: 'email,username,first_name,xp\na@x.io,ann,Ann,10\nb@x.io,bob,Bob,\n',
    })
    expect(res.statusCode).toBe(200)
    const body = res.json()
    expect(body.status).toBe('success')
    expect(body.message).toBe('Bulk import user process is queued')
    expect(body.data.message).toBe(
      'Bulk import user process is queued. You can check in Api Log ( community settings )',
    )
    expect(body.data.jobId).toMatch(/^[0-9a-f]{24}$/)
  })

  it('creates users once: importing the same file twice creates nothing twice', async () => {
    const c = await t.factory.community()
    const file = 'email,username,first_name,xp,coins\nA@x.io,ann,Ann,10,5\nb@x.io,bob,Bob,,\n'
    const first = await runJob(t, IMPORT, c.bearer, { file })
    expect(first).toMatchObject({
      status: 'completed',
      total: 2,
      processed: 2,
      created: 2,
      updated: 0,
      failed: 0,
      percentage: 100,
    })
    const second = await runJob(t, IMPORT, c.bearer, { file })
    expect(second).toMatchObject({ status: 'completed', total: 2, created: 0, skipped: 2, failed: 0 })
    const users = await usersOf(c.id)
    expect(users).toEqual([
      { email: 'a@x.io', username: 'ann', first_name: 'Ann', xp: 10, coins: 5, custom_fields: {} },
      { email: 'b@x.io', username: 'bob', first_name: 'Bob', xp: 0, coins: 0, custom_fields: {} },
    ])
    const ledger = await t.deps.database.db
      .selectFrom('currency_ledger')
      .select(['currency', 'amount', 'balance_after'])
      .where('community_id', '=', c.id)
      .orderBy('currency')
      .execute()
    expect(ledger).toEqual([
      { currency: 'coins', amount: 5, balance_after: 5 },
      { currency: 'xp', amount: 10, balance_after: 10 },
    ])
  })
})

describe('usernames', () => {
  it('name one user of the community, in any case: a row giving a taken one fails username_taken', async () => {
    const c = await t.factory.community()
    const other = await t.factory.community()
    await t.factory.user(c.id, { email: 'held@x.io', username: 'Taken' })
    // Another community's user may hold the same name.
    await t.factory.user(other.id, { email: 'else@x.io', username: 'fresh' })
    const file = 'email,username\na@x.io,taken\nb@x.io,fresh\nc@x.io,FRESH\nheld@x.io,TAKEN\n'
    const job = await runJob(t, IMPORT, c.bearer, { file })
    expect(job).toMatchObject({ status: 'completed_with_errors', created: 1, updated: 1, failed: 2 })
    const rows = await detailRows(t, c.bearer, job.jobId, 'limit=100')
    const failure = {
      action: 'failed',
      error: { code: 'username_taken', field: 'username', message: 'Another user already has this username' },
    }
    expect(rows.map((r) => ({ line: r.line, action: r.action, error: r.error ?? undefined }))).toEqual([
      { line: 2, ...failure },
      { line: 3, action: 'created', error: undefined },
      { line: 4, ...failure },
      { line: 5, action: 'updated', error: undefined },
    ])
    expect((await usersOf(c.id)).map((u) => [u.email, u.username])).toEqual([
      ['b@x.io', 'fresh'],
      ['held@x.io', 'TAKEN'],
    ])
  })
})

describe('chunks of long rows', () => {
  let small: TestApp
  beforeAll(async () => {
    small = await startTestApp({ worker: true, env: { BULK_CHUNK_CHARS: '2000' } })
  })
  afterAll(() => small.close())

  it('end when their rows hold BULK_CHUNK_CHARS characters, however few the rows, and apply every row once', async () => {
    const c = await small.factory.community()
    const about = 'x'.repeat(493) // with the email and two separators: 502 characters a row
    const rows = Array.from({ length: 10 }, (_, i) => `u${i}@x.io,${about}`)
    const job = await runJob(small, IMPORT, c.bearer, { file: `email,first_name\n${rows.join('\n')}\n` })
    expect(job).toMatchObject({ status: 'completed', created: 10, processed: 10 })
    const chunks = await small.deps.database.db
      .selectFrom('bulk_job_chunks')
      .select(['first_row', 'actions'])
      .where('job_id', '=', job.jobId)
      .orderBy('chunk_no')
      .execute()
    // Four rows reach 2,000 characters and close a chunk (the row count limit is 5,000 or more).
    expect(chunks.map((ch) => [ch.first_row, ch.actions.length])).toEqual([
      [1, 4],
      [5, 4],
      [9, 2],
    ])
  })
})

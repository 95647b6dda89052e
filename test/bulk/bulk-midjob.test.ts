import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runBulkJob } from '../../src/modules/bulk/bulk.runner.ts'
import { detailRows, failedRows, upload, waitForJob } from '../support/bulk.ts'
import { slowChunks, untilProcessed as untilProcessedIn } from '../support/faults.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * What happens when something changes while a job applies its rows (chunks of 2, slowed down, so
 * the change lands while rows remain):
 * - a cancel: the chunks already committed stay applied, the chunk in flight rolls back, no later
 *   row applies, and the counts, details and ledger say exactly that;
 * - the field definitions: a job's columns are planned when it starts, and an admin who deletes or
 *   changes a custom field the job writes, or the community's identifier field, stops it
 *   (`fields_changed`): no later row writes a value under a field that is gone. A job resumed after
 *   a stop plans from the definitions it started with, so it notices too.
 */

let t: TestApp
beforeAll(async () => {
  // Chunks of 2 rows, one at a time; no background worker: each test runs its job itself.
  t = await startTestApp({ env: { BULK_CHUNK_ROWS: '2', BULK_PARALLEL_CHUNKS: '1' } })
  // Each chunk takes a while, so a change made after the first chunks lands while rows remain.
  await slowChunks(db(), 0.15)
})
afterAll(() => t.close())

const ROWS = 12
const db = () => t.deps.database.db

async function queue(path: string, auth: Record<string, string>, csv: string): Promise<string> {
  const res = await upload(t, path, auth, { file: csv })
  expect(res.statusCode, res.body).toBe(200)
  return res.json().data.jobId
}

const untilProcessed = (jobId: string, rows: number) => untilProcessedIn(db(), jobId, rows)

function deleteField(c: { id: string; bearer: Record<string, string> }, fieldId: string) {
  return t.app.inject({
    method: 'DELETE',
    url: `/apis/v1/communities/${c.id}/user-fields/${fieldId}`,
    headers: c.bearer,
  })
}

async function usersHolding(communityId: string, field: string) {
  const r = await db()
    .selectFrom('users')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('community_id', '=', communityId)
    .where(sql<boolean>`custom_fields ? ${field}`)
    .executeTakeFirstOrThrow()
  return Number(r.n)
}

const tierFile = (tier = 'gold') =>
  `email,first_name,tier\n${Array.from({ length: ROWS }, (_, i) => `g${i}@x.io,G${i},${tier}`).join('\n')}\n`

describe('field definitions changed while a job runs', () => {
  it('a custom field deleted mid-job stops the job: no later row writes it', async () => {
    const c = await t.factory.community()
    const tier = await t.factory.userField(c.id, 'tier')
    const jobId = await queue('/apis/v1/users/bulk-import', c.bearer, tierFile())
    const run = runBulkJob(t.deps, jobId)
    await untilProcessed(jobId, 2)
    expect((await deleteField(c, tier)).statusCode).toBe(200)
    await run

    const job = await waitForJob(t, c.bearer, jobId)
    expect(job.status).toBe('failed')
    expect(job.error).toEqual({
      code: 'fields_changed',
      message: expect.stringMatching(
        /^The custom field "tier" was deleted while this job ran\. The job stopped/,
      ),
    })
    expect(job.processed).toBeGreaterThanOrEqual(2)
    expect(job.processed).toBeLessThan(ROWS)
    // The rows it processed were applied; none after them was.
    const users = await db().selectFrom('users').select('email').where('community_id', '=', c.id).execute()
    expect(users).toHaveLength(job.processed)
    // The delete took the value from the users it had reached; no later chunk wrote it again.
    expect(await usersHolding(c.id, 'tier')).toBe(0)
    // The rows it never reached are in the failed-rows CSV, to upload again once the field is back.
    const csv = (await failedRowsCsv(c.bearer, jobId)).trim().split(/\r?\n/)
    expect(csv[0]).toBe('email,first_name,tier,line,error')
    expect(csv.slice(1)).toEqual(
      Array.from(
        { length: ROWS - job.processed },
        (_, k) =>
          `g${job.processed + k}@x.io,G${job.processed + k},gold,${job.processed + k + 2},not_applied: The job failed before reaching this row: it was not applied`,
      ),
    )
  })

  it('a job resumed after a stop plans from the definitions it started with, and notices the change', async () => {
    const c = await t.factory.community()
    const tier = await t.factory.userField(c.id, 'tier')
    const jobId = await queue('/apis/v1/users/bulk-import', c.bearer, tierFile())
    // The first attempt stops after a few chunks, as on a graceful shutdown (the lease is handed back).
    const shutdown = new AbortController()
    const firstAttempt = runBulkJob({ ...t.deps, shutdown }, jobId)
    await untilProcessed(jobId, 2)
    shutdown.abort()
    await firstAttempt
    const stopped = await waitForJobState(jobId)
    expect(stopped.status).toBe('processing')
    expect(stopped.processed).toBeLessThan(ROWS)

    expect((await deleteField(c, tier)).statusCode).toBe(200)
    // Planned from today's definitions, "tier" would be an unknown column and the job would complete.
    await runBulkJob(t.deps, jobId)
    const job = await waitForJob(t, c.bearer, jobId)
    expect(job).toMatchObject({ status: 'failed', processed: stopped.processed })
    expect(job.error.code).toBe('fields_changed')
    expect(await usersHolding(c.id, 'tier')).toBe(0)
  })

  it('a field whose kind changes mid-job stops the job', async () => {
    const c = await t.factory.community()
    const tier = await t.factory.userField(c.id, 'tier')
    const jobId = await queue('/apis/v1/users/bulk-import', c.bearer, tierFile('7'))
    const run = runBulkJob(t.deps, jobId)
    await untilProcessed(jobId, 2)
    const res = await t.app.inject({
      method: 'PUT',
      url: `/apis/v1/communities/${c.id}/user-fields/${tier}`,
      headers: c.bearer,
      payload: { name: 'Tier', type: 'number' },
    })
    expect(res.statusCode, res.body).toBe(200)
    await run
    const job = await waitForJob(t, c.bearer, jobId)
    expect(job.status).toBe('failed')
    expect(job.error.message).toMatch(/^The custom field "tier" changed type \(text to number\)/)
    expect(job.processed).toBeLessThan(ROWS)
  })

  it('with chunks applied two at a time (PostgreSQL), a field change waits only for the chunks in flight', async () => {
    // Overlapping chunks always hold the definitions lock between them: a change must still get its
    // turn (a fair lock queue), not wait for the whole job to end.
    const p = await startTestApp({ env: { BULK_CHUNK_ROWS: '2', BULK_PARALLEL_CHUNKS: '2' } })
    try {
      await slowChunks(p.deps.database.db, 0.2)
      const c = await p.factory.community()
      const tier = await p.factory.userField(c.id, 'tier')
      const rows = Array.from({ length: 40 }, (_, i) => `p${i}@x.io,gold`)
      const res = await upload(p, '/apis/v1/users/bulk-import', c.bearer, {
        file: `email,tier\n${rows.join('\n')}\n`,
      })
      expect(res.statusCode, res.body).toBe(200)
      const { jobId } = res.json().data
      const run = runBulkJob(p.deps, jobId)
      await untilProcessedIn(p.deps.database.db, jobId, 6)
      const removed = await p.app.inject({
        method: 'DELETE',
        url: `/apis/v1/communities/${c.id}/user-fields/${tier}`,
        headers: c.bearer,
      })
      expect(removed.statusCode, removed.body).toBe(200)
      await run
      const job = await waitForJob(p, c.bearer, jobId)
      expect(job).toMatchObject({ status: 'failed', error: { code: 'fields_changed' } })
      expect(job.processed).toBeLessThan(40)
    } finally {
      await p.close()
    }
  })

  it("the community's identifier field changed mid-job stops a job keyed by it", async () => {
    const c = await t.factory.externalIdCommunity('crm_id')
    await t.factory.userField(c.id, 'account_no')
    const lines = Array.from({ length: ROWS }, (_, i) => `CRM${i},e${i}@x.io,A${i}`)
    const jobId = await queue(
      '/apis/v1/users/bulk-import',
      c.bearer,
      `crm_id,email,account_no\n${lines.join('\n')}\n`,
    )
    const run = runBulkJob(t.deps, jobId)
    await untilProcessed(jobId, 2)
    const res = await t.app.inject({
      method: 'PUT',
      url: `/api/v1/servers/${c.id}`,
      headers: { 'x-api-key': c.systemKey },
      payload: { identifierField: 'account_no' },
    })
    expect(res.statusCode, res.body).toBe(200)
    await run
    const job = await waitForJob(t, c.bearer, jobId)
    expect(job.status).toBe('failed')
    expect(job.error.message).toMatch(
      /^The community's identifier field changed from "crm_id" to "account_no"/,
    )
    const users = await db()
      .selectFrom('users')
      .select('external_id')
      .where('community_id', '=', c.id)
      .execute()
    expect(users).toHaveLength(job.processed)
    expect(users.every((u) => u.external_id?.startsWith('CRM'))).toBe(true)
  })

  it('a field created mid-job for an unknown column is not written: the plan stays as it started', async () => {
    const c = await t.factory.community()
    const jobId = await queue('/apis/v1/users/bulk-import', c.bearer, tierFile())
    const run = runBulkJob(t.deps, jobId)
    await untilProcessed(jobId, 2)
    await t.factory.userField(c.id, 'tier')
    await run
    const job = await waitForJob(t, c.bearer, jobId)
    expect(job).toMatchObject({ status: 'completed', created: ROWS, error: null })
    expect(await usersHolding(c.id, 'tier')).toBe(0)
  })
})

describe('cancel while a job runs', () => {
  it('keeps the committed chunks, applies nothing after, and counts exactly what applied', async () => {
    const c = await t.factory.community()
    const lines = Array.from({ length: ROWS }, (_, i) => `m${i}@x.io,${i + 1}`)
    const res = await upload(t, '/apis/v1/users/bulk-import', c.bearer, {
      file: `email,xp\n${lines.join('\n')}\n`,
    })
    expect(res.statusCode, res.body).toBe(200)
    const { jobId } = res.json().data
    const run = runBulkJob(t.deps, jobId)
    await untilProcessed(jobId, 2)
    const cancel = await t.app.inject({
      method: 'POST',
      url: `/apis/v1/users/bulk-updates/${jobId}/cancel`,
      headers: c.bearer,
    })
    expect(cancel.statusCode, cancel.body).toBe(200)
    expect(cancel.json().data).toMatchObject({ cancelRequested: true })
    await run

    const job = await waitForJob(t, c.bearer, jobId)
    expect(job.status).toBe('cancelled')
    expect(job.processed).toBeGreaterThanOrEqual(2)
    expect(job.processed).toBeLessThan(ROWS)
    expect(job).toMatchObject({ created: job.processed, failed: 0 })
    // Exactly the first `processed` rows applied (one chunk at a time, in file order), each once.
    const users = await db()
      .selectFrom('users')
      .select(['email', 'xp'])
      .where('community_id', '=', c.id)
      .orderBy('xp')
      .execute()
    expect(users).toEqual(
      Array.from({ length: job.processed }, (_, i) => ({ email: `m${i}@x.io`, xp: i + 1 })),
    )
    const ledger = await db()
      .selectFrom('currency_ledger')
      .select('amount')
      .where('community_id', '=', c.id)
      .where('currency', '=', 'xp')
      .execute()
    expect(ledger).toHaveLength(job.processed)
    const details = await detailRows(t, c.bearer, jobId, 'limit=100')
    expect(details.map((r) => r.action)).toEqual(Array(job.processed).fill('created'))
    expect(await failedRows(t, c.bearer, jobId)).toEqual([])
  })

  it('its failed-rows CSV gives the failed rows and the rows it never reached, in file order: uploaded again, they apply the rest once', async () => {
    const N = 40 // enough chunks left to look at the CSV while the job runs, then cancel
    const c = await t.factory.community()
    const users = []
    for (let i = 0; i < N; i++) users.push(await t.factory.user(c.id, { email: `n${i}@x.io` }))
    // Row 2 names no user: it fails. The last row has a cell too many: cut to the header's width it
    // would read as sound, so it must keep failing until fixed. Adding 10 twice would show in a balance.
    const rows = users.map((u, i) => (i === 1 ? 'nobody@x.io,add,10' : `${u.email},add,10`))
    rows[N - 1] += ',oops'
    const res = await upload(t, '/apis/v1/users/bulk-update', c.bearer, {
      file: `email,xp_op,xp\n${rows.join('\n')}\n`,
    })
    expect(res.statusCode, res.body).toBe(200)
    const { jobId } = res.json().data
    const run = runBulkJob(t.deps, jobId)
    await untilProcessed(jobId, 4)
    // While the job runs, the CSV holds only what failed so far.
    expect(csvRows(await failedRowsCsv(c.bearer, jobId))).toEqual([
      ['nobody@x.io', 'add', '10', '3', 'user_not_found'],
    ])
    await cancel(c.bearer, jobId)
    await run
    const job = await waitForJob(t, c.bearer, jobId)
    expect(job).toMatchObject({
      status: 'cancelled',
      failed: 1,
      updated: job.processed - 1,
      unreachedRowsInCsv: true,
    })
    const logged = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/communities/${c.id}/api-logs`,
      headers: c.bearer,
    })
    expect(logged.statusCode, logged.body).toBe(200)
    expect(logged.json().data.map((l: any) => l.bulkJob)).toContainEqual(
      expect.objectContaining({ _id: jobId, status: 'cancelled', unreachedRowsInCsv: true }),
    )
    expect(job.processed).toBeLessThan(N)

    const csv = await failedRowsCsv(c.bearer, jobId)
    const notReached = users
      .slice(job.processed, N - 1)
      .map((u, k) => [u.email, 'add', '10', String(job.processed + k + 2), 'not_applied'])
    const lines = csv.trimEnd().split('\r\n')
    expect(csvRows(lines.slice(0, -1).join('\r\n'))).toEqual([
      ['nobody@x.io', 'add', '10', '3', 'user_not_found'],
      ...notReached,
    ])
    expect(csv).toContain('not_applied: The job was cancelled before reaching this row: it was not applied')
    expect(lines.at(-1)).toBe(
      `"n${N - 1}@x.io,add,10,oops",,,${N + 1},"column_count_mismatch: Expected 3 cells as in the header, found 4. All the row's cells are in the first column, joined by commas: split them into the header's columns"`,
    )

    const again = await upload(t, '/apis/v1/users/bulk-update', c.bearer, { file: csv })
    expect(again.statusCode, again.body).toBe(200)
    await runBulkJob(t.deps, again.json().data.jobId)
    expect(await waitForJob(t, c.bearer, again.json().data.jobId)).toMatchObject({
      status: 'completed_with_errors',
      updated: N - 1 - job.processed,
      failed: 2,
      unreachedRowsInCsv: false,
    })
    const balances = await db().selectFrom('users').select('xp').where('community_id', '=', c.id).execute()
    expect(balances.map((b) => b.xp).sort()).toEqual([0, 0, ...Array(N - 2).fill(10)])
  })
})

function cancel(auth: Record<string, string>, jobId: string) {
  return t.app
    .inject({ method: 'POST', url: `/apis/v1/users/bulk-updates/${jobId}/cancel`, headers: auth })
    .then((r) => expect(r.statusCode, r.body).toBe(200))
}

async function failedRowsCsv(auth: Record<string, string>, jobId: string): Promise<string> {
  const res = await t.app.inject({
    method: 'GET',
    url: `/apis/v1/users/bulk-updates/${jobId}/details?format=csv`,
    headers: auth,
  })
  expect(res.statusCode).toBe(200)
  return res.body
}

/** The data rows of a failed-rows CSV of `email,xp_op,xp,line,error`: the cells, then the error's code. */
function csvRows(csv: string): string[][] {
  const [header, ...lines] = csv.trim().split(/\r?\n/)
  expect(header).toBe('email,xp_op,xp,line,error')
  return lines.map((l) => {
    const m = /^([^,]*),([^,]*),([^,]*),(\d+),"?([a-z_]+):/.exec(l)
    if (!m) throw new Error(`unexpected line ${l}`)
    return m.slice(1)
  })
}

/** The job's row as it is now (the status endpoint needs a key; this reads the table). */
function waitForJobState(jobId: string) {
  return db()
    .selectFrom('bulk_jobs')
    .select(['status', 'processed'])
    .where('id', '=', jobId)
    .executeTakeFirstOrThrow()
}

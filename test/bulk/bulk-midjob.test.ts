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
    await db()
      .updateTable('communities')
      .set({ identifier_field: 'account_no' })
      .where('id', '=', c.id)
      .execute()
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
})

/** The job's row as it is now (the status endpoint needs a key; this reads the table). */
function waitForJobState(jobId: string) {
  return db()
    .selectFrom('bulk_jobs')
    .select(['status', 'processed'])
    .where('id', '=', jobId)
    .executeTakeFirstOrThrow()
}

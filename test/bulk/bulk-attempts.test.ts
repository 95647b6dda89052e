import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runBulkJob } from '../../src/modules/bulk/bulk.runner.ts'
import { IMPORT, upload, waitForJob } from '../support/bulk.ts'
import { databaseFaults } from '../support/faults.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * How many times a job may break off before it fails `too_many_attempts`: five attempts in a row
 * that commit nothing. A worker stopping gracefully, and an attempt that commits chunks before it
 * breaks, do not use the job up.
 */

let t: TestApp
beforeAll(async () => {
  // No background worker: each test runs its job's attempts itself. Chunks of 2 rows, one at a time.
  t = await startTestApp({ env: { BULK_CHUNK_ROWS: '2', BULK_PARALLEL_CHUNKS: '1' } })
})
afterAll(() => t.close())

const db = () => t.deps.database.db

async function queue(auth: Record<string, string>, rows: number): Promise<string> {
  const lines = ['email,first_name']
  for (let i = 0; i < rows; i++) lines.push(`u${i}@attempts.test,U${i}`)
  const res = await upload(t, IMPORT, auth, { file: `${lines.join('\n')}\n` })
  expect(res.statusCode, res.body).toBe(200)
  return res.json().data.jobId
}

const jobRow = (jobId: string) =>
  db()
    .selectFrom('bulk_jobs')
    .select(['status', 'attempts', 'processed', 'error_code'])
    .where('id', '=', jobId)
    .executeTakeFirstOrThrow()

/** One attempt that breaks off with an error, then its lease expires as a dead worker's would. */
async function attemptThatBreaksOff(jobId: string) {
  await expect(runBulkJob(t.deps, jobId)).rejects.toThrow('simulated failure')
  await db()
    .updateTable('bulk_jobs')
    .set({ lease_until: sql`now() - interval '1 second'` })
    .where('id', '=', jobId)
    .execute()
}

describe('attempts of a bulk job', () => {
  it('a worker shutting down gracefully hands the attempt back: seven stops, then the job completes', async () => {
    const c = await t.factory.community()
    const jobId = await queue(c.bearer, 6)
    const stopping = new AbortController()
    stopping.abort()
    for (let i = 0; i < 7; i++) await runBulkJob({ ...t.deps, shutdown: stopping }, jobId)
    expect(await jobRow(jobId)).toMatchObject({ attempts: 0, processed: 0, error_code: null })
    await runBulkJob(t.deps, jobId)
    expect(await waitForJob(t, c.bearer, jobId)).toMatchObject({ status: 'completed', created: 6 })
  })

  it('five attempts in a row that commit nothing fail the job; the rows committed before stay', async () => {
    const c = await t.factory.community()
    const jobId = await queue(c.bearer, 6)
    const faults = databaseFaults(db, 'users')
    // Rows 1-2 (the first chunk) go in; every insert after them fails, as a broken database would.
    await faults.failWhen(`NEW.email NOT IN ('u0@attempts.test', 'u1@attempts.test')`, 'XX000', 'INSERT')
    try {
      await attemptThatBreaksOff(jobId) // commits chunk 1, breaks on chunk 2
      for (let i = 0; i < 5; i++) await attemptThatBreaksOff(jobId)
      expect(await jobRow(jobId)).toMatchObject({ status: 'processing', attempts: 5, processed: 2 })
      await runBulkJob(t.deps, jobId) // a sixth in a row is not run
    } finally {
      await faults.stop()
    }
    expect(await waitForJob(t, c.bearer, jobId)).toMatchObject({
      status: 'failed',
      processed: 2,
      created: 2,
      error: { code: 'too_many_attempts' },
    })
  })

  it('a job that breaks off after every committed chunk still finishes: eight attempts for eight chunks', async () => {
    const c = await t.factory.community()
    const jobId = await queue(c.bearer, 16)
    const faults = databaseFaults(db, 'users')
    // Every third insert fails: each attempt commits one 2-row chunk, then breaks on the next.
    await sql`CREATE SEQUENCE IF NOT EXISTS test_fault_calls`.execute(db())
    await sql`SELECT setval('test_fault_calls', 1, false)`.execute(db())
    await faults.failWhen(`nextval('test_fault_calls') % 3 = 0`, 'XX000', 'INSERT')
    try {
      for (let i = 0; i < 7; i++) await attemptThatBreaksOff(jobId)
      expect(await jobRow(jobId)).toMatchObject({ status: 'processing', processed: 14 })
      await runBulkJob(t.deps, jobId)
    } finally {
      await faults.stop()
    }
    expect(await waitForJob(t, c.bearer, jobId)).toMatchObject({
      status: 'completed',
      processed: 16,
      created: 16,
      failed: 0,
    })
  })
})

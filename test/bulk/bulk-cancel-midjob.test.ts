import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runBulkJob } from '../../src/modules/bulk/bulk.runner.ts'
import { detailRows, failedRows, upload, waitForJob } from '../support/bulk.ts'
import { slowChunks, untilProcessed } from '../support/faults.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * Cancelling a job while it applies rows: the chunks already committed stay applied, the chunk in
 * flight is rolled back, no later row applies, and the counts, details and ledger say exactly that.
 */

let t: TestApp
beforeAll(async () => {
  // Chunks of 2 rows, one at a time, each slowed down, so the cancel lands while rows remain.
  t = await startTestApp({ env: { BULK_CHUNK_ROWS: '2', BULK_PARALLEL_CHUNKS: '1' } })
  await slowChunks(db(), 0.15)
})
afterAll(() => t.close())

const ROWS = 12
const db = () => t.deps.database.db

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
    await untilProcessed(db(), jobId, 2)
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

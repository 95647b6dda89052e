import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sweepStalledJobs } from '../../src/modules/bulk/bulk.jobs.ts'
import { upload } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/** The sweeper's re-enqueues: at once for a job whose worker died, throttled for a job left queued. */

let t: TestApp
beforeAll(async () => {
  t = await startTestApp() // no worker: messages stay in the queue to be counted
})
afterAll(() => t.close())

const db = () => t.deps.database.db

async function queuedJob(): Promise<string> {
  const c = await t.factory.community()
  const res = await upload(t, '/apis/v1/users/bulk-import', c.bearer, { file: 'email\nann@sweep.test\n' })
  expect(res.statusCode, res.body).toBe(200)
  return res.json().data.jobId
}

async function messagesFor(jobId: string): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'bulk.run' AND data->>'jobId' = ${jobId}`.execute(
    db(),
  )
  return rows[0].n
}

describe('the bulk sweeper', () => {
  it('re-enqueues a job left queued past ten minutes once per ten minutes, a job whose lease lapsed at every sweep', async () => {
    const waiting = await queuedJob()
    const orphaned = await queuedJob()
    await db()
      .updateTable('bulk_jobs')
      .set({ created_at: sql`now() - interval '11 minutes'` })
      .where('id', '=', waiting)
      .execute()
    await db()
      .updateTable('bulk_jobs')
      .set({
        status: 'processing',
        lease_owner: 'dead-worker',
        lease_until: sql`now() - interval '1 second'`,
      })
      .where('id', '=', orphaned)
      .execute()
    expect([await messagesFor(waiting), await messagesFor(orphaned)]).toEqual([1, 1])
    for (let i = 0; i < 3; i++) await sweepStalledJobs(t.deps, () => {})
    // The upload's message, then one sweep's; the dead worker's job at each of the three sweeps.
    expect([await messagesFor(waiting), await messagesFor(orphaned)]).toEqual([2, 4])
  })
})

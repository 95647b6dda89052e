import { sql } from 'kysely'
import type { AppDeps } from '../../lib/deps.ts'
import { deleteAbandonedUploads } from './bulk.files.ts'
import { runBulkJob } from './bulk.runner.ts'

/**
 * Worker side of bulk jobs: the queue handler, and a sweeper that re-enqueues jobs whose worker
 * died (lease expired) or whose queue message was lost, so every job finishes, and deletes the
 * pieces of uploads abandoned when their API process died.
 */
export async function startBulkWorker(deps: AppDeps, log: (m: string) => void): Promise<() => void> {
  await deps.queue.work('bulk.run', { concurrency: deps.config.workerConcurrency }, async ({ jobId }) => {
    await runBulkJob(deps, jobId)
  })
  const sweep = () => sweepStalledJobs(deps, log)
  const every = Math.max(1, Math.min(15, deps.config.bulk.leaseSeconds)) * 1000
  const timer = setInterval(sweep, every)
  timer.unref()
  void sweep()
  return () => clearInterval(timer)
}

/**
 * Re-enqueues jobs whose worker died (lease expired) at once, and jobs still queued after ten
 * minutes (their message may have been lost) once per ten-minute slot of the clock each (pg-boss
 * singleton slots: two may come seconds apart across a slot's edge, which the lease makes a no-op):
 * a job that merely waits behind busy workers would otherwise gain a duplicate message every sweep.
 */
export async function sweepStalledJobs(deps: AppDeps, log: (m: string) => void) {
  try {
    const stale = await deps.database.db
      .selectFrom('bulk_jobs')
      .select(['id', 'lease_until'])
      .where('status', 'in', ['queued', 'validating', 'processing'])
      .where((eb) =>
        eb.or([
          eb('lease_until', '<', sql<Date>`now()`),
          eb.and([
            eb('lease_until', 'is', null),
            eb('created_at', '<', sql<Date>`now() - interval '10 minutes'`),
          ]),
        ]),
      )
      .limit(100)
      .execute()
    for (const { id, lease_until } of stale) {
      const opts = lease_until === null ? { oncePer: { key: `bulk.run:${id}`, seconds: 600 } } : {}
      await deps.queue.enqueue('bulk.run', { jobId: id }, opts)
    }
    if (stale.length) log(`re-enqueued ${stale.length} stalled bulk job(s)`)
    const abandoned = await deleteAbandonedUploads(deps.database.db)
    if (abandoned) log(`deleted ${abandoned} piece(s) of abandoned uploads`)
  } catch (err) {
    log(`bulk sweep failed: ${String(err)}`)
  }
}

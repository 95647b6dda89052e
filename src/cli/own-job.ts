import type { AppDeps } from '../lib/deps.ts'
import { runBulkJob } from '../modules/bulk/bulk.runner.ts'
import { describeError } from './commands.ts'

/**
 * `hearth import` without a running server applies its own job here, and only that job: a full
 * worker would also take other communities' jobs and the queue's mails (sent through this shell's
 * mailer, which is the log unless SMTP_URL is set, so they would be lost). When another worker holds
 * the job (a server on PostgreSQL), this one stands by and takes over if that worker's lease lapses.
 */
export function runOwnJob(deps: AppDeps, jobId: string, report: (line: string) => void) {
  let inFlight: Promise<void> | null = null
  // Who applies the job, as last said: the operator is told when another worker has it and when
  // this process takes it over (the progress lines read the same either way).
  let said: 'here' | 'elsewhere' | null = null
  const sayWhoHolds = async () => {
    const job = await deps.database.db
      .selectFrom('bulk_jobs')
      .select(['lease_owner', 'status'])
      .where('id', '=', jobId)
      .executeTakeFirst()
    if (!job || job.lease_owner === null || !(job.status === 'validating' || job.status === 'processing'))
      return
    const now = job.lease_owner === deps.instanceId ? 'here' : 'elsewhere'
    if (now === 'elsewhere' && said !== 'elsewhere') {
      report(`import ${jobId}: another worker is applying it; this one stands by and takes over if it stops`)
    } else if (now === 'here' && said === 'elsewhere') {
      report(`import ${jobId}: the other worker stopped; applying it here from its last committed chunk`)
    }
    said = now
  }
  return {
    /** Starts an attempt unless one runs here; it returns at once if another worker holds the job. */
    poke() {
      if (deps.shutdown.signal.aborted) return
      sayWhoHolds().catch(() => {}) // only words: a failed read is tried at the next poke
      if (inFlight) return
      inFlight = runBulkJob(deps, jobId)
        .catch((err) => report(`import ${jobId}: the attempt broke off (${describeError(err)}); it resumes`))
        .finally(() => {
          inFlight = null
        })
    },
    /** Stops after the chunk in flight, handing the job back for another worker to resume. */
    async stop() {
      deps.shutdown.abort()
      await inFlight
    },
  }
}

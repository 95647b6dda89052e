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
  return {
    /** Starts an attempt unless one runs here; it returns at once if another worker holds the job. */
    poke() {
      if (inFlight || deps.shutdown.signal.aborted) return
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

import type { AppDeps } from './lib/deps.ts'
import { startBulkWorker } from './modules/bulk/bulk.jobs.ts'

export interface WorkerOptions {
  log?: (msg: string) => void
}

/** Starts the job handlers of every module; returns a function that stops them. */
export async function startWorker(deps: AppDeps, opts: WorkerOptions = {}): Promise<() => Promise<void>> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`))
  await deps.queue.work('mail.send', { concurrency: 1 }, async (mail) => {
    await deps.mailer.send(mail)
  })
  const stopBulk = await startBulkWorker(deps, log)
  log('worker started')
  return async () => {
    stopBulk()
    await deps.queue.stop()
  }
}

import { resolve } from 'node:path'
import type { Config } from '../lib/config.ts'
import { acquireDataLock } from '../lib/data-lock.ts'
import { type JobView, TERMINAL } from '../modules/bulk/bulk.presenter.ts'
import { closeRuntime, createRuntime } from '../runtime.ts'
import { startWorker } from '../worker.ts'
import { type CommandArgs, commands } from './commands.ts'
import { sendControl } from './control.ts'

/**
 * `hearth import FILE --community ID`: the same job path as the HTTP upload. It asks a running
 * server (PGlite) or uses the database itself, runs a worker when no server will, draws a progress
 * bar on stderr and prints the final job as JSON on stdout.
 */
export async function runImport(config: Config, file: string | undefined, args: CommandArgs) {
  if (!file)
    throw new Error('Usage: hearth import FILE --community ID [--update|--premium-currency] [--dry-run]')
  const startArgs = { ...args, file: resolve(file) }
  let call: (name: string, a: CommandArgs) => Promise<unknown>
  let cleanup = async () => {}
  const remote = config.databaseUrl ? null : await sendControl(config.dataDir, 'import start', startArgs)
  let job: JobView
  if (remote) {
    job = remote as JobView
    call = async (name, a) => sendControl(config.dataDir, name, a)
  } else {
    const release = config.databaseUrl ? () => {} : acquireDataLock(config.dataDir)
    const deps = await createRuntime(config, { log: () => {} })
    const stopWorker = await startWorker(deps, { log: () => {} })
    call = (name, a) => commands[name](deps, a)
    cleanup = async () => {
      await stopWorker()
      await closeRuntime(deps).catch(() => {})
      release()
    }
    job = (await call('import start', startArgs)) as JobView
  }
  const progress = process.stderr.isTTY ? drawProgress : logProgress()
  try {
    while (!TERMINAL.has(job.status)) {
      progress(job)
      await new Promise((r) => setTimeout(r, 300))
      job = (await call('import status', { community: args.community, job: job.jobId })) as JobView
    }
    progress(job)
    if (process.stderr.isTTY) process.stderr.write('\n')
    process.stdout.write(`${JSON.stringify(job)}\n`)
    if (job.status === 'failed') process.exitCode = 1
  } finally {
    await cleanup()
  }
}

/** Without a terminal (a log, CI, a pipe): one line per 10 % step or change of state. */
function logProgress() {
  let last = ''
  return (job: JobView) => {
    const step = `${Math.floor(job.percentage / 10)} ${job.status}`
    if (step === last) return
    last = step
    process.stderr.write(
      `import ${job.jobId}: ${job.percentage.toFixed(1)}% ${job.processed}/${job.total} ${job.status}${pace(job)}\n`,
    )
  }
}

/** ', 12345 rows/s, ~3 min left' while a job processes. */
export function pace(job: JobView): string {
  if (job.status !== 'processing' || job.rowsPerSecond === null) return ''
  const left = job.secondsLeft
  const eta =
    left === null ? '' : left < 60 ? `, ~${Math.max(1, left)} s left` : `, ~${Math.round(left / 60)} min left`
  return `, ${job.rowsPerSecond} rows/s${eta}`
}

function drawProgress(job: JobView) {
  const width = 30
  const filled = Math.round((job.percentage / 100) * width)
  const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`
  process.stderr.write(
    `\r[${bar}] ${job.percentage.toFixed(1)}% ${job.processed}/${job.total} ${job.status}${pace(job)}   `,
  )
}

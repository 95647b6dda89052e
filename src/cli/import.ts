import { resolve } from 'node:path'
import type { Config } from '../lib/config.ts'
import { acquireDataLock } from '../lib/data-lock.ts'
import { type JobView, TERMINAL } from '../modules/bulk/bulk.presenter.ts'
import { closeRuntime, createRuntime } from '../runtime.ts'
import { startWorker } from '../worker.ts'
import {
  type CommandArgs,
  commands,
  describeError,
  importType,
  requireReadableFile,
  str,
} from './commands.ts'
import { sendControl } from './control.ts'

/**
 * Exit codes of `hearth import` for a job that did not run to its end. Otherwise 0 once the job
 * completed (rows that failed alone are counted in the summary, not in the exit code), and 1 when
 * no job could start (a bad option, a missing file, an unknown community: the reason in one line).
 */
export const IMPORT_EXIT = { failed: 2, cancelled: 3 } as const

const USAGE = 'Usage: hearth import FILE --community ID [--update|--premium-currency] [--dry-run]'

/**
 * `hearth import FILE --community ID`: the same job path as the HTTP upload. It asks a running
 * server (PGlite) or uses the database itself, runs a worker when no server will, draws a progress
 * bar on stderr, prints the final job as JSON on stdout and a one-line summary on stderr.
 */
export async function runImport(config: Config, file: string | undefined, args: CommandArgs) {
  if (!file) throw new Error(USAGE)
  // What can be refused without the database is refused before opening it.
  str(args, 'community')
  importType(args)
  const startArgs = { ...args, file: resolve(file) }
  await requireReadableFile(startArgs.file)

  let call: (name: string, a: CommandArgs) => Promise<unknown>
  let cleanup = async () => {}
  let job: JobView
  const remote = config.databaseUrl ? null : await sendControl(config.dataDir, 'import start', startArgs)
  try {
    if (remote) {
      job = remote as JobView
      call = async (name, a) => sendControl(config.dataDir, name, a)
    } else {
      const release = config.databaseUrl ? () => {} : acquireDataLock(config.dataDir)
      cleanup = async () => release()
      const deps = await createRuntime(config, { log: () => {} })
      cleanup = async () => {
        await closeRuntime(deps).catch(() => {})
        release()
      }
      const stopWorker = await startWorker(deps, { log: () => {} })
      cleanup = async () => {
        await stopWorker()
        await closeRuntime(deps).catch(() => {})
        release()
      }
      call = (name, a) => commands[name](deps, a)
      job = (await call('import start', startArgs)) as JobView
    }
    const ids = { community: args.community, job: job.jobId }
    const stopListening = cancelOnInterrupt(job.jobId, () => call('import cancel', ids))
    try {
      const progress = process.stderr.isTTY ? drawProgress : logProgress()
      while (!TERMINAL.has(job.status)) {
        progress(job)
        await new Promise((r) => setTimeout(r, 300))
        job = (await call('import status', ids)) as JobView
      }
      progress(job)
      if (process.stderr.isTTY) process.stderr.write('\n')
    } finally {
      stopListening()
    }
  } finally {
    await cleanup()
  }
  process.stdout.write(`${JSON.stringify(job)}\n`)
  process.stderr.write(`${summary(job)}\n`)
  if (job.status === 'failed') process.exitCode = IMPORT_EXIT.failed
  else if (job.status === 'cancelled') process.exitCode = IMPORT_EXIT.cancelled
}

/**
 * Ctrl-C (or SIGTERM) while the job runs asks it to stop, as the API's cancel does: the import then
 * ends cancelled, the rows of chunks already committed stay applied. A second one stops waiting at
 * once; the job, asked to stop, ends cancelled when a worker next takes it up.
 */
function cancelOnInterrupt(jobId: string, cancel: () => Promise<unknown>): () => void {
  let asked = false
  const interrupt = () => {
    if (asked) {
      process.stderr.write(
        `\nimport ${jobId}: stopped waiting; the job ends cancelled when a worker takes it up\n`,
      )
      process.exit(130)
    }
    asked = true
    process.stderr.write(
      `\nimport ${jobId}: cancelling (the rows applied so far stay); press Ctrl-C again to stop waiting\n`,
    )
    cancel().catch((err) =>
      process.stderr.write(`import ${jobId}: could not cancel: ${describeError(err)}\n`),
    )
  }
  process.on('SIGINT', interrupt)
  process.on('SIGTERM', interrupt)
  return () => {
    process.off('SIGINT', interrupt)
    process.off('SIGTERM', interrupt)
  }
}

/** The finished job in one line: what it did (a dry run: what it would do), or why it stopped. */
export function summary(job: JobView): string {
  const head = `import ${job.jobId}`
  const rows = `${job.processed} of ${job.total} rows`
  const counts = [rows]
  const would = job.dryRun ? 'would be ' : ''
  if (job.created) counts.push(`${job.created} ${would}created`)
  if (job.updated) counts.push(`${job.updated} ${would}updated`)
  if (job.skipped) counts.push(`${job.skipped} ${job.dryRun ? 'would stay ' : ''}unchanged`)
  counts.push(`${job.failed} ${job.dryRun ? 'would fail' : 'failed'}`)
  if (job.status === 'completed' || job.status === 'completed_with_errors')
    return `${head} ${job.dryRun ? 'dry run ' : ''}${job.status}: ${counts.join(', ')}${job.dryRun ? ' (nothing was written)' : ''}`
  const stopped = job.status === 'cancelled' ? 'cancelled on request' : 'failed'
  const when = job.processed === 0 ? '' : ` after ${rows}`
  const why =
    job.status !== 'failed'
      ? ''
      : `: ${job.error ? `${job.error.code}: ${job.error.message}` : 'no reason was recorded'}`
  const kept =
    job.processed === 0
      ? 'no row was applied'
      : job.dryRun
        ? 'a dry run: nothing was written'
        : `the rows applied before stay (${counts.slice(1).join(', ')})`
  return `${head} ${stopped}${when}${why}; ${kept}`
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

import { createReadStream, open as fsOpen } from 'node:fs'
import { Socket } from 'node:net'
import { resolve } from 'node:path'
import { Readable } from 'node:stream'
import { setTimeout as delay } from 'node:timers/promises'
import type { Config } from '../lib/config.ts'
import { acquireDataLock } from '../lib/data-lock.ts'
import { PIECE_BYTES } from '../modules/bulk/bulk.files.ts'
import { type JobView, TERMINAL } from '../modules/bulk/bulk.presenter.ts'
import { closeRuntime, createRuntime } from '../runtime.ts'
import {
  type CommandArgs,
  commands,
  describeError,
  importType,
  jobFileName,
  requireReadableFile,
  startImport,
  str,
} from './commands.ts'
import { sendControl, uploadToServer } from './control.ts'
import { runOwnJob } from './own-job.ts'

/**
 * Exit codes of `hearth import` for a job that did not run to its end. Otherwise 0 once the job
 * completed (rows that failed alone are counted in the summary, not in the exit code), and 1 when
 * no job could start (a bad option, a missing file, an unknown community: the reason in one line).
 */
export const IMPORT_EXIT = { failed: 2, cancelled: 3 } as const

const USAGE = 'Usage: hearth import FILE|- --community ID [--update|--premium-currency] [--dry-run]'

/**
 * `hearth import FILE --community ID`: the same job path as the HTTP upload. It asks a running
 * server (PGlite) or uses the database itself, applies its job itself when no server will, draws a progress
 * bar on stderr, prints the final job as JSON on stdout and a one-line summary on stderr.
 */
export async function runImport(config: Config, file: string | undefined, args: CommandArgs) {
  if (!file) throw new Error(USAGE)
  // What can be refused without the database is refused before opening it.
  str(args, 'community')
  importType(args)
  const path = file === '-' || file === '/dev/stdin' ? '/dev/fd/0' : resolve(file)
  const { pipe } = await requireReadableFile(path)
  // This process reads the file, whichever process stores it: a running server gets its bytes on
  // the control socket, so no reader of a pipe outlives this process.
  const fileName = jobFileName(path)
  const open = () => openFile(path, pipe)
  const interrupts = listenForInterrupts()
  let call: (name: string, a: CommandArgs) => Promise<unknown>
  let cleanup = async () => {}
  let poke = () => {} // a running server's worker applies the job
  let job: JobView
  try {
    const remote = config.databaseUrl
      ? null
      : await uploadToServer(config.dataDir, { ...args, file: fileName }, open)
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
      call = (name, a) => commands[name](deps, a)
      job = (await startImport(deps, args, { fileName, open })) as JobView
      const own = runOwnJob(deps, job.jobId, (line) => process.stderr.write(`\n${line}\n`))
      cleanup = async () => {
        await own.stop()
        await closeRuntime(deps).catch(() => {})
        release()
      }
      poke = own.poke
    }
    const ids = { community: args.community, job: job.jobId }
    interrupts.jobQueued(job.jobId, () => call('import cancel', ids))
    const progress = process.stderr.isTTY ? drawProgress : logProgress()
    while (!TERMINAL.has(job.status) && !interrupts.stopWaiting.aborted) {
      poke()
      progress(job)
      // A second Ctrl-C ends the wait at once (the timer rejects with an AbortError).
      await delay(300, undefined, { signal: interrupts.stopWaiting }).catch(() => {})
      job = (await call('import status', ids)) as JobView
    }
    progress(job)
    if (process.stderr.isTTY) process.stderr.write('\n')
  } finally {
    await cleanup()
    interrupts.dispose()
  }
  process.stdout.write(`${JSON.stringify(job)}\n`)
  if (!TERMINAL.has(job.status)) {
    process.stderr.write(
      `import ${job.jobId}: stopped waiting while it was ${job.status}; the job, asked to stop, ends cancelled when a worker takes it up\n`,
    )
    process.exitCode = 130
    return
  }
  process.stderr.write(`${summary(job)}\n`)
  if (job.status === 'failed') process.exitCode = IMPORT_EXIT.failed
  else if (job.status === 'cancelled') process.exitCode = IMPORT_EXIT.cancelled
}

/**
 * Opens the file to upload. A pipe (a named one, `-`, a shell's `<(…)`) is read through a
 * non-blocking handle, as Node reads its standard input, not by the thread pool: a writer that stays
 * silent then holds no thread, and this process can end (its upload broken off) without waiting
 * for the writer. A file is read in pieces of the stored size: fewer, larger writes on the control
 * socket (a 100k-row upload through a server ~0.5 s, as fast as the server reading the file
 * itself; with 64 KiB reads ~0.65 s).
 */
function openFile(path: string, pipe: boolean): Readable {
  if (!pipe) return createReadStream(path, { highWaterMark: PIECE_BYTES })
  const inherited = /^\/dev\/fd\/(\d+)$/.exec(path)
  if (inherited) return new Socket({ fd: Number(inherited[1]), readable: true, writable: false })
  return Readable.from(readNamedPipe(path), { objectMode: false })
}

async function* readNamedPipe(path: string): AsyncGenerator<Buffer> {
  // Opening waits (in the thread pool, as the open of any reader does) for a writer to open the pipe.
  const fd = await new Promise<number>((resolve, reject) =>
    fsOpen(path, 'r', (err, fd) => (err ? reject(err) : resolve(fd))),
  )
  yield* new Socket({ fd, readable: true, writable: false })
}

/**
 * Ctrl-C (or SIGTERM) asks the job to stop, as the API's cancel does: the import then ends
 * cancelled, the rows of chunks already committed stay applied. Pressed while the file is still being
 * uploaded, the job is cancelled as soon as it is queued, before any row applies. A second one stops
 * waiting: the CLI stops its own worker, closes the database and exits 130 (the job, asked to stop,
 * ends cancelled when a worker next takes it up). A third ends the process at once.
 */
function listenForInterrupts() {
  const stopWaiting = new AbortController()
  let count = 0
  let jobId: string | null = null
  let cancel: (() => Promise<unknown>) | null = null
  const requestCancel = () =>
    cancel?.().catch((err) =>
      process.stderr.write(`import ${jobId}: could not cancel: ${describeError(err)}\n`),
    )
  const interrupt = (signal: NodeJS.Signals) => {
    count++
    const head = jobId ? `import ${jobId}` : 'import'
    if (count === 1) {
      process.stderr.write(
        jobId
          ? `\n${head}: cancelling (the rows applied so far stay); press Ctrl-C again to stop waiting\n`
          : `\n${head}: cancelling: the job is cancelled as soon as the upload is queued, before any row applies\n`,
      )
      requestCancel()
    } else if (count === 2 && jobId) {
      process.stderr.write(`\n${head}: stopping; press Ctrl-C again to quit at once\n`)
      stopWaiting.abort()
    } else if (count === 2) {
      // Waiting ends the job cancelled, on record; quitting breaks the upload off (this process
      // sends the file, to a server too) and no job starts.
      process.stderr.write(
        `\n${head}: still uploading, to cancel the job once queued; press Ctrl-C again to quit at once (the upload then breaks off: no job)\n`,
      )
    } else {
      // Dies of the signal, as without a handler: process.exit would wait for a thread blocked
      // opening a named pipe that no writer has opened.
      stopListening()
      process.kill(process.pid, signal)
    }
  }
  const stopListening = () => {
    process.off('SIGINT', interrupt)
    process.off('SIGTERM', interrupt)
  }
  process.on('SIGINT', interrupt)
  process.on('SIGTERM', interrupt)
  return {
    stopWaiting: stopWaiting.signal,
    /** From here on a Ctrl-C cancels this job; one pressed during the upload cancels it now. */
    jobQueued(id: string, cancelJob: () => Promise<unknown>) {
      jobId = id
      cancel = cancelJob
      if (count > 0) requestCancel()
    },
    dispose: stopListening,
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

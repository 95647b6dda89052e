import { createReadStream, createWriteStream, type WriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { finished, type Readable, Transform, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { AppError, tooMany } from '../../lib/errors.ts'
import { fileTooLarge } from './bulk.files.ts'

/** Anonymous files waiting on this process's disk at once (each up to the upload size limit). */
export const MAX_SPOOLS_AT_ONCE = 2
let spooling = 0

export interface SpooledFile {
  read(): AsyncIterable<Buffer>
  remove(): Promise<void>
}

/**
 * Keeps an anonymous upload on this machine's disk, readable only by this process's user, until the
 * rest of the form tells whether its community takes anonymous imports: the documented form sends
 * the file before `communityId`, and nothing may reach the database for a community that refuses.
 * Bounded by the upload size limit, and to MAX_SPOOLS_AT_ONCE files per process (429 past it);
 * removed by the caller once stored or refused. A disk that fails answers 507 or 503 (diskError),
 * with nothing left behind.
 */
export async function spoolFile(source: Readable, maxBytes: number): Promise<SpooledFile> {
  // Anyone may send such a file: the disk it may hold at once is bounded, not only each file.
  if (spooling >= MAX_SPOOLS_AT_ONCE)
    throw tooMany(
      'anonymous_uploads_busy',
      'Too many uploads without an API key are arriving at once: send communityId before the file, or try again shortly',
    )
  spooling++
  let released = false
  const release = () => {
    if (!released) spooling--
    released = true
  }
  let dir: string
  try {
    dir = await mkdtemp(join(tmpdir(), 'hearth-upload-'))
  } catch (err) {
    release()
    throw diskError(err)
  }
  const path = join(dir, 'data.csv')
  const remove = async () => {
    await rm(dir, { recursive: true, force: true })
    release()
  }
  let bytes = 0
  const bounded = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length
      done(bytes > maxBytes ? fileTooLarge({ maxBytes }) : null, chunk)
    },
  })
  const disk = untilItFails(createWriteStream(path, { mode: 0o600 }))
  try {
    await pipeline(source, bounded, disk.sink)
    // The multipart parser stops a file at the size limit and marks the stream truncated.
    if ((source as { truncated?: boolean }).truncated) throw fileTooLarge({ maxBytes })
    const failure = disk.failure()
    if (failure) throw diskError(failure)
  } catch (err) {
    await remove()
    throw err
  }
  return { read: () => readBack(path), remove }
}

/**
 * A sink that writes to `file` until the disk fails, then takes the rest of the upload unwritten:
 * the form is still read to its end (its communityId comes after the file) and the client hears
 * why, instead of a connection cut mid-upload. `failure` is the disk's error, if any.
 */
function untilItFails(file: WriteStream) {
  let failure: Error | null = null
  const fail = (err: Error) => {
    failure ??= file.errored ?? err // a write queued behind a failed open reports the open's error
  }
  file.on('error', fail)
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      if (failure) return done()
      file.write(chunk, (err) => {
        if (err) fail(err)
        done()
      })
    },
    final(done) {
      if (failure) return done()
      finished(file.end(), (err) => {
        if (err) fail(err)
        done()
      })
    },
    destroy(err, done) {
      file.destroy()
      done(err)
    },
  })
  return { sink, failure: () => failure }
}

/** The spooled file read back; a disk error there answers as one too. */
async function* readBack(path: string): AsyncGenerator<Buffer> {
  try {
    yield* createReadStream(path)
  } catch (err) {
    throw diskError(err)
  }
}

/**
 * A disk error of the spool, as the client hears it (the cause is logged): out of space or quota
 * is 507 storage_full, any other 503 storage_unavailable; either may succeed when tried again.
 */
export function diskError(cause: unknown): AppError {
  const code = (cause as NodeJS.ErrnoException).code
  const full = code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG'
  const err = full
    ? new AppError(
        507,
        'storage_full',
        'The server has no disk space left to receive the file: try again later',
        'data',
      )
    : new AppError(
        503,
        'storage_unavailable',
        'The server could not keep the file on its disk: try again later',
        'data',
      )
  err.cause = cause
  return err
}

import { createReadStream, createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { tooMany } from '../../lib/errors.ts'
import { fileTooLarge } from './bulk.files.ts'

/** Anonymous files waiting on this process's disk at once (each up to the upload size limit). */
export const MAX_SPOOLS_AT_ONCE = 2
let spooling = 0

export interface SpooledFile {
  read(): Readable
  remove(): Promise<void>
}

/**
 * Keeps an anonymous upload on this machine's disk, readable only by this process's user, until the
 * rest of the form tells whether its community takes anonymous imports: the documented form sends
 * the file before `communityId`, and nothing may reach the database for a community that refuses.
 * Bounded by the upload size limit, and to MAX_SPOOLS_AT_ONCE files per process (429 past it);
 * removed by the caller once stored or refused.
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
    throw err
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
  try {
    await pipeline(source, bounded, createWriteStream(path, { mode: 0o600 }))
    // The multipart parser stops a file at the size limit and marks the stream truncated.
    if ((source as { truncated?: boolean }).truncated) throw fileTooLarge({ maxBytes })
  } catch (err) {
    await remove()
    throw err
  }
  return { read: () => createReadStream(path), remove }
}

import { createReadStream, createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { fileTooLarge } from './bulk.files.ts'

export interface SpooledFile {
  read(): Readable
  remove(): Promise<void>
}

/**
 * Keeps an anonymous upload on this machine's disk, readable only by this process's user, until the
 * rest of the form tells whether its community takes anonymous imports: the documented form sends
 * the file before `communityId`, and nothing may reach the database for a community that refuses.
 * Bounded by the upload size limit; removed by the caller once stored or refused.
 */
export async function spoolFile(source: Readable, maxBytes: number): Promise<SpooledFile> {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-upload-'))
  const path = join(dir, 'data.csv')
  const remove = () => rm(dir, { recursive: true, force: true })
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

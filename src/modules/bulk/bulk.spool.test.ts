import { PassThrough } from 'node:stream'
import { text } from 'node:stream/consumers'
import { describe, expect, it } from 'vitest'
import { AppError } from '../../lib/errors.ts'
import { diskError, MAX_SPOOLS_AT_ONCE, spoolFile } from './bulk.spool.ts'

describe('spoolFile', () => {
  it('holds at most MAX_SPOOLS_AT_ONCE files at once: one more is refused 429, a slot frees when one is removed', async () => {
    const sources = Array.from({ length: MAX_SPOOLS_AT_ONCE }, () => new PassThrough())
    const pending = sources.map((s) => spoolFile(s, 1024))
    await new Promise((r) => setTimeout(r, 20))
    const refused = await spoolFile(new PassThrough(), 1024).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(AppError)
    expect(refused).toMatchObject({ status: 429, code: 'anonymous_uploads_busy' })
    sources.forEach((s, i) => {
      s.end(`email\nu${i}@spool.test\n`)
    })
    const spooled = await Promise.all(pending)
    expect(await text(spooled[0].read())).toBe('email\nu0@spool.test\n')
    await spooled[0].remove()
    const again = new PassThrough()
    const next = spoolFile(again, 1024)
    again.end('email\n')
    const third = await next
    for (const s of [spooled[1], third]) await s.remove()
  })

  it('refuses a file over the size limit with 413 and leaves no file behind', async () => {
    const source = new PassThrough()
    const pending = spoolFile(source, 10).catch((e: unknown) => e)
    source.end('email\nlonger-than-ten@spool.test\n')
    expect(await pending).toMatchObject({ status: 413, code: 'file_too_large' })
    // The slot came back: MAX_SPOOLS_AT_ONCE more can spool.
    const ok = await Promise.all(
      Array.from({ length: MAX_SPOOLS_AT_ONCE }, () => {
        const s = new PassThrough()
        const p = spoolFile(s, 10)
        s.end('email\n')
        return p
      }),
    )
    for (const s of ok) {
      expect(await text(s.read())).toBe('email\n')
      await s.remove()
    }
  })

  it.each([
    ['ENOSPC', 507, 'storage_full'],
    ['EDQUOT', 507, 'storage_full'],
    ['EFBIG', 507, 'storage_full'],
    ['EIO', 503, 'storage_unavailable'],
    ['EROFS', 503, 'storage_unavailable'],
  ])('a disk error %s answers %i %s on the file, keeping its cause for the log', (code, status, answer) => {
    const cause = Object.assign(new Error(`${code}: write`), { code })
    expect(diskError(cause)).toMatchObject({ status, code: answer, field: 'data', cause })
  })
})

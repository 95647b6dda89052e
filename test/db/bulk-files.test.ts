import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PIECE_BYTES, readUpload, storeUpload } from '../../src/modules/bulk/bulk.files.ts'
import { createTestDatabase, type TestDatabase } from '../support/database.ts'

/** Uploads are stored in pieces (as base64 through the database) and must come back byte for byte. */

let testDb: TestDatabase
beforeAll(async () => {
  testDb = await createTestDatabase()
})
afterAll(() => testDb.drop())

async function* parts(data: Buffer, sizes: number[]) {
  let at = 0
  for (let i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]
    yield data.subarray(at, at + n)
    at += n
  }
}

describe('bulk upload storage', () => {
  it('gives back exactly the bytes stored, across pieces, whatever they are', async () => {
    // Multibyte UTF-8 split across piece boundaries, a byte-order mark, CRLF, and bytes that are not UTF-8 at all.
    const text = Buffer.from(`\uFEFFemail,name\r\n${'é@x.io,Zoë 😀 "quoted, comma"\r\n'.repeat(60_000)}`)
    const data = Buffer.concat([text, randomBytes(300_000)])
    expect(data.length).toBeGreaterThan(2 * PIECE_BYTES)
    const communityId = 'c'.repeat(24)
    const stored = await storeUpload(
      testDb.database,
      communityId,
      'u'.repeat(24),
      parts(data, [7, 65_537, 1_000_003]),
      {
        maxBytes: 10 * PIECE_BYTES,
        maxRows: 1_000_000,
      },
    )
    expect(stored.bytes).toBe(data.length)
    expect(stored.pieces).toBeGreaterThan(1)
    const back: Buffer[] = []
    for await (const piece of readUpload(testDb.database.db, stored.uploadId, stored.pieces)) back.push(piece)
    expect(Buffer.concat(back).equals(data)).toBe(true)
  })
})

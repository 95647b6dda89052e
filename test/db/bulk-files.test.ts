import { randomBytes } from 'node:crypto'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  deleteAbandonedUploads,
  PIECE_BYTES,
  readUpload,
  storeUpload,
} from '../../src/modules/bulk/bulk.files.ts'
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

  it('deletes the pieces of uploads that never became a job once they sit idle, and nothing else', async () => {
    const { db } = testDb.database
    const communityId = 'c'.repeat(24)
    const store = (uploadId: string) =>
      storeUpload(
        testDb.database,
        communityId,
        uploadId,
        parts(Buffer.alloc(PIECE_BYTES + 10, 'a'), [PIECE_BYTES]),
        {
          maxBytes: 10 * PIECE_BYTES,
          maxRows: 10,
        },
      )
    const age = (uploadId: string, minutes: number) =>
      sql`UPDATE bulk_files SET created_at = now() - make_interval(mins => ${minutes}) WHERE upload_id = ${uploadId}`.execute(
        db,
      )
    const abandoned = 'a'.repeat(24)
    const arriving = 'b'.repeat(24)
    const queued = 'd'.repeat(24)
    for (const id of [abandoned, arriving, queued]) await store(id)
    await age(abandoned, 61)
    await age(queued, 120)
    // The upload still arriving: its first piece is old, its newest is not.
    await sql`UPDATE bulk_files SET created_at = now() - interval '2 hours' WHERE upload_id = ${arriving} AND seq = 0`.execute(
      db,
    )
    await db
      .insertInto('communities')
      .values({ id: communityId, name: 'C', system_key_hash: 'h', system_key_prefix: 'p' })
      .execute()
    await db
      .insertInto('bulk_jobs')
      .values({
        id: queued,
        community_id: communityId,
        type: 'import',
        status: 'queued',
        file_name: 'f.csv',
        file_bytes: 1,
        file_chunks: 2,
      })
      .execute()

    expect(await deleteAbandonedUploads(db)).toBe(2)
    const left = await db
      .selectFrom('bulk_files')
      .select(['upload_id', 'seq'])
      .orderBy('upload_id')
      .orderBy('seq')
      .execute()
    expect(left.filter((r) => r.upload_id !== 'u'.repeat(24))).toEqual([
      { upload_id: arriving, seq: 0 },
      { upload_id: arriving, seq: 1 },
      { upload_id: queued, seq: 0 },
      { upload_id: queued, seq: 1 },
    ])
    expect(await deleteAbandonedUploads(db)).toBe(0)
  })
})

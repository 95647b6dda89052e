import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { newId } from '../../src/lib/ids.ts'
import { PIECE_BYTES } from '../../src/modules/bulk/bulk.files.ts'
import { IMPORT, JOBS, PREMIUM, UPDATE, upload } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'
import { multipart } from '../support/multipart.ts'

/**
 * What an upload may store before it is accepted: nothing for an anonymous import a community does
 * not take, nothing past the row limit; malformed or non-multipart bodies answer 4xx; the cancel
 * route takes an empty JSON body.
 */

const MAX_ROWS = 50_000
// A failing disk, for real: while `disk.full`, the spool's file is /dev/full (ENOSPC at the first write).
const disk = vi.hoisted(() => ({ full: false }))
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>()
  const createWriteStream = ((path: string, options: object) =>
    fs.createWriteStream(
      disk.full && path.includes('hearth-upload-') ? '/dev/full' : path,
      options,
    )) as typeof fs.createWriteStream
  return { ...fs, createWriteStream, default: { ...fs, createWriteStream } }
})
// Anonymous files wait in the temporary folder (bulk.spool.ts): this file's own, to see them all go.
const scratch = mkdtempSync(join(tmpdir(), 'hearth-guards-'))
process.env.TMPDIR = scratch
let t: TestApp
beforeAll(async () => {
  t = await startTestApp({ env: { BULK_MAX_ROWS: String(MAX_ROWS) } })
  // Every piece ever written, even one deleted at once: "nothing stored" means nothing written.
  await sql`CREATE TABLE test_piece_writes (upload_id text, seq integer)`.execute(t.deps.database.db)
  await sql`CREATE FUNCTION test_log_piece() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO test_piece_writes VALUES (NEW.upload_id, NEW.seq); RETURN NEW; END $$`.execute(
    t.deps.database.db,
  )
  await sql`CREATE TRIGGER test_log_piece AFTER INSERT ON bulk_files
    FOR EACH ROW EXECUTE FUNCTION test_log_piece()`.execute(t.deps.database.db)
})
afterAll(async () => {
  await t?.close()
  rmSync(scratch, { recursive: true, force: true })
})

const NO_AUTH: Record<string, string> = {}

const db = () => t.deps.database.db
const count = async (query: ReturnType<typeof sql<{ n: string }>>) =>
  Number((await query.execute(db())).rows[0].n)
/** Pieces ever written, pieces of no job (an upload's leftovers), and jobs. */
const counts = async () => ({
  written: await count(sql`SELECT count(*) AS n FROM test_piece_writes`),
  files: await count(
    sql`SELECT count(*) AS n FROM bulk_files f WHERE NOT EXISTS (SELECT 1 FROM bulk_jobs j WHERE j.id = f.upload_id)`,
  ),
  jobs: await count(sql`SELECT count(*) AS n FROM bulk_jobs`),
})

let listening: Promise<string> | null = null
const address = () => {
  listening ??= t.app.listen({ host: '127.0.0.1', port: 0 })
  return listening
}

/** A CSV of `rows` rows of `width` bytes each (line break included). */
function csv(rows: number, width: number, header = 'email,first_name') {
  const lines = Array.from({ length: rows }, (_, i) => {
    const email = `r${i}@x.io,`
    return `${email}${'N'.repeat(width - email.length - 1)}`
  })
  return `${header}\n${lines.join('\n')}\n`
}

// About 4 MiB in 100-byte rows, under the row limit.
const BIG = csv(42_000, 100)

/** Anonymous files waiting on local disk: none may outlive its request. */
const spools = () => readdirSync(scratch)

async function publicCommunity(on: boolean) {
  const c = await t.factory.community()
  await t.deps.database.db
    .updateTable('communities')
    .set({ allow_public_bulk_import: on })
    .where('id', '=', c.id)
    .execute()
  return c
}

describe('an anonymous bulk import', () => {
  it('stores the file when communityId, sent before it, names a community that takes public imports', async () => {
    expect(Buffer.byteLength(BIG)).toBeGreaterThan(3.5 * PIECE_BYTES)
    const c = await publicCommunity(true)
    const before = await counts()
    const res = await upload(t, IMPORT, NO_AUTH, { file: BIG, fields: { communityId: c.id } })
    expect(res.statusCode, res.body).toBe(200)
    const after = await counts()
    // The control for the refusals below: the trigger sees the pieces written.
    expect(after.written - before.written).toBeGreaterThan(0)
    expect(after.jobs - before.jobs).toBe(1)
  })

  it.each([
    ['the switch is off', 'off', true, 401, 'bulk_import_requires_key', null],
    ['the community does not exist', 'unknown', true, 401, 'bulk_import_requires_key', null],
    ['communityId is not an id', 'nope', true, 400, 'invalid_field', 'communityId'],
    ['communityId is missing', 'none', false, 400, 'missing_field', 'communityId'],
    ['the file comes first, switch off', 'off', false, 401, 'bulk_import_requires_key', null],
  ] as const)('is refused without writing a byte when %s', async (_, which, idFirst, status, code, field) => {
    const c = await publicCommunity(false)
    const communityId = { off: c.id, on: c.id, unknown: newId(), nope: 'nope', none: undefined }[which]
    const before = await counts()
    const res = await upload(t, IMPORT, NO_AUTH, {
      file: BIG,
      fields: communityId === undefined ? {} : { communityId },
      fileFirst: !idFirst,
    })
    expect(res.statusCode, res.body).toBe(status)
    expect(res.json()).toMatchObject({ status: 'error', error: { code, field } })
    expect(await counts()).toEqual({ ...before, files: 0 })
    expect(spools()).toEqual([])
  })

  it('takes the documented order, the file before communityId: kept off the database until the community is known to take it', async () => {
    const c = await publicCommunity(true)
    const before = await counts()
    const res = await upload(t, IMPORT, NO_AUTH, {
      file: BIG,
      fields: { communityId: c.id },
      fileFirst: true,
    })
    expect(res.statusCode, res.body).toBe(200)
    const after = await counts()
    expect(after.written - before.written).toBeGreaterThan(0)
    expect(after.jobs - before.jobs).toBe(1)
    const job = await t.deps.database.db
      .selectFrom('bulk_jobs')
      .select(['community_id', 'total', 'file_bytes'])
      .where('id', '=', res.json().data.jobId)
      .executeTakeFirstOrThrow()
    expect(job).toEqual({ community_id: c.id, total: 42_000, file_bytes: Buffer.byteLength(BIG) })
    expect(spools()).toEqual([])
  })

  it('is refused over a real connection with a clean answer once the file is read, still unstored', async () => {
    const c = await publicCommunity(false)
    const body = multipart({ file: BIG, fields: { communityId: c.id } })
    const before = await counts()
    const res = await fetch(`${await address()}${IMPORT}`, {
      method: 'POST',
      headers: body.headers,
      body: body.payload,
    })
    expect(res.status).toBe(401)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('bulk_import_requires_key')
    expect(await counts()).toEqual({ ...before, files: 0 })
  })

  it('a key naming another community before the file is refused before anything is stored', async () => {
    const a = await t.factory.community()
    const b = await t.factory.community()
    const before = await counts()
    const res = await upload(t, IMPORT, a.bearer, { file: BIG, fields: { communityId: b.id } })
    expect(res.statusCode, res.body).toBe(403)
    expect(res.json().error.code).toBe('community_forbidden')
    expect(await counts()).toEqual({ ...before, files: 0 })
  })
})

describe('a disk error while an anonymous file waits on disk', () => {
  async function fullDisk<T>(run: () => Promise<T>): Promise<T> {
    disk.full = true
    try {
      return await run()
    } finally {
      disk.full = false
    }
  }

  it('answers 507 storage_full once the form is read, leaves nothing behind, and the server goes on serving', async () => {
    const c = await publicCommunity(true)
    const body = multipart({ file: BIG, fields: { communityId: c.id }, fileFirst: true })
    const post = async () =>
      fetch(`${await address()}${IMPORT}`, { method: 'POST', headers: body.headers, body: body.payload })
    const before = await counts()
    const res = await fullDisk(post)
    expect(res.status).toBe(507)
    expect(await res.json()).toMatchObject({
      status: 'error',
      error: { code: 'storage_full', field: 'data' },
    })
    // The rest of the file was read unwritten: the connection stays open, no reset mid-upload.
    expect(res.headers.get('connection')).toBe('keep-alive')
    expect(await counts()).toEqual({ ...before, files: 0 })
    expect(spools()).toEqual([])
    // The disk has room again: the same upload goes through.
    const again = await post()
    expect(again.status, await again.clone().text()).toBe(200)
    expect((await counts()).jobs).toBe(before.jobs + 1)
    expect(spools()).toEqual([])
  })

  it('a community that refuses anonymous imports still answers 401, whatever the disk did', async () => {
    const c = await publicCommunity(false)
    const before = await counts()
    const res = await fullDisk(() =>
      upload(t, IMPORT, NO_AUTH, { file: BIG, fields: { communityId: c.id }, fileFirst: true }),
    )
    expect(res.statusCode, res.body).toBe(401)
    expect(res.json().error.code).toBe('bulk_import_requires_key')
    expect(await counts()).toEqual({ ...before, files: 0 })
    expect(spools()).toEqual([])
  })

  it('a temporary folder that cannot be written answers 503 storage_unavailable', async () => {
    const c = await publicCommunity(true)
    const before = await counts()
    process.env.TMPDIR = '/dev/full' // not a folder: no file can be made in it (ENOTDIR)
    try {
      const res = await upload(t, IMPORT, NO_AUTH, {
        file: BIG,
        fields: { communityId: c.id },
        fileFirst: true,
      })
      expect(res.statusCode, res.body).toBe(503)
      expect(res.json()).toMatchObject({
        status: 'error',
        error: { code: 'storage_unavailable', field: 'data' },
      })
    } finally {
      process.env.TMPDIR = scratch
    }
    expect(await counts()).toEqual({ ...before, files: 0 })
  })
})

describe('a malformed multipart body', () => {
  const head = (boundary: string) =>
    `--${boundary}\r\nContent-Disposition: form-data; name="data"; filename="a.csv"\r\nContent-Type: text/csv\r\n\r\n`
  const cases: [string, string, string | Buffer, string | null][] = [
    ['cut short inside the file', 'multipart/form-data; boundary=XX', `${head('XX')}email\na@x.io\n`, null],
    [
      'cut short after 2 MiB of file',
      'multipart/form-data; boundary=XX',
      `${head('XX')}${csv(30_000, 100)}`,
      null,
    ],
    [
      'cut short inside a field',
      'multipart/form-data; boundary=XX',
      '--XX\r\nContent-Disposition: form-data; name="dryRun"\r\n\r\nfal',
      null,
    ],
    ['garbage', 'multipart/form-data; boundary=XX', 'this is not a form at all', null],
    ['without a boundary', 'multipart/form-data', `${head('XX')}email\n\r\n--XX--\r\n`, 'Content-Type'],
    [
      'with a boundary too long',
      `multipart/form-data; boundary=${'b'.repeat(300)}`,
      `${head('b'.repeat(300))}email\n\r\n--${'b'.repeat(300)}--\r\n`,
      'Content-Type',
    ],
  ]

  it.each(cases)('%s answers 400 malformed_multipart and stores nothing', async (_, type, payload, field) => {
    const c = await t.factory.community()
    const before = await counts()
    for (const url of [UPDATE, IMPORT, PREMIUM]) {
      const res = await t.app.inject({
        method: 'POST',
        url,
        headers: { ...c.bearer, 'content-type': type },
        payload,
      })
      expect(res.statusCode, `${url}: ${res.body}`).toBe(400)
      const body = res.json()
      expect(Object.keys(body).sort()).toEqual(['error', 'message', 'requestId', 'status'])
      expect(body).toMatchObject({ status: 'error', error: { code: 'malformed_multipart', field } })
      expect(res.body).not.toMatch(/\bat .*\.(ts|js):\d+/) // no stack trace
    }
    expect((await counts()).jobs).toBe(before.jobs)
    expect((await counts()).files).toBe(0)
  })

  it('over a real connection too (a complete request whose form is cut short)', async () => {
    const c = await t.factory.community()
    const res = await fetch(`${await address()}${UPDATE}`, {
      method: 'POST',
      headers: { ...c.bearer, 'content-type': 'multipart/form-data; boundary=XX' },
      body: `${head('XX')}email\na@x.io\n`,
    })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('malformed_multipart')
  })
})

describe('a body that is not multipart on the upload endpoints', () => {
  it.each([
    ['application/json', '{"data":"email\\n"}', 400, 'multipart_expected', /multipart\/form-data/],
    ['text/plain', 'email\nx@x.io\n', 400, 'multipart_expected', /multipart\/form-data/],
    ['text/csv', 'email\nx@x.io\n', 415, 'unsupported_media_type', /"text\/csv".*multipart\/form-data/],
    [
      'application/x-www-form-urlencoded',
      'data=email',
      415,
      'unsupported_media_type',
      /"application\/x-www-form-urlencoded".*multipart\/form-data/,
    ],
    [undefined, 'email\nx@x.io\n', 415, 'unsupported_media_type', /\(none\).*multipart\/form-data/],
  ] as const)(
    'Content-Type %s is refused, naming multipart/form-data',
    async (type, payload, status, code, message) => {
      const c = await t.factory.community()
      for (const url of [UPDATE, IMPORT, PREMIUM]) {
        const res = await t.app.inject({
          method: 'POST',
          url,
          headers: { ...c.bearer, ...(type ? { 'content-type': type } : {}) },
          payload,
        })
        expect(res.statusCode, `${url}: ${res.body}`).toBe(status)
        expect(res.json()).toMatchObject({ status: 'error', error: { code } })
        expect(res.json().message).toMatch(message)
      }
    },
  )

  it('a JSON route still names application/json in its 415', async () => {
    const c = await t.factory.community()
    const res = await t.app.inject({
      method: 'PUT',
      url: `/api/v1/servers/${c.id}`,
      headers: { 'x-api-key': c.systemKey, 'content-type': 'application/xml' },
      payload: '<a/>',
    })
    expect(res.statusCode).toBe(415)
    expect(res.json().meta.message).toMatch(/"application\/xml".*application\/json/)
  })
})

describe('the row limit', () => {
  it('refuses a file as soon as it passes BULK_MAX_ROWS: nothing written, nothing left', async () => {
    const c = await t.factory.community()
    // 4.8 MB of 16-byte rows: the limit passes at 800 kB, before the first piece is full.
    const file = csv(MAX_ROWS * 6, 16)
    const before = await counts()
    const res = await upload(t, UPDATE, c.bearer, { file })
    expect(res.statusCode, res.body).toBe(413)
    expect(res.json()).toMatchObject({ status: 'error', error: { code: 'too_many_rows', field: 'data' } })
    expect(await counts()).toEqual({ ...before, files: 0 })
  })

  it('deletes the pieces already stored while the rest of the file still arrives', async () => {
    const c = await t.factory.community()
    const body = multipart({ file: csv(MAX_ROWS * 2, 40) })
    const cut = Math.floor(2.5 * PIECE_BYTES) // past the limit (about 2 MB in)
    let release = () => {}
    const gate = new Promise<void>((r) => {
      release = r
    })
    async function* slowly() {
      for (let at = 0; at < cut; at += 64 * 1024)
        yield body.payload.subarray(at, Math.min(at + 64 * 1024, cut))
      await gate
      yield body.payload.subarray(cut)
    }
    const before = await counts()
    const answer = t.app.inject({
      method: 'POST',
      url: UPDATE,
      headers: { ...c.bearer, ...body.headers },
      payload: Readable.from(slowly()),
    })
    // The first piece was written before the limit passed; it is gone before the upload ends.
    await until(async () => {
      const now = await counts()
      return now.written > before.written && now.files === 0
    })
    release()
    const res = await answer
    expect(res.statusCode, res.body).toBe(413)
    expect(res.json().error.code).toBe('too_many_rows')
    const after = await counts()
    expect(after.written - before.written).toBe(1)
    expect(after).toMatchObject({ files: 0, jobs: before.jobs })
  })
})

describe('cancel', () => {
  async function queuedJob(c: { bearer: Record<string, string> }) {
    const res = await upload(t, UPDATE, c.bearer, { file: 'email,first_name\nx@x.io,X\n' })
    expect(res.statusCode, res.body).toBe(200)
    return res.json().data.jobId as string
  }
  const cancel = (c: { bearer: Record<string, string> }, jobId: string, headers = {}, payload?: unknown) =>
    t.app.inject({
      method: 'POST',
      url: `${JOBS}/${jobId}/cancel`,
      headers: { ...c.bearer, ...headers },
      ...(payload === undefined ? {} : { payload: payload as string }),
    })

  it.each([
    ['Content-Type: application/json and no body', { 'content-type': 'application/json' }, undefined],
    ['Content-Type: application/json and an empty body', { 'content-type': 'application/json' }, ''],
    [
      'Content-Type: application/json; charset=utf-8 and an empty body',
      { 'content-type': 'application/json; charset=utf-8' },
      '',
    ],
    [
      'an empty chunked JSON body',
      { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      Readable.from([]),
    ],
    ['{}', { 'content-type': 'application/json' }, '{}'],
    ['null', { 'content-type': 'application/json' }, 'null'],
    ['no Content-Type and no body', {}, undefined],
  ])('accepts %s', async (_, headers, payload) => {
    const c = await t.factory.community()
    const jobId = await queuedJob(c)
    const res = await cancel(c, jobId, headers, payload)
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json().data).toMatchObject({ jobId, status: 'cancelled' })
  })

  it('still refuses malformed JSON and unknown fields', async () => {
    const c = await t.factory.community()
    const jobId = await queuedJob(c)
    const json = { 'content-type': 'application/json' }
    expect((await cancel(c, jobId, json, '{')).json().error.code).toBe('malformed_json')
    expect((await cancel(c, jobId, json, '{"force":true}')).json().error.code).toBe('unknown_field')
    expect((await cancel(c, jobId, json, '{"__proto__":{}}')).statusCode).toBe(400)
  })

  it('other JSON routes still refuse an empty body', async () => {
    const c = await t.factory.community()
    const res = await t.app.inject({
      method: 'PUT',
      url: `/api/v1/servers/${c.id}`,
      headers: { 'x-api-key': c.systemKey, 'content-type': 'application/json' },
      payload: '',
    })
    expect([res.statusCode, res.json().error.code]).toEqual([400, 'empty_body'])
  })

  it('documents that the chunk in flight is rolled back and committed rows stay', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json()
    const description: string = doc.paths['/apis/v1/users/bulk-updates/{jobId}/cancel'].post.description
    expect(description).toMatch(/rolled back/)
    expect(description).toMatch(/already committed stay applied/)
    expect(description).not.toMatch(/after the chunk in progress/)
  })
})

async function until(check: () => Promise<boolean>, timeoutMs = 20_000) {
  const stop = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > stop) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('a database error while the file is stored', () => {
  it('answers 500, closes the connection and leaves no piece behind', async () => {
    const c = await t.factory.community()
    const before = await counts()
    // The second piece of the upload cannot be written: a full disk, say.
    await sql`CREATE FUNCTION test_full_disk() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.seq >= 1 THEN RAISE EXCEPTION 'no space left' USING ERRCODE = 'disk_full'; END IF;
      RETURN NEW; END $$`.execute(db())
    await sql`CREATE TRIGGER test_full_disk BEFORE INSERT ON bulk_files
      FOR EACH ROW EXECUTE FUNCTION test_full_disk()`.execute(db())
    try {
      // Over a real connection, so the file arrives in many pieces and storing breaks off mid-file.
      const body = multipart({ file: BIG })
      const res = await fetch(`${await address()}${IMPORT}`, {
        method: 'POST',
        headers: { ...c.bearer, ...body.headers },
        body: body.payload,
        signal: AbortSignal.timeout(20_000),
      })
      expect(res.status).toBe(500)
      expect(await res.json()).toMatchObject({ status: 'error', error: { code: 'internal_error' } })
      // Answered before the rest of the body was read: the connection closes, not lingers.
      expect(res.headers.get('connection')).toBe('close')
    } finally {
      await sql`DROP TRIGGER test_full_disk ON bulk_files`.execute(db())
    }
    const after = await counts()
    expect(after.files).toBe(before.files)
    expect(after.jobs).toBe(before.jobs)
  }, 30_000)
})

import { once } from 'node:events'
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { COMMUNITY_KEY_PERMISSIONS } from '../../src/lib/auth/permissions.ts'
import { newId } from '../../src/lib/ids.ts'
import { PIECE_BYTES } from '../../src/modules/bulk/bulk.files.ts'
import { IMPORT, JOBS, PREMIUM, runJob, UPDATE, upload, waitForJob } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'
import { multipart } from '../support/multipart.ts'

/** Bulk security and limits: the public import switch, permissions, community isolation, size/row/job limits, bad forms. */

let t: TestApp // with worker, default limits
let lim: TestApp // no worker, tight limits
beforeAll(async () => {
  t = await startTestApp({ worker: true })
  lim = await startTestApp({
    env: { BULK_MAX_FILE_BYTES: '200', BULK_MAX_ROWS: '3', BULK_MAX_ACTIVE_JOBS: '1' },
  })
})
afterAll(async () => {
  await t?.close()
  await lim?.close()
})

const NO_AUTH: Record<string, string> = {}

const jobsOf = (app: TestApp, communityId: string) =>
  app.deps.database.db
    .selectFrom('bulk_jobs')
    .select(['id', 'api_key_id', 'created_by'])
    .where('community_id', '=', communityId)
    .execute()

const usersOf = (app: TestApp, communityId: string) =>
  app.deps.database.db
    .selectFrom('users')
    .select(['id', 'email', 'first_name', 'xp', 'premium'])
    .where('community_id', '=', communityId)
    .orderBy('email')
    .execute()

describe('the unauthenticated bulk import', () => {
  it('is refused (401) until the community switches allowPublicBulkImport on, then accepted; off again refuses', async () => {
    const c = await t.factory.community()
    const file = 'email,first_name\npublic@x.io,Pub\n'
    for (const fileFirst of [false, true]) {
      const res = await upload(t, IMPORT, NO_AUTH, { file, fields: { communityId: c.id }, fileFirst })
      expect(res.statusCode, res.body).toBe(401)
      expect(res.json()).toMatchObject({ status: 'error', error: { code: 'bulk_import_requires_key' } })
    }
    expect(await jobsOf(t, c.id)).toEqual([])

    const on = await t.app.inject({
      method: 'PUT',
      url: `/api/v1/servers/${c.id}`,
      headers: { 'x-api-key': c.systemKey },
      payload: { allowPublicBulkImport: true },
    })
    expect(on.statusCode, on.body).toBe(200)
    expect(on.json().body.allowPublicBulkImport).toBe(true)

    const res = await upload(t, IMPORT, NO_AUTH, { file, fields: { communityId: c.id } })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json().message).toBe('Bulk import user process is queued')
    const job = await waitForJob(t, c.bearer, res.json().data.jobId)
    expect(job).toMatchObject({ type: 'import', status: 'completed', created: 1 })
    expect((await usersOf(t, c.id)).map((u) => [u.email, u.first_name])).toEqual([['public@x.io', 'Pub']])
    expect(await jobsOf(t, c.id)).toEqual([{ id: job.jobId, api_key_id: null, created_by: 'public' }])

    // The switch opens the import only: bulk update and premium still need a key.
    for (const path of [UPDATE, PREMIUM]) {
      const r = await upload(t, path, NO_AUTH, {
        file: 'email,amount\npublic@x.io,5\n',
        fields: { communityId: c.id },
      })
      expect(r.statusCode, path).toBe(401)
    }

    const off = await t.app.inject({
      method: 'PUT',
      url: `/api/v1/servers/${c.id}`,
      headers: { 'x-api-key': c.systemKey },
      payload: { allowPublicBulkImport: false },
    })
    expect(off.statusCode).toBe(200)
    expect((await upload(t, IMPORT, NO_AUTH, { file, fields: { communityId: c.id } })).statusCode).toBe(401)
  })

  it('needs a valid, existing communityId', async () => {
    const c = await t.factory.community()
    await t.deps.database.db
      .updateTable('communities')
      .set({ allow_public_bulk_import: true })
      .where('id', '=', c.id)
      .execute()
    const file = 'email\nx@x.io\n'
    const missing = await upload(t, IMPORT, NO_AUTH, { file })
    expect([missing.statusCode, missing.json().error.code]).toEqual([400, 'missing_field'])
    const malformed = await upload(t, IMPORT, NO_AUTH, { file, fields: { communityId: 'nope' } })
    expect([malformed.statusCode, malformed.json().error.code]).toEqual([400, 'invalid_field'])
    // An unknown community answers like one with the switch off, so ids cannot be probed.
    const unknown = await upload(t, IMPORT, NO_AUTH, { file, fields: { communityId: newId() } })
    expect([unknown.statusCode, unknown.json().error.code]).toEqual([401, 'bulk_import_requires_key'])
    expect(await jobsOf(t, c.id)).toEqual([])
  })
})

describe('permissions', () => {
  it('a key without bulkUpdateUser gets 403 on every bulk endpoint', async () => {
    const c = await t.factory.community()
    const job = await runJob(t, IMPORT, c.bearer, { file: 'email\nperm@x.io\n' })
    const key = await t.factory.apiKey(
      c.id,
      COMMUNITY_KEY_PERMISSIONS.filter((p) => p !== 'bulkUpdateUser'),
    )
    const auth = { authorization: `Bearer ${key}` }
    for (const path of [IMPORT, UPDATE, PREMIUM]) {
      const res = await upload(t, path, auth, { file: 'email,first_name,amount\nperm@x.io,X,5\n' })
      expect(res.statusCode, path).toBe(403)
      expect(res.json().error.code).toBe('missing_permission')
    }
    for (const url of [
      JOBS,
      `${JOBS}/${job.jobId}`,
      `${JOBS}/${job.jobId}/details`,
      `${JOBS}/${job.jobId}/details?format=csv`,
      `${IMPORT}/template`,
    ]) {
      const res = await t.app.inject({ method: 'GET', url, headers: auth })
      expect(res.statusCode, url).toBe(403)
    }
    const cancel = await t.app.inject({
      method: 'POST',
      url: `${JOBS}/${job.jobId}/cancel`,
      headers: auth,
      payload: {},
    })
    expect(cancel.statusCode).toBe(403)
    expect(await jobsOf(t, c.id)).toHaveLength(1)
    expect((await usersOf(t, c.id)).map((u) => u.first_name)).toEqual([null])
  })

  it('sessions: a member is refused (403), an admin may upload; the system key and a bad token are 401', async () => {
    const c = await t.factory.community()
    const member = await t.factory.user(c.id, { role: 'member' })
    const admin = await t.factory.user(c.id, { role: 'admin' })
    const file = `email,first_name\n${member.email},ByAdmin\n`
    const asMember = await upload(t, UPDATE, await t.factory.session(member), { file })
    expect(asMember.statusCode).toBe(403)
    expect(asMember.json().error.code).toBe('admin_only')
    const adminAuth = await t.factory.session(admin)
    const job = await runJob(t, UPDATE, adminAuth, { file })
    expect(job).toMatchObject({ status: 'completed', updated: 1 })
    const system = await upload(t, UPDATE, { 'x-api-key': c.systemKey }, { file })
    expect(system.statusCode).toBe(401)
    const bad = await upload(t, UPDATE, { authorization: 'Bearer not-a-key' }, { file })
    expect(bad.statusCode).toBe(401)
  })
})

describe('community isolation', () => {
  it("a key of A cannot import into B, nor read, list, get details of or cancel B's job; B's users stay unchanged", async () => {
    const a = await t.factory.community()
    const b = await t.factory.community()
    const bUser = await t.factory.user(b.id)
    const bJob = await runJob(t, UPDATE, b.bearer, {
      file: `email,first_name\n${bUser.email},Bee\nghost@x.io,G\n`,
    })
    const bUsersBefore = await usersOf(t, b.id)

    for (const fileFirst of [false, true]) {
      const into = await upload(t, IMPORT, a.bearer, {
        file: `email,first_name\n${bUser.email},Hijack\nintruder@x.io,I\n`,
        fields: { communityId: b.id },
        fileFirst,
      })
      expect(into.statusCode).toBe(403)
      expect(into.json().error.code).toBe('community_forbidden')
    }
    expect(await jobsOf(t, b.id)).toEqual([expect.objectContaining({ id: bJob.jobId })])

    for (const url of [
      `${JOBS}/${bJob.jobId}`,
      `${JOBS}/${bJob.jobId}/details`,
      `${JOBS}/${bJob.jobId}/details?status=failed`,
      `${JOBS}/${bJob.jobId}/details?format=csv`,
    ]) {
      const res = await t.app.inject({ method: 'GET', url, headers: a.bearer })
      expect(res.statusCode, url).toBe(404)
      expect(res.body).not.toContain('ghost@x.io')
    }
    const cancel = await t.app.inject({
      method: 'POST',
      url: `${JOBS}/${bJob.jobId}/cancel`,
      headers: a.bearer,
      payload: {},
    })
    expect(cancel.statusCode).toBe(404)
    const list = await t.app.inject({ method: 'GET', url: JOBS, headers: a.bearer })
    expect(list.json().data).toMatchObject({ jobs: [], pagination: { total: 0 } })
    const log = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/communities/${b.id}/api-logs`,
      headers: a.bearer,
    })
    expect(log.statusCode).toBe(403)

    // A's own jobs naming B's user find nobody in A.
    const upd = await runJob(t, UPDATE, a.bearer, { file: `email,first_name,xp\n${bUser.email},Hijack,99\n` })
    expect(upd).toMatchObject({ updated: 0, failed: 1 })
    const pre = await runJob(t, PREMIUM, a.bearer, {
      file: `userId,amount\n${bUser.id},1000\n${bUser.seq},1000\n`,
    })
    expect(pre).toMatchObject({ updated: 0, failed: 2 })
    const imp = await runJob(t, IMPORT, a.bearer, { file: `email,first_name\n${bUser.email},Copy\n` })
    expect(imp).toMatchObject({ created: 1, updated: 0 })

    expect(await usersOf(t, b.id)).toEqual(bUsersBefore)
    expect(await getJob(b.bearer, bJob.jobId)).toEqual(bJob)
    const bLedger = await t.deps.database.db
      .selectFrom('currency_ledger')
      .select('id')
      .where('user_id', '=', bUser.id)
      .execute()
    expect(bLedger).toEqual([])
  })
})

describe('community isolation of queued jobs and of every upload endpoint', () => {
  it("a key of A cannot cancel, read or get details of B's queued job: 404, and B's job stays queued", async () => {
    // lim runs no worker: B's job stays queued.
    const a = await lim.factory.community()
    const b = await lim.factory.community()
    const queued = await upload(lim, UPDATE, b.bearer, { file: 'email,first_name\nqueued@x.io,Q\n' })
    expect(queued.statusCode, queued.body).toBe(200)
    const jobId = queued.json().data.jobId
    const pieces = () =>
      lim.deps.database.db.selectFrom('bulk_files').select('seq').where('upload_id', '=', jobId).execute()
    const storedBefore = (await pieces()).length
    expect(storedBefore).toBeGreaterThan(0)

    const cancel = await lim.app.inject({
      method: 'POST',
      url: `${JOBS}/${jobId}/cancel`,
      headers: a.bearer,
      payload: {},
    })
    expect(cancel.statusCode, cancel.body).toBe(404)
    expect(cancel.json()).toMatchObject({
      status: 'error',
      error: { code: 'bulk_job_not_found', field: 'jobId' },
    })
    for (const url of [
      `${JOBS}/${jobId}`,
      `${JOBS}/${jobId}/details`,
      `${JOBS}/${jobId}/details?format=csv`,
    ]) {
      const res = await lim.app.inject({ method: 'GET', url, headers: a.bearer })
      expect(res.statusCode, url).toBe(404)
      expect(res.json(), url).toMatchObject({ status: 'error', error: { code: 'bulk_job_not_found' } })
    }

    const stillQueued = await lim.app.inject({ method: 'GET', url: `${JOBS}/${jobId}`, headers: b.bearer })
    expect(stillQueued.json().data).toMatchObject({ jobId, status: 'queued', cancelRequested: false })
    const row = await lim.deps.database.db
      .selectFrom('bulk_jobs')
      .select(['community_id', 'status', 'cancel_requested', 'finished_at'])
      .where('id', '=', jobId)
      .executeTakeFirstOrThrow()
    expect(row).toEqual({ community_id: b.id, status: 'queued', cancel_requested: false, finished_at: null })
    // Its file is still there for the worker.
    expect((await pieces()).length).toBe(storedBefore)

    // B itself can cancel it: the 404 was A's, not the job's.
    const own = await lim.app.inject({
      method: 'POST',
      url: `${JOBS}/${jobId}/cancel`,
      headers: b.bearer,
      payload: {},
    })
    expect(own.statusCode, own.body).toBe(200)
    expect(own.json().data).toMatchObject({ jobId, status: 'cancelled' })
  })

  it('a key of A sending communityId of B to bulk update or premium currency is refused like import (403 community_forbidden)', async () => {
    const a = await t.factory.community()
    const b = await t.factory.community()
    const bUser = await t.factory.user(b.id)
    const bUsersBefore = await usersOf(t, b.id)
    const files: Record<string, string> = {
      [UPDATE]: `email,first_name,xp\n${bUser.email},Hijack,99\n`,
      [PREMIUM]: `email,amount\n${bUser.email},1000\n`,
    }
    for (const path of [UPDATE, PREMIUM]) {
      for (const fileFirst of [false, true]) {
        const res = await upload(t, path, a.bearer, {
          file: files[path],
          fields: { communityId: b.id },
          fileFirst,
        })
        expect(res.statusCode, `${path} ${fileFirst}`).toBe(403)
        expect(res.json()).toMatchObject({ status: 'error', error: { code: 'community_forbidden' } })
      }
    }
    expect(await jobsOf(t, b.id)).toEqual([])
    expect(await jobsOf(t, a.id)).toEqual([])
    // No piece of the refused files is kept, under either community.
    const stored = await t.deps.database.db
      .selectFrom('bulk_files')
      .select('upload_id')
      .where('community_id', 'in', [a.id, b.id])
      .execute()
    expect(stored).toEqual([])
    expect(await usersOf(t, b.id)).toEqual(bUsersBefore)
    const bLedger = await t.deps.database.db
      .selectFrom('currency_ledger')
      .select('id')
      .where('user_id', '=', bUser.id)
      .execute()
    expect(bLedger).toEqual([])
  })
})

async function getJob(auth: Record<string, string>, jobId: string) {
  const res = await t.app.inject({ method: 'GET', url: `${JOBS}/${jobId}`, headers: auth })
  expect(res.statusCode).toBe(200)
  return res.json().data
}

describe('limits', () => {
  it('a file over BULK_MAX_FILE_BYTES is refused with 413 file_too_large and leaves nothing behind', async () => {
    const c = await lim.factory.community()
    // Two rows (under BULK_MAX_ROWS) of about 150 bytes each.
    const big = `email,first_name\nlong1@x.io,${'A'.repeat(140)}\nlong2@x.io,${'B'.repeat(140)}\n`
    expect(Buffer.byteLength(big)).toBeGreaterThan(300)
    const res = await upload(lim, IMPORT, c.bearer, { file: big })
    expect(res.statusCode, res.body).toBe(413)
    expect(res.json()).toMatchObject({ status: 'error', error: { code: 'file_too_large' } })
    expect(await jobsOf(lim, c.id)).toEqual([])
    expect(
      await lim.deps.database.db
        .selectFrom('bulk_files')
        .select('upload_id')
        .where('community_id', 'in', [c.id, ''])
        .execute(),
    ).toEqual([])
  })

  it('an anonymous file over BULK_MAX_FILE_BYTES sent before communityId is refused with 413 too', async () => {
    const c = await lim.factory.community()
    await lim.deps.database.db
      .updateTable('communities')
      .set({ allow_public_bulk_import: true })
      .where('id', '=', c.id)
      .execute()
    const big = `email,first_name\nlong1@x.io,${'A'.repeat(140)}\nlong2@x.io,${'B'.repeat(140)}\n`
    const res = await upload(lim, IMPORT, {}, { file: big, fields: { communityId: c.id }, fileFirst: true })
    expect(res.statusCode, res.body).toBe(413)
    expect(res.json()).toMatchObject({ status: 'error', error: { code: 'file_too_large', field: 'data' } })
    expect(await jobsOf(lim, c.id)).toEqual([])
    // Under the limit, the same order is taken, and the id in any case (with a key too).
    const ok = await upload(
      lim,
      IMPORT,
      {},
      { file: 'email\na@x.io\n', fields: { communityId: c.id.toUpperCase() }, fileFirst: true },
    )
    expect(ok.statusCode, ok.body).toBe(200)
    const d = await lim.factory.community() // this app takes one job at a time per community
    const keyed = await upload(lim, IMPORT, d.bearer, {
      file: 'email\nb@x.io\n',
      fields: { communityId: d.id.toUpperCase() },
    })
    expect(keyed.statusCode, keyed.body).toBe(200)
  })

  it('a file over BULK_MAX_FILE_BYTES is reported as file_too_large even when its first 200 bytes already hold more than BULK_MAX_ROWS rows', async () => {
    const c = await lim.factory.community()
    // 40 rows, about 600 bytes: too large. Rows counted in a truncated file say nothing about the file.
    const big = `email\n${Array.from({ length: 40 }, (_, i) => `u${i}@x.io`).join('\n')}\n`
    expect(Buffer.byteLength(big)).toBeGreaterThan(200)
    const res = await upload(lim, IMPORT, c.bearer, { file: big })
    expect(res.statusCode).toBe(413)
    expect(res.json().error.code, res.json().message).toBe('file_too_large')
  })

  it('a file with more than BULK_MAX_ROWS rows is refused with 413 too_many_rows; at the limit it is accepted', async () => {
    const c = await lim.factory.community()
    const res = await upload(lim, IMPORT, c.bearer, { file: 'email\na@x.io\nb@x.io\nc@x.io\nd@x.io\n' })
    expect(res.statusCode, res.body).toBe(413)
    expect(res.json().error.code).toBe('too_many_rows')
    expect(await jobsOf(lim, c.id)).toEqual([])
    const ok = await upload(lim, IMPORT, c.bearer, { file: 'email\na@x.io\nb@x.io\nc@x.io\n' })
    expect(ok.statusCode, ok.body).toBe(200)
  })

  it('BULK_MAX_ACTIVE_JOBS per community: a second upload while one is queued answers 429 too_many_jobs', async () => {
    const c = await lim.factory.community()
    const other = await lim.factory.community()
    const first = await upload(lim, UPDATE, c.bearer, { file: 'email,first_name\nx@x.io,X\n' })
    expect(first.statusCode).toBe(200)
    for (const path of [IMPORT, UPDATE, PREMIUM]) {
      const res = await upload(lim, path, c.bearer, { file: 'email,amount\nx@x.io,1\n' })
      expect(res.statusCode, path).toBe(429)
      expect(res.json().error.code).toBe('too_many_jobs')
    }
    // Another community is not held back.
    expect(
      (await upload(lim, UPDATE, other.bearer, { file: 'email,first_name\nx@x.io,X\n' })).statusCode,
    ).toBe(200)
    // Once the first job is cancelled there is room again.
    const cancel = await lim.app.inject({
      method: 'POST',
      url: `${JOBS}/${first.json().data.jobId}/cancel`,
      headers: c.bearer,
      payload: {},
    })
    expect(cancel.statusCode).toBe(200)
    expect((await upload(lim, UPDATE, c.bearer, { file: 'email,first_name\nx@x.io,X\n' })).statusCode).toBe(
      200,
    )
    expect(await jobsOf(lim, c.id)).toHaveLength(2)
  })
})

describe('bad forms', () => {
  it('a form without the file answers 400 missing_file', async () => {
    const c = await lim.factory.community()
    const body = multipart({ fields: { dryRun: 'false' } })
    const res = await lim.app.inject({
      method: 'POST',
      url: UPDATE,
      headers: { ...c.bearer, ...body.headers },
      payload: body.payload,
    })
    expect(res.statusCode).toBe(400)
    expect(res.json().error).toMatchObject({ code: 'missing_file', field: 'data' })
  })

  it('a file in another field than data answers 400', async () => {
    const c = await lim.factory.community()
    const body = multipart({ file: 'email\nx@x.io\n', fileField: 'file' })
    const res = await lim.app.inject({
      method: 'POST',
      url: UPDATE,
      headers: { ...c.bearer, ...body.headers },
      payload: body.payload,
    })
    expect(res.statusCode).toBe(400)
    expect(res.json().error.code).toBe('unexpected_file')
    expect(await jobsOf(lim, c.id)).toEqual([])
  })

  it('a body that is not multipart/form-data is refused (JSON: 400, text/csv: 415)', async () => {
    const c = await lim.factory.community()
    const json = await lim.app.inject({
      method: 'POST',
      url: UPDATE,
      headers: c.bearer,
      payload: { data: 'email\nx@x.io\n' },
    })
    expect(json.statusCode).toBe(400)
    expect(json.json().error.code).toBe('multipart_expected')
    const csv = await lim.app.inject({
      method: 'POST',
      url: UPDATE,
      headers: { ...c.bearer, 'content-type': 'text/csv' },
      payload: 'email\nx@x.io\n',
    })
    expect(csv.statusCode).toBe(415)
    expect(csv.json().status).toBe('error')
    expect(await jobsOf(lim, c.id)).toEqual([])
  })
})

describe('an upload that breaks off', () => {
  it('leaves no job, no stored piece and no log entry when the client drops the connection mid-file', async () => {
    const c = await t.factory.community()
    const address = await t.app.listen({ host: '127.0.0.1', port: 0 })
    const { port } = new URL(address)
    const rows = Array.from({ length: 150_000 }, (_, i) => `cut${i}@x.io,Name ${i}`).join('\n')
    const body = multipart({ file: `email,first_name\n${rows}\n` })
    expect(body.payload.length).toBeGreaterThan(3 * PIECE_BYTES)
    const { db } = t.deps.database
    const pieces = async () =>
      Number(
        (
          await db
            .selectFrom('bulk_files')
            .select((eb) => eb.fn.countAll().as('n'))
            .where('community_id', '=', c.id)
            .executeTakeFirstOrThrow()
        ).n,
      )

    // Send the headers and the first 2.5 MiB (two pieces stored), then drop the connection.
    const socket = connect(Number(port), '127.0.0.1')
    await once(socket, 'connect')
    const head = Object.entries({
      ...c.bearer,
      ...body.headers,
      'content-length': String(body.payload.length),
    })
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')
    socket.write(`POST ${IMPORT} HTTP/1.1\r\nhost: 127.0.0.1\r\n${head}\r\n`)
    socket.write(body.payload.subarray(0, Math.floor(2.5 * PIECE_BYTES)))
    await until(async () => (await pieces()) >= 2)
    socket.destroy()

    await until(async () => (await pieces()) === 0)
    expect(await jobsOf(t, c.id)).toEqual([])
    const logged = await db.selectFrom('api_log').select('kind').where('community_id', '=', c.id).execute()
    expect(logged.filter((l) => l.kind === 'bulk_job')).toEqual([])

    // The community is not left with a phantom job counting against its limit: a whole upload goes through.
    const job = await runJob(t, IMPORT, c.bearer, { file: 'email\nafter@x.io\n' })
    expect(job).toMatchObject({ status: 'completed', created: 1 })
  })
})

async function until(check: () => Promise<boolean>, timeoutMs = 20_000) {
  const stop = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > stop) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 50))
  }
}

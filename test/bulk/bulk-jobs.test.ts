import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newId } from '../../src/lib/ids.ts'
import { claimJob } from '../../src/modules/bulk/bulk.repo.ts'
import { runBulkJob } from '../../src/modules/bulk/bulk.runner.ts'
import { CsvParser, type CsvRecord, isCsvError } from '../../src/modules/bulk/csv/csv-parser.ts'
import { csvLine } from '../../src/modules/bulk/csv/csv-writer.ts'
import { IMPORT, JOBS, PREMIUM, runJob, UPDATE, upload, waitForJob } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/** Bulk jobs: list, status, details, failed-rows CSV (fix and upload again), dry run, cancel, API log. */

let t: TestApp // runs jobs
let q: TestApp // no worker: jobs stay queued
beforeAll(async () => {
  t = await startTestApp({ worker: true })
  q = await startTestApp()
})
afterAll(async () => {
  await t?.close()
  await q?.close()
})

type Auth = Record<string, string>

const get = (app: TestApp, url: string, auth: Auth) => app.app.inject({ method: 'GET', url, headers: auth })

async function getOk(app: TestApp, url: string, auth: Auth) {
  const res = await get(app, url, auth)
  expect(res.statusCode, res.body).toBe(200)
  return res.json().data
}

/** Cancel with an empty JSON object as the body (the bare POST is tested on its own). */
const cancelJob = (app: TestApp, auth: Auth, jobId: string) =>
  app.app.inject({ method: 'POST', url: `${JOBS}/${jobId}/cancel`, headers: auth, payload: {} })

function parseCsv(text: string): string[][] {
  const p = new CsvParser()
  const records: CsvRecord[] = [...p.push(text), ...p.end()]
  return records.map((r) => {
    if (isCsvError(r)) throw new Error(`bad CSV from the server: ${r.error.message}`)
    return r.cells
  })
}

describe('GET /apis/v1/users/bulk-updates (list)', () => {
  it('lists the jobs of the community newest first, filtered by type and status, paginated', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    const imp = await runJob(t, IMPORT, c.bearer, { file: 'email\nlist1@x.io\n' })
    const upd = await runJob(t, UPDATE, c.bearer, { file: `email,first_name\n${u.email},A\nghost@x.io,B\n` })
    const pre = await runJob(t, PREMIUM, c.bearer, { file: `email,amount\n${u.email},5\n` })
    expect([imp.status, upd.status, pre.status]).toEqual(['completed', 'completed_with_errors', 'completed'])

    const all = await getOk(t, JOBS, c.bearer)
    expect(all.jobs.map((j: { jobId: string }) => j.jobId)).toEqual([pre.jobId, upd.jobId, imp.jobId])
    expect(all.pagination).toEqual({ page: 1, limit: 20, total: 3, total_pages: 1 })
    expect(all.jobs[1]).toEqual(upd)

    const ids = async (qs: string) =>
      (await getOk(t, `${JOBS}?${qs}`, c.bearer)).jobs.map((j: { jobId: string }) => j.jobId)
    expect(await ids('type=update')).toEqual([upd.jobId])
    expect(await ids('type=import')).toEqual([imp.jobId])
    expect(await ids('type=premium-currency')).toEqual([pre.jobId])
    expect(await ids('type=premium_currency')).toEqual([pre.jobId])
    expect(await ids('status=completed_with_errors')).toEqual([upd.jobId])
    expect(await ids('status=completed')).toEqual([pre.jobId, imp.jobId])
    expect(await ids('status=completed&type=import')).toEqual([imp.jobId])
    expect(await ids('status=queued')).toEqual([])

    const p1 = await getOk(t, `${JOBS}?limit=2&page=1`, c.bearer)
    expect(p1.jobs.map((j: { jobId: string }) => j.jobId)).toEqual([pre.jobId, upd.jobId])
    expect(p1.pagination).toEqual({ page: 1, limit: 2, total: 3, total_pages: 2 })
    const p2 = await getOk(t, `${JOBS}?limit=2&page=2`, c.bearer)
    expect(p2.jobs.map((j: { jobId: string }) => j.jobId)).toEqual([imp.jobId])
    expect(p2.pagination).toEqual({ page: 2, limit: 2, total: 3, total_pages: 2 })
    const p3 = await getOk(t, `${JOBS}?limit=2&page=3`, c.bearer)
    expect(p3.jobs).toEqual([])
  })

  it('refuses bad filters with 400', async () => {
    const c = await t.factory.community()
    for (const qs of ['type=bogus', 'status=done', 'limit=0', 'limit=101', 'page=0', 'colour=red']) {
      const res = await get(t, `${JOBS}?${qs}`, c.bearer)
      expect(res.statusCode, qs).toBe(400)
      expect(res.json().status).toBe('error')
    }
  })
})

describe('GET /apis/v1/users/bulk-updates/{jobId} (status)', () => {
  it('shows counts, percentage 100 and ordered timestamps of a finished job', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    const file = `email,first_name,xp\n${u.email},Ann,3\nnew@x.io,New,\n${u.email},Ann,3\n`
    const res = await upload(t, IMPORT, c.bearer, { file })
    expect(res.statusCode).toBe(200)
    const jobId = res.json().data.jobId
    const job = await waitForJob(t, c.bearer, jobId)
    expect(job).toMatchObject({
      _id: jobId,
      jobId,
      type: 'import',
      status: 'completed',
      dryRun: false,
      fileName: 'users.csv',
      fileBytes: Buffer.byteLength(file),
      total: 3,
      processed: 3,
      created: 1,
      updated: 1,
      skipped: 1,
      failed: 0,
      percentage: 100,
      columns: ['email', 'first_name', 'xp'],
      unknownColumns: [],
      cancelRequested: false,
      error: null,
    })
    const created = Date.parse(job.createdAt)
    const started = Date.parse(job.startedAt)
    const finished = Date.parse(job.finishedAt)
    expect(created).toBeLessThanOrEqual(started)
    expect(started).toBeLessThanOrEqual(finished)
    expect(finished).toBeLessThanOrEqual(Date.parse(job.updatedAt))
    // Its pace: 3 rows over the time from start to finish; nothing left to predict.
    const seconds = Math.max(finished - started, 1) / 1000
    expect(job.rowsPerSecond).toBe(finished > started ? Math.round(3 / seconds) : null)
    expect(job.secondsLeft).toBeNull()
  })

  it('answers 404 for an unknown job and 400 for a malformed id', async () => {
    const c = await t.factory.community()
    const missing = await get(t, `${JOBS}/${newId()}`, c.bearer)
    expect(missing.statusCode).toBe(404)
    expect(missing.json()).toMatchObject({ status: 'error' })
    expect((await get(t, `${JOBS}/not-a-job`, c.bearer)).statusCode).toBe(400)
  })
})

describe('GET /apis/v1/users/bulk-updates/{jobId}/details', () => {
  it('lists every row in file order with line, key, action and error, paginated; status=failed keeps the failed ones', async () => {
    const c = await t.factory.community()
    const a = await t.factory.user(c.id)
    const b = await t.factory.user(c.id)
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,first_name,xp\n${a.email},Ann,1\nghost@x.io,G,1\n${b.email},Test,\n${b.email},Bob,2\n${a.email},Ann,abc\n`,
    })
    expect(job).toMatchObject({
      status: 'completed_with_errors',
      total: 5,
      updated: 2,
      skipped: 1,
      failed: 2,
    })
    const all = await getOk(t, `${JOBS}/${job.jobId}/details`, c.bearer)
    expect(all.job).toEqual(job)
    expect(all.pagination).toEqual({ page: 1, limit: 100, total: 5, total_pages: 1 })
    expect(all.rows).toEqual([
      { row: 1, line: 2, key: a.email, action: 'updated', error: null },
      {
        row: 2,
        line: 3,
        key: 'ghost@x.io',
        action: 'failed',
        error: { code: 'user_not_found', field: 'email', message: expect.any(String) },
      },
      { row: 3, line: 4, key: b.email, action: 'skipped', error: null },
      { row: 4, line: 5, key: b.email, action: 'updated', error: null },
      {
        row: 5,
        line: 6,
        key: a.email,
        action: 'failed',
        error: { code: 'invalid_number', field: 'xp', message: expect.stringContaining('abc') },
      },
    ])

    const page2 = await getOk(t, `${JOBS}/${job.jobId}/details?limit=2&page=2`, c.bearer)
    expect(page2.rows.map((r: { row: number }) => r.row)).toEqual([3, 4])
    expect(page2.pagination).toEqual({ page: 2, limit: 2, total: 5, total_pages: 3 })

    const failed = await getOk(t, `${JOBS}/${job.jobId}/details?status=failed`, c.bearer)
    expect(failed.rows).toEqual([all.rows[1], all.rows[4]])
    expect(failed.pagination).toEqual({ page: 1, limit: 100, total: 2, total_pages: 1 })
    const failed2 = await getOk(t, `${JOBS}/${job.jobId}/details?status=failed&limit=1&page=2`, c.bearer)
    expect(failed2.rows).toEqual([all.rows[4]])

    expect((await get(t, `${JOBS}/${job.jobId}/details?status=updated`, c.bearer)).statusCode).toBe(400)
    expect((await get(t, `${JOBS}/${newId()}/details`, c.bearer)).statusCode).toBe(404)
    // A page past the last is empty; one whose row numbers would not fit the database's int is refused.
    const past = await getOk(t, `${JOBS}/${job.jobId}/details?limit=1000&page=1000000`, c.bearer)
    expect([past.rows, past.pagination.total]).toEqual([[], 5])
    const huge = await get(t, `${JOBS}/${job.jobId}/details?limit=1000&page=99999999`, c.bearer)
    expect([huge.statusCode, huge.json().error?.field ?? huge.json().field]).toEqual([400, 'page'])
    // Ids are hexadecimal: upper case names the same job.
    const upper = await getOk(t, `${JOBS}/${job.jobId.toUpperCase()}`, c.bearer)
    expect(upper.jobId).toBe(job.jobId)
  })

  it('format=csv gives the failed rows (original columns, line, error) with formula-looking cells neutralised', async () => {
    const c = await t.factory.community()
    const a = await t.factory.user(c.id)
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,first_name,last_name,country\ng1@x.io,=1+1,+x,ok\n${a.email},Fine,Row,DE\ng2@x.io,-x,@x,"\tTab"\n`,
    })
    expect(job).toMatchObject({ updated: 1, failed: 2 })
    const res = await get(t, `${JOBS}/${job.jobId}/details?format=csv`, c.bearer)
    expect(res.statusCode, res.body).toBe(200)
    expect(res.headers['content-type']).toMatch(/^text\/csv/)
    expect(res.headers['content-disposition']).toContain(`failed-rows-${job.jobId}.csv`)
    const rows = parseCsv(res.body)
    expect(rows[0]).toEqual(['email', 'first_name', 'last_name', 'country', 'line', 'error'])
    expect(rows.slice(1).map((r) => r.slice(0, 5))).toEqual([
      ['g1@x.io', "'=1+1", "'+x", 'ok', '2'],
      ['g2@x.io', "'-x", "'@x", "'\tTab", '4'],
    ])
    for (const r of rows.slice(1)) expect(r[5]).toMatch(/^user_not_found\b/)
    expect(rows).toHaveLength(3)
  })

  it('the failed-rows CSV, fixed and uploaded again (line and error columns left in), now succeeds', async () => {
    const c = await t.factory.community()
    const a = await t.factory.user(c.id)
    const b = await t.factory.user(c.id)
    const d = await t.factory.user(c.id)
    const e = await t.factory.user(c.id)
    const first = await runJob(t, UPDATE, c.bearer, {
      file: `email,first_name,xp_op,xp\n${a.email},Ann,add,abc\nghost@x.io,Gus,add,1\n${d.email},Dee,Add,5\n${e.email},Eve,add,2\n`,
    })
    expect(first).toMatchObject({ status: 'completed_with_errors', updated: 1, failed: 3 })
    const res = await get(t, `${JOBS}/${first.jobId}/details?format=csv`, c.bearer)
    const rows = parseCsv(res.body)
    expect(rows[0]).toEqual(['email', 'first_name', 'xp_op', 'xp', 'line', 'error'])
    expect(rows.slice(1).map((r) => [r[0], r[4]])).toEqual([
      [a.email, '2'],
      ['ghost@x.io', '3'],
      [d.email, '4'],
    ])
    // Fix each row the way its error says.
    const fixed = rows.map((r, i) => {
      if (i === 0) return r
      if (r[5].startsWith('invalid_number')) return [r[0], r[1], r[2], '4', r[4], r[5]]
      if (r[5].startsWith('user_not_found')) return [b.email, r[1], r[2], r[3], r[4], r[5]]
      if (r[5].startsWith('invalid_op')) return [r[0], r[1], 'add', r[3], r[4], r[5]]
      throw new Error(`unexpected error ${r[5]}`)
    })
    const second = await runJob(t, UPDATE, c.bearer, { file: fixed.map((r) => csvLine(r)).join('') })
    expect(second).toMatchObject({
      status: 'completed',
      total: 3,
      updated: 3,
      failed: 0,
      unknownColumns: ['line', 'error'],
    })
    const users = await t.deps.database.db
      .selectFrom('users')
      .select(['id', 'first_name', 'xp'])
      .where('id', 'in', [a.id, b.id, d.id, e.id])
      .execute()
    const byId = new Map(users.map((u) => [u.id, u]))
    expect(byId.get(a.id)).toMatchObject({ first_name: 'Ann', xp: 4 })
    expect(byId.get(b.id)).toMatchObject({ first_name: 'Gus', xp: 1 })
    expect(byId.get(d.id)).toMatchObject({ first_name: 'Dee', xp: 5 })
    expect(byId.get(e.id)).toMatchObject({ first_name: 'Eve', xp: 2 })
  })

  it('a job without failed rows gives a header-only failed-rows CSV', async () => {
    const c = await t.factory.community()
    const job = await runJob(t, IMPORT, c.bearer, { file: 'email,first_name\nclean@x.io,Clean\n' })
    const res = await get(t, `${JOBS}/${job.jobId}/details?format=csv`, c.bearer)
    expect(res.statusCode).toBe(200)
    expect(parseCsv(res.body)).toEqual([['email', 'first_name', 'line', 'error']])
  })

  it('the fix-and-upload loop can go round twice: the failed-rows CSV of a re-uploaded failed-rows CSV has one line and one error column', async () => {
    const c = await t.factory.community()
    const b = await t.factory.user(c.id)
    const d = await t.factory.user(c.id)
    const first = await runJob(t, UPDATE, c.bearer, {
      file: 'email,first_name\nghost1@x.io,One\nghost2@x.io,Two\n',
    })
    expect(first).toMatchObject({ failed: 2 })
    // Round 1: fix only the first failed row, leave line and error in, upload again.
    const csv1 = parseCsv((await get(t, `${JOBS}/${first.jobId}/details?format=csv`, c.bearer)).body)
    expect(csv1[0]).toEqual(['email', 'first_name', 'line', 'error'])
    const round1 = csv1.map((r) => (r[0] === 'ghost1@x.io' ? [b.email, ...r.slice(1)] : r))
    const second = await runJob(t, UPDATE, c.bearer, { file: round1.map((r) => csvLine(r)).join('') })
    expect(second).toMatchObject({ updated: 1, failed: 1, unknownColumns: ['line', 'error'] })
    // Round 2: the failed-rows CSV of that job must be uploadable again, so no column may appear twice.
    const csv2 = parseCsv((await get(t, `${JOBS}/${second.jobId}/details?format=csv`, c.bearer)).body)
    expect(csv2[0]).toEqual(['email', 'first_name', 'line', 'error'])
    expect(csv2.slice(1).map((r) => [r[0], r[2]])).toEqual([['ghost2@x.io', '3']])
    const round2 = csv2.map((r) => (r[0] === 'ghost2@x.io' ? [d.email, ...r.slice(1)] : r))
    const third = await runJob(t, UPDATE, c.bearer, { file: round2.map((r) => csvLine(r)).join('') })
    expect(third).toMatchObject({ status: 'completed', updated: 1, failed: 0 })
  })

  it("a file's own line and error columns (any case) keep their place and cells; Hearth's are then hearth_line and hearth_error, and the loop goes round as before", async () => {
    const c = await t.factory.community()
    await t.factory.userField(c.id, 'error')
    const a = await t.factory.user(c.id)
    const b = await t.factory.user(c.id)
    const first = await runJob(t, UPDATE, c.bearer, {
      file: `email,Line,error,xp\n${a.email},7,oops,abc\nghost1@x.io,8,bad,1\nghost2@x.io,9,worse,2\n`,
    })
    expect(first).toMatchObject({ failed: 3, unknownColumns: ['Line'] })
    const csv1 = parseCsv((await get(t, `${JOBS}/${first.jobId}/details?format=csv`, c.bearer)).body)
    const header = ['email', 'Line', 'error', 'xp', 'hearth_line', 'hearth_error']
    expect(csv1[0]).toEqual(header)
    expect(csv1.slice(1).map((r) => [...r.slice(0, 5), r[5].split(':')[0]])).toEqual([
      [a.email, '7', 'oops', 'abc', '2', 'invalid_number'],
      ['ghost1@x.io', '8', 'bad', '1', '3', 'user_not_found'],
      ['ghost2@x.io', '9', 'worse', '2', '4', 'user_not_found'],
    ])
    // Fix two rows, leave the third; Hearth's columns stay in.
    const round1 = csv1.map((r) =>
      r[0] === a.email
        ? [...r.slice(0, 3), '4', ...r.slice(4)]
        : r[0] === 'ghost1@x.io'
          ? [b.email, ...r.slice(1)]
          : r,
    )
    const second = await runJob(t, UPDATE, c.bearer, { file: round1.map((r) => csvLine(r)).join('') })
    expect(second).toMatchObject({
      updated: 2,
      failed: 1,
      unknownColumns: ['Line', 'hearth_line', 'hearth_error'],
    })
    // The file's own error column was written; Hearth's error messages were not.
    const fields = await t.deps.database.db
      .selectFrom('users')
      .select(['id', 'xp', 'custom_fields'])
      .where('id', 'in', [a.id, b.id])
      .execute()
    const byId = new Map(fields.map((u) => [u.id, u]))
    expect(byId.get(a.id)).toMatchObject({ xp: 4, custom_fields: { error: 'oops' } })
    expect(byId.get(b.id)).toMatchObject({ xp: 1, custom_fields: { error: 'bad' } })
    // Its failed-rows CSV has the same columns again, none twice.
    const csv2 = parseCsv((await get(t, `${JOBS}/${second.jobId}/details?format=csv`, c.bearer)).body)
    expect(csv2[0]).toEqual(header)
    expect(csv2.slice(1).map((r) => r.slice(0, 5))).toEqual([['ghost2@x.io', '9', 'worse', '2', '4']])
  })

  it("Hearth's line and error columns, uploaded again, write nothing even where the community has fields called so", async () => {
    const c = await t.factory.community()
    await t.factory.userField(c.id, 'line')
    await t.factory.userField(c.id, 'error')
    const a = await t.factory.user(c.id)
    const first = await runJob(t, UPDATE, c.bearer, { file: `email,xp\n${a.email},abc\n` })
    expect(first).toMatchObject({ failed: 1 })
    const csv = parseCsv((await get(t, `${JOBS}/${first.jobId}/details?format=csv`, c.bearer)).body)
    expect(csv[0]).toEqual(['email', 'xp', 'line', 'error'])
    const fixed = csv.map((r, i) => (i === 0 ? r : [r[0], '6', r[2], r[3]]))
    const second = await runJob(t, UPDATE, c.bearer, { file: fixed.map((r) => csvLine(r)).join('') })
    expect(second).toMatchObject({ status: 'completed', updated: 1, unknownColumns: ['line', 'error'] })
    const user = await t.deps.database.db
      .selectFrom('users')
      .select(['xp', 'custom_fields'])
      .where('id', '=', a.id)
      .executeTakeFirstOrThrow()
    expect(user.xp).toBe(6)
    expect(user.custom_fields).not.toHaveProperty('line')
    expect(user.custom_fields).not.toHaveProperty('error')
  })
})

describe('dry run (multipart field dryRun=true)', () => {
  it('reports would-be created, updated, skipped and failed rows and writes nothing', async () => {
    const c = await t.factory.community()
    await t.factory.userField(c.id, 'deposit', 'number')
    const a = await t.factory.user(c.id)
    const file = `email,first_name,xp,deposit\nnew@x.io,New,5,10\n${a.email},Changed,7,3\nbad,X,1,1\n${a.email},Changed,7,3\n`
    const dry = await runJob(t, IMPORT, c.bearer, { file, fields: { dryRun: 'true' } })
    expect(dry).toMatchObject({
      dryRun: true,
      status: 'completed_with_errors',
      total: 4,
      created: 1,
      updated: 1,
      skipped: 1,
      failed: 1,
    })
    const details = await getOk(t, `${JOBS}/${dry.jobId}/details`, c.bearer)
    expect(details.rows.map((r: { action: string }) => r.action)).toEqual([
      'created',
      'updated',
      'failed',
      'skipped',
    ])

    const db = t.deps.database.db
    const users = await db
      .selectFrom('users')
      .select(['id', 'first_name', 'xp', 'custom_fields'])
      .where('community_id', '=', c.id)
      .execute()
    expect(users).toEqual([{ id: a.id, first_name: 'Test', xp: 0, custom_fields: {} }])
    expect(
      await db.selectFrom('currency_ledger').select('id').where('community_id', '=', c.id).execute(),
    ).toEqual([])
    expect(
      await db.selectFrom('field_histories').select('id').where('community_id', '=', c.id).execute(),
    ).toEqual([])

    // The real run does what the dry run predicted.
    const real = await runJob(t, IMPORT, c.bearer, { file })
    expect(real).toMatchObject({ dryRun: false, created: 1, updated: 1, skipped: 1, failed: 1 })
    expect(await db.selectFrom('users').select('id').where('community_id', '=', c.id).execute()).toHaveLength(
      2,
    )
  })

  it('a premium dry run moves no balance and writes no ledger row', async () => {
    const c = await t.factory.community()
    const a = await t.factory.user(c.id)
    const dry = await runJob(t, PREMIUM, c.bearer, {
      file: `email,amount\n${a.email},25\n`,
      fields: { dryRun: 'true' },
    })
    expect(dry).toMatchObject({ dryRun: true, status: 'completed', updated: 1 })
    const db = t.deps.database.db
    expect(
      (await db.selectFrom('users').select('premium').where('id', '=', a.id).executeTakeFirstOrThrow())
        .premium,
    ).toBe(0)
    expect(
      await db.selectFrom('currency_ledger').select('id').where('community_id', '=', c.id).execute(),
    ).toEqual([])
  })

  it('dryRun must be true or false', async () => {
    const c = await t.factory.community()
    const res = await upload(t, IMPORT, c.bearer, { file: 'email\nx@x.io\n', fields: { dryRun: 'yes' } })
    expect(res.statusCode).toBe(400)
    expect(res.json().error).toMatchObject({ code: 'invalid_field', field: 'dryRun' })
    expect(
      await t.deps.database.db
        .selectFrom('bulk_jobs')
        .select('id')
        .where('community_id', '=', c.id)
        .execute(),
    ).toEqual([])
  })
})

describe('POST /apis/v1/users/bulk-updates/{jobId}/cancel', () => {
  it('cancels a queued job at once; a retried cancel answers the same cancelled job', async () => {
    const c = await q.factory.community()
    const u = await q.factory.user(c.id)
    const res = await upload(q, UPDATE, c.bearer, { file: `email,first_name\n${u.email},Never\n` })
    expect(res.statusCode).toBe(200)
    const jobId = res.json().data.jobId
    const queued = await getOk(q, `${JOBS}/${jobId}`, c.bearer)
    expect(queued).toMatchObject({
      status: 'queued',
      total: 1,
      processed: 0,
      percentage: 0,
      rowsPerSecond: null,
      secondsLeft: null,
      startedAt: null,
      finishedAt: null,
    })

    const cancel = await cancelJob(q, c.bearer, jobId)
    expect(cancel.statusCode, cancel.body).toBe(200)
    expect(cancel.json().data).toMatchObject({
      jobId,
      status: 'cancelled',
      cancelRequested: true,
      processed: 0,
    })
    expect(cancel.json().data.finishedAt).not.toBeNull()
    expect(await getOk(q, `${JOBS}/${jobId}`, c.bearer)).toMatchObject({ status: 'cancelled' })
    expect(
      (await getOk(q, `${JOBS}?status=cancelled`, c.bearer)).jobs.map((j: { jobId: string }) => j.jobId),
    ).toEqual([jobId])
    // The stored upload is gone and the user untouched.
    const db = q.deps.database.db
    expect(await db.selectFrom('bulk_files').select('seq').where('upload_id', '=', jobId).execute()).toEqual(
      [],
    )
    expect(
      (await db.selectFrom('users').select('first_name').where('id', '=', u.id).executeTakeFirstOrThrow())
        .first_name,
    ).toBe('Test')

    const again = await cancelJob(q, c.bearer, jobId)
    expect(again.statusCode, again.body).toBe(200)
    expect(again.json().data).toEqual(cancel.json().data)
  })

  it('a job already taken by a worker is asked to stop; the worker then ends it cancelled without applying a row', async () => {
    const c = await q.factory.community()
    const u = await q.factory.user(c.id)
    const res = await upload(q, UPDATE, c.bearer, { file: `email,first_name\n${u.email},Never\n` })
    const jobId = res.json().data.jobId
    // Another worker has claimed the job (as runBulkJob does first), and its lease has run out.
    const claimed = await claimJob(q.deps.database.db, jobId, 'another-worker', 0)
    expect(claimed?.status).toBe('validating')
    const cancel = await cancelJob(q, c.bearer, jobId)
    expect(cancel.statusCode, cancel.body).toBe(200)
    expect(cancel.json().data).toMatchObject({
      status: 'validating',
      cancelRequested: true,
      finishedAt: null,
    })
    await runBulkJob(q.deps, jobId)
    expect(await getOk(q, `${JOBS}/${jobId}`, c.bearer)).toMatchObject({
      status: 'cancelled',
      processed: 0,
      updated: 0,
      cancelRequested: true,
    })
    const row = await q.deps.database.db
      .selectFrom('users')
      .select('first_name')
      .where('id', '=', u.id)
      .executeTakeFirstOrThrow()
    expect(row.first_name).toBe('Test')
  })

  it('a bare POST without a body (curl -X POST) cancels a queued job', async () => {
    const c = await q.factory.community()
    const res = await upload(q, IMPORT, c.bearer, { file: 'email\nbare@x.io\n' })
    const jobId = res.json().data.jobId
    const cancel = await q.app.inject({ method: 'POST', url: `${JOBS}/${jobId}/cancel`, headers: c.bearer })
    expect(cancel.statusCode, cancel.body).toBe(200)
    expect(cancel.json().data).toMatchObject({ jobId, status: 'cancelled' })
  })

  it('a finished job cannot be cancelled (409 job_finished); an unknown job is 404', async () => {
    const c = await t.factory.community()
    const job = await runJob(t, IMPORT, c.bearer, { file: 'email\ndone@x.io\n' })
    const res = await cancelJob(t, c.bearer, job.jobId)
    expect(res.statusCode).toBe(409)
    expect(res.json()).toMatchObject({ status: 'error', error: { code: 'job_finished', field: 'jobId' } })
    expect(await getOk(t, `${JOBS}/${job.jobId}`, c.bearer)).toMatchObject({
      status: 'completed',
      cancelRequested: false,
    })
    const missing = await cancelJob(t, c.bearer, newId())
    expect(missing.statusCode).toBe(404)
  })
})

describe('API log', () => {
  it('shows the bulk job row with its progress', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,first_name\n${u.email},Logged\nghost@x.io,G\n`,
    })
    const res = await get(t, `/apis/v1/communities/${c.id}/api-logs?kind=bulk_job`, c.bearer)
    expect(res.statusCode, res.body).toBe(200)
    const entries = res.json().data
    expect(entries).toHaveLength(1)
    expect(entries[0]).toMatchObject({
      kind: 'bulk_job',
      method: 'POST',
      path: UPDATE,
      bulkJob: {
        _id: job.jobId,
        type: 'update',
        status: 'completed_with_errors',
        total: 2,
        processed: 2,
        updated: 1,
        failed: 1,
        percentage: 100,
      },
    })
    expect(entries[0].bulkJob.finishedAt).not.toBeNull()
  })

  it('shows a queued job at 0% and then cancelled', async () => {
    const c = await q.factory.community()
    const res = await upload(q, IMPORT, c.bearer, { file: 'email\nqueued@x.io\n' })
    const jobId = res.json().data.jobId
    const url = `/apis/v1/communities/${c.id}/api-logs?kind=bulk_job`
    const before = (await getOk(q, url, c.bearer))[0]
    expect(before.bulkJob).toMatchObject({
      _id: jobId,
      status: 'queued',
      total: 1,
      processed: 0,
      percentage: 0,
      finishedAt: null,
    })
    expect((await cancelJob(q, c.bearer, jobId)).statusCode).toBe(200)
    const after = (await getOk(q, url, c.bearer))[0]
    expect(after.bulkJob).toMatchObject({ _id: jobId, status: 'cancelled', processed: 0 })
    expect(after.bulkJob.finishedAt).not.toBeNull()
  })
})

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CsvParser, type CsvRecord, isCsvError } from '../../src/modules/bulk/csv/csv-parser.ts'
import { failedRows, IMPORT, JOBS, PREMIUM, runJob, UPDATE, upload } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * A NUL character (U+0000, which PostgreSQL text and jsonb cannot hold) fails its row, or the job
 * at its header, never the job after retries; a spreadsheet's padding rows (",,,") count nowhere:
 * not in the total while queued, the API log's row count or the row limit.
 */

let t: TestApp // runs jobs
let q: TestApp // no worker: jobs stay queued; the row limit is 2
beforeAll(async () => {
  ;[t, q] = await Promise.all([startTestApp({ worker: true }), startTestApp({ env: { BULK_MAX_ROWS: '2' } })])
})
afterAll(async () => {
  await t?.close()
  await q?.close()
})

type Auth = Record<string, string>

async function emails(app: TestApp, communityId: string) {
  const rows = await app.deps.database.db
    .selectFrom('users')
    .select('email')
    .where('community_id', '=', communityId)
    .orderBy('email')
    .execute()
  return rows.map((r) => r.email)
}

async function failedCsv(app: TestApp, auth: Auth, jobId: string): Promise<string[][]> {
  const res = await app.app.inject({
    method: 'GET',
    url: `${JOBS}/${jobId}/details?format=csv`,
    headers: auth,
  })
  expect(res.statusCode, res.body).toBe(200)
  expect(res.body).not.toContain('\u0000')
  // U+FFFD marks where a NUL was; the parser would take it for text that is not UTF-8.
  const p = new CsvParser()
  return [...p.push(res.body.replaceAll('\uFFFD', '<NUL>')), ...p.end()].map((r: CsvRecord) => {
    if (isCsvError(r)) throw new Error(`bad CSV from the server: ${r.error.message}`)
    return r.cells
  })
}

describe('a NUL character in an uploaded CSV', () => {
  it('fails its row (line number, column, reason); the other rows apply and the job completes', async () => {
    const c = await t.factory.community()
    const file = 'email,first_name\nok1@x.com,A\nnul@x.com,Bo\u0000b\nok2@x.com,C'
    const job = await runJob(t, IMPORT, c.bearer, { file })
    expect(job).toMatchObject({
      status: 'completed_with_errors',
      total: 3,
      processed: 3,
      created: 2,
      failed: 1,
      error: null,
    })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed).toHaveLength(1)
    expect(failed[0]).toMatchObject({ row: 2, line: 3, error: { code: 'nul_character' } })
    expect(failed[0].error.message).toContain('"first_name"')
    expect(failed[0].error.message).toContain('line 3')
    expect(await emails(t, c.id)).toEqual(['ok1@x.com', 'ok2@x.com'])
  })

  it('the failed-rows CSV gives the NUL row, its NUL shown as U+FFFD, with its line and error', async () => {
    const c = await t.factory.community()
    const file = 'email,first_name\nok1@x.com,A\n"nul@x.com","Bo\u0000b, Jr"\n'
    const job = await runJob(t, IMPORT, c.bearer, { file })
    expect(job).toMatchObject({ status: 'completed_with_errors', created: 1, failed: 1 })
    const rows = await failedCsv(t, c.bearer, job.jobId)
    expect(rows).toHaveLength(2)
    expect(rows[0]).toEqual(['email', 'first_name', 'line', 'error'])
    // A row that fails before it is split into cells comes back as its original line, in the first column.
    expect(rows[1][0]).toBe('"nul@x.com","Bo<NUL>b, Jr"')
    expect(rows[1][2]).toBe('3')
    expect(rows[1][3]).toMatch(/^nul_character\b/)
  })

  it('fails the row on update and premium jobs too, whose failed rows keep their cells in jsonb', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    const upd = await runJob(t, UPDATE, c.bearer, {
      file: `email,first_name\n${u.email},Ann\nghost@x.io,Gh\u0000st\n${u.email},Bo\u0000b\n`,
    })
    expect(upd).toMatchObject({ status: 'completed_with_errors', total: 3, updated: 1, failed: 2 })
    expect((await failedRows(t, c.bearer, upd.jobId)).map((r) => [r.line, r.error.code])).toEqual([
      [3, 'nul_character'],
      [4, 'nul_character'],
    ])
    const pre = await runJob(t, PREMIUM, c.bearer, {
      file: `email,amount,reason\n${u.email},5,gift\n${u.email},7,gi\u0000ft\n`,
    })
    expect(pre).toMatchObject({ status: 'completed_with_errors', total: 2, failed: 1 })
    const [f] = await failedRows(t, c.bearer, pre.jobId)
    expect(f).toMatchObject({ line: 3, error: { code: 'nul_character' } })
    expect(f.error.message).toContain('"reason"')
  })

  it('a dry run reports the NUL row as failed', async () => {
    const c = await t.factory.community()
    const job = await runJob(t, IMPORT, c.bearer, {
      file: 'email,first_name\nok1@x.com,A\nnul@x.com,Bo\u0000b\n',
      fields: { dryRun: 'true' },
    })
    expect(job).toMatchObject({ status: 'completed_with_errors', total: 2, created: 1, failed: 1 })
    expect(await emails(t, c.id)).toEqual([])
  })

  it('a NUL in a row that cannot be read (malformed quoting) is not stored either', async () => {
    const c = await t.factory.community()
    const job = await runJob(t, IMPORT, c.bearer, {
      file: 'email,first_name\nok1@x.com,A\nbad@x.com,a"\u0000"b\nok2@x.com,C\n',
    })
    expect(job).toMatchObject({ status: 'completed_with_errors', total: 3, created: 2, failed: 1 })
    const rows = await failedCsv(t, c.bearer, job.jobId)
    expect(rows[1][0]).toBe('bad@x.com,a"<NUL>"b')
    expect(rows[1][3]).toMatch(/^malformed_quoting\b/)
  })

  it('in the header, fails the job at once as malformed_header', async () => {
    const c = await t.factory.community()
    const job = await runJob(t, IMPORT, c.bearer, { file: 'email,first\u0000name\nok1@x.com,A\n' })
    expect(job).toMatchObject({ status: 'failed', processed: 0, error: { code: 'malformed_header' } })
    expect(job.error.message).toContain('U+0000')
    expect(job.error.message).not.toContain('\u0000')
    const row = await t.deps.database.db
      .selectFrom('bulk_jobs')
      .select('attempts')
      .where('id', '=', job.jobId)
      .executeTakeFirstOrThrow()
    expect(row.attempts).toBeLessThanOrEqual(1) // failed at its first attempt, not after retries
    expect(await emails(t, c.id)).toEqual([])
  })
})

describe("a spreadsheet's padding rows (only commas)", () => {
  const padded = 'email,first_name,,\nann@x.io,Ann,,\nbob@x.io,Bob,,\n,,,\n,,,\n , ,,\n"",,,\n,,,\n,,,'

  it('count nowhere: the queued job and the API log say 2 rows, and the row limit of 2 takes the file', async () => {
    const c = await q.factory.community()
    const res = await upload(q, IMPORT, c.bearer, { file: padded })
    expect(res.statusCode, res.body).toBe(200)
    const jobId = res.json().data.jobId
    const job = await q.app.inject({ method: 'GET', url: `${JOBS}/${jobId}`, headers: c.bearer })
    expect(job.json().data).toMatchObject({ status: 'queued', total: 2 })
    const log = await q.app.inject({
      method: 'GET',
      url: `/apis/v1/communities/${c.id}/api-logs?kind=bulk_job`,
      headers: c.bearer,
    })
    expect(log.statusCode, log.body).toBe(200)
    const [entry] = log.json().data
    expect(entry.summary).toMatchObject({ rows: 2 })
    expect(entry.bulkJob).toMatchObject({ _id: jobId, status: 'queued', total: 2 })
    // A third row with a value is over the limit.
    const over = await upload(q, IMPORT, c.bearer, { file: `${padded}\ncat@x.io,Cat\n` })
    expect(over.statusCode, over.body).toBe(413)
    expect(over.json().error.code).toBe('too_many_rows')
  })

  it('the job ends with the same total', async () => {
    const c = await t.factory.community()
    const job = await runJob(t, IMPORT, c.bearer, { file: padded })
    expect(job).toMatchObject({ status: 'completed', total: 2, processed: 2, created: 2 })
    const log = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/communities/${c.id}/api-logs?kind=bulk_job`,
      headers: c.bearer,
    })
    expect(log.json().data[0].summary).toMatchObject({ rows: 2 })
  })
})

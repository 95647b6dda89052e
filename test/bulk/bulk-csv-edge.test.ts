import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CsvParser, isCsvError } from '../../src/modules/bulk/csv/csv-parser.ts'
import { csvLine } from '../../src/modules/bulk/csv/csv-writer.ts'
import { failedRows, IMPORT, runJob, UPDATE, upload } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/** CSV edge cases of bulk uploads: encoding, line ends, quoting, headers and bad rows. */

let t: TestApp
beforeAll(async () => {
  t = await startTestApp({ worker: true })
})
afterAll(() => t.close())

const db = () => t.deps.database.db

function user(id: string) {
  return db()
    .selectFrom('users')
    .select(['first_name', 'last_name', 'xp'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow()
}

async function community(users = 2) {
  const c = await t.factory.community()
  const us = []
  for (let i = 0; i < users; i++) us.push(await t.factory.user(c.id))
  return { c, us }
}

describe('bulk CSV: encoding, line ends and quoting', () => {
  it('accepts a UTF-8 byte-order mark, CRLF line ends and a quoted header', async () => {
    const { c, us } = await community()
    const [a, b] = us
    const file = Buffer.concat([
      Buffer.from([0xef, 0xbb, 0xbf]),
      Buffer.from(`"email","first_name"\r\n${a.email},Ann\r\n${b.email},Bob\r\n`),
    ])
    const job = await runJob(t, UPDATE, c.bearer, { file })
    expect(job).toMatchObject({
      status: 'completed',
      total: 2,
      processed: 2,
      updated: 2,
      failed: 0,
      columns: ['email', 'first_name'],
      unknownColumns: [],
    })
    expect((await user(a.id)).first_name).toBe('Ann')
    expect((await user(b.id)).first_name).toBe('Bob')
  })

  it('keeps commas, doubled quotes, line breaks and non-ASCII text inside quoted cells; lines count physical lines', async () => {
    const { c, us } = await community()
    const [a, b] = us
    const file =
      'email,first_name,last_name\r\n' +
      `${a.email},"Smith, Ann","two\nlines"\r\n` +
      `${b.email},"Bob ""The Builder""",Zoë 😀\r\n` +
      'ghost@x.io,x,y\r\n'
    const job = await runJob(t, UPDATE, c.bearer, { file })
    expect(job).toMatchObject({ status: 'completed_with_errors', total: 3, updated: 2, failed: 1 })
    expect(await user(a.id)).toMatchObject({ first_name: 'Smith, Ann', last_name: 'two\nlines' })
    expect(await user(b.id)).toMatchObject({ first_name: 'Bob "The Builder"', last_name: 'Zoë 😀' })
    // Row 1 spans lines 2-3, so the ghost row starts on line 5.
    expect((await failedRows(t, c.bearer, job.jobId)).map((r) => [r.row, r.line, r.error.code])).toEqual([
      [3, 5, 'user_not_found'],
    ])
  })

  it('accepts the header in any column order and spelling (case, camelCase, spaces), with the op column anywhere', async () => {
    const { c, us } = await community()
    const [a] = us
    await db().updateTable('users').set({ xp: 10 }).where('id', '=', a.id).execute()
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `Last Name,XP,FirstName,EMAIL,xp_op\nLee,5,Al,${a.email},add\n`,
    })
    expect(job).toMatchObject({
      status: 'completed',
      updated: 1,
      columns: ['last_name', 'xp', 'first_name', 'email', 'xp_op'],
      unknownColumns: [],
    })
    expect(await user(a.id)).toEqual({ first_name: 'Al', last_name: 'Lee', xp: 15 })
  })

  it('reports unknown columns on the job and ignores them', async () => {
    const { c, us } = await community()
    const [a] = us
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,favourite_color,first_name,Shoe Size,first_name_op\n${a.email},red,Ann,42,add\n`,
    })
    expect(job).toMatchObject({
      status: 'completed',
      updated: 1,
      failed: 0,
      unknownColumns: ['favourite_color', 'Shoe Size', 'first_name_op'],
    })
    expect((await user(a.id)).first_name).toBe('Ann')
    const row = await db()
      .selectFrom('users')
      .select('custom_fields')
      .where('id', '=', a.id)
      .executeTakeFirstOrThrow()
    expect(row.custom_fields).toEqual({})
  })

  it('trims cells of default fields, and skips blank lines without counting them as rows', async () => {
    const { c, us } = await community()
    const [a, b] = us
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,first_name\n\n${a.email},  Ann  \n\n\n${b.email},Bob\n\n`,
    })
    expect(job).toMatchObject({ status: 'completed', total: 2, processed: 2, updated: 2 })
    expect((await user(a.id)).first_name).toBe('Ann')
    const details = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/bulk-updates/${job.jobId}/details`,
      headers: c.bearer,
    })
    expect(details.json().data.rows.map((r: { line: number }) => r.line)).toEqual([3, 6])
  })

  it("a spreadsheet's padding is ignored: empty trailing header columns, and rows of only commas", async () => {
    const c = await t.factory.community()
    const file = 'email,first_name,,\nann@x.io,Ann,,\nbob@x.io,Bob\n,,,\n , ,,\ncat@x.io,Cat,,oops\n,,,\n'
    const job = await runJob(t, IMPORT, c.bearer, { file })
    expect(job).toMatchObject({
      status: 'completed_with_errors',
      total: 3,
      created: 2,
      failed: 1,
      unknownColumns: [],
    })
    // A value under a column without a name is not dropped silently: that row fails.
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed.map((r) => [r.row, r.line, r.error.code])).toEqual([[3, 6, 'column_count_mismatch']])
    const users = await db()
      .selectFrom('users')
      .select(['email', 'first_name'])
      .where('community_id', '=', c.id)
      .orderBy('email')
      .execute()
    expect(users).toEqual([
      { email: 'ann@x.io', first_name: 'Ann' },
      { email: 'bob@x.io', first_name: 'Bob' },
    ])
  })
})

describe('bulk CSV: bad rows fail alone, with their line', () => {
  it('a file saved as Windows-1252 fails its non-UTF-8 rows with invalid_encoding; the ASCII rows apply', async () => {
    const c = await t.factory.community()
    // Excel's "CSV (Comma delimited)": "José" and "Zoë" are single bytes, not UTF-8.
    const file = Buffer.concat([
      Buffer.from('email,first_name\nann@x.io,Jos'),
      Buffer.from([0xe9]),
      Buffer.from('\nbob@x.io,Bob\nzoe@x.io,Zo'),
      Buffer.from([0xeb]),
      Buffer.from('\n'),
    ])
    const job = await runJob(t, IMPORT, c.bearer, { file })
    expect(job).toMatchObject({ status: 'completed_with_errors', created: 1, failed: 2 })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed.map((r) => [r.row, r.line, r.error.code])).toEqual([
      [1, 2, 'invalid_encoding'],
      [3, 4, 'invalid_encoding'],
    ])
    expect(failed[0].error.message).toContain('save the file as "CSV UTF-8"')
    const users = await db().selectFrom('users').select('email').where('community_id', '=', c.id).execute()
    expect(users).toEqual([{ email: 'bob@x.io' }])
  })

  it('invalid email, xp=abc, too few or too many cells, empty key: each row fails with its code; the others apply', async () => {
    const { c, us } = await community()
    const [a, b] = us
    const file = [
      'email,first_name,xp',
      'not-an-email,X,1',
      `${a.email},Ann,abc`,
      `${a.email},Ann`,
      `${a.email},Ann,1,extra`,
      `${b.email},Bob,3`,
      ',Nobody,1',
      '',
      `${a.email},Ann2,2`,
      '',
    ].join('\n')
    const job = await runJob(t, UPDATE, c.bearer, { file })
    expect(job).toMatchObject({
      status: 'completed_with_errors',
      total: 7,
      processed: 7,
      updated: 2,
      failed: 5,
    })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed.map((r) => [r.row, r.line, r.key, r.error.code, r.error.field])).toEqual([
      [1, 2, 'not-an-email', 'invalid_email', 'email'],
      [2, 3, a.email, 'invalid_number', 'xp'],
      [3, 4, null, 'column_count_mismatch', null],
      [4, 5, null, 'column_count_mismatch', null],
      [6, 7, null, 'missing_key', null],
    ])
    expect(await user(a.id)).toMatchObject({ first_name: 'Ann2', xp: 2 })
    expect(await user(b.id)).toMatchObject({ first_name: 'Bob', xp: 3 })
  })

  it('numbers are plain decimal whole numbers: hex, binary and octal forms fail with invalid_number', async () => {
    const { c, us } = await community(1)
    const [a] = us
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,xp\n${a.email},0x10\n${a.email},0b101\n${a.email},0o7\n${a.email},12\n`,
    })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed.map((r) => [r.line, r.error.code, r.error.field])).toEqual([
      [2, 'invalid_number', 'xp'],
      [3, 'invalid_number', 'xp'],
      [4, 'invalid_number', 'xp'],
    ])
    expect(job).toMatchObject({ status: 'completed_with_errors', updated: 1, failed: 3 })
    expect((await user(a.id)).xp).toBe(12)
  })

  it('join_date takes YYYY-MM-DD or ISO 8601 only: "12" or "maybe 1" fail with invalid_date', async () => {
    const { c, us } = await community(1)
    const [a] = us
    const before = await db()
      .selectFrom('users')
      .select('join_date')
      .where('id', '=', a.id)
      .executeTakeFirstOrThrow()
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,join_date\n${a.email},12\n${a.email},maybe 1\n${a.email},2024-13-45\n`,
    })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed.map((r) => [r.line, r.error.code, r.error.field])).toEqual([
      [2, 'invalid_date', 'join_date'],
      [3, 'invalid_date', 'join_date'],
      [4, 'invalid_date', 'join_date'],
    ])
    expect(job).toMatchObject({ status: 'completed_with_errors', updated: 0, failed: 3 })
    const after = await db()
      .selectFrom('users')
      .select('join_date')
      .where('id', '=', a.id)
      .executeTakeFirstOrThrow()
    expect(after.join_date).toEqual(before.join_date)
  })

  it('join_date accepts YYYY-MM-DD and ISO 8601', async () => {
    const { c, us } = await community(2)
    const [a, b] = us
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,join_date\n${a.email},2020-02-29\n${b.email},2021-06-01T12:30:00+02:00\n`,
    })
    expect(job).toMatchObject({ status: 'completed', updated: 2 })
    const rows = await db()
      .selectFrom('users')
      .select(['id', 'join_date'])
      .where('id', 'in', [a.id, b.id])
      .execute()
    const byId = new Map(rows.map((r) => [r.id, new Date(r.join_date).toISOString()]))
    expect(byId.get(a.id)).toBe('2020-02-29T00:00:00.000Z')
    expect(byId.get(b.id)).toBe('2021-06-01T10:30:00.000Z')
  })

  it('an import row with an invalid email creates no user', async () => {
    const c = await t.factory.community()
    const job = await runJob(t, IMPORT, c.bearer, { file: 'email,first_name\nbad@,Bad\nok@x.io,Ok\n' })
    expect(job).toMatchObject({ status: 'completed_with_errors', created: 1, failed: 1 })
    const emails = await db().selectFrom('users').select('email').where('community_id', '=', c.id).execute()
    expect(emails).toEqual([{ email: 'ok@x.io' }])
  })

  it('malformed quoting in the middle fails that row with its line; rows after it still apply', async () => {
    const { c, us } = await community(6)
    const [a, b, d, e, f, g] = us
    const file = [
      'email,first_name',
      `${a.email},Ann`, // line 2
      `${b.email},"Bo"b`, // line 3: text after a closing quote
      `${d.email},Dee`, // line 4
      `${e.email},"multi`, // lines 5-6
      `line"`,
      `${f.email},Bo"x`, // line 7: a quote inside an unquoted cell
      `${g.email},Gee`, // line 8
      '',
    ].join('\n')
    const job = await runJob(t, UPDATE, c.bearer, { file })
    expect(job).toMatchObject({
      status: 'completed_with_errors',
      total: 6,
      processed: 6,
      updated: 4,
      failed: 2,
    })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed.map((r) => [r.row, r.line, r.error.code])).toEqual([
      [2, 3, 'malformed_quoting'],
      [5, 7, 'malformed_quoting'],
    ])
    expect((await user(a.id)).first_name).toBe('Ann')
    expect((await user(b.id)).first_name).toBe('Test')
    expect((await user(d.id)).first_name).toBe('Dee')
    expect((await user(e.id)).first_name).toBe('multi\nline')
    expect((await user(f.id)).first_name).toBe('Test')
    expect((await user(g.id)).first_name).toBe('Gee')
  })

  it('an unterminated quote at the end fails that last row only', async () => {
    const { c, us } = await community()
    const [a, b] = us
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,first_name\n${a.email},Ann\n${b.email},"never closed\n`,
    })
    expect(job).toMatchObject({ status: 'completed_with_errors', updated: 1, failed: 1 })
    expect((await failedRows(t, c.bearer, job.jobId)).map((r) => [r.line, r.error.code])).toEqual([
      [3, 'malformed_quoting'],
    ])
    expect((await user(a.id)).first_name).toBe('Ann')
    expect((await user(b.id)).first_name).toBe('Test')
  })
})

describe('bulk CSV: a row that cannot be split, in the failed-rows CSV', () => {
  function cellsOf(text: string): string[][] {
    const parser = new CsvParser()
    return [...parser.push(text), ...parser.end()].map((r) => {
      if (isCsvError(r)) throw new Error(r.error.message)
      return r.cells
    })
  }

  it('is there whole in the first column, its error says so, and fixed and re-split it applies', async () => {
    const { c, us } = await community()
    const [a, b] = us
    const bad = `${a.email},"Ann"x,Smith`
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,first_name,last_name\n${bad}\n${b.email},Bob,Jones\n`,
    })
    expect(job).toMatchObject({ status: 'completed_with_errors', updated: 1, failed: 1 })
    const message =
      'Unexpected character "x" after a closing quote on line 2. In the failed-rows CSV this whole original line is in the first column, as one cell: fix it there and split it back into its columns before uploading again'
    expect((await failedRows(t, c.bearer, job.jobId))[0].error).toEqual({
      code: 'malformed_quoting',
      field: null,
      message,
    })
    const res = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/bulk-updates/${job.jobId}/details?format=csv`,
      headers: c.bearer,
    })
    const rows = cellsOf(res.body)
    expect(rows).toEqual([
      ['email', 'first_name', 'last_name', 'line', 'error'],
      [bad, '', '', '2', `malformed_quoting: ${message}`],
    ])
    // What the message asks: mend the line, then split it back into its columns.
    const [mended] = cellsOf(rows[1][0].replace('"Ann"x', '"Ann X"'))
    const fixed = [rows[0], [...mended, rows[1][3], rows[1][4]]]
    const again = await runJob(t, UPDATE, c.bearer, { file: fixed.map((r) => csvLine(r)).join('') })
    expect(again).toMatchObject({ status: 'completed', updated: 1, failed: 0 })
    expect(await user(a.id)).toMatchObject({ first_name: 'Ann X', last_name: 'Smith' })
  })
})

describe('bulk CSV: files and headers', () => {
  it('a header-only file completes with 0 rows', async () => {
    const { c } = await community(0)
    for (const file of ['email,first_name\n', 'email,first_name']) {
      const job = await runJob(t, IMPORT, c.bearer, { file })
      expect(job).toMatchObject({
        status: 'completed',
        total: 0,
        processed: 0,
        created: 0,
        failed: 0,
        percentage: 100,
        columns: ['email', 'first_name'],
      })
    }
  })

  it('an empty file is refused at once with 400 empty_file and makes no job', async () => {
    const { c } = await community(0)
    for (const path of [IMPORT, UPDATE, '/apis/v1/users/bulk-update/premium-currency']) {
      const res = await upload(t, path, c.bearer, { file: '' })
      expect(res.statusCode, res.body).toBe(400)
      expect(res.json()).toMatchObject({ status: 'error', error: { code: 'empty_file', field: 'data' } })
    }
    expect(
      await db().selectFrom('bulk_jobs').select('id').where('community_id', '=', c.id).execute(),
    ).toEqual([])
    expect(
      await db()
        .selectFrom('bulk_files')
        .select('upload_id')
        .where('community_id', 'in', [c.id, ''])
        .execute(),
    ).toEqual([])
  })

  it('a file of blank lines has no header: the job fails with empty_file', async () => {
    const { c } = await community(0)
    const job = await runJob(t, IMPORT, c.bearer, { file: '\r\n\r\n' })
    expect(job).toMatchObject({ status: 'failed', error: { code: 'empty_file' } })
  })

  it('a file without the key column fails the job with missing_key_column and applies nothing', async () => {
    const { c, us } = await community(1)
    for (const path of [IMPORT, UPDATE]) {
      const job = await runJob(t, path, c.bearer, { file: 'first_name,xp\nAnn,5\n' })
      expect(job).toMatchObject({ status: 'failed', processed: 0, error: { code: 'missing_key_column' } })
      expect(job.finishedAt).not.toBeNull()
    }
    expect(await db().selectFrom('users').select('id').where('community_id', '=', c.id).execute()).toEqual([
      { id: us[0].id },
    ])
  })

  it('a file separated by semicolons or tabs fails the job with unsupported_delimiter, saying so', async () => {
    const { c } = await community(0)
    const premium = '/apis/v1/users/bulk-update/premium-currency'
    for (const [path, file, what] of [
      [IMPORT, 'email;first_name;xp\nann@x.io;Ann;5\n', 'semicolons'],
      [UPDATE, 'email\tfirst_name\nann@x.io\tAnn\n', 'tabs'],
      [premium, 'email;amount\nann@x.io;5\n', 'semicolons'],
    ]) {
      const job = await runJob(t, path, c.bearer, { file })
      expect(job).toMatchObject({ status: 'failed', processed: 0, error: { code: 'unsupported_delimiter' } })
      expect(job.error.message).toContain(`separates its columns with ${what}`)
    }
    expect(await db().selectFrom('users').select('id').where('community_id', '=', c.id).execute()).toEqual([])
  })

  it('a duplicate header column fails the job with duplicate_column (also when two spellings mean one field)', async () => {
    const { c, us } = await community(1)
    for (const header of [
      'email,first_name,email',
      'email,first_name,First_Name',
      'email,firstName,first_name',
    ]) {
      const job = await runJob(t, UPDATE, c.bearer, { file: `${header}\n${us[0].email},A,B\n` })
      expect(job, header).toMatchObject({
        status: 'failed',
        processed: 0,
        error: { code: 'duplicate_column' },
      })
    }
    expect((await user(us[0].id)).first_name).toBe('Test')
  })

  it('an empty column name or a malformed header fails the job', async () => {
    const { c, us } = await community(1)
    const empty = await runJob(t, UPDATE, c.bearer, { file: `email,,first_name\n${us[0].email},x,A\n` })
    expect(empty).toMatchObject({ status: 'failed', error: { code: 'empty_column_name' } })
    const malformed = await runJob(t, UPDATE, c.bearer, { file: `email,first"name\n${us[0].email},A\n` })
    expect(malformed).toMatchObject({ status: 'failed', error: { code: 'malformed_header' } })
    expect((await user(us[0].id)).first_name).toBe('Test')
  })
})

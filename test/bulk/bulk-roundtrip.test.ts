import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Plan, planColumns } from '../../src/modules/bulk/bulk.plan.ts'
import { checkImportRow, checkPremiumRow } from '../../src/modules/bulk/bulk.rows.ts'
import { CsvParser, isCsvError } from '../../src/modules/bulk/csv/csv-parser.ts'
import { csvLine } from '../../src/modules/bulk/csv/csv-writer.ts'
import { IMPORT, PREMIUM, runJob, UPDATE } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * The fix-and-upload loop with formula-looking values: the failed-rows CSV prefixes them with a
 * quote (safe in a spreadsheet), and uploading it again must give every cell its original value back.
 */

let t: TestApp
beforeAll(async () => {
  t = await startTestApp({ worker: true })
})
afterAll(() => t.close())

const db = () => t.deps.database.db

type Auth = Record<string, string>

function parseCsv(text: string): string[][] {
  const parser = new CsvParser()
  return [...parser.push(text), ...parser.end()].map((r) => {
    if (isCsvError(r)) throw new Error(`unreadable failed-rows CSV: ${r.error.message}`)
    return r.cells
  })
}

async function failedRowsCsv(auth: Auth, jobId: string): Promise<string[][]> {
  const res = await t.app.inject({
    method: 'GET',
    url: `/apis/v1/users/bulk-updates/${jobId}/details?format=csv`,
    headers: auth,
  })
  expect(res.statusCode, res.body).toBe(200)
  return parseCsv(res.body)
}

/** Rewrites the cells of the data rows (the header is kept) and writes the file back as CSV. */
function fixRows(rows: string[][], fix: (row: string[]) => string[]): string {
  return rows.map((r, i) => csvLine(i === 0 ? r : fix([...r]))).join('')
}

/** Code-unit order: the same on both databases, whatever their collation makes of punctuation. */
const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

async function usersOf(communityId: string) {
  const users = await db()
    .selectFrom('users')
    .select(['id', 'external_id', 'email', 'first_name', 'xp', 'custom_fields'])
    .where('community_id', '=', communityId)
    .execute()
  return users.sort((x, y) => byText(x.email, y.email))
}

describe('every cell of an uploaded row is read as it was before neutralising', () => {
  function planOf(type: 'import' | 'premium_currency', header: string[]): Plan {
    const customFields = [{ id: 'f1', field: 'crm_id', type: 'text', options: null }]
    const res = planColumns(header, { type, identifierField: 'crm_id', customFields })
    if (!res.ok) throw new Error(res.message)
    return res.plan
  }

  it('import rows: the key, the email beside an external id key and the values', () => {
    const plan = planOf('import', ['crm_id', 'email', 'first_name', 'xp_op', 'xp'])
    if (plan.type === 'premium_currency') throw new Error('an import plan')
    expect(checkImportRow(plan, ["'+4470000", "'-eve@x.io", "'=Eve", 'add', '5'], 1, 2)).toMatchObject({
      key: '+4470000',
      email: '-eve@x.io',
      values: ['+4470000', '-eve@x.io', '=Eve', 5],
      ops: [null, null, null, 'add'],
    })
  })

  it('premium rows: the key, the amount, reason and idempotency_key; a quote before anything else stays', () => {
    const plan = planOf('premium_currency', ['email', 'amount', 'reason', 'idempotency_key'])
    if (plan.type !== 'premium_currency') throw new Error('a premium plan')
    expect(checkPremiumRow(plan, ["'+bea@x.io", '5', "'-x", "'=k2"], 1, 2)).toEqual({
      rowNo: 1,
      line: 2,
      key: '+bea@x.io',
      amount: 5,
      op: 'add',
      reason: '-x',
      idempotencyKey: '=k2',
    })
    expect(checkPremiumRow(plan, ['bea@x.io', '5', "'quoted", "'k4"], 1, 2)).toMatchObject({
      reason: "'quoted",
      idempotencyKey: "'k4",
    })
  })
})

describe('failed-rows CSV round trip: user keys and emails', () => {
  it('an import keyed by external id: formula-looking external ids and emails come back exactly', async () => {
    const c = await t.factory.externalIdCommunity('crm_id')
    const eve = await t.factory.user(c.id, { email: '-eve@x.io', externalId: '+4470000' })
    const first = await runJob(t, IMPORT, c.bearer, {
      file: [
        'crm_id,email,first_name,xp',
        '+4470000,-eve@x.io,Eve,lots', // an existing user: fails invalid_number
        '=CRM2,+finn@x.io,Finn,many', // a new user: fails invalid_number
        '-CRM3,=gus@x.io,Gus,7', // created at once
        '@CRM4,hal@x.io,Hal,plenty', // a new user: fails invalid_number
        '',
      ].join('\n'),
    })
    expect(first).toMatchObject({ status: 'completed_with_errors', created: 1, failed: 3 })

    const rows = await failedRowsCsv(c.bearer, first.jobId)
    expect(rows[0]).toEqual(['crm_id', 'email', 'first_name', 'xp', 'line', 'error'])
    // Neutralised for spreadsheets: what the user downloads and edits.
    expect(rows.slice(1).map((r) => r.slice(0, 4))).toEqual([
      ["'+4470000", "'-eve@x.io", 'Eve', 'lots'],
      ["'=CRM2", "'+finn@x.io", 'Finn', 'many'],
      ["'@CRM4", 'hal@x.io', 'Hal', 'plenty'],
    ])
    const fixed = fixRows(rows, (r) => [r[0], r[1], r[2], '5', r[4], r[5]])
    const second = await runJob(t, IMPORT, c.bearer, { file: fixed })
    expect(second).toMatchObject({ status: 'completed', created: 2, updated: 1, failed: 0 })

    const users = await usersOf(c.id)
    expect(users.map((u) => [u.external_id, u.email, u.first_name, u.xp, u.custom_fields])).toEqual([
      ['=CRM2', '+finn@x.io', 'Finn', 5, { crm_id: '=CRM2' }],
      ['+4470000', '-eve@x.io', 'Eve', 5, { crm_id: '+4470000' }],
      ['-CRM3', '=gus@x.io', 'Gus', 7, { crm_id: '-CRM3' }],
      ['@CRM4', 'hal@x.io', 'Hal', 5, { crm_id: '@CRM4' }],
    ])
    expect(users[1].id).toBe(eve.id)
  })

  it('an update keyed by external id finds the user again instead of failing user_not_found', async () => {
    const c = await t.factory.externalIdCommunity('crm_id')
    const u = await t.factory.user(c.id, { externalId: '+4470000' })
    const first = await runJob(t, UPDATE, c.bearer, { file: 'crm_id,first_name,xp\n+4470000,Ann,lots\n' })
    expect(first).toMatchObject({ status: 'completed_with_errors', failed: 1 })
    const rows = await failedRowsCsv(c.bearer, first.jobId)
    const second = await runJob(t, UPDATE, c.bearer, {
      file: fixRows(rows, (r) => [r[0], r[1], '3', r[3], r[4]]),
    })
    expect(second).toMatchObject({ status: 'completed', updated: 1, failed: 0 })
    const after = await db()
      .selectFrom('users')
      .select(['external_id', 'first_name', 'xp'])
      .where('id', '=', u.id)
      .executeTakeFirstOrThrow()
    expect(after).toEqual({ external_id: '+4470000', first_name: 'Ann', xp: 3 })
  })

  it('an import keyed by email: a formula-looking email key is the same user, not a new one', async () => {
    const c = await t.factory.community()
    const first = await runJob(t, IMPORT, c.bearer, {
      file: 'email,first_name,xp\n=zed@x.io,Zed,1\n-amy@x.io,Amy,lots\n',
    })
    expect(first).toMatchObject({ created: 1, failed: 1 })
    const rows = await failedRowsCsv(c.bearer, first.jobId)
    expect(rows[1].slice(0, 3)).toEqual(["'-amy@x.io", 'Amy', 'lots'])
    // The whole file again, the failed row fixed: Zed is the same user, Amy is created once.
    const again = [rows[0], ["'=zed@x.io", 'Zed', '1', '', ''], [rows[1][0], 'Amy', '2', '', '']]
    const second = await runJob(t, IMPORT, c.bearer, { file: again.map((r) => csvLine(r)).join('') })
    expect(second).toMatchObject({ status: 'completed', created: 1, skipped: 1, failed: 0 })
    expect((await usersOf(c.id)).map((u) => [u.email, u.first_name, u.xp])).toEqual([
      ['-amy@x.io', 'Amy', 2],
      ['=zed@x.io', 'Zed', 1],
    ])
  })
})

describe('failed-rows CSV round trip: premium reason and idempotency_key', () => {
  async function ledger(communityId: string) {
    const rows = await db()
      .selectFrom('currency_ledger')
      .select(['user_id', 'amount', 'reason', 'idempotency_key'])
      .where('community_id', '=', communityId)
      .execute()
    return rows.sort((x, y) => byText(x.idempotency_key, y.idempotency_key))
  }

  const premiumOf = async (id: string) =>
    (await db().selectFrom('users').select('premium').where('id', '=', id).executeTakeFirstOrThrow()).premium

  it('the ledger keeps the exact values; fixed rows apply once; a re-sent applied row never credits twice', async () => {
    const c = await t.factory.community()
    const a = await t.factory.user(c.id)
    const b = await t.factory.user(c.id, { email: '+bea@x.io' })
    const first = await runJob(t, PREMIUM, c.bearer, {
      file: [
        'email,amount,reason,idempotency_key',
        `${a.email},10,-x,-k1`, // applied
        'ghost@x.io,20,=bonus,=k2', // user_not_found
        '+bea@x.io,lots,+r,+k3', // invalid_number
        `${a.email},5,'quoted,'k4`, // a quote not before = + - @ tab CR is the user's own: kept
        '',
      ].join('\n'),
    })
    expect(first).toMatchObject({ status: 'completed_with_errors', updated: 2, failed: 2 })

    const rows = await failedRowsCsv(c.bearer, first.jobId)
    expect(rows.slice(1).map((r) => r.slice(0, 4))).toEqual([
      ['ghost@x.io', '20', "'=bonus", "'=k2"],
      ["'+bea@x.io", 'lots', "'+r", "'+k3"],
    ])
    const fixed = fixRows(rows, (r) =>
      r[0] === 'ghost@x.io' ? ['+bea@x.io', ...r.slice(1)] : [r[0], '7', ...r.slice(2)],
    )
    const second = await runJob(t, PREMIUM, c.bearer, { file: fixed })
    expect(second).toMatchObject({ status: 'completed', updated: 2, failed: 0 })
    // The fixed file once more: every row was applied already.
    const third = await runJob(t, PREMIUM, c.bearer, { file: fixed })
    expect(third).toMatchObject({ status: 'completed', updated: 0, skipped: 2, failed: 0 })
    // The first applied row re-sent, as typed and as a Hearth CSV writes it ('-x, '-k1).
    const resent = `email,amount,reason,idempotency_key\n${a.email},10,-x,-k1\n${csvLine([a.email, '10', '-x', '-k1'])}`
    const fourth = await runJob(t, PREMIUM, c.bearer, { file: resent })
    expect(fourth).toMatchObject({ status: 'completed', updated: 0, skipped: 2, failed: 0 })

    expect(await ledger(c.id)).toEqual([
      { user_id: a.id, amount: 5, reason: "'quoted", idempotency_key: "row:'k4" },
      { user_id: b.id, amount: 7, reason: '+r', idempotency_key: 'row:+k3' },
      { user_id: a.id, amount: 10, reason: '-x', idempotency_key: 'row:-k1' },
      { user_id: b.id, amount: 20, reason: '=bonus', idempotency_key: 'row:=k2' },
    ])
    expect(await premiumOf(a.id)).toBe(15)
    expect(await premiumOf(b.id)).toBe(27)
  })
})

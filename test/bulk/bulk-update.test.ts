import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { failedRows, runJob, UPDATE } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/** Bulk update (POST /apis/v1/users/bulk-update): columns, `<field>_op`, file order, histories and ledger. */

let t: TestApp
beforeAll(async () => {
  // Small chunks so that file order is also checked across chunk boundaries.
  t = await startTestApp({ worker: true, env: { BULK_CHUNK_ROWS: '4' } })
})
afterAll(() => t.close())

const db = () => t.deps.database.db

const addField = (communityId: string, field: string, type: string) =>
  t.factory.userField(communityId, field, type)

async function setUser(
  id: string,
  values: { xp?: number; coins?: number; custom_fields?: Record<string, unknown>; country?: string },
) {
  const { custom_fields, ...rest } = values
  await db()
    .updateTable('users')
    .set({ ...rest, ...(custom_fields ? { custom_fields: JSON.stringify(custom_fields) } : {}) })
    .where('id', '=', id)
    .execute()
}

function user(id: string) {
  return db()
    .selectFrom('users')
    .select(['email', 'username', 'first_name', 'last_name', 'country', 'xp', 'coins', 'custom_fields'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow()
}

function ledger(communityId: string) {
  return db()
    .selectFrom('currency_ledger')
    .select(['user_id', 'currency', 'amount', 'balance_after', 'source', 'idempotency_key'])
    .where('community_id', '=', communityId)
    .orderBy('id')
    .execute()
}

function histories(communityId: string) {
  return db()
    .selectFrom('field_histories')
    .select(['user_id', 'field_id', 'field', 'old_value', 'new_value', 'source', 'changed_by'])
    .where('community_id', '=', communityId)
    .orderBy('user_id')
    .orderBy('field')
    .orderBy('created_at')
    .execute()
}

async function setup() {
  const c = await t.factory.community()
  const a = await t.factory.user(c.id)
  const b = await t.factory.user(c.id)
  return { c, a, b }
}

describe('bulk update: columns', () => {
  it('changes only the columns present; an empty cell leaves the value; text columns overwrite', async () => {
    const { c, a, b } = await setup()
    await setUser(a.id, { country: 'DE' })
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,first_name,country\n${a.email},Ann,\n${b.email},,FR\n`,
    })
    expect(job).toMatchObject({
      type: 'update',
      status: 'completed',
      total: 2,
      processed: 2,
      updated: 2,
      failed: 0,
      created: 0,
    })
    expect(await user(a.id)).toMatchObject({
      email: a.email,
      username: a.username,
      first_name: 'Ann',
      last_name: 'User',
      country: 'DE',
      xp: 0,
    })
    expect(await user(b.id)).toMatchObject({
      email: b.email,
      username: b.username,
      first_name: 'Test',
      last_name: 'User',
      country: 'FR',
    })
  })

  it('a row that changes nothing is skipped, and an unknown user fails with user_not_found', async () => {
    const { c, a } = await setup()
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,first_name\n${a.email},Test\nghost@nowhere.io,Casper\n`,
    })
    expect(job).toMatchObject({
      status: 'completed_with_errors',
      updated: 0,
      skipped: 1,
      failed: 1,
      created: 0,
    })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed).toEqual([
      {
        row: 2,
        line: 3,
        key: 'ghost@nowhere.io',
        action: 'failed',
        error: {
          code: 'user_not_found',
          field: 'email',
          message: 'No user with email "ghost@nowhere.io" in this community',
        },
      },
    ])
    // Bulk update never creates users.
    const ghost = await db()
      .selectFrom('users')
      .select('id')
      .where('community_id', '=', c.id)
      .where('email', '=', 'ghost@nowhere.io')
      .execute()
    expect(ghost).toEqual([])
  })

  it('matches the email key case-insensitively', async () => {
    const { c, a } = await setup()
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,last_name\n  ${a.email.toUpperCase()} ,Upper\n`,
    })
    expect(job).toMatchObject({ status: 'completed', updated: 1 })
    expect((await user(a.id)).last_name).toBe('Upper')
  })
})

describe('bulk update: xp and coins with _op columns', () => {
  it('add, subtract and overwrite move users.xp/coins and write one ledger row per change', async () => {
    const { c, a, b } = await setup()
    await setUser(a.id, { xp: 100, coins: 50 })
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,xp_op,xp,coins_op,coins\n${a.email},add,5,subtract,20\n${b.email},overwrite,40,,\n`,
    })
    expect(job).toMatchObject({ status: 'completed', updated: 2, failed: 0 })
    expect(await user(a.id)).toMatchObject({ xp: 105, coins: 30 })
    expect(await user(b.id)).toMatchObject({ xp: 40, coins: 0 })
    const rows = (await ledger(c.id)).sort((x, y) => x.idempotency_key.localeCompare(y.idempotency_key))
    expect(rows).toEqual([
      {
        user_id: a.id,
        currency: 'coins',
        amount: -20,
        balance_after: 30,
        source: 'bulk_update',
        idempotency_key: `bulk:${job.jobId}:1:coins`,
      },
      {
        user_id: a.id,
        currency: 'xp',
        amount: 5,
        balance_after: 105,
        source: 'bulk_update',
        idempotency_key: `bulk:${job.jobId}:1:xp`,
      },
      {
        user_id: b.id,
        currency: 'xp',
        amount: 40,
        balance_after: 40,
        source: 'bulk_update',
        idempotency_key: `bulk:${job.jobId}:2:xp`,
      },
    ])
  })

  it('an empty op cell overwrites; an empty value cell leaves the balance whatever the op', async () => {
    const { c, a, b } = await setup()
    await setUser(a.id, { xp: 10, coins: 10 })
    await setUser(b.id, { xp: 10, coins: 10 })
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,xp_op,xp,coins_op,coins\n${a.email},,7,add,\n${b.email},subtract,,overwrite,3\n`,
    })
    expect(job).toMatchObject({ status: 'completed', updated: 2, failed: 0 })
    expect(await user(a.id)).toMatchObject({ xp: 7, coins: 10 })
    expect(await user(b.id)).toMatchObject({ xp: 10, coins: 3 })
  })

  it('ops are lower case only: Add, plus and ADD fail their row with invalid_op and the line; other rows apply', async () => {
    const { c, a, b } = await setup()
    const d = await t.factory.user(c.id)
    const e = await t.factory.user(c.id)
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,xp_op,xp\n${a.email},Add,5\n${b.email},plus,5\n${d.email},add,5\n${e.email},ADD,5\n`,
    })
    expect(job).toMatchObject({ status: 'completed_with_errors', updated: 1, failed: 3 })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed.map((r) => [r.line, r.key, r.error.code, r.error.field])).toEqual([
      [2, a.email, 'invalid_op', 'xp_op'],
      [3, b.email, 'invalid_op', 'xp_op'],
      [5, e.email, 'invalid_op', 'xp_op'],
    ])
    expect((await user(a.id)).xp).toBe(0)
    expect((await user(b.id)).xp).toBe(0)
    expect((await user(d.id)).xp).toBe(5)
    expect((await user(e.id)).xp).toBe(0)
    expect(await ledger(c.id)).toHaveLength(1)
  })

  it('subtracting below zero fails the row with negative_balance, naming the balance, and writes nothing for it', async () => {
    const { c, a, b } = await setup()
    const d = await t.factory.user(c.id)
    await setUser(a.id, { xp: 3, coins: 100 })
    await setUser(d.id, { xp: 50, coins: 5 })
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,xp_op,xp,coins_op,coins\n${a.email},subtract,4,subtract,10\n${b.email},overwrite,-1,,\n${d.email},add,1,subtract,6\n`,
    })
    expect(job).toMatchObject({ status: 'completed_with_errors', updated: 0, failed: 3 })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed[0]).toEqual({
      row: 1,
      line: 2,
      key: a.email,
      action: 'failed',
      error: { code: 'negative_balance', field: 'xp', message: 'xp cannot go below zero' },
    })
    // The whole row fails: its coins change is not applied either.
    expect(await user(a.id)).toMatchObject({ xp: 3, coins: 100 })
    // Overwrite may carry a negative number; the result is still below zero.
    expect(failed[1]).toMatchObject({
      line: 3,
      key: b.email,
      action: 'failed',
      error: { code: 'negative_balance', field: 'xp' },
    })
    expect((await user(b.id)).xp).toBe(0)
    expect(failed[2].error).toEqual({
      code: 'negative_balance',
      field: 'coins',
      message: 'coins cannot go below zero',
    })
    expect(await user(d.id)).toMatchObject({ xp: 50, coins: 5 })
    expect(await ledger(c.id)).toEqual([])
  })

  it('a whole number too large to hold fails with number_out_of_range, not as "not a whole number"', async () => {
    const { c, a } = await setup()
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,xp_op,xp,coins\n${a.email},add,99999999999999999999,\n${a.email},,,12.5\n`,
    })
    expect(job).toMatchObject({ failed: 2 })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed.map((r) => r.error)).toEqual([
      {
        code: 'number_out_of_range',
        field: 'xp',
        message: 'xp: "99999999999999999999" is out of range (at most 9007199254740991 either way)',
      },
      { code: 'invalid_number', field: 'coins', message: 'coins: "12.5" is not a whole number' },
    ])
  })

  it('a negative amount with add or subtract fails with invalid_number on that field', async () => {
    const { c, a } = await setup()
    const job = await runJob(t, UPDATE, c.bearer, { file: `email,coins_op,coins\n${a.email},add,-5\n` })
    expect(job).toMatchObject({ failed: 1 })
    expect((await failedRows(t, c.bearer, job.jobId))[0].error).toMatchObject({
      code: 'invalid_number',
      field: 'coins',
    })
  })
})

describe('bulk update: file order', () => {
  it('two rows for one user both apply, in file order (add then add; overwrite then add; add then overwrite)', async () => {
    const { c, a, b } = await setup()
    const d = await t.factory.user(c.id)
    await setUser(b.id, { xp: 999 })
    await setUser(d.id, { xp: 50 })
    const job = await runJob(t, UPDATE, c.bearer, {
      file: [
        'email,xp_op,xp',
        `${a.email},add,5`,
        `${b.email},overwrite,100`,
        `${d.email},add,5`,
        `${a.email},add,7`,
        `${b.email},add,1`,
        `${d.email},overwrite,2`,
        '',
      ].join('\n'),
    })
    expect(job).toMatchObject({ status: 'completed', updated: 6, failed: 0 })
    expect((await user(a.id)).xp).toBe(12)
    expect((await user(b.id)).xp).toBe(101)
    expect((await user(d.id)).xp).toBe(2)
    const rows = await ledger(c.id)
    const of = (id: string) => rows.filter((r) => r.user_id === id).map((r) => [r.amount, r.balance_after])
    expect(of(a.id)).toEqual([
      [5, 5],
      [7, 12],
    ])
    expect(of(b.id)).toEqual([
      [-899, 100],
      [1, 101],
    ])
    expect(of(d.id)).toEqual([
      [5, 55],
      [-53, 2],
    ])
  })

  it('a failing row in the middle does not stop the rows after it for the same user', async () => {
    const { c, a } = await setup()
    await setUser(a.id, { xp: 10 })
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,xp_op,xp\n${a.email},subtract,4\n${a.email},subtract,10\n${a.email},add,1\n`,
    })
    expect(job).toMatchObject({ status: 'completed_with_errors', updated: 2, failed: 1 })
    expect((await failedRows(t, c.bearer, job.jobId)).map((r) => [r.row, r.error.code])).toEqual([
      [2, 'negative_balance'],
    ])
    expect((await user(a.id)).xp).toBe(7)
    expect((await ledger(c.id)).map((r) => [r.amount, r.balance_after])).toEqual([
      [-4, 6],
      [1, 7],
    ])
  })

  it('keeps file order across chunk boundaries', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    // 12 rows for one user over three chunks of 4: the result is the sum in order.
    const lines = ['email,xp_op,xp', `${u.email},overwrite,1`]
    for (let i = 0; i < 10; i++) lines.push(`${u.email},add,${i}`)
    lines.push(`${u.email},subtract,3`)
    const job = await runJob(t, UPDATE, c.bearer, { file: `${lines.join('\n')}\n` })
    expect(job).toMatchObject({
      status: 'completed',
      total: 12,
      processed: 12,
      updated: 11,
      skipped: 1,
      failed: 0,
    })
    expect((await user(u.id)).xp).toBe(1 + 45 - 3)
  })
})

describe('bulk update: custom fields', () => {
  it('numeric custom fields take <field>_op; text fields overwrite; changes write field histories', async () => {
    const { c, a, b } = await setup()
    const deposit = await addField(c.id, 'deposit', 'number')
    const tier = await addField(c.id, 'tier', 'text')
    await setUser(a.id, { custom_fields: { deposit: 100, tier: 'gold' } })
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,deposit_op,deposit,tier\n${a.email},add,50,platinum\n${b.email},overwrite,7,silver\n`,
    })
    expect(job).toMatchObject({ status: 'completed', updated: 2, failed: 0, unknownColumns: [] })
    expect((await user(a.id)).custom_fields).toEqual({ deposit: 150, tier: 'platinum' })
    expect((await user(b.id)).custom_fields).toEqual({ deposit: 7, tier: 'silver' })
    const h = await histories(c.id)
    const base = { source: 'bulk_update', changed_by: job.jobId }
    expect(h).toEqual(
      expect.arrayContaining([
        { ...base, user_id: a.id, field_id: deposit, field: 'deposit', old_value: 100, new_value: 150 },
        { ...base, user_id: a.id, field_id: tier, field: 'tier', old_value: 'gold', new_value: 'platinum' },
        { ...base, user_id: b.id, field_id: deposit, field: 'deposit', old_value: null, new_value: 7 },
        { ...base, user_id: b.id, field_id: tier, field: 'tier', old_value: null, new_value: 'silver' },
      ]),
    )
    expect(h).toHaveLength(4)
    // Custom fields are not currencies: no ledger rows.
    expect(await ledger(c.id)).toEqual([])
  })

  it('subtract and add in file order on a custom number; empty cells and unchanged values write no history', async () => {
    const { c, a, b } = await setup()
    await addField(c.id, 'deposit', 'number')
    await addField(c.id, 'tier', 'text')
    await setUser(a.id, { custom_fields: { deposit: 20, tier: 'gold' } })
    await setUser(b.id, { custom_fields: { deposit: 5, tier: 'bronze' } })
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,tier,deposit_op,deposit\n${a.email},gold,subtract,5\n${a.email},,add,1\n${b.email},bronze,add,\n`,
    })
    expect(job).toMatchObject({ status: 'completed', updated: 2, skipped: 1, failed: 0 })
    expect((await user(a.id)).custom_fields).toEqual({ deposit: 16, tier: 'gold' })
    expect((await user(b.id)).custom_fields).toEqual({ deposit: 5, tier: 'bronze' })
    const h = await histories(c.id)
    expect(h.map((r) => [r.user_id, r.field, r.old_value, r.new_value])).toEqual([
      [a.id, 'deposit', 20, 15],
      [a.id, 'deposit', 15, 16],
    ])
  })

  it('a bad op or a non-numeric value on a custom number fails the row with the field named', async () => {
    const { c, a, b } = await setup()
    await addField(c.id, 'deposit', 'number')
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,deposit_op,deposit\n${a.email},Add,5\n${b.email},add,lots\n`,
    })
    expect(job).toMatchObject({ status: 'completed_with_errors', failed: 2 })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed.map((r) => [r.line, r.error.code, r.error.field])).toEqual([
      [2, 'invalid_op', 'deposit_op'],
      [3, 'invalid_value', 'deposit'],
    ])
    expect(await histories(c.id)).toEqual([])
  })
})

describe('bulk update: details across chunks, deleted users, template', () => {
  it('details pages read across chunk boundaries (chunks of 4 rows)', async () => {
    const { c, a } = await setup()
    const lines = ['email,xp_op,xp']
    for (let i = 1; i <= 10; i++) lines.push(i % 3 === 0 ? `ghost${i}@x.io,add,1` : `${a.email},add,1`)
    const job = await runJob(t, UPDATE, c.bearer, { file: `${lines.join('\n')}\n` })
    expect(job).toMatchObject({ total: 10, processed: 10, updated: 7, failed: 3 })
    const page = async (qs: string) => {
      const res = await t.app.inject({
        method: 'GET',
        url: `/apis/v1/users/bulk-updates/${job.jobId}/details?${qs}`,
        headers: c.bearer,
      })
      expect(res.statusCode, res.body).toBe(200)
      return res.json().data
    }
    const p2 = await page('limit=3&page=2')
    expect(
      p2.rows.map((r: { row: number; line: number; action: string }) => [r.row, r.line, r.action]),
    ).toEqual([
      [4, 5, 'updated'],
      [5, 6, 'updated'],
      [6, 7, 'failed'],
    ])
    expect(p2.pagination).toEqual({ page: 2, limit: 3, total: 10, total_pages: 4 })
    const p4 = await page('limit=3&page=4')
    expect(p4.rows.map((r: { row: number }) => r.row)).toEqual([10])
    const failed = await page('status=failed&limit=2&page=2')
    expect(failed.rows.map((r: { row: number; key: string }) => [r.row, r.key])).toEqual([[9, 'ghost9@x.io']])
    expect((await user(a.id)).xp).toBe(7)
  })

  it('a deleted user fails with user_deleted and is not changed', async () => {
    const { c, a } = await setup()
    await db().updateTable('users').set({ deleted_at: new Date() }).where('id', '=', a.id).execute()
    const job = await runJob(t, UPDATE, c.bearer, { file: `email,first_name,xp\n${a.email},Zombie,5\n` })
    expect(job).toMatchObject({ failed: 1, updated: 0 })
    expect((await failedRows(t, c.bearer, job.jobId))[0].error).toEqual({
      code: 'user_deleted',
      field: 'email',
      message: 'This user is deleted; restore it first',
    })
    expect(await user(a.id)).toMatchObject({ first_name: 'Test', xp: 0 })
  })

  it('the update template puts <field>_op before numeric columns and is itself a valid bulk update header', async () => {
    const { c, a } = await setup()
    await addField(c.id, 'deposit', 'number')
    await addField(c.id, 'tier', 'text')
    const res = await t.app.inject({
      method: 'GET',
      url: '/apis/v1/users/bulk-import/template?type=update',
      headers: c.bearer,
    })
    expect(res.statusCode).toBe(200)
    const header = res.body.trim().split(',')
    for (const f of ['xp', 'coins', 'deposit'])
      expect(header.indexOf(`${f}_op`), f).toBe(header.indexOf(f) - 1)
    expect(header).toContain('tier')
    expect(header).not.toContain('tier_op')
    const row = header.map((h) =>
      h === 'email' ? a.email : h === 'tier' ? 'gold' : h === 'xp_op' ? 'add' : h === 'xp' ? '3' : '',
    )
    const job = await runJob(t, UPDATE, c.bearer, { file: `${header.join(',')}\n${row.join(',')}\n` })
    expect(job).toMatchObject({ status: 'completed', updated: 1, unknownColumns: [] })
    expect(await user(a.id)).toMatchObject({ first_name: 'Test', xp: 3, custom_fields: { tier: 'gold' } })
  })
})

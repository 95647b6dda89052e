import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { IMPORT, PREMIUM, runJob, UPDATE } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * How CSV header names are read: `_op`, premium and key columns in any case and spelling, as the
 * value columns are; and a custom field whose key is also a default field's alias (`join-date`)
 * keeps its own column.
 */

let t: TestApp
beforeAll(async () => {
  t = await startTestApp({ worker: true })
})
afterAll(() => t.close())

const db = () => t.deps.database.db

const userRow = (id: string) =>
  db()
    .selectFrom('users')
    .select(['xp', 'coins', 'premium', 'join_date', 'custom_fields'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow()

async function userWith(values: { xp?: number; coins?: number; premium?: number }) {
  const c = await t.factory.community()
  const u = await t.factory.user(c.id)
  if (Object.keys(values).length > 0)
    await db().updateTable('users').set(values).where('id', '=', u.id).execute()
  return { c, u }
}

async function template(auth: Record<string, string>, type: string) {
  const res = await t.app.inject({
    method: 'GET',
    url: `/apis/v1/users/bulk-import/template?type=${type}`,
    headers: auth,
  })
  expect(res.statusCode, res.body).toBe(200)
  return res.body.replace(/\r?\n$/, '').split(',')
}

describe('bulk CSV: op, premium and key columns in any case and spelling', () => {
  it('XP_op and Coins_Op steer their columns as xp_op and coins_op do', async () => {
    const { c, u } = await userWith({ xp: 10, coins: 10 })
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `email,XP_op,XP,Coins_Op,coins\n${u.email},add,5,subtract,3\n`,
    })
    expect(job).toMatchObject({
      status: 'completed',
      updated: 1,
      columns: ['email', 'xp_op', 'xp', 'coins_op', 'coins'],
      unknownColumns: [],
    })
    expect(await userRow(u.id)).toMatchObject({ xp: 15, coins: 7 })
  })

  it('accepts the op column with a space, a hyphen or in camelCase, before or after its column', async () => {
    const { c, u } = await userWith({ xp: 10, coins: 10 })
    const job = await runJob(t, UPDATE, c.bearer, {
      file: `Coins,EMAIL,xp Op,XP,coinsOp\n4,${u.email},subtract,2,add\n`,
    })
    expect(job).toMatchObject({
      status: 'completed',
      columns: ['coins', 'email', 'xp_op', 'xp', 'coins_op'],
      unknownColumns: [],
    })
    expect(await userRow(u.id)).toMatchObject({ xp: 8, coins: 14 })
  })

  it("a custom number field's op column matches the field's exact key, with the suffix in any case", async () => {
    const { c, u } = await userWith({})
    await t.factory.userField(c.id, 'Level', 'number')
    await db()
      .updateTable('users')
      .set({ custom_fields: JSON.stringify({ Level: 4 }) })
      .where('id', '=', u.id)
      .execute()
    const job = await runJob(t, UPDATE, c.bearer, { file: `email,Level_OP,Level\n${u.email},add,3\n` })
    expect(job).toMatchObject({
      status: 'completed',
      columns: ['email', 'Level_op', 'Level'],
      unknownColumns: [],
    })
    expect((await userRow(u.id)).custom_fields).toEqual({ Level: 7 })
  })

  it('two headers naming one op column fail the job with duplicate_column', async () => {
    const { c, u } = await userWith({ xp: 10 })
    const job = await runJob(t, UPDATE, c.bearer, { file: `email,xp_op,XP_Op,xp\n${u.email},add,add,5\n` })
    expect(job).toMatchObject({ status: 'failed', processed: 0, error: { code: 'duplicate_column' } })
    expect((await userRow(u.id)).xp).toBe(10)
  })

  it('Amount_Op and Idempotency_Key work as amount_op and idempotency_key: a re-sent row credits once', async () => {
    const { c, u } = await userWith({ premium: 100 })
    const file = `email,Amount_Op,amount,Idempotency_Key\n${u.email},subtract,30,refund-1\n`
    const first = await runJob(t, PREMIUM, c.bearer, { file })
    expect(first).toMatchObject({
      status: 'completed',
      updated: 1,
      columns: ['email', 'amount_op', 'amount', 'idempotency_key'],
      unknownColumns: [],
    })
    expect((await userRow(u.id)).premium).toBe(70)
    const again = await runJob(t, PREMIUM, c.bearer, { file })
    expect(again.status).toMatch(/^completed/)
    expect(again.updated).toBe(0)
    expect((await userRow(u.id)).premium).toBe(70)
    const ledger = await db()
      .selectFrom('currency_ledger')
      .select(['amount'])
      .where('user_id', '=', u.id)
      .where('currency', '=', 'premium')
      .execute()
    expect(ledger.map((l) => Number(l.amount))).toEqual([-30])
  })

  it('Amount, AMOUNT OP, Reason, idempotencyKey and UserID are the premium columns', async () => {
    const { c, u } = await userWith({ premium: 100 })
    const job = await runJob(t, PREMIUM, c.bearer, {
      file: `UserID,Amount,AMOUNT OP,Reason,idempotencyKey\n${u.id},25,add,bonus,k-1\n`,
    })
    expect(job).toMatchObject({
      status: 'completed',
      updated: 1,
      columns: ['userId', 'amount', 'amount_op', 'reason', 'idempotency_key'],
      unknownColumns: [],
    })
    expect((await userRow(u.id)).premium).toBe(125)
    const ledger = await db()
      .selectFrom('currency_ledger')
      .select(['reason'])
      .where('user_id', '=', u.id)
      .execute()
    expect(ledger).toEqual([{ reason: 'bonus' }])
  })
})

describe('bulk CSV: a custom field keyed like a default field alias', () => {
  async function joinDateCommunity(type = 'text') {
    const c = await t.factory.community()
    const res = await t.app.inject({
      method: 'POST',
      url: `/apis/v1/communities/${c.id}/user-fields`,
      headers: c.bearer,
      payload: { name: 'Join Date', type },
    })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json().data.field).toBe('join-date')
    return c
  }

  it("the import template round-trips: join_date is the platform's date, join-date the custom field", async () => {
    const c = await joinDateCommunity()
    const columns = await template(c.bearer, 'import')
    expect(columns).toContain('join_date')
    expect(columns).toContain('join-date')
    const values: Record<string, string> = {
      email: 'ann@example.com',
      join_date: '2020-01-02',
      'join-date': 'early bird',
    }
    const file = `${columns.join(',')}\n${columns.map((col) => values[col] ?? '').join(',')}\n`
    const job = await runJob(t, IMPORT, c.bearer, { file })
    expect(job).toMatchObject({ status: 'completed', created: 1, failed: 0, unknownColumns: [] })
    const created = await db()
      .selectFrom('users')
      .select(['id'])
      .where('community_id', '=', c.id)
      .where('email', '=', 'ann@example.com')
      .executeTakeFirstOrThrow()
    const row = await userRow(created.id)
    expect(row.join_date?.toISOString().slice(0, 10)).toBe('2020-01-02')
    expect(row.custom_fields).toEqual({ 'join-date': 'early bird' })
  })

  it('the update template round-trips, and a file with only join-date leaves the platform join date alone', async () => {
    const c = await joinDateCommunity()
    const u = await t.factory.user(c.id)
    const before = (await userRow(u.id)).join_date
    const only = await runJob(t, UPDATE, c.bearer, { file: `email,join-date\n${u.email},2001-01-01\n` })
    expect(only).toMatchObject({ status: 'completed', updated: 1, columns: ['email', 'join-date'] })
    expect(await userRow(u.id)).toMatchObject({
      join_date: before,
      custom_fields: { 'join-date': '2001-01-01' },
    })

    const columns = await template(c.bearer, 'update')
    const values: Record<string, string> = { email: u.email, join_date: '2019-05-06', 'join-date': 'vip' }
    const file = `${columns.join(',')}\n${columns.map((col) => values[col] ?? '').join(',')}\n`
    const job = await runJob(t, UPDATE, c.bearer, { file })
    expect(job).toMatchObject({ status: 'completed', updated: 1, failed: 0, unknownColumns: [] })
    const row = await userRow(u.id)
    expect(row.join_date?.toISOString().slice(0, 10)).toBe('2019-05-06')
    expect(row.custom_fields).toEqual({ 'join-date': 'vip' })
  })

  it('without such a custom field, join-date and Join Date still mean the platform join date', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    const job = await runJob(t, UPDATE, c.bearer, { file: `email,Join Date\n${u.email},2018-03-04\n` })
    expect(job).toMatchObject({ status: 'completed', columns: ['email', 'join_date'] })
    expect((await userRow(u.id)).join_date?.toISOString().slice(0, 10)).toBe('2018-03-04')
  })
})

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newId } from '../../src/lib/ids.ts'
import { failedRows, PREMIUM, runJob } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/** Premium currency bulk update: one ledger row per applied row, keyed `bulk:<jobId>:<row>`. */

let t: TestApp
beforeAll(async () => {
  t = await startTestApp({ worker: true })
})
afterAll(() => t.close())

const db = () => t.deps.database.db

const premiumOf = async (id: string) =>
  (await db().selectFrom('users').select('premium').where('id', '=', id).executeTakeFirstOrThrow()).premium

const setPremium = (id: string, premium: number) =>
  db().updateTable('users').set({ premium }).where('id', '=', id).execute()

function ledger(communityId: string) {
  return db()
    .selectFrom('currency_ledger')
    .select(['user_id', 'currency', 'amount', 'balance_after', 'source', 'reason', 'idempotency_key'])
    .where('community_id', '=', communityId)
    .orderBy('id')
    .execute()
}

async function setup() {
  const c = await t.factory.community()
  const a = await t.factory.user(c.id)
  const b = await t.factory.user(c.id)
  return { c, a, b }
}

describe('premium currency bulk update', () => {
  it('adds by default, subtracts, keeps file order, writes one ledger row per applied row and fails what cannot apply', async () => {
    const { c, a, b } = await setPremiumSetup()
    const job = await runJob(t, PREMIUM, c.bearer, {
      file: [
        'email,amount,amount_op,reason',
        `${a.email},50,,welcome bonus`,
        `${b.email},30,subtract,`,
        `${a.email.toUpperCase()},20,add,second`,
        'nobody@x.io,5,,',
        `${b.email},500,subtract,too much`,
        '',
      ].join('\n'),
    })
    expect(job).toMatchObject({
      type: 'premium_currency',
      status: 'completed_with_errors',
      total: 5,
      processed: 5,
      updated: 3,
      failed: 2,
      percentage: 100,
    })
    expect(await premiumOf(a.id)).toBe(70)
    expect(await premiumOf(b.id)).toBe(70)
    // Rows 1 and 2 apply in one statement: order the ledger by its idempotency key (job, row).
    const rows = (await ledger(c.id)).sort((x, y) => x.idempotency_key.localeCompare(y.idempotency_key))
    expect(rows).toEqual([
      {
        user_id: a.id,
        currency: 'premium',
        amount: 50,
        balance_after: 50,
        source: 'bulk_premium_currency',
        reason: 'welcome bonus',
        idempotency_key: `bulk:${job.jobId}:1`,
      },
      {
        user_id: b.id,
        currency: 'premium',
        amount: -30,
        balance_after: 70,
        source: 'bulk_premium_currency',
        reason: `bulk job ${job.jobId}`,
        idempotency_key: `bulk:${job.jobId}:2`,
      },
      {
        user_id: a.id,
        currency: 'premium',
        amount: 20,
        balance_after: 70,
        source: 'bulk_premium_currency',
        reason: 'second',
        idempotency_key: `bulk:${job.jobId}:3`,
      },
    ])
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed.map((r) => [r.row, r.line, r.key, r.error.code])).toEqual([
      [4, 5, 'nobody@x.io', 'user_not_found'],
      [5, 6, b.email, 'insufficient_balance'],
    ])
  })

  it('Get User Data shows premium beside xp and coins', async () => {
    const { c, a } = await setup()
    await db().updateTable('users').set({ xp: 11, coins: 22 }).where('id', '=', a.id).execute()
    await runJob(t, PREMIUM, c.bearer, { file: `email,amount\n${a.email},33\n` })
    const res = await t.app.inject({
      method: 'POST',
      url: '/apis/v1/users/info',
      headers: c.bearer,
      payload: { idOrEmail: a.email },
    })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json().data).toMatchObject({ xp: 11, coins: 22, premium: 33 })
  })

  it('overwrite sets the balance; an overwrite to the same value is skipped and writes no ledger row', async () => {
    const { c, a, b } = await setup()
    await setPremium(a.id, 40)
    await setPremium(b.id, 9)
    const job = await runJob(t, PREMIUM, c.bearer, {
      file: `email,amount_op,amount\n${a.email},overwrite,15\n${b.email},overwrite,9\n`,
    })
    expect(job).toMatchObject({ status: 'completed', updated: 1, skipped: 1, failed: 0 })
    expect(await premiumOf(a.id)).toBe(15)
    expect(await premiumOf(b.id)).toBe(9)
    expect((await ledger(c.id)).map((r) => [r.user_id, r.amount, r.balance_after])).toEqual([[a.id, -25, 15]])
  })

  it('finds users by userId: the 24-hex _id or the numeric id', async () => {
    const { c, a, b } = await setup()
    const job = await runJob(t, PREMIUM, c.bearer, {
      file: `userId,amount\n${a.id},5\n${b.seq},6\n${newId()},7\n`,
    })
    expect(job).toMatchObject({ status: 'completed_with_errors', updated: 2, failed: 1 })
    expect(await premiumOf(a.id)).toBe(5)
    expect(await premiumOf(b.id)).toBe(6)
    expect((await failedRows(t, c.bearer, job.jobId)).map((r) => [r.row, r.error.code])).toEqual([
      [3, 'user_not_found'],
    ])
  })

  it('two rows naming the same user by _id and by numeric id both apply, in order', async () => {
    const { c, a } = await setup()
    const job = await runJob(t, PREMIUM, c.bearer, {
      file: `userId,amount,amount_op\n${a.id},10,add\n${a.seq},20,add\n`,
    })
    expect(job).toMatchObject({ status: 'completed', updated: 2, failed: 0 })
    expect(await premiumOf(a.id)).toBe(30)
    expect((await ledger(c.id)).map((r) => [r.amount, r.balance_after])).toEqual([
      [10, 10],
      [20, 30],
    ])
  })

  it("finds users by the community's external id column", async () => {
    const c = await t.factory.externalIdCommunity()
    const a = await t.factory.user(c.id, { externalId: 'CRM-A' })
    const job = await runJob(t, PREMIUM, c.bearer, { file: 'crm_id,amount\nCRM-A,12\nCRM-Z,1\n' })
    expect(job).toMatchObject({ status: 'completed_with_errors', updated: 1, failed: 1 })
    expect(await premiumOf(a.id)).toBe(12)
    expect((await failedRows(t, c.bearer, job.jobId)).map((r) => [r.key, r.error])).toEqual([
      [
        'CRM-Z',
        {
          code: 'user_not_found',
          field: 'crm_id',
          message: 'No user with crm_id "CRM-Z" in this community',
        },
      ],
    ])
  })

  it('rejects bad amounts and ops row by row', async () => {
    const { c, a } = await setup()
    const job = await runJob(t, PREMIUM, c.bearer, {
      file: `email,amount,amount_op\n${a.email},abc,\n${a.email},-5,\n${a.email},,\n${a.email},5,Add\n${a.email},1.5,\n${a.email},4,\n`,
    })
    expect(job).toMatchObject({ status: 'completed_with_errors', updated: 1, failed: 5 })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed.map((r) => [r.line, r.error.code, r.error.field])).toEqual([
      [2, 'invalid_number', 'amount'],
      [3, 'invalid_number', 'amount'],
      [4, 'missing_amount', 'amount'],
      [5, 'invalid_op', 'amount_op'],
      [6, 'invalid_number', 'amount'],
    ])
    expect(await premiumOf(a.id)).toBe(4)
    expect(await ledger(c.id)).toHaveLength(1)
  })

  it('fails a deleted user and leaves its balance', async () => {
    const { c, a } = await setup()
    await db().updateTable('users').set({ deleted_at: new Date() }).where('id', '=', a.id).execute()
    const job = await runJob(t, PREMIUM, c.bearer, { file: `email,amount\n${a.email},5\n` })
    expect(job).toMatchObject({ failed: 1 })
    // Worded as for a bulk update of the same user.
    expect((await failedRows(t, c.bearer, job.jobId))[0].error).toEqual({
      code: 'user_deleted',
      field: 'email',
      message: 'This user is deleted; restore it first',
    })
    expect(await premiumOf(a.id)).toBe(0)
  })

  it('a file without an amount column fails the job (missing_amount_column); without a key column, missing_key_column', async () => {
    const { c, a } = await setup()
    const noAmount = await runJob(t, PREMIUM, c.bearer, { file: `email,reason\n${a.email},x\n` })
    expect(noAmount).toMatchObject({ status: 'failed', error: { code: 'missing_amount_column' } })
    const noKey = await runJob(t, PREMIUM, c.bearer, { file: 'name,amount\nann,5\n' })
    expect(noKey).toMatchObject({ status: 'failed', error: { code: 'missing_key_column' } })
    expect(await premiumOf(a.id)).toBe(0)
    expect(await ledger(c.id)).toEqual([])
  })

  it('premium is not writable through bulk update: the column is reported unknown and ignored', async () => {
    const { c, a } = await setup()
    const job = await runJob(t, '/apis/v1/users/bulk-update', c.bearer, {
      file: `email,premium,first_name\n${a.email},1000,Rich\n`,
    })
    expect(job).toMatchObject({ status: 'completed', updated: 1, unknownColumns: ['premium'] })
    expect(await premiumOf(a.id)).toBe(0)
  })
})

async function setPremiumSetup() {
  const s = await setup()
  await setPremium(s.b.id, 100)
  return s
}

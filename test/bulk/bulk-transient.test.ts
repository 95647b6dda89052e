import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { failedRows, runJob } from '../support/bulk.ts'
import { databaseFaults } from '../support/faults.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * A database error that is not the rows' fault (a deadlock with an API call or another job) fails
 * no row: the chunk is tried again whole, and every row applies once. Simulated with a trigger that
 * raises deadlock_detected on the first calls (a sequence counts them: it does not roll back).
 */

let t: TestApp
beforeAll(async () => {
  t = await startTestApp({ worker: true })
})
afterAll(() => t.close())

const db = () => t.deps.database.db

const faults = databaseFaults(db)

describe('errors that are not the rows’ fault', () => {
  it('a deadlock while a chunk applies fails no row: the chunk is tried again and each row applies once', async () => {
    const c = await t.factory.community()
    const users = [await t.factory.user(c.id), await t.factory.user(c.id), await t.factory.user(c.id)]
    // Three failed attempts: before, the split down to single rows made the first row fail as
    // row_rejected ("The database refused this row") for a deadlock it had no part in.
    await faults.failFirst(3, '40P01')
    try {
      const job = await runJob(t, '/apis/v1/users/bulk-update', c.bearer, {
        file: `email,xp_op,xp,first_name\n${users.map((u) => `${u.email},add,5,Retried`).join('\n')}\n`,
      })
      expect(job).toMatchObject({ status: 'completed', updated: 3, failed: 0 })
      expect(await failedRows(t, c.bearer, job.jobId)).toEqual([])
    } finally {
      await faults.stop()
    }
    const after = await db()
      .selectFrom('users')
      .select(['first_name', 'xp'])
      .where(
        'id',
        'in',
        users.map((u) => u.id),
      )
      .execute()
    expect(after).toEqual(users.map(() => ({ first_name: 'Retried', xp: 5 })))
    const ledger = await db()
      .selectFrom('currency_ledger')
      .select(['user_id', 'amount'])
      .where('community_id', '=', c.id)
      .execute()
    expect(ledger.map((l) => l.amount)).toEqual([5, 5, 5])
    expect(new Set(ledger.map((l) => l.user_id)).size).toBe(3)
  })

  it('the same, for a chunk played in the worker (one user three times)', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    await faults.failFirst(3, '40001')
    try {
      const job = await runJob(t, '/apis/v1/users/bulk-update', c.bearer, {
        file: `email,xp_op,xp\n${u.email},add,1\n${u.email},add,2\n${u.email},add,3\n`,
      })
      expect(job).toMatchObject({ status: 'completed', updated: 3, failed: 0 })
    } finally {
      await faults.stop()
    }
    const ledger = await db()
      .selectFrom('currency_ledger')
      .select(['amount', 'balance_after'])
      .where('community_id', '=', c.id)
      .orderBy('id')
      .execute()
    expect(ledger.map((l) => [l.amount, l.balance_after])).toEqual([
      [1, 1],
      [2, 3],
      [3, 6],
    ])
  })

  it('a data error still fails only its own row, with the reason', async () => {
    const c = await t.factory.community()
    const users = [await t.factory.user(c.id), await t.factory.user(c.id)]
    // A check violation (class 23) raised for one user only: that row is split out and fails.
    await faults.failWhen(`NEW.id = '${users[0].id}'`, 'check_violation')
    try {
      const job = await runJob(t, '/apis/v1/users/bulk-update', c.bearer, {
        file: `email,first_name\n${users.map((u) => `${u.email},Changed`).join('\n')}\n`,
      })
      expect(job).toMatchObject({ status: 'completed_with_errors', updated: 1, failed: 1 })
      expect((await failedRows(t, c.bearer, job.jobId)).map((r) => [r.key, r.error.code])).toEqual([
        [users[0].email, 'row_rejected'],
      ])
    } finally {
      await faults.stop()
    }
  })
})

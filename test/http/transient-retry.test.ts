import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { databaseFaults } from '../support/faults.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * An API write that loses a race with another transaction (a deadlock with a bulk job's chunk, a
 * serialization failure) is tried again whole, not answered 500, and applies once. Simulated with
 * a trigger that raises the error on the first calls.
 */

let t: TestApp
beforeAll(async () => {
  t = await startTestApp({ worker: true })
})
afterAll(() => t.close())

const db = () => t.deps.database.db
const faults = databaseFaults(db)

describe('API writes that lose a race', () => {
  it('deleting a custom field that deadlocks while it removes the values is tried again: values gone, one history row each', async () => {
    const c = await t.factory.community()
    const fieldId = await t.factory.userField(c.id, 'tier')
    const users = [await t.factory.user(c.id), await t.factory.user(c.id)]
    await db()
      .updateTable('users')
      .set({ custom_fields: JSON.stringify({ tier: 'gold' }) })
      .where('community_id', '=', c.id)
      .execute()
    await faults.failFirst(2, '40P01')
    try {
      const res = await t.app.inject({
        method: 'DELETE',
        url: `/apis/v1/communities/${c.id}/user-fields/${fieldId}`,
        headers: c.bearer,
      })
      expect(res.statusCode, res.body).toBe(200)
    } finally {
      await faults.stop()
    }
    const after = await db()
      .selectFrom('users')
      .select('custom_fields')
      .where('community_id', '=', c.id)
      .execute()
    expect(after.map((u) => u.custom_fields)).toEqual([{}, {}])
    const histories = await db()
      .selectFrom('field_histories')
      .select(['user_id', 'old_value', 'new_value'])
      .where('community_id', '=', c.id)
      .execute()
    expect(histories).toHaveLength(2)
    expect(new Set(histories.map((h) => h.user_id))).toEqual(new Set(users.map((u) => u.id)))
  })

  it('creating a user whose insert hits a serialization failure is tried again: one user, one welcome mail', async () => {
    const c = await t.factory.community()
    const mailsBefore = t.mails.length
    await faults.failFirst(1, '40001', 'INSERT')
    let res: Awaited<ReturnType<typeof t.app.inject>>
    try {
      res = await t.app.inject({
        method: 'POST',
        url: '/apis/v1/users',
        headers: c.bearer,
        payload: {
          email: 'retried@example.com',
          username: 'retried',
          password: 'StrongPass1!',
          confirmPassword: 'StrongPass1!',
          sendEmail: true,
        },
      })
    } finally {
      await faults.stop()
    }
    expect(res.statusCode, res.body).toBe(201)
    const users = await db().selectFrom('users').select('email').where('community_id', '=', c.id).execute()
    expect(users).toEqual([{ email: 'retried@example.com' }])
    await expect.poll(() => t.mails.length - mailsBefore).toBe(1)
  })
})

describe('an API write that keeps losing', () => {
  it('answers 503 database_busy with Retry-After, and changes nothing', async () => {
    const c = await t.factory.community()
    await faults.failFirst(100, '40P01', 'INSERT')
    let res: Awaited<ReturnType<typeof t.app.inject>>
    try {
      res = await t.app.inject({
        method: 'POST',
        url: '/apis/v1/users',
        headers: c.bearer,
        payload: { email: 'busy@example.com', password: 'StrongPass1!', confirmPassword: 'StrongPass1!' },
      })
    } finally {
      await faults.stop()
    }
    expect(res.statusCode, res.body).toBe(503)
    expect(res.headers['retry-after']).toBe('1')
    expect(res.json()).toMatchObject({ status: 'error', error: { code: 'database_busy' } })
    const users = await db().selectFrom('users').select('email').where('community_id', '=', c.id).execute()
    expect(users).toEqual([])
  })
})

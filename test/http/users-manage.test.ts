import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../support/harness.ts'

let t: TestApp
beforeAll(async () => {
  t = await startTestApp()
})
afterAll(() => t.close())

const db = () => t.deps.database.db
const manage = (c: { bearer: Record<string, string> }, payload: unknown) =>
  t.app.inject({
    method: 'POST',
    url: '/apis/v1/users/manage',
    headers: c.bearer,
    payload: payload as object,
  })

const deletedAt = async (id: string) =>
  (await db().selectFrom('users').select('deleted_at').where('id', '=', id).executeTakeFirstOrThrow())
    .deleted_at

describe('Users: Manage User Account (POST /apis/v1/users/manage)', () => {
  it('soft-deletes the documented example by username, hides the user, and answers the same when repeated', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    await db().updateTable('users').set({ username: 'johndoe', xp: 40 }).where('id', '=', u.id).execute()
    for (let i = 0; i < 2; i++) {
      const res = await manage(c, { action: 'delete', user: 'johndoe' })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toEqual({
        status: 'success',
        message: 'User deleted successfully',
        data: { action: 'delete', user: 'johndoe' },
      })
    }
    const row = await db()
      .selectFrom('users')
      .select(['deleted_at', 'xp', 'email'])
      .where('id', '=', u.id)
      .executeTakeFirstOrThrow()
    expect(row.deleted_at).not.toBeNull()
    expect(row).toMatchObject({ xp: 40, email: u.email }) // data kept
    const get = await t.app.inject({ method: 'GET', url: `/apis/v1/users/${u.id}`, headers: c.bearer })
    expect(get.statusCode).toBe(404)
    const info = await t.app.inject({
      method: 'POST',
      url: '/apis/v1/users/info',
      headers: c.bearer,
      payload: { idOrEmail: u.email },
    })
    expect(info.statusCode).toBe(404)
    const list = await t.app.inject({
      method: 'POST',
      url: '/apis/v1/users/filter',
      headers: c.bearer,
      payload: { fields: ['email'] },
    })
    expect(list.json().data.users).toEqual([])
    const session = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/${u.id}`,
      headers: await t.factory.session(u),
    })
    expect(session.statusCode).toBe(401)
  })

  it('restores by email, _id or numeric id, idempotently, and the user reappears', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    for (const ref of [u.email.toUpperCase(), u.id, String(u.seq)]) {
      expect((await manage(c, { action: 'delete', user: ref })).statusCode).toBe(200)
      expect(await deletedAt(u.id)).not.toBeNull()
      for (let i = 0; i < 2; i++) {
        const res = await manage(c, { action: 'restore', user: ref })
        expect(res.json()).toEqual({
          status: 'success',
          message: 'User restored successfully',
          data: { action: 'restore', user: ref },
        })
      }
      expect(await deletedAt(u.id)).toBeNull()
    }
    const get = await t.app.inject({ method: 'GET', url: `/apis/v1/users/${u.id}`, headers: c.bearer })
    expect(get.statusCode).toBe(200)
  })

  it('answers 404 for unknown users and users of another community, and changes nothing there', async () => {
    const a = await t.factory.community()
    const b = await t.factory.community()
    const inB = await t.factory.user(b.id)
    for (const user of ['ghost', 'ghost@example.com', inB.id, inB.email, String(inB.seq), inB.username!]) {
      const res = await manage(a, { action: 'delete', user })
      expect(res.statusCode, user).toBe(404)
      expect(res.json()).toMatchObject({ status: 'error', error: { code: 'user_not_found', field: 'user' } })
    }
    expect(await deletedAt(inB.id)).toBeNull()
  })

  it('finds a username in any case (one user per name) and protects the owner', async () => {
    const c = await t.factory.community()
    const one = await t.factory.user(c.id, { username: 'twin' })
    const two = await t.factory.user(c.id)
    // The database itself keeps a username to one user of the community, in any case.
    await expect(
      db().updateTable('users').set({ username: 'TWIN' }).where('id', '=', two.id).execute(),
    ).rejects.toThrow(/users_community_username/)
    const twin = await manage(c, { action: 'delete', user: 'Twin' })
    expect(twin.statusCode).toBe(200)
    expect(await deletedAt(one.id)).not.toBeNull()
    const owner = await t.factory.user(c.id, { role: 'owner' })
    const protectedOwner = await manage(c, { action: 'delete', user: owner.id })
    expect(protectedOwner.statusCode).toBe(403)
    expect(protectedOwner.json().error.code).toBe('owner_protected')
    for (const id of [two.id, owner.id]) expect(await deletedAt(id)).toBeNull()
  })

  it('rejects bad bodies and keys without manageUser', async () => {
    const c = await t.factory.community()
    const cases: [unknown, string, string][] = [
      [{ user: 'johndoe' }, 'invalid_field', 'action'],
      [{ action: 'ban', user: 'johndoe' }, 'invalid_field', 'action'],
      [{ action: 'delete' }, 'invalid_field', 'user'],
      [{ action: 'delete', user: '' }, 'invalid_field', 'user'],
      [{ action: 'delete', user: 7 }, 'invalid_field', 'user'],
      [{ action: 'delete', user: 'x', reason: 'spam' }, 'unknown_field', 'reason'],
    ]
    for (const [payload, code, field] of cases) {
      const res = await manage(c, payload)
      expect(res.statusCode, JSON.stringify(payload)).toBe(400)
      expect(res.json().error, JSON.stringify(payload)).toMatchObject({ code, field })
    }
    const malformed = await t.app.inject({
      method: 'POST',
      url: '/apis/v1/users/manage',
      headers: { ...c.bearer, 'content-type': 'application/json' },
      payload: '{"action":"delete",',
    })
    expect(malformed.json().error.code).toBe('malformed_json')
    const u = await t.factory.user(c.id)
    const weak = await t.factory.apiKey(c.id, ['getUserData', 'createUser'])
    const noPerm = await manage(
      { bearer: { authorization: `Bearer ${weak}` } },
      { action: 'delete', user: u.id },
    )
    expect(noPerm.statusCode).toBe(403)
    expect(noPerm.json().error.code).toBe('missing_permission')
    const session = await manage(
      { bearer: await t.factory.session({ ...u, role: 'owner' }) },
      { action: 'delete', user: u.id },
    )
    expect(session.statusCode).toBe(401)
    expect(await deletedAt(u.id)).toBeNull()
  })
})

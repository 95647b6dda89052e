import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken, randomToken } from '../../src/lib/auth/secrets.ts'
import { newId } from '../../src/lib/ids.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

let t: TestApp
beforeAll(async () => {
  t = await startTestApp()
})
afterAll(() => t.close())

const db = () => t.deps.database.db

const defineField = (communityId: string, field: string, type: string) =>
  t.factory.userField(communityId, field, type)

describe('Users: Get user (GET /apis/v1/users/:userId)', () => {
  it('answers the documented shape with every field when no flag is given', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    await db()
      .updateTable('users')
      .set({
        avatar: 'https://returning-ai.com/avatar.png',
        display_name: 'Admin',
        is_online: true,
        last_login: '2023-12-01T10:30:00Z',
      })
      .where('id', '=', u.id)
      .execute()
    const res = await t.app.inject({ method: 'GET', url: `/apis/v1/users/${u.id}`, headers: c.bearer })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({
      meta: { status: 'success', statusCode: 200 },
      message: 'Get user success.',
      data: {
        _id: u.id,
        id: Number(u.seq),
        avatar: 'https://returning-ai.com/avatar.png',
        displayName: 'Admin',
        username: u.username,
        firstName: 'Test',
        lastName: 'User',
        email: u.email,
        isOnline: true,
        lastLogin: '2023-12-01T10:30:00.000Z',
      },
    })
  })

  it('returns only the fields whose include flag is "true", and leaves out those set to "false"', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    const some = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/${u.id}?email=true&id=true&avatar=false`,
      headers: c.bearer,
    })
    expect(some.json().data).toEqual({ id: Number(u.seq), email: u.email })
    const without = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/${u.id}?email=false&lastLogin=false`,
      headers: c.bearer,
    })
    expect(Object.keys(without.json().data)).toEqual([
      '_id',
      'id',
      'avatar',
      'displayName',
      'username',
      'firstName',
      'lastName',
      'isOnline',
    ])
  })

  it('lets a member session read its own record only, and an admin session any record', async () => {
    const c = await t.factory.community()
    const member = await t.factory.user(c.id)
    const other = await t.factory.user(c.id)
    const admin = await t.factory.user(c.id, { role: 'admin' })
    const mine = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/${member.id}`,
      headers: await t.factory.session(member),
    })
    expect(mine.statusCode).toBe(200)
    const theirs = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/${other.id}`,
      headers: await t.factory.session(member),
    })
    expect(theirs.statusCode).toBe(403)
    expect(theirs.json()).toMatchObject({
      meta: { status: 'error', statusCode: 403 },
      error: { code: 'own_record_only' },
    })
    const byAdmin = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/${other.id}`,
      headers: await t.factory.session(admin),
    })
    expect(byAdmin.json().data._id).toBe(other.id)
  })

  it('lets a user API key with readOwnProfile read its own record only', async () => {
    const c = await t.factory.community()
    const me = await t.factory.user(c.id)
    const other = await t.factory.user(c.id)
    const token = randomToken(32)
    await db()
      .insertInto('api_keys')
      .values({
        id: newId(),
        community_id: c.id,
        kind: 'user',
        user_id: me.id,
        name: 'mine',
        key_hash: hashToken(token),
        key_prefix: token.slice(0, 6),
        permissions: ['readOwnProfile'],
      })
      .execute()
    const headers = { authorization: `Bearer ${token}` }
    const mine = await t.app.inject({ method: 'GET', url: `/apis/v1/users/${me.id}?email=true`, headers })
    expect(mine.json()).toMatchObject({ meta: { status: 'success' }, data: { email: me.email } })
    const theirs = await t.app.inject({ method: 'GET', url: `/apis/v1/users/${other.id}`, headers })
    expect(theirs.statusCode).toBe(403)
    expect(theirs.json().error.code).toBe('own_record_only')
  })

  it('answers 404 for a user of another community, for an admin session of another community and for a deleted user', async () => {
    const a = await t.factory.community()
    const b = await t.factory.community()
    const inB = await t.factory.user(b.id)
    const viaKey = await t.app.inject({ method: 'GET', url: `/apis/v1/users/${inB.id}`, headers: a.bearer })
    expect(viaKey.statusCode).toBe(404)
    expect(viaKey.json().error).toEqual({ code: 'user_not_found', field: 'userId' })
    const adminOfA = await t.factory.user(a.id, { role: 'owner' })
    const viaSession = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/${inB.id}`,
      headers: await t.factory.session(adminOfA),
    })
    expect(viaSession.statusCode).toBe(404)
    const gone = await t.factory.user(a.id)
    await db().updateTable('users').set({ deleted_at: new Date() }).where('id', '=', gone.id).execute()
    const deleted = await t.app.inject({ method: 'GET', url: `/apis/v1/users/${gone.id}`, headers: a.bearer })
    expect(deleted.statusCode).toBe(404)
  })

  it('rejects a malformed id, an unknown or bad flag, a missing permission and no credential', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    const badId = await t.app.inject({ method: 'GET', url: '/apis/v1/users/123', headers: c.bearer })
    expect(badId.statusCode).toBe(400)
    expect(badId.json().error).toMatchObject({ code: 'invalid_field', field: 'userId' })
    const unknown = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/${u.id}?colour=true`,
      headers: c.bearer,
    })
    expect(unknown.json().error).toMatchObject({ code: 'unknown_field', field: 'colour' })
    const badFlag = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/${u.id}?email=yes`,
      headers: c.bearer,
    })
    expect(badFlag.json().error).toMatchObject({ code: 'invalid_field', field: 'email' })
    const weak = await t.factory.apiKey(c.id, ['createUser'])
    const noPerm = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/${u.id}`,
      headers: { authorization: `Bearer ${weak}` },
    })
    expect(noPerm.statusCode).toBe(403)
    expect(noPerm.json().error.code).toBe('missing_permission')
    const anon = await t.app.inject({ method: 'GET', url: `/apis/v1/users/${u.id}` })
    expect(anon.statusCode).toBe(401)
  })
})

describe('Users: Get User Data (POST /apis/v1/users/info)', () => {
  it("answers the documented shape for the numeric id, with balances, today's earnings and custom fields", async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    await defineField(c.id, 'customerid', 'text')
    await db()
      .updateTable('users')
      .set({
        xp: 123,
        coins: 45,
        premium: 7,
        custom_fields: JSON.stringify({ customerid: 'CUS-1', stale: 'x' }),
      })
      .where('id', '=', u.id)
      .execute()
    const ledger = (currency: 'xp' | 'coins', amount: number, key: string, created_at = new Date()) => ({
      community_id: c.id,
      user_id: u.id,
      currency,
      amount,
      balance_after: 0,
      source: 'test',
      idempotency_key: key,
      created_at,
    })
    await db()
      .insertInto('currency_ledger')
      .values([
        ledger('xp', 10, 'a'),
        ledger('xp', 5, 'b'),
        ledger('xp', -3, 'c'),
        ledger('coins', 8, 'd'),
        ledger('coins', 100, 'e', new Date(Date.now() - 3 * 86_400_000)),
      ])
      .execute()
    const res = await t.app.inject({
      method: 'POST',
      url: '/apis/v1/users/info',
      headers: c.bearer,
      payload: { idOrEmail: String(u.seq) },
    })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({
      status: 'success',
      data: {
        userId: String(u.seq),
        username: u.username,
        xp: 123,
        coins: 45,
        premium: 7,
        roles: ['@all'],
        highestRole: '@all',
        firstName: 'Test',
        lastName: 'User',
        xpEarnedToday: 15,
        coinsEarnedToday: 8,
        language: 'English',
        totalMessages: 0,
        totalReactions: 0,
        visitCount: 0,
        replySent: 0,
        timeSpent: 0,
        loginStreak: 0,
        customFields: { customerid: 'CUS-1' },
        _id: u.id,
        email: u.email,
      },
    })
  })

  it('finds the user by _id, by email in any case and by external id', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    await db().updateTable('users').set({ external_id: 'BROKER-77' }).where('id', '=', u.id).execute()
    for (const idOrEmail of [u.id, u.email.toUpperCase(), 'BROKER-77']) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/apis/v1/users/info',
        headers: c.bearer,
        payload: { idOrEmail },
      })
      expect(res.statusCode, idOrEmail).toBe(200)
      expect(res.json().data._id).toBe(u.id)
    }
  })

  it('answers 404 user_not_found for unknown, deleted and other-community users', async () => {
    const a = await t.factory.community()
    const b = await t.factory.community()
    const inB = await t.factory.user(b.id)
    const gone = await t.factory.user(a.id)
    await db().updateTable('users').set({ deleted_at: new Date() }).where('id', '=', gone.id).execute()
    for (const idOrEmail of [
      'nobody@example.com',
      '999999999',
      inB.id,
      inB.email,
      String(inB.seq),
      gone.email,
    ]) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/apis/v1/users/info',
        headers: a.bearer,
        payload: { idOrEmail },
      })
      expect(res.statusCode, idOrEmail).toBe(404)
      expect(res.json()).toMatchObject({
        status: 'error',
        error: { code: 'user_not_found', field: 'idOrEmail' },
      })
    }
  })

  it('rejects a missing or non-string idOrEmail, unknown fields, malformed JSON and a key without getUserData', async () => {
    const c = await t.factory.community()
    const post = (payload: unknown, headers: Record<string, string> = c.bearer) =>
      t.app.inject({
        method: 'POST',
        url: '/apis/v1/users/info',
        headers: { ...headers, 'content-type': 'application/json' },
        payload: payload as string,
      })
    expect((await post({})).json().error).toMatchObject({ code: 'invalid_field', field: 'idOrEmail' })
    expect((await post({ idOrEmail: 42 })).json().error).toMatchObject({
      code: 'invalid_field',
      field: 'idOrEmail',
    })
    expect((await post({ idOrEmail: '  ' })).statusCode).toBe(400)
    expect((await post({ idOrEmail: 'a@b.c', extra: 1 })).json().error).toMatchObject({
      code: 'unknown_field',
      field: 'extra',
    })
    expect((await post('{"idOrEmail":')).json().error.code).toBe('malformed_json')
    const weak = await t.factory.apiKey(c.id, ['manageUser'])
    expect((await post({ idOrEmail: 'a@b.c' }, { authorization: `Bearer ${weak}` })).statusCode).toBe(403)
  })
})

describe('Users: OpenAPI', () => {
  it('documents every Users route, and records the decisions where the docs are silent', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/openapi.json' })
    expect(res.statusCode).toBe(200)
    const paths = res.json().paths
    expect(paths['/apis/v1/users/{userId}'].get.operationId).toBe('getUser')
    expect(paths['/apis/v1/users/filter'].post.description).toContain('do not show this path')
    expect(paths['/apis/v1/users'].post.operationId).toBe('createUser')
    expect(paths['/apis/v1/users/info'].post.operationId).toBe('getUserData')
    expect(paths['/apis/v1/users/manage'].post.description).toContain('echo')
  })
})

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/lib/auth/secrets.ts'
import { newId } from '../../src/lib/ids.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

let t: TestApp
beforeAll(async () => {
  t = await startTestApp()
})
afterAll(() => t.close())

const DOCUMENTED_KEY_FIELDS = [
  '_id',
  'name',
  'key',
  'permissions',
  'expirePeriod',
  'expireDate',
  'updatedAt',
  'createdAt',
]
const HEX24 = /^[0-9a-f]{24}$/

/** A community with an admin session and a member session. */
async function setup() {
  const c = await t.factory.community()
  const admin = await t.factory.user(c.id, { role: 'admin' })
  const member = await t.factory.user(c.id)
  return {
    ...c,
    admin,
    adminSession: await t.factory.session(admin),
    memberSession: await t.factory.session(member),
  }
}

const keysUrl = (communityId: string, keyId?: string) =>
  `/apis/v1/communities/${communityId}/api-keys${keyId ? `/${keyId}` : ''}`

async function createKey(communityId: string, headers: Record<string, string>, body: object = {}) {
  const res = await t.app.inject({
    method: 'POST',
    url: keysUrl(communityId),
    headers,
    payload: { name: 'CRM sync', permissions: ['createUser', 'getUserData'], expirePeriod: 0, ...body },
  })
  expect(res.statusCode).toBe(201)
  return res.json().data as { _id: string; key: string; name: string }
}

const keyRow = (id: string) =>
  t.deps.database.db
    .selectFrom('api_keys')
    .select(['name', 'permissions', 'is_active', 'key_hash', 'community_id'])
    .where('id', '=', id)
    .executeTakeFirst()

/** Secure Auth takes a community key in its apiKey header: proof that a key works (or why not). */
const useKey = (key: string, userId: string) =>
  t.app.inject({
    method: 'GET',
    url: `/api/secureAuth?userId=${userId}`,
    headers: { apikey: key, hostname: 'x.example' },
  })

describe('Community API keys (Application API)', () => {
  describe('POST /apis/v1/communities/:communityId/api-keys', () => {
    it('creates a key as an admin and shows the raw 64-hex key once, stored hashed', async () => {
      const c = await setup()
      const res = await t.app.inject({
        method: 'POST',
        url: keysUrl(c.id),
        headers: c.adminSession,
        payload: {
          name: 'CRM sync',
          permissions: ['createUser', 'bulkUpdateUser', 'createUser'],
          expirePeriod: 30,
        },
      })
      expect(res.statusCode).toBe(201)
      const body = res.json()
      expect(body.meta).toEqual({ status: 'success', statusCode: 201 })
      expect(body.message).toBe('Create API key success.')
      for (const f of DOCUMENTED_KEY_FIELDS) expect(body.data).toHaveProperty(f)
      expect(body.data).toMatchObject({
        name: 'CRM sync',
        permissions: ['bulkUpdateUser', 'createUser'],
        expirePeriod: 30,
        isActive: true,
      })
      expect(body.data._id).toMatch(HEX24)
      expect(body.data.key).toMatch(/^[0-9a-f]{64}$/)
      const days = (Date.parse(body.data.expireDate) - Date.now()) / 86_400_000
      expect(days).toBeGreaterThan(29.9)
      expect(days).toBeLessThan(30.1)
      const row = await keyRow(body.data._id)
      expect(row?.key_hash).toBe(hashToken(body.data.key))
      expect(row?.community_id).toBe(c.id)
      const again = await t.app.inject({
        method: 'GET',
        url: keysUrl(c.id, body.data._id),
        headers: c.adminSession,
      })
      expect(again.json().data.key).toBe(`${body.data.key.slice(0, 6)}…`)
      expect((await useKey(body.data.key, c.admin.id)).statusCode).toBe(200)
    })

    it('creates with the system key, with ["all"] and an explicit expireDate', async () => {
      const c = await setup()
      const res = await t.app.inject({
        method: 'POST',
        url: keysUrl(c.id),
        headers: { 'x-api-key': c.systemKey },
        payload: {
          name: 'everything',
          permissions: ['all', 'createUser'],
          expirePeriod: 0,
          expireDate: '2030-01-01T00:00:00Z',
        },
      })
      expect(res.statusCode).toBe(201)
      expect(res.json().data).toMatchObject({
        permissions: ['all'],
        expirePeriod: 0,
        expireDate: '2030-01-01T00:00:00.000Z',
      })
    })

    it('rejects unknown permission names with 400 invalid_permission and stores nothing', async () => {
      const c = await setup()
      const before = await t.deps.database.db
        .selectFrom('api_keys')
        .select('id')
        .where('community_id', '=', c.id)
        .execute()
      const res = await t.app.inject({
        method: 'POST',
        url: keysUrl(c.id),
        headers: c.adminSession,
        payload: { name: 'x', permissions: ['createUser', 'launchRockets'], expirePeriod: 0 },
      })
      expect(res.statusCode).toBe(400)
      expect(res.json()).toMatchObject({
        meta: { status: 'error', statusCode: 400 },
        error: { code: 'invalid_permission', field: 'permissions' },
      })
      const after = await t.deps.database.db
        .selectFrom('api_keys')
        .select('id')
        .where('community_id', '=', c.id)
        .execute()
      expect(after).toHaveLength(before.length)
    })

    it('rejects missing fields, wrong types, unknown fields, malformed JSON and bad ids', async () => {
      const c = await setup()
      const post = (payload: unknown, url = keysUrl(c.id)) =>
        t.app.inject({ method: 'POST', url, headers: c.adminSession, payload: payload as object })
      const cases: [unknown, string, string][] = [
        [{ permissions: ['createUser'], expirePeriod: 0 }, 'invalid_field', 'name'],
        [{ name: 'x', expirePeriod: 0 }, 'invalid_field', 'permissions'],
        [{ name: 'x', permissions: [], expirePeriod: 0 }, 'invalid_field', 'permissions'],
        [{ name: 'x', permissions: ['createUser'], expirePeriod: '30' }, 'invalid_field', 'expirePeriod'],
        [{ name: 'x', permissions: ['createUser'], expirePeriod: -1 }, 'invalid_field', 'expirePeriod'],
        [
          { name: 'x', permissions: ['createUser'], expirePeriod: 0, expireDate: 'tomorrow' },
          'invalid_field',
          'expireDate',
        ],
        [{ name: 'x', permissions: ['createUser'], expirePeriod: 0, secret: 1 }, 'unknown_field', 'secret'],
      ]
      for (const [payload, code, field] of cases) {
        const res = await post(payload)
        expect(res.statusCode, JSON.stringify(payload)).toBe(400)
        expect(res.json().error).toMatchObject({ code, field })
      }
      const malformed = await t.app.inject({
        method: 'POST',
        url: keysUrl(c.id),
        headers: { ...c.adminSession, 'content-type': 'application/json' },
        payload: '{"name":',
      })
      expect(malformed.statusCode).toBe(400)
      expect(malformed.json().error.code).toBe('malformed_json')
      const badId = await post(
        { name: 'x', permissions: ['createUser'], expirePeriod: 0 },
        keysUrl('not-an-id'),
      )
      expect(badId.statusCode).toBe(400)
      expect(badId.json().error).toMatchObject({ code: 'invalid_field', field: 'communityId' })
    })

    it('refuses members (403), anonymous callers (401) and community API keys (401)', async () => {
      const c = await setup()
      const payload = { name: 'x', permissions: ['createUser'], expirePeriod: 0 }
      const member = await t.app.inject({
        method: 'POST',
        url: keysUrl(c.id),
        headers: c.memberSession,
        payload,
      })
      expect(member.statusCode).toBe(403)
      expect(member.json().error.code).toBe('admin_only')
      const anonymous = await t.app.inject({ method: 'POST', url: keysUrl(c.id), payload })
      expect(anonymous.statusCode).toBe(401)
      expect(anonymous.json().meta).toEqual({ status: 'error', statusCode: 401 })
      const byKey = await t.app.inject({ method: 'POST', url: keysUrl(c.id), headers: c.bearer, payload })
      expect(byKey.statusCode).toBe(401)
      expect(byKey.json().error.code).toBe('credential_not_accepted')
    })
  })

  describe('GET /apis/v1/communities/:communityId/api-keys', () => {
    it('lists community keys masked, newest first, paginated with page/limit/total', async () => {
      const c = await setup()
      const created = []
      for (const name of ['one', 'two', 'three'])
        created.push(await createKey(c.id, c.adminSession, { name }))
      // A user key of the same community is not a community key.
      await t.app.inject({
        method: 'POST',
        url: `/apis/v1/users/apikeys?userId=${c.admin.id}`,
        headers: c.adminSession,
        payload: { name: 'mine', permissions: ['sendMessages'], expirePeriod: 0, expireDate: '' },
      })
      const res = await t.app.inject({
        method: 'GET',
        url: `${keysUrl(c.id)}?page=1&limit=2`,
        headers: c.adminSession,
      })
      expect(res.statusCode).toBe(200)
      const body = res.json()
      // The factory's key counts too: 4 community keys.
      expect(body.meta).toEqual({ status: 'success', statusCode: 200, page: 1, limit: 2, total: 4 })
      expect(body.message).toBe('Get API keys success.')
      expect(body.data.map((k: { name: string }) => k.name)).toEqual(['three', 'two'])
      for (const k of body.data) expect(k.key).toMatch(/^[0-9a-f]{6}…$/)
      expect(JSON.stringify(body)).not.toContain(created[2].key)
      const page2 = await t.app.inject({
        method: 'GET',
        url: `${keysUrl(c.id)}?page=2&limit=2`,
        headers: c.adminSession,
      })
      expect(page2.json().data.map((k: { name: string }) => k.name)).toEqual([
        'one',
        expect.stringMatching(/^key /),
      ])
    })

    it('shows when a key was last used: null until its first use, then the time, rewritten at most once a minute', async () => {
      const c = await setup()
      const bearerKey = await createKey(c.id, c.adminSession, { name: 'bearer' })
      const headerKey = await createKey(c.id, c.adminSession, { name: 'secure auth' })
      const lastUsed = async (id: string) => {
        const res = await t.app.inject({ method: 'GET', url: keysUrl(c.id, id), headers: c.adminSession })
        expect(res.statusCode).toBe(200)
        return res.json().data.lastUsedAt as string | null
      }
      // The timestamp is written beside the request, not before the answer: wait for it.
      const until = async (id: string, ok: (v: string | null) => boolean) => {
        for (let i = 0; i < 100; i++) {
          const v = await lastUsed(id)
          if (ok(v)) return v
          await new Promise((r) => setTimeout(r, 20))
        }
        throw new Error(`lastUsedAt of ${id} never settled`)
      }
      expect(await lastUsed(bearerKey._id)).toBeNull()
      expect(await lastUsed(headerKey._id)).toBeNull()

      const before = Date.now() - 1000
      const read = await t.app.inject({
        method: 'GET',
        url: `/apis/v1/users/${c.admin.id}`,
        headers: { authorization: `Bearer ${bearerKey.key}` },
      })
      expect(read.statusCode, read.body).toBe(200)
      const first = await until(bearerKey._id, (v) => v !== null)
      expect(Date.parse(first!)).toBeGreaterThanOrEqual(before)
      expect(await lastUsed(headerKey._id)).toBeNull() // only the key that was used

      expect((await useKey(headerKey.key, c.admin.id)).statusCode).toBe(200)
      await until(headerKey._id, (v) => v !== null)

      // Used again within the minute: the row is not rewritten.
      await t.app.inject({
        method: 'GET',
        url: `/apis/v1/users/${c.admin.id}`,
        headers: { authorization: `Bearer ${bearerKey.key}` },
      })
      await new Promise((r) => setTimeout(r, 100))
      expect(await lastUsed(bearerKey._id)).toBe(first)
    })

    it('rejects bad pagination and unknown query fields', async () => {
      const c = await setup()
      for (const [q, code, field] of [
        ['limit=0', 'invalid_field', 'limit'],
        ['limit=101', 'invalid_field', 'limit'],
        ['page=abc', 'invalid_field', 'page'],
        ['sort=name', 'unknown_field', 'sort'],
      ]) {
        const res = await t.app.inject({
          method: 'GET',
          url: `${keysUrl(c.id)}?${q}`,
          headers: c.adminSession,
        })
        expect(res.statusCode, q).toBe(400)
        expect(res.json().error).toMatchObject({ code, field })
      }
    })
  })

  describe('GET/PUT/DELETE /apis/v1/communities/:communityId/api-keys/:apiKeyId', () => {
    it('reads one key, 404 for an unknown id and 400 for a malformed one', async () => {
      const c = await setup()
      const k = await createKey(c.id, c.adminSession)
      const res = await t.app.inject({
        method: 'GET',
        url: keysUrl(c.id, k._id),
        headers: { 'x-api-key': c.systemKey },
      })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toMatchObject({
        message: 'Get API key success.',
        data: { _id: k._id, name: 'CRM sync' },
      })
      const missing = await t.app.inject({
        method: 'GET',
        url: keysUrl(c.id, newId()),
        headers: c.adminSession,
      })
      expect(missing.statusCode).toBe(404)
      expect(missing.json().error).toMatchObject({ code: 'api_key_not_found', field: 'apiKeyId' })
      const bad = await t.app.inject({ method: 'GET', url: keysUrl(c.id, 'xyz'), headers: c.adminSession })
      expect(bad.statusCode).toBe(400)
      expect(bad.json().error).toMatchObject({ code: 'invalid_field', field: 'apiKeyId' })
    })

    it('updates fields; isActive=false makes the key fail with 401 api_key_disabled', async () => {
      const c = await setup()
      const k = await createKey(c.id, c.adminSession)
      const res = await t.app.inject({
        method: 'PUT',
        url: keysUrl(c.id, k._id),
        headers: c.adminSession,
        payload: { name: 'Renamed', permissions: ['getUserStats'], expirePeriod: 7, isActive: false },
      })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toMatchObject({
        meta: { status: 'success', statusCode: 200 },
        message: 'Update API key success.',
        data: { name: 'Renamed', permissions: ['getUserStats'], expirePeriod: 7, isActive: false },
      })
      const disabled = await useKey(k.key, c.admin.id)
      expect(disabled.statusCode).toBe(401)
      expect(disabled.json()).toMatchObject({ error: true, code: 'api_key_disabled' })
      // Through the shared Bearer resolution too.
      const bearer = await t.app.inject({
        method: 'GET',
        url: keysUrl(c.id),
        headers: { authorization: `Bearer ${k.key}` },
      })
      expect(bearer.statusCode).toBe(401)
      expect(bearer.json().error.code).toBe('api_key_disabled')
      const back = await t.app.inject({
        method: 'PUT',
        url: keysUrl(c.id, k._id),
        headers: c.adminSession,
        payload: { isActive: true, expireDate: null },
      })
      expect(back.json().data).toMatchObject({ isActive: true, expireDate: null })
      expect((await useKey(k.key, c.admin.id)).statusCode).toBe(200)
    })

    it('rejects an empty update, unknown fields and unknown permissions', async () => {
      const c = await setup()
      const k = await createKey(c.id, c.adminSession)
      const put = (payload: object) =>
        t.app.inject({ method: 'PUT', url: keysUrl(c.id, k._id), headers: c.adminSession, payload })
      expect((await put({})).json().error).toMatchObject({ code: 'empty_update' })
      expect((await put({ key: 'abc' })).json().error).toMatchObject({ code: 'unknown_field', field: 'key' })
      expect((await put({ permissions: ['nope'] })).json().error).toMatchObject({
        code: 'invalid_permission',
        field: 'permissions',
      })
      expect((await put({ isActive: 'no' })).json().error).toMatchObject({
        code: 'invalid_field',
        field: 'isActive',
      })
      expect((await keyRow(k._id))?.name).toBe('CRM sync')
    })

    it('refuses an expired key with 401 api_key_expired', async () => {
      const c = await setup()
      const expired = await t.factory.apiKey(c.id, ['createUser'], {
        expireDate: new Date(Date.now() - 1000),
      })
      const res = await t.app.inject({
        method: 'GET',
        url: keysUrl(c.id),
        headers: { authorization: `Bearer ${expired}` },
      })
      expect(res.statusCode).toBe(401)
      expect(res.json().error.code).toBe('api_key_expired')
      const viaSecureAuth = await useKey(expired, c.admin.id)
      expect(viaSecureAuth.json()).toMatchObject({ error: true, code: 'api_key_expired' })
    })

    it('deletes with the documented answer, and the key stops working', async () => {
      const c = await setup()
      const k = await createKey(c.id, c.adminSession, { expirePeriod: 90 })
      const res = await t.app.inject({ method: 'DELETE', url: keysUrl(c.id, k._id), headers: c.adminSession })
      expect(res.statusCode).toBe(200)
      const body = res.json()
      expect(body.meta).toEqual({ status: 'success', statusCode: 200 })
      expect(body.message).toBe('Delete API key success.')
      for (const f of DOCUMENTED_KEY_FIELDS) expect(body.data).toHaveProperty(f)
      expect(body.data).toMatchObject({
        _id: k._id,
        name: 'CRM sync',
        key: `${k.key.slice(0, 6)}…`,
        permissions: ['createUser', 'getUserData'],
        expirePeriod: 90,
      })
      expect(typeof body.data.expireDate).toBe('string')
      expect(await keyRow(k._id)).toBeUndefined()
      const after = await useKey(k.key, c.admin.id)
      expect(after.statusCode).toBe(401)
      expect(after.json().code).toBe('invalid_api_key')
      const again = await t.app.inject({
        method: 'DELETE',
        url: keysUrl(c.id, k._id),
        headers: c.adminSession,
      })
      expect(again.statusCode).toBe(404)
    })
  })

  describe('isolation between communities', () => {
    it("an admin of A cannot list, read, update or delete B's keys", async () => {
      const a = await setup()
      const b = await setup()
      const bKey = await createKey(b.id, b.adminSession, { name: 'B key' })
      const attempts = [
        { method: 'GET' as const, url: keysUrl(b.id) },
        { method: 'GET' as const, url: keysUrl(b.id, bKey._id) },
        { method: 'PUT' as const, url: keysUrl(b.id, bKey._id), payload: { name: 'owned', isActive: false } },
        { method: 'DELETE' as const, url: keysUrl(b.id, bKey._id) },
        {
          method: 'POST' as const,
          url: keysUrl(b.id),
          payload: { name: 'planted', permissions: ['all'], expirePeriod: 0 },
        },
      ]
      for (const req of attempts) {
        const res = await t.app.inject({ ...req, headers: a.adminSession })
        expect(res.statusCode, `${req.method} ${req.url}`).toBe(403)
        expect(res.json().error.code).toBe('community_forbidden')
      }
      // Naming B's key under A's own path: not found, as if it did not exist.
      for (const method of ['GET', 'PUT', 'DELETE'] as const) {
        const res = await t.app.inject({
          method,
          url: keysUrl(a.id, bKey._id),
          headers: a.adminSession,
          ...(method === 'PUT' ? { payload: { name: 'owned' } } : {}),
        })
        expect(res.statusCode, method).toBe(404)
      }
      expect(await keyRow(bKey._id)).toMatchObject({ name: 'B key', is_active: true })
      const bList = await t.app.inject({ method: 'GET', url: keysUrl(b.id), headers: b.adminSession })
      expect(bList.json().data.map((k: { name: string }) => k.name)).not.toContain('planted')
    })

    it("the system key of A cannot touch B's keys", async () => {
      const a = await setup()
      const b = await setup()
      const bKey = await createKey(b.id, b.adminSession, { name: 'B key' })
      for (const method of ['GET', 'PUT', 'DELETE'] as const) {
        const res = await t.app.inject({
          method,
          url: keysUrl(b.id, bKey._id),
          headers: { 'x-api-key': a.systemKey },
          ...(method === 'PUT' ? { payload: { isActive: false } } : {}),
        })
        expect(res.statusCode, method).toBe(403)
        expect(res.json()).toMatchObject({
          meta: { status: 'error', statusCode: 403 },
          error: { code: 'community_forbidden' },
        })
      }
      const viaOwnPath = await t.app.inject({
        method: 'DELETE',
        url: keysUrl(a.id, bKey._id),
        headers: { 'x-api-key': a.systemKey },
      })
      expect(viaOwnPath.statusCode).toBe(404)
      expect(await keyRow(bKey._id)).toMatchObject({ name: 'B key', is_active: true })
    })
  })
})

describe('User API keys (Integration API)', () => {
  const DOCUMENTED_POST = { name: 'testing', permissions: ['sendMessages'], expirePeriod: 0, expireDate: '' }
  const DOCUMENTED_PUT = {
    name: 'Updated API Key Name',
    permissions: ['readOwnProfile', 'updateOwnProfile', 'readOwnMessages'],
    expirePeriod: 180,
    expireDate: '2025-06-30T23:59:59Z',
    isActive: true,
  }

  async function member() {
    const c = await t.factory.community()
    const user = await t.factory.user(c.id)
    return { c, user, session: await t.factory.session(user) }
  }

  async function createUserKey(m: Awaited<ReturnType<typeof member>>) {
    const res = await t.app.inject({
      method: 'POST',
      url: `/apis/v1/users/apikeys?userId=${m.user.id}`,
      headers: m.session,
      payload: { ...DOCUMENTED_POST, communityId: m.c.id },
    })
    expect(res.statusCode).toBe(201)
    return res.json().data as { _id: string; key: string }
  }

  it('creates a key from the documented body and shows the raw key once', async () => {
    const m = await member()
    const res = await t.app.inject({
      method: 'POST',
      url: `/apis/v1/users/apikeys?userId=${m.user.id}`,
      headers: m.session,
      payload: { ...DOCUMENTED_POST, communityId: m.c.id },
    })
    expect(res.statusCode).toBe(201)
    const body = res.json()
    expect(body.status).toBe('success')
    expect(body.message).toBe('Create user API key success.')
    expect(body.data).toMatchObject({
      name: 'testing',
      permissions: ['sendMessages'],
      expirePeriod: 0,
      expireDate: null,
      isActive: true,
      userId: m.user.id,
      communityId: m.c.id,
    })
    expect(body.data.key).toMatch(/^[0-9a-f]{64}$/)
    const row = await t.deps.database.db
      .selectFrom('api_keys')
      .select(['kind', 'user_id', 'key_hash'])
      .where('id', '=', body.data._id)
      .executeTakeFirstOrThrow()
    expect(row).toEqual({ kind: 'user', user_id: m.user.id, key_hash: hashToken(body.data.key) })
    // The key authenticates as a user key (this route wants a session, so: not accepted, but resolved).
    const used = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/${m.user.id}/api-keys`,
      headers: { authorization: `Bearer ${body.data.key}` },
    })
    expect(used.statusCode).toBe(401)
    expect(used.json().error.code).toBe('credential_not_accepted')
  })

  it('lists only my keys, masked', async () => {
    const m = await member()
    const k = await createUserKey(m)
    const other = await t.factory.user(m.c.id)
    await t.app.inject({
      method: 'POST',
      url: `/apis/v1/users/apikeys?userId=${other.id}`,
      headers: await t.factory.session(other),
      payload: DOCUMENTED_POST,
    })
    const res = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/${m.user.id}/api-keys`,
      headers: m.session,
    })
    expect(res.statusCode).toBe(200)
    expect(res.json().data).toEqual([
      expect.objectContaining({ _id: k._id, key: `${k.key.slice(0, 6)}…`, userId: m.user.id }),
    ])
  })

  it('updates with the documented body, then deletes', async () => {
    const m = await member()
    const k = await createUserKey(m)
    const url = `/apis/v1/users/${m.user.id}/api-keys/${k._id}`
    const put = await t.app.inject({ method: 'PUT', url, headers: m.session, payload: DOCUMENTED_PUT })
    expect(put.statusCode).toBe(200)
    expect(put.json()).toMatchObject({
      status: 'success',
      message: 'Update user API key success.',
      data: {
        _id: k._id,
        name: 'Updated API Key Name',
        permissions: ['readOwnMessages', 'readOwnProfile', 'updateOwnProfile'],
        expirePeriod: 180,
        expireDate: '2025-06-30T23:59:59.000Z',
        isActive: true,
      },
    })
    // That documented date is in the past: the key is now refused as expired.
    const expired = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/${m.user.id}/api-keys`,
      headers: { authorization: `Bearer ${k.key}` },
    })
    expect(expired.json().error.code).toBe('api_key_expired')
    const del = await t.app.inject({ method: 'DELETE', url, headers: m.session })
    expect(del.statusCode).toBe(200)
    expect(del.json()).toMatchObject({
      message: 'Delete user API key success.',
      data: { _id: k._id, key: `${k.key.slice(0, 6)}…` },
    })
    const again = await t.app.inject({ method: 'DELETE', url, headers: m.session })
    expect(again.statusCode).toBe(404)
    expect(again.json()).toMatchObject({
      status: 'error',
      error: { code: 'api_key_not_found', field: 'keyId' },
    })
  })

  it('rejects community permissions, bad bodies and malformed ids', async () => {
    const m = await member()
    const post = (payload: unknown, userId: string = m.user.id) =>
      t.app.inject({
        method: 'POST',
        url: `/apis/v1/users/apikeys?userId=${userId}`,
        headers: m.session,
        payload: payload as object,
      })
    const cases: [unknown, string, string][] = [
      [{ ...DOCUMENTED_POST, permissions: ['createUser'] }, 'invalid_permission', 'permissions'],
      [{ ...DOCUMENTED_POST, permissions: ['all'] }, 'invalid_permission', 'permissions'],
      [{ permissions: ['sendMessages'], expirePeriod: 0 }, 'invalid_field', 'name'],
      [{ ...DOCUMENTED_POST, expirePeriod: 'never' }, 'invalid_field', 'expirePeriod'],
      [{ ...DOCUMENTED_POST, communityId: '123' }, 'invalid_field', 'communityId'],
      [{ ...DOCUMENTED_POST, channels: [] }, 'unknown_field', 'channels'],
    ]
    for (const [payload, code, field] of cases) {
      const res = await post(payload)
      expect(res.statusCode, JSON.stringify(payload)).toBe(400)
      expect(res.json()).toMatchObject({ status: 'error', error: { code, field } })
    }
    const badUser = await post(DOCUMENTED_POST, 'me')
    expect(badUser.json().error).toMatchObject({ code: 'invalid_field', field: 'userId' })
    const noQuery = await t.app.inject({
      method: 'POST',
      url: '/apis/v1/users/apikeys',
      headers: m.session,
      payload: DOCUMENTED_POST,
    })
    expect(noQuery.json().error).toMatchObject({ code: 'invalid_field', field: 'userId' })
    const badKeyId = await t.app.inject({
      method: 'PUT',
      url: `/apis/v1/users/${m.user.id}/api-keys/nope`,
      headers: m.session,
      payload: DOCUMENTED_PUT,
    })
    expect(badKeyId.json().error).toMatchObject({ code: 'invalid_field', field: 'keyId' })
    const malformed = await t.app.inject({
      method: 'POST',
      url: `/apis/v1/users/apikeys?userId=${m.user.id}`,
      headers: { ...m.session, 'content-type': 'application/json' },
      payload: '{"name"',
    })
    expect(malformed.json().error.code).toBe('malformed_json')
  })

  it('only a session may manage user keys: system keys and community keys get 401', async () => {
    const m = await member()
    for (const headers of [{ 'x-api-key': m.c.systemKey }, m.c.bearer]) {
      const res = await t.app.inject({ method: 'GET', url: `/apis/v1/users/${m.user.id}/api-keys`, headers })
      expect(res.statusCode).toBe(401)
      expect(res.json().error.code).toBe('credential_not_accepted')
    }
  })

  it('caps the keys of one user', async () => {
    const m = await member()
    await t.deps.database.db
      .insertInto('api_keys')
      .values(
        Array.from({ length: 100 }, (_, i) => ({
          id: newId(),
          community_id: m.c.id,
          kind: 'user' as const,
          user_id: m.user.id,
          name: `k${i}`,
          key_hash: hashToken(`${m.user.id}-${i}`),
          key_prefix: 'abcdef',
        })),
      )
      .execute()
    const res = await t.app.inject({
      method: 'POST',
      url: `/apis/v1/users/apikeys?userId=${m.user.id}`,
      headers: m.session,
      payload: DOCUMENTED_POST,
    })
    expect(res.statusCode).toBe(409)
    expect(res.json().error.code).toBe('api_key_limit_reached')
  })

  describe('isolation', () => {
    it('another user of the same community cannot read, change or delete my keys', async () => {
      const m = await member()
      const k = await createUserKey(m)
      const other = await t.factory.user(m.c.id, { role: 'admin' })
      const otherSession = await t.factory.session(other)
      const mine = `/apis/v1/users/${m.user.id}/api-keys`
      const attempts = [
        { method: 'GET' as const, url: mine },
        { method: 'PUT' as const, url: `${mine}/${k._id}`, payload: { isActive: false } },
        { method: 'DELETE' as const, url: `${mine}/${k._id}` },
        {
          method: 'POST' as const,
          url: `/apis/v1/users/apikeys?userId=${m.user.id}`,
          payload: DOCUMENTED_POST,
        },
      ]
      for (const req of attempts) {
        const res = await t.app.inject({ ...req, headers: otherSession })
        expect(res.statusCode, `${req.method} ${req.url}`).toBe(403)
        expect(res.json().error.code).toBe('user_forbidden')
      }
      // Under their own path my key does not exist.
      const theirs = await t.app.inject({
        method: 'DELETE',
        url: `/apis/v1/users/${other.id}/api-keys/${k._id}`,
        headers: otherSession,
      })
      expect(theirs.statusCode).toBe(404)
      expect(await keyRow(k._id)).toMatchObject({ is_active: true })
    })

    it('a user of another community cannot touch my keys or create keys in my community', async () => {
      const m = await member()
      const k = await createUserKey(m)
      const stranger = await member()
      const res = await t.app.inject({
        method: 'PUT',
        url: `/apis/v1/users/${m.user.id}/api-keys/${k._id}`,
        headers: stranger.session,
        payload: { name: 'stolen' },
      })
      expect(res.statusCode).toBe(403)
      const plant = await t.app.inject({
        method: 'POST',
        url: `/apis/v1/users/apikeys?userId=${stranger.user.id}`,
        headers: stranger.session,
        payload: { ...DOCUMENTED_POST, communityId: m.c.id },
      })
      expect(plant.statusCode).toBe(403)
      expect(plant.json().error.code).toBe('community_forbidden')
      expect(await keyRow(k._id)).toMatchObject({ name: 'testing' })
      const strangerKeys = await t.deps.database.db
        .selectFrom('api_keys')
        .select('id')
        .where('user_id', '=', stranger.user.id)
        .execute()
      expect(strangerKeys).toHaveLength(0)
    })
  })
})

describe('rate limiting per key', () => {
  let limited: TestApp
  beforeAll(async () => {
    limited = await startTestApp({ env: { RATE_LIMIT_PER_MINUTE: '3' } })
  })
  afterAll(() => limited.close())

  it('answers the 4th request with one key 429 rate_limited in the family envelope; another key still passes', async () => {
    const a = await limited.factory.community()
    const b = await limited.factory.community()
    const list = (c: { id: string; systemKey: string }) =>
      limited.app.inject({ method: 'GET', url: keysUrl(c.id), headers: { 'x-api-key': c.systemKey } })
    for (let i = 0; i < 3; i++) expect((await list(a)).statusCode).toBe(200)
    const fourth = await list(a)
    expect(fourth.statusCode).toBe(429)
    expect(fourth.json()).toMatchObject({
      meta: { status: 'error', statusCode: 429 },
      error: { code: 'rate_limited' },
    })
    expect((await list(b)).statusCode).toBe(200)
  })
})

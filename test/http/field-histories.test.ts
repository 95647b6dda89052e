import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/lib/auth/secrets.ts'
import { newId } from '../../src/lib/ids.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

let t: TestApp
beforeAll(async () => {
  t = await startTestApp()
})
afterAll(() => t.close())

type Headers = Record<string, string>
type Community = Awaited<ReturnType<TestApp['factory']['community']>>

const base = (communityId: string) => `/apis/v1/communities/${communityId}`
const histUrl = (communityId: string, rest = '') => `${base(communityId)}/user-field-histories${rest}`

function call(method: 'GET' | 'POST', url: string, headers: Headers, payload?: unknown) {
  return t.app.inject({
    method,
    url,
    headers,
    ...(payload !== undefined ? { payload: payload as object } : {}),
  })
}

async function createField(c: Community, body: object) {
  const res = await call('POST', `${base(c.id)}/user-fields`, c.bearer, body)
  expect(res.statusCode).toBe(201)
  return res.json().data as { _id: string; field: string }
}

async function userRow(userId: string) {
  return t.deps.database.db
    .selectFrom('users')
    .select(['custom_fields', 'external_id'])
    .where('id', '=', userId)
    .executeTakeFirstOrThrow()
}

const countHistories = async (communityId: string) =>
  Number(
    (
      await t.deps.database.db
        .selectFrom('field_histories')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('community_id', '=', communityId)
        .executeTakeFirstOrThrow()
    ).n,
  )

async function keyIdOf(key: string) {
  const row = await t.deps.database.db
    .selectFrom('api_keys')
    .select('id')
    .where('key_hash', '=', hashToken(key))
    .executeTakeFirstOrThrow()
  return row.id
}

/** A history row at a fixed time, so ordering and date filters are deterministic. */
async function historyAt(
  c: string,
  userId: string,
  fieldId: string,
  field: string,
  at: string,
  newValue: unknown,
) {
  const id = newId()
  await t.deps.database.db
    .insertInto('field_histories')
    .values({
      id,
      community_id: c,
      user_id: userId,
      field_id: fieldId,
      field,
      old_value: null,
      new_value: JSON.stringify(newValue),
      source: 'system',
      changed_by: null,
      created_at: new Date(at),
    })
    .execute()
  return id
}

function expectError(res: { statusCode: number; json(): any }, status: number, code: string, field?: string) {
  expect(res.statusCode).toBe(status)
  const body = res.json()
  expect(body.meta).toEqual({ status: 'error', statusCode: status })
  expect(body.error.code).toBe(code)
  if (field !== undefined) expect(body.error.field).toBe(field)
}

describe('User field histories', () => {
  describe('POST /user-field-histories/users/:userId', () => {
    it("sets the user's value and writes the history row, answering 201 with it", async () => {
      const c = await t.factory.community()
      const f = await createField(c, { field: 'userLevel', name: 'User Level', type: 'number' })
      const u = await t.factory.user(c.id)
      const res = await call('POST', histUrl(c.id, `/users/${u.id}`), c.bearer, {
        fieldId: f._id,
        value: '3',
      })
      expect(res.statusCode).toBe(201)
      const body = res.json()
      expect(body.meta).toEqual({ status: 'success', statusCode: 201 })
      expect(body.message).toBe('Create user field history successful')
      expect(body.data).toEqual({
        _id: expect.stringMatching(/^[0-9a-f]{24}$/),
        userId: u.id,
        fieldId: f._id,
        field: 'userLevel',
        oldValue: null,
        newValue: 3,
        source: 'api',
        changedBy: await keyIdOf(c.apiKey),
        createdAt: expect.any(String),
      })
      expect((await userRow(u.id)).custom_fields).toEqual({ userLevel: 3 })

      const next = await call('POST', histUrl(c.id, `/users/${u.id}`), c.bearer, {
        field: 'userLevel',
        value: 4,
      })
      expect(next.statusCode).toBe(201)
      expect(next.json().data).toMatchObject({ oldValue: 3, newValue: 4 })
      expect(await countHistories(c.id)).toBe(2)
    })

    it('answers 200 with data null and writes nothing when the value does not change', async () => {
      const c = await t.factory.community()
      const f = await createField(c, { field: 'tier', name: 'Tier', type: 'text' })
      const u = await t.factory.user(c.id)
      await call('POST', histUrl(c.id, `/users/${u.id}`), c.bearer, { fieldId: f._id, value: 'gold' })
      const same = await call('POST', histUrl(c.id, `/users/${u.id}`), c.bearer, {
        fieldId: f._id,
        value: 'gold',
      })
      expect(same.statusCode).toBe(200)
      expect(same.json()).toMatchObject({ meta: { status: 'success', statusCode: 200 }, data: null })
      expect(await countHistories(c.id)).toBe(1)
    })

    it('clears a value with null and records who did it for an admin session', async () => {
      const c = await t.factory.community()
      const admin = await t.factory.user(c.id, { role: 'admin' })
      await createField(c, { field: 'tier', name: 'Tier', type: 'text' })
      const u = await t.factory.user(c.id)
      const session = await t.factory.session(admin)
      await call('POST', histUrl(c.id, `/users/${u.id}`), session, { field: 'tier', value: 'gold' })
      const res = await call('POST', histUrl(c.id, `/users/${u.id}`), session, { field: 'tier', value: null })
      expect(res.statusCode).toBe(201)
      expect(res.json().data).toMatchObject({
        oldValue: 'gold',
        newValue: null,
        source: 'admin',
        changedBy: admin.id,
      })
      expect((await userRow(u.id)).custom_fields).toEqual({})
    })

    it('moves users.external_id with the identifier field and refuses a taken one', async () => {
      const c = await t.factory.community()
      const f = await createField(c, { field: 'customerId', name: 'Customer', type: 'text' })
      await t.deps.database.db
        .updateTable('communities')
        .set({ identifier_field: 'customerId' })
        .where('id', '=', c.id)
        .execute()
      const [u1, u2] = [await t.factory.user(c.id), await t.factory.user(c.id)]
      expect(
        (await call('POST', histUrl(c.id, `/users/${u1.id}`), c.bearer, { fieldId: f._id, value: 'CUS-001' }))
          .statusCode,
      ).toBe(201)
      expect(await userRow(u1.id)).toEqual({
        custom_fields: { customerId: 'CUS-001' },
        external_id: 'CUS-001',
      })
      const taken = await call('POST', histUrl(c.id, `/users/${u2.id}`), c.bearer, {
        fieldId: f._id,
        value: 'CUS-001',
      })
      expectError(taken, 409, 'external_id_exists', 'value')
      expect(await userRow(u2.id)).toEqual({ custom_fields: {}, external_id: null })
      expect(await countHistories(c.id)).toBe(1)
    })

    it('rejects bad input with the field at fault and changes nothing', async () => {
      const c = await t.factory.community()
      const f = await createField(c, { field: 'userLevel', name: 'User Level', type: 'number' })
      const req = await createField(c, {
        field: 'plan',
        name: 'Plan',
        type: 'select',
        options: ['a', 'b'],
        required: true,
      })
      const u = await t.factory.user(c.id)
      const post = (body: unknown, userId = u.id) =>
        call('POST', histUrl(c.id, `/users/${userId}`), c.bearer, body)
      expectError(await post({ fieldId: f._id, value: 'lots' }), 400, 'invalid_value', 'value')
      expectError(await post({ fieldId: req._id, value: 'c' }), 400, 'invalid_value', 'value')
      expectError(await post({ fieldId: req._id, value: null }), 400, 'value_required', 'value')
      expectError(await post({ fieldId: f._id }), 400, 'invalid_field', 'value')
      expectError(await post({ fieldId: f._id, value: { a: 1 } }), 400, 'invalid_field', 'value')
      expectError(await post({ value: 1 }), 400, 'invalid_field', 'fieldId')
      expectError(await post({ fieldId: 'abc', value: 1 }), 400, 'invalid_field', 'fieldId')
      expectError(await post({ fieldId: f._id, field: 'plan', value: 1 }), 400, 'invalid_field', 'field')
      expectError(await post({ fieldId: f._id, value: 1, note: 'x' }), 400, 'unknown_field', 'note')
      expectError(await post({ field: 'email', value: 'a@b.c' }), 400, 'not_custom_field', 'field')
      expectError(await post({ field: 'nope', value: 1 }), 404, 'user_field_not_found', 'field')
      expectError(await post({ fieldId: newId(), value: 1 }), 404, 'user_field_not_found', 'fieldId')
      expectError(await post({ fieldId: f._id, value: 1 }, newId()), 404, 'user_not_found', 'userId')
      expectError(await post({ fieldId: f._id, value: 1 }, 'bad'), 400, 'invalid_field', 'userId')
      const malformed = await t.app.inject({
        method: 'POST',
        url: histUrl(c.id, `/users/${u.id}`),
        headers: { ...c.bearer, 'content-type': 'application/json' },
        payload: '{"value":',
      })
      expectError(malformed, 400, 'malformed_json')
      expect((await userRow(u.id)).custom_fields).toEqual({})
      expect(await countHistories(c.id)).toBe(0)
    })
  })

  describe('GET lists', () => {
    it('lists newest first with pagination meta, by community, field, user and both', async () => {
      const c = await t.factory.community()
      const f1 = await createField(c, { field: 'a', name: 'A', type: 'text' })
      const f2 = await createField(c, { field: 'b', name: 'B', type: 'text' })
      const [u1, u2] = [await t.factory.user(c.id), await t.factory.user(c.id)]
      const h1 = await historyAt(c.id, u1.id, f1._id, 'a', '2025-01-01T10:00:00Z', '1')
      const h2 = await historyAt(c.id, u1.id, f2._id, 'b', '2025-01-02T10:00:00Z', '2')
      const h3 = await historyAt(c.id, u2.id, f1._id, 'a', '2025-01-03T10:00:00Z', '3')
      const h4 = await historyAt(c.id, u2.id, f2._id, 'b', '2025-01-04T10:00:00Z', '4')
      const ids = (res: { json(): any }) => res.json().data.map((r: { _id: string }) => r._id)

      const all = await call('GET', histUrl(c.id), c.bearer)
      expect(all.statusCode).toBe(200)
      expect(all.json().meta).toEqual({ status: 'success', statusCode: 200, page: 1, limit: 20, total: 4 })
      expect(ids(all)).toEqual([h4, h3, h2, h1])
      expect(all.json().data[0]).toEqual({
        _id: h4,
        userId: u2.id,
        fieldId: f2._id,
        field: 'b',
        oldValue: null,
        newValue: '4',
        source: 'system',
        changedBy: null,
        createdAt: '2025-01-04T10:00:00.000Z',
      })

      const page2 = await call('GET', histUrl(c.id, '?page=2&limit=3'), c.bearer)
      expect(page2.json().meta).toMatchObject({ page: 2, limit: 3, total: 4 })
      expect(ids(page2)).toEqual([h1])

      expect(ids(await call('GET', histUrl(c.id, `/fields/${f1._id}`), c.bearer))).toEqual([h3, h1])
      expect(ids(await call('GET', histUrl(c.id, `/users/${u1.id}`), c.bearer))).toEqual([h2, h1])
      const both = await call('GET', histUrl(c.id, `/fields/${f2._id}/users/${u2.id}`), c.bearer)
      expect(ids(both)).toEqual([h4])
      expect(both.json().meta.total).toBe(1)

      expect(ids(await call('GET', histUrl(c.id, '?from=2025-01-02&to=2025-01-03'), c.bearer))).toEqual([
        h3,
        h2,
      ])
      expect(
        ids(await call('GET', histUrl(c.id, '?from=2025-01-02T10:00:01Z&to=2025-01-04T10:00:00'), c.bearer)),
      ).toEqual([h4, h3])
    })

    it('keeps a deleted field readable by its id', async () => {
      const c = await t.factory.community()
      const f = await createField(c, { field: 'note', name: 'Note', type: 'text' })
      const u = await t.factory.user(c.id)
      await call('POST', histUrl(c.id, `/users/${u.id}`), c.bearer, { fieldId: f._id, value: 'hello' })
      expect(
        (
          await t.app.inject({
            method: 'DELETE',
            url: `${base(c.id)}/user-fields/${f._id}`,
            headers: c.bearer,
          })
        ).statusCode,
      ).toBe(200)
      const res = await call('GET', histUrl(c.id, `/fields/${f._id}`), c.bearer)
      expect(res.statusCode).toBe(200)
      expect(
        res.json().data.map((r: { oldValue: unknown; newValue: unknown }) => [r.oldValue, r.newValue]),
      ).toEqual([
        ['hello', null],
        [null, 'hello'],
      ])
    })

    it('rejects bad queries and unknown fields or users', async () => {
      const c = await t.factory.community()
      const u = await t.factory.user(c.id)
      const get = (path: string) => call('GET', histUrl(c.id, path), c.bearer)
      expectError(await get('?limit=101'), 400, 'invalid_field', 'limit')
      expectError(await get('?limit=0'), 400, 'invalid_field', 'limit')
      expectError(await get('?page=0'), 400, 'invalid_field', 'page')
      expectError(await get('?page=abc'), 400, 'invalid_field', 'page')
      expectError(await get('?from=yesterday'), 400, 'invalid_field', 'from')
      expectError(await get('?to=2025-13-45'), 400, 'invalid_field', 'to')
      expectError(await get('?from=2025-02-01&to=2025-01-01'), 400, 'invalid_field', 'to')
      expectError(await get('?sort=asc'), 400, 'unknown_field', 'sort')
      expectError(await get(`/fields/${newId()}`), 404, 'user_field_not_found', 'fieldId')
      expectError(await get('/fields/xyz'), 400, 'invalid_field', 'fieldId')
      expectError(await get(`/users/${newId()}`), 404, 'user_not_found', 'userId')
      expectError(await get('/users/xyz'), 400, 'invalid_field', 'userId')
      expectError(await get(`/fields/${newId()}/users/${u.id}`), 404, 'user_field_not_found')
      const member = await t.factory.user(c.id)
      expectError(await call('GET', histUrl(c.id), await t.factory.session(member)), 403, 'admin_only')
      const weak = await t.factory.apiKey(c.id, ['getUserData'])
      expectError(
        await call('GET', histUrl(c.id), { authorization: `Bearer ${weak}` }),
        403,
        'missing_permission',
      )
      expectError(await call('GET', histUrl(c.id), {}), 401, 'unauthorized')
    })
  })

  describe('isolation between communities', () => {
    it("never lets a key of A read or write B's histories", async () => {
      const a = await t.factory.community()
      const b = await t.factory.community()
      const bField = await createField(b, { field: 'secret', name: 'Secret', type: 'text' })
      const bUser = await t.factory.user(b.id)
      await call('POST', histUrl(b.id, `/users/${bUser.id}`), b.bearer, { fieldId: bField._id, value: 'x' })
      const aField = await createField(a, { field: 'secret', name: 'Secret', type: 'text' })
      const aUser = await t.factory.user(a.id)

      // B's community in the path: refused outright, on all five endpoints.
      for (const path of [
        '',
        `/fields/${bField._id}`,
        `/users/${bUser.id}`,
        `/fields/${bField._id}/users/${bUser.id}`,
      ]) {
        expectError(await call('GET', histUrl(b.id, path), a.bearer), 403, 'community_forbidden')
      }
      const write = { fieldId: bField._id, value: 'hacked' }
      expectError(
        await call('POST', histUrl(b.id, `/users/${bUser.id}`), a.bearer, write),
        403,
        'community_forbidden',
      )

      // B's ids under A's own path: they do not exist there.
      expectError(
        await call('GET', histUrl(a.id, `/fields/${bField._id}`), a.bearer),
        404,
        'user_field_not_found',
      )
      expectError(await call('GET', histUrl(a.id, `/users/${bUser.id}`), a.bearer), 404, 'user_not_found')
      expectError(
        await call('GET', histUrl(a.id, `/fields/${aField._id}/users/${bUser.id}`), a.bearer),
        404,
        'user_not_found',
      )
      expectError(
        await call('POST', histUrl(a.id, `/users/${bUser.id}`), a.bearer, {
          fieldId: aField._id,
          value: 'y',
        }),
        404,
        'user_not_found',
      )
      expectError(
        await call('POST', histUrl(a.id, `/users/${aUser.id}`), a.bearer, write),
        404,
        'user_field_not_found',
      )
      const aList = await call('GET', histUrl(a.id), a.bearer)
      expect(aList.json().meta.total).toBe(0)

      // Nothing changed in B (or A).
      expect((await userRow(bUser.id)).custom_fields).toEqual({ secret: 'x' })
      expect(await countHistories(b.id)).toBe(1)
      expect((await userRow(aUser.id)).custom_fields).toEqual({})
      expect(await countHistories(a.id)).toBe(0)
    })
  })
})

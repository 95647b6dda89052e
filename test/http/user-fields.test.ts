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

const fieldsUrl = (communityId: string, rest = '') => `/apis/v1/communities/${communityId}/user-fields${rest}`

function call(method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, headers: Headers, payload?: unknown) {
  return t.app.inject({
    method,
    url,
    headers,
    ...(payload !== undefined ? { payload: payload as object } : {}),
  })
}

async function createField(c: Community, body: object) {
  const res = await call('POST', fieldsUrl(c.id), c.bearer, body)
  expect(res.statusCode).toBe(201)
  return res.json().data as { _id: string; field: string }
}

async function setValues(userId: string, values: Record<string, unknown>) {
  await t.deps.database.db
    .updateTable('users')
    .set({ custom_fields: JSON.stringify(values) })
    .where('id', '=', userId)
    .execute()
}

async function customFieldsOf(userId: string) {
  const row = await t.deps.database.db
    .selectFrom('users')
    .select('custom_fields')
    .where('id', '=', userId)
    .executeTakeFirstOrThrow()
  return row.custom_fields as Record<string, unknown>
}

async function definitions(communityId: string) {
  return t.deps.database.db
    .selectFrom('user_fields')
    .select(['id', 'field', 'name', 'type', 'options'])
    .where('community_id', '=', communityId)
    .orderBy('created_at')
    .execute()
}

async function histories(communityId: string) {
  return t.deps.database.db
    .selectFrom('field_histories')
    .select(['user_id', 'field_id', 'field', 'old_value', 'new_value', 'source', 'changed_by'])
    .where('community_id', '=', communityId)
    .execute()
}

async function keyIdOf(key: string) {
  const row = await t.deps.database.db
    .selectFrom('api_keys')
    .select('id')
    .where('key_hash', '=', hashToken(key))
    .executeTakeFirstOrThrow()
  return row.id
}

function expectError(res: { statusCode: number; json(): any }, status: number, code: string, field?: string) {
  expect(res.statusCode).toBe(status)
  const body = res.json()
  expect(body.meta).toEqual({ status: 'error', statusCode: status })
  expect(body.error.code).toBe(code)
  if (field !== undefined) expect(body.error.field).toBe(field)
}

describe('User fields', () => {
  describe('POST /user-fields', () => {
    it('creates a field from the documented mid-version body and answers the documented envelope', async () => {
      const c = await t.factory.community()
      const res = await call('POST', fieldsUrl(c.id), c.bearer, {
        field: 'userLevel',
        name: 'User Level',
        type: 'number',
      })
      expect(res.statusCode).toBe(201)
      const body = res.json()
      expect(body.meta).toEqual({ status: 'success', statusCode: 201 })
      expect(body.message).toBe('Create user field successful')
      expect(body.data).toMatchObject({
        field: 'userLevel',
        name: 'User Level',
        type: 'number',
        creator: null,
        communityId: c.id,
        isDefault: false,
        required: false,
        defaultValue: null,
        options: null,
      })
      expect(body.data._id).toMatch(/^[0-9a-f]{24}$/)
      expect(new Date(body.data.createdAt).toISOString()).toBe(body.data.createdAt)
      expect(body.data.updatedAt).toBe(body.data.createdAt)
      expect(Object.keys(body.data).sort()).toEqual([
        '_id',
        'communityId',
        'createdAt',
        'creator',
        'defaultValue',
        'description',
        'field',
        'isDefault',
        'name',
        'options',
        'required',
        'type',
        'updatedAt',
      ])
    })

    it('turns spaces in the key into hyphens (latest docs) and accepts the "numerical" type', async () => {
      const c = await t.factory.community()
      const data = await createField(c, {
        field: 'deposit amount',
        name: 'Deposit amount',
        type: 'numerical',
      })
      expect(data).toMatchObject({ field: 'deposit-amount', type: 'numerical' })
    })

    it('accepts the oldest body and derives the key from the name', async () => {
      const c = await t.factory.community()
      const res = await call('POST', fieldsUrl(c.id), c.bearer, {
        name: 'Experience Level',
        type: 'select',
        description: 'Trading experience',
        required: true,
        defaultValue: 'Beginner',
        options: ['Beginner', 'Intermediate', 'Advanced'],
      })
      expect(res.statusCode).toBe(201)
      expect(res.json().data).toMatchObject({
        field: 'experience-level',
        name: 'Experience Level',
        type: 'select',
        description: 'Trading experience',
        required: true,
        defaultValue: 'Beginner',
        options: ['Beginner', 'Intermediate', 'Advanced'],
      })
      const oldest = await call('POST', fieldsUrl(c.id), c.bearer, {
        name: 'Lots',
        type: 'number',
        defaultValue: 1,
      })
      expect(oldest.json().data).toMatchObject({ field: 'lots', defaultValue: 1 })
    })

    it('records the admin as creator when a session creates the field', async () => {
      const c = await t.factory.community()
      const admin = await t.factory.user(c.id, { role: 'admin' })
      const res = await call('POST', fieldsUrl(c.id), await t.factory.session(admin), {
        field: 'tier',
        name: 'Tier',
        type: 'text',
      })
      expect(res.statusCode).toBe(201)
      expect(res.json().data.creator).toEqual({
        _id: admin.id,
        id: Number(admin.seq),
        avatar: null,
        displayName: null,
        username: admin.username,
      })
    })

    it('refuses members, keys without userFields and missing credentials', async () => {
      const c = await t.factory.community()
      const member = await t.factory.user(c.id)
      const body = { field: 'x1', name: 'X', type: 'text' }
      expectError(
        await call('POST', fieldsUrl(c.id), await t.factory.session(member), body),
        403,
        'admin_only',
      )
      const weak = await t.factory.apiKey(c.id, ['getUserData'])
      expectError(
        await call('POST', fieldsUrl(c.id), { authorization: `Bearer ${weak}` }, body),
        403,
        'missing_permission',
      )
      expectError(await call('POST', fieldsUrl(c.id), {}, body), 401, 'unauthorized')
      expect(await definitions(c.id)).toEqual([])
    })

    it('rejects bad input with the field at fault', async () => {
      const c = await t.factory.community()
      const post = (body: unknown) => call('POST', fieldsUrl(c.id), c.bearer, body)
      expectError(await post({ field: 'a', type: 'text' }), 400, 'invalid_field', 'name')
      expectError(await post({ field: 'a', name: 'A' }), 400, 'invalid_field', 'type')
      expectError(await post({ field: 'a', name: 'A', type: 'colour' }), 400, 'invalid_field', 'type')
      expectError(await post({ field: 'a', name: 42, type: 'text' }), 400, 'invalid_field', 'name')
      expectError(
        await post({ field: 'a', name: 'A', type: 'text', colour: 'red' }),
        400,
        'unknown_field',
        'colour',
      )
      expectError(
        await post({ field: 'x'.repeat(51), name: 'A', type: 'text' }),
        400,
        'invalid_field',
        'field',
      )
      expectError(await post({ field: '', name: 'A', type: 'text' }), 400, 'invalid_field', 'field')
      expectError(await post({ field: 'a,b', name: 'A', type: 'text' }), 400, 'invalid_field', 'field')
      expectError(
        await post({ field: 'amount_op', name: 'A', type: 'number' }),
        400,
        'invalid_field',
        'field',
      )
      expectError(await post({ name: '!!!', type: 'text' }), 400, 'invalid_field', 'name')
      expectError(
        await post({ field: 'a', name: 'x'.repeat(101), type: 'text' }),
        400,
        'invalid_field',
        'name',
      )
      expectError(
        await post({ field: 'lvl', name: 'Level', type: 'select' }),
        400,
        'options_required',
        'options',
      )
      expectError(
        await post({ field: 'lvl', name: 'Level', type: 'select', options: ['a', 'a'] }),
        400,
        'invalid_field',
        'options',
      )
      expectError(
        await post({ field: 'lvl', name: 'Level', type: 'text', options: ['a'] }),
        400,
        'invalid_field',
        'options',
      )
      expectError(
        await post({ field: 'n', name: 'N', type: 'number', defaultValue: 'many' }),
        400,
        'invalid_value',
        'defaultValue',
      )
      expectError(
        await post({ field: 'n', name: 'N', type: 'number', defaultValue: { a: 1 } }),
        400,
        'invalid_field',
        'defaultValue',
      )
      expectError(
        await post({ field: 's', name: 'S', type: 'select', options: ['a'], defaultValue: 'b' }),
        400,
        'invalid_value',
        'defaultValue',
      )
      const malformed = await t.app.inject({
        method: 'POST',
        url: fieldsUrl(c.id),
        headers: { ...c.bearer, 'content-type': 'application/json' },
        payload: '{"field":',
      })
      expectError(malformed, 400, 'malformed_json')
      expectError(
        await call('POST', fieldsUrl('not-an-id'), c.bearer, { field: 'a', name: 'A', type: 'text' }),
        400,
        'invalid_field',
        'communityId',
      )
      expect(await definitions(c.id)).toEqual([])
    })

    it('answers 409 field_exists for a default field key or an existing key, ignoring case', async () => {
      const c = await t.factory.community()
      await createField(c, { field: 'userLevel', name: 'User Level', type: 'number' })
      expectError(
        await call('POST', fieldsUrl(c.id), c.bearer, { field: 'email', name: 'E', type: 'text' }),
        409,
        'field_exists',
        'field',
      )
      expectError(
        await call('POST', fieldsUrl(c.id), c.bearer, { field: 'firstName', name: 'F', type: 'text' }),
        409,
        'field_exists',
      )
      expectError(
        await call('POST', fieldsUrl(c.id), c.bearer, { field: 'USERLEVEL', name: 'U', type: 'text' }),
        409,
        'field_exists',
      )
      expectError(
        await call('POST', fieldsUrl(c.id), c.bearer, { name: 'Email', type: 'text' }),
        409,
        'field_exists',
      )
      expect((await definitions(c.id)).map((d) => d.field)).toEqual(['userLevel'])
    })
  })

  describe('GET /user-fields', () => {
    it('lists the default fields first, then the custom ones in creation order', async () => {
      const c = await t.factory.community()
      await createField(c, { field: 'userLevel', name: 'User Level', type: 'number' })
      await createField(c, { field: 'department', name: 'Department', type: 'text' })
      const res = await call('GET', fieldsUrl(c.id), c.bearer)
      expect(res.statusCode).toBe(200)
      const body = res.json()
      expect(body.meta).toEqual({ status: 'success', statusCode: 200 })
      const defaults = body.data.filter((f: { isDefault: boolean }) => f.isDefault)
      expect(defaults[0]).toEqual({
        _id: null,
        field: 'email',
        name: 'Email',
        type: 'text',
        description: '',
        required: true,
        defaultValue: null,
        options: null,
        isDefault: true,
        creator: null,
        communityId: c.id,
        createdAt: null,
        updatedAt: null,
      })
      expect(defaults.map((f: { field: string }) => f.field)).toContain('xp')
      expect(body.data.slice(defaults.length).map((f: { field: string }) => f.field)).toEqual([
        'userLevel',
        'department',
      ])
      expect(body.data.slice(0, defaults.length).every((f: { isDefault: boolean }) => f.isDefault)).toBe(true)
    })
  })

  describe('GET /user-fields/:fieldId', () => {
    it('returns one custom field, 404 when absent and 400 for a malformed id', async () => {
      const c = await t.factory.community()
      const f = await createField(c, { field: 'userLevel', name: 'User Level', type: 'number' })
      const res = await call('GET', fieldsUrl(c.id, `/${f._id}`), c.bearer)
      expect(res.statusCode).toBe(200)
      expect(res.json().data).toMatchObject({
        _id: f._id,
        field: 'userLevel',
        name: 'User Level',
        type: 'number',
      })
      expectError(
        await call('GET', fieldsUrl(c.id, `/${newId()}`), c.bearer),
        404,
        'user_field_not_found',
        'fieldId',
      )
      expectError(await call('GET', fieldsUrl(c.id, '/123'), c.bearer), 400, 'invalid_field', 'fieldId')
    })
  })

  describe('PUT /user-fields/:fieldId', () => {
    it('updates with the documented body and answers the documented envelope', async () => {
      const c = await t.factory.community()
      const f = await createField(c, { field: 'department', name: 'Dept', type: 'single-line-text' })
      const res = await call('PUT', fieldsUrl(c.id, `/${f._id}`), c.bearer, {
        name: 'Department',
        type: 'text',
      })
      expect(res.statusCode).toBe(200)
      const body = res.json()
      expect(body.meta).toEqual({ status: 'success', statusCode: 200 })
      expect(body.message).toBe('Updated user field')
      expect(body.data).toMatchObject({
        _id: f._id,
        field: 'department',
        name: 'Department',
        type: 'text',
        creator: null,
      })
      expect(typeof body.data.createdAt).toBe('string')
      expect(typeof body.data.updatedAt).toBe('string')
      expect((await definitions(c.id))[0]).toMatchObject({ name: 'Department', type: 'text' })
    })

    it('refuses a type change when user values do not fit, with the count, and changes nothing', async () => {
      const c = await t.factory.community()
      const f = await createField(c, { field: 'score', name: 'Score', type: 'text' })
      const [u1, u2, u3] = [
        await t.factory.user(c.id),
        await t.factory.user(c.id),
        await t.factory.user(c.id),
      ]
      await setValues(u1.id, { score: '12' })
      await setValues(u2.id, { score: 'high' })
      await setValues(u3.id, { score: 'low' })
      const res = await call('PUT', fieldsUrl(c.id, `/${f._id}`), c.bearer, { name: 'Score', type: 'number' })
      expectError(res, 409, 'type_change_conflict', 'type')
      expect(res.json().error.details).toEqual({ count: 2 })
      expect((await definitions(c.id))[0].type).toBe('text')
      expect(await customFieldsOf(u1.id)).toEqual({ score: '12' })
      expect(await histories(c.id)).toEqual([])
    })

    it('rewrites fitting values into the new type, writing a history row per changed value', async () => {
      const c = await t.factory.community()
      const f = await createField(c, { field: 'score', name: 'Score', type: 'text' })
      const [u1, u2, u3] = [
        await t.factory.user(c.id),
        await t.factory.user(c.id),
        await t.factory.user(c.id),
      ]
      await setValues(u1.id, { score: '12', other: 'x' })
      await setValues(u2.id, { score: ' 7.5 ' })
      await setValues(u3.id, { score: null })
      const res = await call('PUT', fieldsUrl(c.id, `/${f._id}`), c.bearer, {
        name: 'Score',
        type: 'numerical',
      })
      expect(res.statusCode).toBe(200)
      expect(await customFieldsOf(u1.id)).toEqual({ score: 12, other: 'x' })
      expect(await customFieldsOf(u2.id)).toEqual({ score: 7.5 })
      expect(await customFieldsOf(u3.id)).toEqual({ score: null })
      const keyId = await keyIdOf(c.apiKey)
      const rows = await histories(c.id)
      expect(rows).toHaveLength(2)
      expect(rows).toEqual(
        expect.arrayContaining([
          {
            user_id: u1.id,
            field_id: f._id,
            field: 'score',
            old_value: '12',
            new_value: 12,
            source: 'api',
            changed_by: keyId,
          },
          {
            user_id: u2.id,
            field_id: f._id,
            field: 'score',
            old_value: ' 7.5 ',
            new_value: 7.5,
            source: 'api',
            changed_by: keyId,
          },
        ]),
      )
    })

    it('converts to boolean and back to text', async () => {
      const c = await t.factory.community()
      const f = await createField(c, { field: 'vip', name: 'VIP', type: 'text' })
      const [u1, u2] = [await t.factory.user(c.id), await t.factory.user(c.id)]
      await setValues(u1.id, { vip: 'Yes' })
      await setValues(u2.id, { vip: '0' })
      expect(
        (await call('PUT', fieldsUrl(c.id, `/${f._id}`), c.bearer, { name: 'VIP', type: 'boolean' }))
          .statusCode,
      ).toBe(200)
      expect(await customFieldsOf(u1.id)).toEqual({ vip: true })
      expect(await customFieldsOf(u2.id)).toEqual({ vip: false })
      expect(
        (await call('PUT', fieldsUrl(c.id, `/${f._id}`), c.bearer, { name: 'VIP', type: 'text' })).statusCode,
      ).toBe(200)
      expect(await customFieldsOf(u1.id)).toEqual({ vip: 'true' })
    })

    it('refuses to drop a select option that users hold, and to move to select without options', async () => {
      const c = await t.factory.community()
      const f = await createField(c, {
        field: 'level',
        name: 'Level',
        type: 'select',
        options: ['Beginner', 'Advanced'],
      })
      const u = await t.factory.user(c.id)
      await setValues(u.id, { level: 'Advanced' })
      const drop = await call('PUT', fieldsUrl(c.id, `/${f._id}`), c.bearer, {
        name: 'Level',
        type: 'select',
        options: ['Beginner'],
      })
      expectError(drop, 409, 'type_change_conflict')
      expect(drop.json().error.details).toEqual({ count: 1 })
      const ok = await call('PUT', fieldsUrl(c.id, `/${f._id}`), c.bearer, {
        name: 'Level',
        type: 'select',
        options: ['Beginner', 'Advanced', 'Expert'],
      })
      expect(ok.json().data.options).toEqual(['Beginner', 'Advanced', 'Expert'])
      const t2 = await createField(c, { field: 't2', name: 'T2', type: 'text' })
      expectError(
        await call('PUT', fieldsUrl(c.id, `/${t2._id}`), c.bearer, { name: 'T2', type: 'select' }),
        400,
        'options_required',
        'options',
      )
    })

    it('refuses to change the kind of the identifier field and a default value that no longer fits', async () => {
      const c = await t.factory.community()
      const f = await createField(c, {
        field: 'customerId',
        name: 'Customer',
        type: 'text',
        defaultValue: 'none',
      })
      const other = await createField(c, { field: 'note', name: 'Note', type: 'text', defaultValue: 'n/a' })
      await t.deps.database.db
        .updateTable('communities')
        .set({ identifier_field: 'customerId' })
        .where('id', '=', c.id)
        .execute()
      expectError(
        await call('PUT', fieldsUrl(c.id, `/${f._id}`), c.bearer, { name: 'C', type: 'number' }),
        409,
        'field_in_use',
        'type',
      )
      expectError(
        await call('PUT', fieldsUrl(c.id, `/${other._id}`), c.bearer, { name: 'N', type: 'number' }),
        400,
        'invalid_value',
        'defaultValue',
      )
      const fixed = await call('PUT', fieldsUrl(c.id, `/${other._id}`), c.bearer, {
        name: 'N',
        type: 'number',
        defaultValue: 3,
      })
      expect(fixed.json().data).toMatchObject({ type: 'number', defaultValue: 3 })
      expect((await definitions(c.id)).map((d) => d.type)).toEqual(['text', 'number'])
    })

    it('rejects bad input', async () => {
      const c = await t.factory.community()
      const f = await createField(c, { field: 'department', name: 'Dept', type: 'text' })
      const put = (body: unknown, id = f._id) => call('PUT', fieldsUrl(c.id, `/${id}`), c.bearer, body)
      expectError(await put({ name: 'Department' }), 400, 'invalid_field', 'type')
      expectError(await put({ type: 'text' }), 400, 'invalid_field', 'name')
      expectError(await put({ name: 'D', type: 'text', field: 'renamed' }), 400, 'unknown_field', 'field')
      expectError(await put({ name: 'D', type: 'float' }), 400, 'invalid_field', 'type')
      expectError(await put({ name: 'D', type: 'text' }, 'zz'), 400, 'invalid_field', 'fieldId')
      expectError(await put({ name: 'D', type: 'text' }, newId()), 404, 'user_field_not_found')
      expect((await definitions(c.id))[0]).toMatchObject({ field: 'department', name: 'Dept' })
    })
  })

  describe('DELETE /user-fields/:fieldId', () => {
    it('removes the definition and every value, writing histories old value → null, in one go', async () => {
      const c = await t.factory.community()
      const f = await createField(c, { field: 'department', name: 'Department', type: 'text' })
      const [u1, u2, u3] = [
        await t.factory.user(c.id),
        await t.factory.user(c.id),
        await t.factory.user(c.id),
      ]
      await setValues(u1.id, { department: 'Sales', other: 1 })
      await setValues(u2.id, { department: 'Ops' })
      await setValues(u3.id, { department: null })
      const res = await call('DELETE', fieldsUrl(c.id, `/${f._id}`), c.bearer)
      expect(res.statusCode).toBe(200)
      expect(res.json()).toMatchObject({
        meta: { status: 'success', statusCode: 200 },
        message: 'Delete user field success.',
        data: { _id: f._id, field: 'department', name: 'Department' },
      })
      expect(await customFieldsOf(u1.id)).toEqual({ other: 1 })
      expect(await customFieldsOf(u2.id)).toEqual({})
      expect(await customFieldsOf(u3.id)).toEqual({})
      const keyId = await keyIdOf(c.apiKey)
      const rows = await histories(c.id)
      expect(rows).toHaveLength(2)
      expect(rows).toEqual(
        expect.arrayContaining([
          {
            user_id: u1.id,
            field_id: f._id,
            field: 'department',
            old_value: 'Sales',
            new_value: null,
            source: 'api',
            changed_by: keyId,
          },
          {
            user_id: u2.id,
            field_id: f._id,
            field: 'department',
            old_value: 'Ops',
            new_value: null,
            source: 'api',
            changed_by: keyId,
          },
        ]),
      )
      expectError(await call('GET', fieldsUrl(c.id, `/${f._id}`), c.bearer), 404, 'user_field_not_found')
      expectError(await call('DELETE', fieldsUrl(c.id, `/${f._id}`), c.bearer), 404, 'user_field_not_found')
    })

    it('records an admin session as the source of the removal', async () => {
      const c = await t.factory.community()
      const owner = await t.factory.user(c.id, { role: 'owner' })
      const f = await createField(c, { field: 'note', name: 'Note', type: 'text' })
      const u = await t.factory.user(c.id)
      await setValues(u.id, { note: 'hi' })
      expect(
        (await call('DELETE', fieldsUrl(c.id, `/${f._id}`), await t.factory.session(owner))).statusCode,
      ).toBe(200)
      expect(await histories(c.id)).toEqual([
        {
          user_id: u.id,
          field_id: f._id,
          field: 'note',
          old_value: 'hi',
          new_value: null,
          source: 'admin',
          changed_by: owner.id,
        },
      ])
    })

    it("refuses to delete the community's identifier field", async () => {
      const c = await t.factory.community()
      const f = await createField(c, { field: 'customerId', name: 'Customer', type: 'text' })
      const u = await t.factory.user(c.id)
      await setValues(u.id, { customerId: 'CUS-1' })
      await t.deps.database.db
        .updateTable('communities')
        .set({ identifier_field: 'customerId' })
        .where('id', '=', c.id)
        .execute()
      expectError(
        await call('DELETE', fieldsUrl(c.id, `/${f._id}`), c.bearer),
        409,
        'field_in_use',
        'fieldId',
      )
      expect(await definitions(c.id)).toHaveLength(1)
      expect(await customFieldsOf(u.id)).toEqual({ customerId: 'CUS-1' })
      expect(await histories(c.id)).toEqual([])
    })
  })

  describe('isolation between communities', () => {
    it("never lets a key of A read, create, update or delete B's fields", async () => {
      const a = await t.factory.community()
      const b = await t.factory.community()
      const bField = await createField(b, { field: 'secret', name: 'Secret', type: 'text' })
      const bUser = await t.factory.user(b.id)
      await setValues(bUser.id, { secret: 'x' })
      const body = { field: 'evil', name: 'Evil', type: 'text' }
      // B's community in the path: refused outright.
      expectError(await call('GET', fieldsUrl(b.id), a.bearer), 403, 'community_forbidden')
      expectError(await call('GET', fieldsUrl(b.id, `/${bField._id}`), a.bearer), 403, 'community_forbidden')
      expectError(await call('POST', fieldsUrl(b.id), a.bearer, body), 403, 'community_forbidden')
      expectError(
        await call('PUT', fieldsUrl(b.id, `/${bField._id}`), a.bearer, { name: 'E', type: 'number' }),
        403,
        'community_forbidden',
      )
      expectError(
        await call('DELETE', fieldsUrl(b.id, `/${bField._id}`), a.bearer),
        403,
        'community_forbidden',
      )
      // B's field id under A's own path: it does not exist there.
      expectError(await call('GET', fieldsUrl(a.id, `/${bField._id}`), a.bearer), 404, 'user_field_not_found')
      expectError(
        await call('PUT', fieldsUrl(a.id, `/${bField._id}`), a.bearer, { name: 'E', type: 'number' }),
        404,
        'user_field_not_found',
      )
      expectError(
        await call('DELETE', fieldsUrl(a.id, `/${bField._id}`), a.bearer),
        404,
        'user_field_not_found',
      )
      // A admin's session on B: refused too.
      const aAdmin = await t.factory.user(a.id, { role: 'admin' })
      expectError(
        await call('GET', fieldsUrl(b.id), await t.factory.session(aAdmin)),
        403,
        'community_forbidden',
      )
      // A's list shows none of B's fields.
      const list = await call('GET', fieldsUrl(a.id), a.bearer)
      expect(list.json().data.filter((f: { isDefault: boolean }) => !f.isDefault)).toEqual([])
      // Nothing changed in B.
      expect(await definitions(b.id)).toEqual([
        { id: bField._id, field: 'secret', name: 'Secret', type: 'text', options: null },
      ])
      expect(await customFieldsOf(bUser.id)).toEqual({ secret: 'x' })
      expect(await histories(b.id)).toEqual([])
      expect(await definitions(a.id)).toEqual([])
    })

    it('lets two communities use the same key', async () => {
      const a = await t.factory.community()
      const b = await t.factory.community()
      await createField(a, { field: 'userLevel', name: 'User Level', type: 'number' })
      await createField(b, { field: 'userLevel', name: 'User Level', type: 'number' })
    })
  })
})

import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken, verifyPassword } from '../../src/lib/auth/secrets.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

let t: TestApp
beforeAll(async () => {
  t = await startTestApp()
})
afterAll(() => t.close())

const db = () => t.deps.database.db
type Community = Awaited<ReturnType<TestApp['factory']['community']>>

const create = (c: { bearer: Record<string, string> }, payload: unknown) =>
  t.app.inject({ method: 'POST', url: '/apis/v1/users', headers: c.bearer, payload: payload as object })

const defineField = (communityId: string, field: string, type: string, name = field) =>
  t.factory.userField(communityId, field, type, name)

/** A community whose identifier field is `customerid`. */
async function brokerCommunity() {
  const c = await t.factory.community()
  const fieldId = await defineField(c.id, 'customerid', 'text', 'Customer ID')
  await db()
    .updateTable('communities')
    .set({ identifier_field: 'customerid' })
    .where('id', '=', c.id)
    .execute()
  return { c, fieldId }
}

const usersOf = (communityId: string) =>
  db()
    .selectFrom('users')
    .select(['id', 'email', 'external_id', 'referred_by', 'password_hash'])
    .where('community_id', '=', communityId)
    .execute()

const keyIdOf = async (c: Community) =>
  (
    await db()
      .selectFrom('api_keys')
      .select('id')
      .where('key_hash', '=', hashToken(c.apiKey))
      .executeTakeFirstOrThrow()
  ).id

const documented = {
  firstname: 'John',
  lastname: 'Doe',
  username: 'john_doe_123',
  displayname: 'John Doe',
  email: 'john@example.com',
  password: 'StrongPass1!',
  confirmPassword: 'StrongPass1!',
  accessLevel: 1,
  joinServer: true,
  sendEmail: true,
  emailPassword: true,
  emailTemplate: '0',
}

describe('Users: Create New User (POST /apis/v1/users)', () => {
  it('creates the documented password-flow user, stores the password hashed and mails a welcome without it', async () => {
    const c = await t.factory.community()
    const mailsBefore = t.mails.length
    const res = await create(c, documented)
    expect(res.statusCode).toBe(201)
    const body = res.json()
    expect(body).toMatchObject({ status: 'success', message: 'User created successfully' })
    expect(body.data).toMatchObject({
      email: 'john@example.com',
      username: 'john_doe_123',
      firstName: 'John',
      lastName: 'Doe',
      displayName: 'John Doe',
      accessLevel: 1,
      customFields: {},
      externalId: null,
      referredBy: null,
    })
    expect(body.data._id).toMatch(/^[0-9a-f]{24}$/)
    expect(typeof body.data.id).toBe('number')
    expect(Date.parse(body.data.joinDate)).not.toBeNaN()
    expect(res.body).not.toContain('StrongPass1!')
    const [row] = await usersOf(c.id)
    expect(row.password_hash).toMatch(/^scrypt\$/)
    expect(await verifyPassword('StrongPass1!', row.password_hash)).toBe(true)
    const mails = t.mails.slice(mailsBefore)
    expect(mails).toHaveLength(1)
    expect(mails[0].to).toBe('john@example.com')
    expect(mails[0].text).not.toContain('StrongPass1!')
  })

  it('creates an SSO/broker user from customFields, mirrors the identifier into externalId and writes field histories', async () => {
    const { c, fieldId } = await brokerCommunity()
    const depositId = await defineField(c.id, 'deposit-amount', 'numerical', 'Deposit amount')
    const mailsBefore = t.mails.length
    const res = await create(c, {
      firstname: 'Ana',
      email: 'Ana@Broker.example',
      joinServer: true,
      sendEmail: false,
      emailPassword: false,
      communityId: c.id,
      customFields: [
        { fieldIdorName: 'customerid', value: 'CUS-001' },
        { fieldIdorName: depositId, value: '250' },
      ],
    })
    expect(res.statusCode).toBe(201)
    const data = res.json().data
    expect(data).toMatchObject({
      email: 'ana@broker.example',
      customFields: { customerid: 'CUS-001', 'deposit-amount': 250 },
      externalId: 'CUS-001',
    })
    expect(t.mails.length).toBe(mailsBefore)
    const histories = await db()
      .selectFrom('field_histories')
      .select(['field_id', 'field', 'old_value', 'new_value', 'source', 'changed_by', 'community_id'])
      .where('user_id', '=', data._id)
      .orderBy('field')
      .execute()
    const keyId = await keyIdOf(c)
    expect(histories).toEqual(
      [
        {
          field_id: depositId,
          field: 'deposit-amount',
          old_value: null,
          new_value: 250,
          source: 'api',
          changed_by: keyId,
          community_id: c.id,
        },
        {
          field_id: fieldId,
          field: 'customerid',
          old_value: null,
          new_value: 'CUS-001',
          source: 'api',
          changed_by: keyId,
          community_id: c.id,
        },
      ].sort((a, b) => a.field.localeCompare(b.field)),
    )
    const [row] = await usersOf(c.id)
    expect(row).toMatchObject({ external_id: 'CUS-001', password_hash: null })
  })

  it('takes externalId as a shortcut for the identifier field, and resolves fields by display name', async () => {
    const { c } = await brokerCommunity()
    await defineField(c.id, 'desk', 'select', 'Trading Desk')
    const res = await create(c, {
      email: 'x@example.com',
      externalId: 'CUS-9',
      customFields: [{ fieldIdorName: 'trading desk', value: 'London' }],
    })
    expect(res.statusCode).toBe(201)
    expect(res.json().data).toMatchObject({
      externalId: 'CUS-9',
      customFields: { customerid: 'CUS-9', desk: 'London' },
    })
    const rows = await db()
      .selectFrom('field_histories')
      .select('field')
      .where('user_id', '=', res.json().data._id)
      .execute()
    expect(rows.map((r) => r.field).sort()).toEqual(['customerid', 'desk'])
  })

  it('refuses externalId without an identifier field, and an externalId that disagrees with customFields', async () => {
    const plain = await t.factory.community()
    const none = await create(plain, { email: 'a@example.com', externalId: 'CUS-1' })
    expect(none.statusCode).toBe(400)
    expect(none.json().error).toEqual({ code: 'identifier_field_not_configured', field: 'externalId' })
    const { c } = await brokerCommunity()
    const mismatch = await create(c, {
      email: 'b@example.com',
      externalId: 'CUS-1',
      customFields: [{ fieldIdorName: 'customerid', value: 'CUS-2' }],
    })
    expect(mismatch.json().error).toEqual({ code: 'external_id_mismatch', field: 'externalId' })
    expect(await usersOf(plain.id)).toEqual([])
    expect(await usersOf(c.id)).toEqual([])
  })

  it('records the referrer found by its identifier value, and refuses an unknown referral', async () => {
    const { c } = await brokerCommunity()
    const referrer = (await create(c, { email: 'ref@example.com', externalId: 'REF-1' })).json().data
    const res = await create(c, { email: 'new@example.com', referral: 'REF-1' })
    expect(res.statusCode).toBe(201)
    expect(res.json().data.referredBy).toBe(referrer._id)
    const unknown = await create(c, { email: 'other@example.com', referral: 'REF-404' })
    expect(unknown.statusCode).toBe(400)
    expect(unknown.json().error).toEqual({ code: 'unknown_referral', field: 'referral' })
  })

  it('answers a retried or concurrent identical create with 409 and the existing _id, never a second user', async () => {
    const c = await t.factory.community()
    const body = { email: 'retry@example.com', firstname: 'R' }
    const results = await Promise.all([create(c, body), create(c, body), create(c, body)])
    const codes = results.map((r) => r.statusCode).sort()
    expect(codes).toEqual([201, 409, 409])
    const created = results.find((r) => r.statusCode === 201)!.json().data
    for (const r of results.filter((x) => x.statusCode === 409)) {
      expect(r.json().error).toEqual({
        code: 'email_taken',
        field: 'email',
        details: { _id: created._id, id: created.id },
      })
    }
    const again = await create(c, { ...body, email: 'RETRY@example.com' })
    expect(again.statusCode).toBe(409)
    expect(again.json().error.details._id).toBe(created._id)
    expect(await usersOf(c.id)).toHaveLength(1)
  })

  it('refuses a taken external id and a taken username with 409', async () => {
    const { c } = await brokerCommunity()
    const first = (await create(c, { email: 'one@example.com', username: 'Neo', externalId: 'CUS-1' })).json()
      .data
    const ext = await create(c, {
      email: 'two@example.com',
      customFields: [{ fieldIdorName: 'customerid', value: 'CUS-1' }],
    })
    expect(ext.statusCode).toBe(409)
    expect(ext.json().error).toEqual({
      code: 'external_id_taken',
      field: 'externalId',
      details: { _id: first._id, id: first.id },
    })
    const name = await create(c, { email: 'three@example.com', username: 'neo' })
    expect(name.statusCode).toBe(409)
    expect(name.json().error).toEqual({ code: 'username_taken', field: 'username' })
    expect(await usersOf(c.id)).toHaveLength(1)
  })

  it('gives a username to one of several creates racing for it; the others answer 409 username_taken', async () => {
    const { c } = await brokerCommunity()
    const results = await Promise.all(
      ['a', 'b', 'c', 'd'].map((x, i) =>
        create(c, { email: `${x}@example.com`, username: i % 2 ? 'Race' : 'race' }),
      ),
    )
    expect(results.map((r) => r.statusCode).sort()).toEqual([201, 409, 409, 409])
    for (const r of results.filter((x) => x.statusCode === 409)) {
      expect(r.json().error).toEqual({ code: 'username_taken', field: 'username' })
    }
    expect(await usersOf(c.id)).toHaveLength(1)
  })

  it('compares usernames as the database does: "İvan" is taken once "ivan" is (lower() folds İ to i, JS does not), and lookups agree', async () => {
    // JS lower-cases 'İvan' to 'i̇van' (i + U+0307) and 'ΟΔΥΣΣΕΥΣ' to 'οδυσσευς' (final sigma), while
    // lower() here (PGlite; PostgreSQL with a C.UTF-8 or libc UTF-8 locale) gives 'ivan' and 'οδυσσευσ',
    // as the unique index (community_id, lower(username)) compares names. Lowering in JS, Create
    // User missed the holder, met the index and answered 500.
    const pairs: [held: string, given: string][] = [
      ['ivan', 'İvan'],
      ['οδυσσευσ', 'ΟΔΥΣΣΕΥΣ'],
    ]
    for (const [held, given] of pairs) expect(given.toLowerCase()).not.toBe(held)
    const folds = await sql<{ same: boolean }>`SELECT bool_and(lower(h) = lower(g)) AS same
      FROM unnest(${pairs.map((p) => p[0])}::text[], ${pairs.map((p) => p[1])}::text[]) AS x(h, g)`.execute(
      db(),
    )
    // The premise holds on both databases here (PGlite; PostgreSQL in C.UTF-8).
    expect(folds.rows[0].same, 'lower() folds these pairs').toBe(true)
    for (const [held, given] of pairs) {
      const c = await t.factory.community()
      const first = await create(c, { email: 'held@example.com', username: held })
      expect(first.statusCode).toBe(201)
      const second = await create(c, { email: 'given@example.com', username: given })
      expect(second.statusCode, given).toBe(409)
      expect(second.json().error).toEqual({ code: 'username_taken', field: 'username' })
      // Manage User Account finds the holder by the other spelling too; a deleted user keeps its name.
      const manage = await t.app.inject({
        method: 'POST',
        url: '/apis/v1/users/manage',
        headers: c.bearer,
        payload: { action: 'delete', user: given },
      })
      expect(manage.statusCode, given).toBe(200)
      const rows = await db()
        .selectFrom('users')
        .select(['id', 'deleted_at'])
        .where('community_id', '=', c.id)
        .execute()
      expect(rows).toEqual([{ id: first.json().data._id, deleted_at: expect.any(Date) }])
      expect((await create(c, { email: 'again@example.com', username: given })).statusCode).toBe(409)
    }
    // Racing creates: most pass the check before any inserts (on both databases), and the losers meet
    // the index, told by its name (without that, they answered 500 in most runs).
    const { c } = await brokerCommunity()
    const results = await Promise.all(
      ['ivan', 'İvan', 'IVAN', 'İVAN'].map((username, i) =>
        create(c, { email: `r${i}@example.com`, username }),
      ),
    )
    expect(results.map((r) => r.statusCode).sort()).toEqual([201, 409, 409, 409])
    for (const r of results.filter((x) => x.statusCode === 409)) {
      expect(r.json().error).toEqual({ code: 'username_taken', field: 'username' })
    }
    expect(await usersOf(c.id)).toHaveLength(1)
  })

  it('checks passwords and custom field entries', async () => {
    const { c } = await brokerCommunity()
    await defineField(c.id, 'score', 'number')
    const cases: [object, string, string][] = [
      [{ password: 'StrongPass1!', confirmPassword: 'StrongPass2!' }, 'password_mismatch', 'confirmPassword'],
      [{ password: 'StrongPass1!' }, 'password_mismatch', 'confirmPassword'],
      [{ confirmPassword: 'StrongPass1!' }, 'password_required', 'password'],
      [{ password: 'short', confirmPassword: 'short' }, 'invalid_field', 'password'],
      [
        { customFields: [{ fieldIdorName: 'nope', value: 1 }] },
        'unknown_custom_field',
        'customFields.0.fieldIdorName',
      ],
      [
        { customFields: [{ fieldIdorName: 'score', value: 'ten' }] },
        'invalid_custom_field_value',
        'customFields.0.value',
      ],
      [
        {
          customFields: [
            { fieldIdorName: 'score', value: 1 },
            { fieldIdorName: 'Score', value: 2 },
          ],
        },
        'duplicate_custom_field',
        'customFields.1.fieldIdorName',
      ],
      [
        { customFields: [{ fieldIdorName: 'score', value: { a: 1 } }] },
        'invalid_field',
        'customFields.0.value',
      ],
      [
        { customFields: [{ fieldIdorName: 'score', value: 1, extra: true }] },
        'unknown_field',
        'customFields.0.extra',
      ],
    ]
    for (const [extra, code, field] of cases) {
      const res = await create(c, { email: 'p@example.com', ...extra })
      expect(res.statusCode, JSON.stringify(extra)).toBe(400)
      expect(res.json().error, JSON.stringify(extra)).toMatchObject({ code, field })
    }
    expect(await usersOf(c.id)).toEqual([])
  })

  it('rejects bad bodies: missing or malformed email, unknown fields, wrong types, malformed JSON', async () => {
    const c = await t.factory.community()
    const cases: [unknown, string, string][] = [
      [{ firstname: 'No email' }, 'invalid_field', 'email'],
      [{ email: 'not-an-email' }, 'invalid_field', 'email'],
      [{ email: 'a@example.com', nickname: 'x' }, 'unknown_field', 'nickname'],
      [{ email: 'a@example.com', accessLevel: 'high' }, 'invalid_field', 'accessLevel'],
      [{ email: 'a@example.com', sendEmail: 'yes' }, 'invalid_field', 'sendEmail'],
      [{ email: 'a@example.com', communityId: 'abc' }, 'invalid_field', 'communityId'],
      [{ email: 'a@example.com', customFields: {} }, 'invalid_field', 'customFields'],
    ]
    for (const [payload, code, field] of cases) {
      const res = await create(c, payload)
      expect(res.statusCode, JSON.stringify(payload)).toBe(400)
      expect(res.json(), JSON.stringify(payload)).toMatchObject({ status: 'error', error: { code, field } })
    }
    const malformed = await t.app.inject({
      method: 'POST',
      url: '/apis/v1/users',
      headers: { ...c.bearer, 'content-type': 'application/json' },
      payload: '{"email":',
    })
    expect(malformed.json().error.code).toBe('malformed_json')
    expect(await usersOf(c.id)).toEqual([])
  })

  it("keeps communities apart: another community's id, fields and referrers are out of reach, and createUser is required", async () => {
    const a = await t.factory.community()
    const { c: b, fieldId: bField } = await brokerCommunity()
    await create(b, { email: 'ref@b.example', externalId: 'B-REF' })
    const wrongCommunity = await create(a, { email: 'x@example.com', communityId: b.id })
    expect(wrongCommunity.statusCode).toBe(403)
    expect(wrongCommunity.json().error.code).toBe('community_forbidden')
    const theirField = await create(a, {
      email: 'y@example.com',
      customFields: [{ fieldIdorName: bField, value: 'v' }],
    })
    expect(theirField.json().error.code).toBe('unknown_custom_field')
    const theirReferrer = await create(a, { email: 'z@example.com', referral: 'B-REF' })
    expect(theirReferrer.json().error.code).toBe('unknown_referral')
    // The same email may exist in two communities: accounts are per community.
    const sameEmail = await create(a, { email: 'ref@b.example' })
    expect(sameEmail.statusCode).toBe(201)
    expect((await usersOf(a.id)).map((u) => u.email)).toEqual(['ref@b.example'])
    expect(await usersOf(b.id)).toHaveLength(1)
    const weak = await t.factory.apiKey(a.id, ['getUserData'])
    const noPerm = await create({ bearer: { authorization: `Bearer ${weak}` } }, { email: 'w@example.com' })
    expect(noPerm.statusCode).toBe(403)
    expect(noPerm.json().error.code).toBe('missing_permission')
  })
})

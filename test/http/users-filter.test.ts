import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newId } from '../../src/lib/ids.ts'
import { DEFAULT_FIELDS } from '../../src/modules/users/default-fields.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

let t: TestApp
beforeAll(async () => {
  t = await startTestApp()
})
afterAll(() => t.close())

const db = () => t.deps.database.db
const URL = '/apis/v1/users/filter'

const defineField = (communityId: string, field: string, type: string) =>
  t.factory.userField(communityId, field, type)

async function addUser(communityId: string, over: Record<string, unknown> = {}) {
  const u = await t.factory.user(communityId)
  if (Object.keys(over).length === 0) return u
  const { custom_fields, ...rest } = over
  await db()
    .updateTable('users')
    .set({ ...rest, ...(custom_fields ? { custom_fields: JSON.stringify(custom_fields) } : {}) })
    .where('id', '=', u.id)
    .execute()
  return u
}

/** Inserts n plain users in one statement, so they share one created_at and only the id orders them. */
async function addMany(communityId: string, n: number) {
  const rows = Array.from({ length: n }, (_, i) => ({
    id: newId(),
    community_id: communityId,
    email: `bulk-${i}-${newId()}@example.com`,
  }))
  await db().insertInto('users').values(rows).execute()
  return rows.map((r) => r.id)
}

const filter = (c: { bearer: Record<string, string> }, payload: unknown) =>
  t.app.inject({ method: 'POST', url: URL, headers: c.bearer, payload: payload as object })

describe('Users: Get Users with Filters (POST /apis/v1/users/filter)', () => {
  it('answers the documented example: requested fields only, date range plus exact first name', async () => {
    const c = await t.factory.community()
    const john = await addUser(c.id, { first_name: 'John', join_date: '2025-03-10T12:00:00Z' })
    const lastDay = await addUser(c.id, { first_name: 'John', join_date: '2025-08-28T23:59:00Z' })
    await addUser(c.id, { first_name: 'John', join_date: '2025-08-29T00:00:00Z' })
    await addUser(c.id, { first_name: 'Jane', join_date: '2025-03-10T12:00:00Z' })
    await addUser(c.id, { first_name: 'John', join_date: '2024-12-31T23:59:59Z' })
    const res = await filter(c, {
      fields: ['email', 'join_date', 'first_name', 'last_name'],
      filter: { join_date: { lte: '2025-08-28', gte: '2025-01-01' }, first_name: 'John' },
    })
    expect(res.statusCode).toBe(200)
    const body = res.json()
    expect(body).toMatchObject({
      status: 'success',
      message: 'Users fetched successfully',
      data: { next_cursor: null },
    })
    expect(body.data.users).toEqual([
      {
        _id: john.id,
        id: Number(john.seq),
        email: john.email,
        join_date: '2025-03-10T12:00:00.000Z',
        first_name: 'John',
        last_name: 'User',
      },
      {
        _id: lastDay.id,
        id: Number(lastDay.seq),
        email: lastDay.email,
        join_date: '2025-08-28T23:59:00.000Z',
        first_name: 'John',
        last_name: 'User',
      },
    ])
    expect(body.data).not.toHaveProperty('total_pages')
  })

  it('returns every default field and every custom field when fields is omitted', async () => {
    const c = await t.factory.community()
    await defineField(c.id, 'tier', 'text')
    const u = await addUser(c.id, { xp: 12, custom_fields: { tier: 'gold' } })
    const res = await filter(c, {})
    const [row] = res.json().data.users
    expect(Object.keys(row).sort()).toEqual(
      ['_id', 'id', ...DEFAULT_FIELDS.map((f) => f.column), 'tier'].sort(),
    )
    expect(row).toMatchObject({
      _id: u.id,
      email: u.email,
      xp: 12,
      coins: 0,
      premium: 0,
      tier: 'gold',
      last_login: null,
      language: 'English',
    })
  })

  it('filters custom fields by type: numbers and dates with casts, text and booleans exactly', async () => {
    const c = await t.factory.community()
    await defineField(c.id, 'deposit', 'numerical')
    await defineField(c.id, 'kyc_date', 'date')
    await defineField(c.id, 'desk', 'select')
    await defineField(c.id, 'vip', 'boolean')
    const a = await addUser(c.id, {
      custom_fields: { deposit: 1500, kyc_date: '2025-02-01', desk: 'London', vip: true },
    })
    const b = await addUser(c.id, {
      custom_fields: { deposit: 99.5, kyc_date: '2025-06-15', desk: 'Paris', vip: false },
    })
    // Written before "deposit" became a number, or plain garbage: never matches, never fails the query.
    await addUser(c.id, { custom_fields: { deposit: 'lots', kyc_date: 'someday' } })
    await addUser(c.id, { custom_fields: { deposit: '2000' } })
    const ids = async (f: object) => {
      const res = await filter(c, { fields: ['deposit'], filter: f })
      expect(res.statusCode, JSON.stringify(res.json())).toBe(200)
      return res.json().data.users.map((u: { _id: string }) => u._id)
    }
    expect(await ids({ deposit: { gte: 100 } })).toHaveLength(2) // a and the string "2000"
    expect(await ids({ deposit: { gte: 100, lte: 1999 } })).toEqual([a.id])
    expect(await ids({ deposit: 99.5 })).toEqual([b.id])
    expect(await ids({ kyc_date: { gte: '2025-03-01' } })).toEqual([b.id])
    expect(await ids({ kyc_date: '2025-02-01' })).toEqual([a.id])
    expect(await ids({ desk: 'Paris' })).toEqual([b.id])
    expect(await ids({ vip: true })).toEqual([a.id])
    expect(await ids({ vip: 'false' })).toEqual([b.id])
    expect(await ids({ desk: null, deposit: { gte: 1 } })).toHaveLength(1)
    const values = await filter(c, { fields: ['deposit', 'vip', 'xp'], filter: { desk: 'London' } })
    expect(values.json().data.users).toEqual([
      { _id: a.id, id: Number(a.seq), deposit: 1500, vip: true, xp: 0 },
    ])
  })

  it('filters default number fields with ranges and email case-insensitively', async () => {
    const c = await t.factory.community()
    const rich = await addUser(c.id, { coins: 500, email: 'Rich@Example.com'.toLowerCase() })
    await addUser(c.id, { coins: 5 })
    const byRange = await filter(c, { fields: ['coins'], filter: { coins: { gte: 100.5 } } })
    expect(byRange.json().data.users).toEqual([{ _id: rich.id, id: Number(rich.seq), coins: 500 }])
    const byEmail = await filter(c, { fields: ['email'], filter: { email: 'RICH@example.COM' } })
    expect(byEmail.json().data.users.map((u: { _id: string }) => u._id)).toEqual([rich.id])
  })

  it('walks every user once with the cursor, 200 a page, even when they share one created_at', async () => {
    const c = await t.factory.community()
    const ids = await addMany(c.id, 450)
    const seen: string[] = []
    let cursor: string | undefined
    const sizes: number[] = []
    for (let i = 0; i < 5; i++) {
      const res = await filter(c, { fields: ['email'], ...(cursor ? { cursor } : {}) })
      expect(res.statusCode).toBe(200)
      const data = res.json().data
      sizes.push(data.users.length)
      seen.push(...data.users.map((u: { _id: string }) => u._id))
      if (!data.next_cursor) break
      cursor = data.next_cursor
    }
    expect(sizes).toEqual([200, 200, 50])
    expect(new Set(seen).size).toBe(450)
    expect(seen.sort()).toEqual([...ids].sort())
  })

  it('pages with page: total_pages and current_page, empty past the end', async () => {
    const c = await t.factory.community()
    await addMany(c.id, 401)
    const first = (await filter(c, { fields: ['email'], page: 1 })).json().data
    expect(first.users).toHaveLength(200)
    expect(first).toMatchObject({ total_pages: 3, current_page: 1 })
    expect(first).not.toHaveProperty('next_cursor')
    const third = (await filter(c, { page: 3 })).json().data
    expect(third.users).toHaveLength(1)
    const past = (await filter(c, { page: 4 })).json().data
    expect(past).toEqual({ users: [], total_pages: 3, current_page: 4 })
  })

  it('never shows deleted users or users of another community', async () => {
    const a = await t.factory.community()
    const b = await t.factory.community()
    const mine = await addUser(a.id)
    const gone = await addUser(a.id, { deleted_at: new Date() })
    const theirs = await addUser(b.id)
    const all = (await filter(a, { fields: ['email'] })).json().data.users.map((u: { _id: string }) => u._id)
    expect(all).toEqual([mine.id])
    for (const email of [theirs.email, gone.email]) {
      const res = await filter(a, { fields: ['email'], filter: { email } })
      expect(res.json().data.users).toEqual([])
    }
    // B's custom field is unknown to A.
    await defineField(b.id, 'secret_score', 'number')
    const probe = await filter(a, { filter: { secret_score: { gte: 0 } } })
    expect(probe.json().error).toMatchObject({ code: 'unknown_field', field: 'filter.secret_score' })
  })

  it('rejects bad requests with a 400 naming the field', async () => {
    const c = await t.factory.community()
    await defineField(c.id, 'nickname', 'text')
    const cases: [unknown, string, string][] = [
      [{ cursor: 'abc', page: 1 }, 'pagination_conflict', 'page'],
      [{ fields: ['email', 'nope'] }, 'unknown_field', 'fields.1'],
      [{ fields: ['email; DROP TABLE users'] }, 'unknown_field', 'fields.0'],
      [{ filter: { 'xp"); --': 1 } }, 'unknown_field', 'filter.xp"); --'],
      [{ filter: { nickname: { gte: 'a' } } }, 'range_not_supported', 'filter.nickname'],
      [{ filter: { email: { lte: 'a' } } }, 'range_not_supported', 'filter.email'],
      [{ filter: { xp: { gte: 'many' } } }, 'invalid_filter_value', 'filter.xp.gte'],
      [{ filter: { join_date: 'yesterday' } }, 'invalid_filter_value', 'filter.join_date'],
      [{ filter: { xp: {} } }, 'empty_range', 'filter.xp'],
      [{ filter: { xp: { gt: 1 } } }, 'unknown_field', 'filter.xp.gt'],
      [{ cursor: 'not-a-cursor' }, 'invalid_cursor', 'cursor'],
      [
        {
          cursor: Buffer.from(JSON.stringify(['2025-02-31T00:00:00.000000Z', newId()])).toString('base64url'),
        },
        'invalid_cursor',
        'cursor',
      ],
      [{ page: 0 }, 'invalid_field', 'page'],
      [{ page: 1.5 }, 'invalid_field', 'page'],
      [{ fields: 'email' }, 'invalid_field', 'fields'],
      [{ limit: 10 }, 'unknown_field', 'limit'],
    ]
    for (const [payload, code, field] of cases) {
      const res = await filter(c, payload)
      expect(res.statusCode, JSON.stringify(payload)).toBe(400)
      expect(res.json(), JSON.stringify(payload)).toMatchObject({ status: 'error', error: { code, field } })
    }
    const malformed = await t.app.inject({
      method: 'POST',
      url: URL,
      headers: { ...c.bearer, 'content-type': 'application/json' },
      payload: '{"fields":[',
    })
    expect(malformed.json().error.code).toBe('malformed_json')
    const weak = await t.factory.apiKey(c.id, ['createUser'])
    const noPerm = await t.app.inject({
      method: 'POST',
      url: URL,
      headers: { authorization: `Bearer ${weak}` },
      payload: {},
    })
    expect(noPerm.statusCode).toBe(403)
  })
})

describe('Users: Get Users with Filters with a session', () => {
  it('serves an owner or admin session of the community (the admin console) and refuses a member', async () => {
    const c = await t.factory.community()
    const owner = await t.factory.user(c.id, { role: 'owner' })
    const member = await t.factory.user(c.id)
    const other = await t.factory.community()
    await t.factory.user(other.id, { email: 'elsewhere@example.com' })
    const asOwner = await t.app.inject({
      method: 'POST',
      url: '/apis/v1/users/filter',
      headers: await t.factory.session(owner),
      payload: { fields: ['email'] },
    })
    expect(asOwner.statusCode, asOwner.body).toBe(200)
    const emails = asOwner
      .json()
      .data.users.map((u: { email: string }) => u.email)
      .sort()
    expect(emails).toEqual([owner.email, member.email].sort())
    const asMember = await t.app.inject({
      method: 'POST',
      url: '/apis/v1/users/filter',
      headers: await t.factory.session(member),
      payload: { fields: ['email'] },
    })
    expect([asMember.statusCode, asMember.json().error.code]).toEqual([403, 'admin_only'])
  })
})

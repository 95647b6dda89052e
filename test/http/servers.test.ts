import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../support/harness.ts'

let t: TestApp
beforeAll(async () => {
  t = await startTestApp()
})
afterAll(() => t.close())

describe('Servers (System API)', () => {
  it('updates its own server with the system key and answers in the System envelope', async () => {
    const c = await t.factory.community()
    const res = await t.app.inject({
      method: 'PUT',
      url: `/api/v1/servers/${c.id}`,
      headers: { 'x-api-key': c.systemKey },
      payload: { name: 'Renamed', allowPublicBulkImport: true },
    })
    expect(res.statusCode).toBe(200)
    const body = res.json()
    expect(body.meta).toEqual({
      success: true,
      message: 'Server updated successfully',
      devMessage: 'Server updated successfully',
    })
    expect(body.body).toMatchObject({ _id: c.id, name: 'Renamed', allowPublicBulkImport: true })
  })

  it('refuses to update another community with 403 and changes nothing', async () => {
    const a = await t.factory.community()
    const b = await t.factory.community('Bee')
    const res = await t.app.inject({
      method: 'PUT',
      url: `/api/v1/servers/${b.id}`,
      headers: { 'x-api-key': a.systemKey },
      payload: { name: 'Hijacked' },
    })
    expect(res.statusCode).toBe(403)
    expect(res.json()).toMatchObject({
      meta: { success: false },
      body: null,
      error: { code: 'community_forbidden' },
    })
    const row = await t.deps.database.db
      .selectFrom('communities')
      .select('name')
      .where('id', '=', b.id)
      .executeTakeFirst()
    expect(row?.name).toBe('Bee')
  })

  it('rejects unknown fields, malformed JSON and a bad key in the System envelope', async () => {
    const c = await t.factory.community()
    const unknown = await t.app.inject({
      method: 'PUT',
      url: `/api/v1/servers/${c.id}`,
      headers: { 'x-api-key': c.systemKey },
      payload: { name: 'x', colour: 'red' },
    })
    expect(unknown.statusCode).toBe(400)
    expect(unknown.json().error).toMatchObject({ code: 'unknown_field', field: 'colour' })
    const malformed = await t.app.inject({
      method: 'PUT',
      url: `/api/v1/servers/${c.id}`,
      headers: { 'x-api-key': c.systemKey, 'content-type': 'application/json' },
      payload: '{"name":',
    })
    expect(malformed.statusCode).toBe(400)
    expect(malformed.json().error.code).toBe('malformed_json')
    const badKey = await t.app.inject({
      method: 'GET',
      url: '/api/v1/servers',
      headers: { 'x-api-key': 'nope' },
    })
    expect(badKey.statusCode).toBe(401)
    expect(badKey.json().meta.success).toBe(false)
  })

  it('creates a server with the system key and shows its new system key once', async () => {
    const c = await t.factory.community()
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/v1/servers',
      headers: { 'x-api-key': c.systemKey },
      payload: { name: 'Second' },
    })
    expect(res.statusCode).toBe(201)
    const created = res.json().body
    expect(created.systemKey).toMatch(/^[0-9a-f]{64}$/)
    const mine = await t.app.inject({
      method: 'GET',
      url: '/api/v1/servers',
      headers: { 'x-api-key': created.systemKey },
    })
    expect(mine.json().body.map((s: { _id: string }) => s._id)).toEqual([created._id])
  })
})

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nulPath } from '../../src/lib/http/nul-guard.ts'
import { upload } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'
import { multipart } from '../support/multipart.ts'

/**
 * PostgreSQL text and jsonb cannot hold U+0000. A request string carrying one is refused with a 400
 * `invalid_character` naming the field, in its route family's envelope, before it reaches the
 * database (where it answered 500); the request still reaches the API log.
 */

let t: TestApp
let c: Awaited<ReturnType<TestApp['factory']['community']>>
beforeAll(async () => {
  t = await startTestApp()
  c = await t.factory.community()
})
afterAll(() => t.close())

type Json = Record<string, unknown>

describe('a NUL character in a request answers 400 invalid_character, in the family envelope', () => {
  it('application: the API log filters (query)', async () => {
    for (const [q, field] of [
      ['path=/a%00b', 'path'],
      ['apiKeyId=a%00b', 'apiKeyId'],
    ] as const) {
      const res = await t.app.inject({
        method: 'GET',
        url: `/apis/v1/communities/${c.id}/api-logs?${q}`,
        headers: c.bearer,
      })
      expect(res.statusCode, res.body).toBe(400)
      const body = res.json()
      expect(body).toMatchObject({
        meta: { status: 'error', statusCode: 400 },
        error: { code: 'invalid_character', field },
      })
      expect(body.message).toContain('U+0000')
      expect(res.body).not.toContain('\\u0000')
    }
  })

  it('integration: the users filter (JSON body, top level and nested)', async () => {
    for (const [payload, field] of [
      [{ email: 'a\u0000b' }, 'email'],
      [{ filter: { email: 'a\u0000b' } }, 'filter.email'],
      [{ fields: ['email', 'x\u0000'] }, 'fields.1'],
    ] as const) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/apis/v1/users/filter',
        headers: c.bearer,
        payload,
      })
      expect(res.statusCode, res.body).toBe(400)
      expect(res.json()).toMatchObject({ status: 'error', error: { code: 'invalid_character', field } })
    }
  })

  it('integration: a path parameter', async () => {
    const res = await t.app.inject({
      method: 'GET',
      url: '/apis/v1/users/bulk-updates/a%00b',
      headers: c.bearer,
    })
    expect(res.statusCode, res.body).toBe(400)
    expect(res.json()).toMatchObject({
      status: 'error',
      error: { code: 'invalid_character', field: 'jobId' },
    })
  })

  it('system: a server update (JSON body)', async () => {
    const res = await t.app.inject({
      method: 'PUT',
      url: `/api/v1/servers/${c.id}`,
      headers: { 'x-api-key': c.systemKey },
      payload: { name: 'Bad\u0000name' },
    })
    expect(res.statusCode, res.body).toBe(400)
    expect(res.json()).toMatchObject({
      meta: { success: false, devMessage: 'invalid_character' },
      body: null,
      error: { code: 'invalid_character', field: 'name' },
    })
  })

  it('Secure Auth: its top-level envelope', async () => {
    const res = await t.app.inject({
      method: 'GET',
      url: '/api/secureAuth?userId=a%00b',
      headers: { apikey: c.apiKey },
    })
    expect(res.statusCode, res.body).toBe(400)
    expect(res.json()).toMatchObject({ error: true, code: 'invalid_character', field: 'userId' })
  })

  it('a key holding NUL is named with U+FFFD in its place', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/apis/v1/users/filter',
      headers: c.bearer,
      payload: { filter: { 'a\u0000': 'x' } },
    })
    expect(res.statusCode, res.body).toBe(400)
    expect(res.json().error).toEqual({ code: 'invalid_character', field: 'filter.a\uFFFD' })
  })

  it('the refused request is in the API log, its NUL shown as U+FFFD', async () => {
    const d = await t.factory.community()
    const res = await t.app.inject({
      method: 'POST',
      url: '/apis/v1/users/filter',
      headers: d.bearer,
      payload: { filter: { first_name: 'Bo\u0000b' } },
    })
    expect(res.statusCode).toBe(400)
    // The log row is written after the answer is sent: wait for it briefly.
    let logged: { status: number; summary: unknown }[] = []
    for (let i = 0; i < 100 && logged.length === 0; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 20))
      logged = await t.deps.database.db
        .selectFrom('api_log')
        .select(['status', 'summary'])
        .where('community_id', '=', d.id)
        .where('path', '=', '/apis/v1/users/filter')
        .execute()
    }
    expect(logged).toHaveLength(1)
    expect(logged[0].status).toBe(400)
    expect((logged[0].summary as Json).body).toEqual({ filter: { first_name: 'Bo\uFFFDb' } })
  })

  it('strings without NUL pass as before', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/apis/v1/users/filter',
      headers: c.bearer,
      payload: { filter: { first_name: 'Ann' } },
    })
    expect(res.statusCode, res.body).toBe(200)
  })
})

describe('a NUL character in an uploaded file name', () => {
  it('is replaced with U+FFFD: the upload is queued and its job shows the name', async () => {
    const body = multipart({ file: 'email\nann@x.io\n', fileName: 'a\u0000b.csv' })
    const res = await t.app.inject({
      method: 'POST',
      url: '/apis/v1/users/bulk-import',
      headers: { ...c.bearer, ...body.headers },
      payload: body.payload,
    })
    expect(res.statusCode, res.body).toBe(200)
    const job = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/bulk-updates/${res.json().data.jobId}`,
      headers: c.bearer,
    })
    expect(job.statusCode, job.body).toBe(200)
    expect(job.json().data.fileName).toBe('a\uFFFDb.csv')
  })

  it('a NUL in a form field is refused too', async () => {
    const res = await upload(t, '/apis/v1/users/bulk-import', c.bearer, {
      file: 'email\nann@x.io\n',
      fields: { dryRun: 'tr\u0000ue' },
    })
    expect(res.statusCode, res.body).toBe(400)
    expect(res.json().error.field).toBe('dryRun')
  })
})

describe('nulPath', () => {
  it('finds the first string or key holding NUL, however deep', () => {
    expect(nulPath(undefined)).toBeNull()
    expect(nulPath({ a: ['x', { b: 1, c: 'y' }] })).toBeNull()
    expect(nulPath('a\u0000')).toEqual([])
    expect(nulPath({ a: ['x', { b: 1, c: 'y\u0000' }], d: '\u0000' })).toEqual(['a', '1', 'c'])
    let deep: unknown = 'z\u0000'
    for (let i = 0; i < 200_000; i++) deep = [deep]
    expect(nulPath(deep)).toHaveLength(200_000)
  })
})

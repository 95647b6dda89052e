import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { type App, buildApp } from '../../src/app.ts'
import {
  application,
  applicationOk,
  type Family,
  integration,
  integrationOk,
  system,
  systemOk,
} from '../../src/lib/http/envelope.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * Every family answers errors in its own envelope with a stable code and the request id, and no
 * answer ever carries a stack trace or SQL. Real routes are used where they exist; a second app
 * built from the same deps adds one probe route per family, so families without a body-taking
 * route yet (partner, plain) are covered too.
 */

let t: TestApp
let probes: App
let c: Awaited<ReturnType<TestApp['factory']['community']>>

const PROBE: Record<Family, string> = {
  integration: '/apis/v1/envelope-probe',
  application: '/apis/v1/communities/envelope-probe',
  system: '/api/v1/envelope-probe',
  partner: '/v1/envelope-probe',
  plain: '/envelope-probe',
  secureAuth: '/api/secureAuth-envelope-probe',
}
const FAMILIES = ['integration', 'application', 'system', 'partner', 'plain'] as const

function okSchema(family: Family) {
  const data = z.object({ name: z.string() })
  if (family === 'system') return systemOk(data)
  if (family === 'integration') return integrationOk(data)
  if (family === 'plain') return data
  return applicationOk(data)
}
function ok(family: Family, data: { name: string }) {
  if (family === 'system') return system(data, 'ok')
  if (family === 'integration') return integration(data, 'ok')
  if (family === 'plain') return data
  return application(data, 'ok')
}

async function buildProbeApp(): Promise<App> {
  const app = await buildApp(t.deps)
  for (const family of FAMILIES) {
    app.route({
      method: 'POST',
      url: PROBE[family],
      config: { family, auth: { any: ['communityKey', 'systemKey'] } },
      schema: { body: z.object({ name: z.string() }).strict(), response: { 200: okSchema(family) } },
      handler: async (req) => ok(family, { name: req.body.name }),
    })
    app.route({
      method: 'GET',
      url: `${PROBE[family]}/crash`,
      config: { family, auth: { any: ['public'] } },
      schema: { response: { 200: okSchema(family) } },
      handler: async () => {
        throw new Error('SELECT password_hash FROM users WHERE id = 1 -- internal detail')
      },
    })
    app.route({
      method: 'GET',
      url: `${PROBE[family]}/bad-sql`,
      config: { family, auth: { any: ['public'] } },
      schema: { response: { 200: okSchema(family) } },
      handler: async () => {
        await sql`SELECT no_such_column FROM no_such_table`.execute(t.deps.database.db)
        return ok(family, { name: 'never' })
      },
    })
  }
  await app.ready()
  return app
}

beforeAll(async () => {
  t = await startTestApp()
  c = await t.factory.community()
  probes = await buildProbeApp()
})
afterAll(async () => {
  await probes?.close()
  await t.close()
})

const LEAKS = [
  /\n\s+at /, // a stack frame
  /\bat .*\(?[\w/.-]+\.[cm]?[jt]s:\d+:\d+\)?/,
  /node_modules/,
  /"stack"/i,
  /\bSELECT\b|\bINSERT INTO\b|\bUPDATE\b.*\bSET\b|\bDELETE FROM\b/i,
  /no_such_(table|column)|relation "|syntax error|password_hash/i,
]

/** Sends a request and checks the answer never leaks internals. */
async function send(app: App, opts: InjectOptions): Promise<LightMyRequestResponse> {
  const res = await app.inject(opts)
  for (const re of LEAKS) expect(res.body, `${re} in ${res.body.slice(0, 300)}`).not.toMatch(re)
  return res
}

/** Asserts the family's error envelope, exactly its keys, with the code and a request id. */
function expectError(family: Family, res: LightMyRequestResponse, status: number, code: string) {
  expect(res.statusCode, res.body).toBe(status)
  expect(res.headers['content-type']).toMatch(/^application\/json/)
  const body = res.json()
  expect(body.requestId).toMatch(/^[0-9a-f]{24}$/)
  expect(body.error.code).toBe(code)
  expect(body.error).toHaveProperty('field')
  switch (family) {
    case 'integration':
      expect(Object.keys(body).sort()).toEqual(['error', 'message', 'requestId', 'status'])
      expect(body.status).toBe('error')
      expect(typeof body.message).toBe('string')
      break
    case 'application':
    case 'partner':
      expect(Object.keys(body).sort()).toEqual(['error', 'message', 'meta', 'requestId'])
      expect(body.meta).toEqual({ status: 'error', statusCode: status })
      break
    case 'system':
      expect(Object.keys(body).sort()).toEqual(['body', 'error', 'meta', 'requestId'])
      expect(body.meta).toEqual({ success: false, message: expect.any(String), devMessage: code })
      expect(body.body).toBeNull()
      break
    default:
      expect(Object.keys(body).sort()).toEqual(['error', 'requestId'])
      expect(typeof body.error.message).toBe('string')
  }
}

const oversized = () => JSON.stringify({ name: 'x'.repeat(1024 * 1024 + 10) })

describe('Error envelopes', () => {
  describe('unknown routes answer 404 route_not_found in the family of the URL', () => {
    const cases: Array<[Family, string]> = [
      ['integration', '/apis/v1/no-such-route'],
      ['application', '/apis/v1/communities/6167dba9c548eb5c7ec28057/no-such-route'],
      ['system', '/api/v1/no-such-route'],
      ['partner', '/v1/anything'],
      ['plain', '/no-such-route'],
    ]
    it.each(cases)('%s: %s', async (family, url) => {
      for (const method of ['GET', 'POST', 'DELETE'] as const) {
        expectError(family, await send(t.app, { method, url, headers: c.bearer }), 404, 'route_not_found')
      }
    })
  })

  describe('missing or invalid credentials answer 401', () => {
    it('system: /api/v1/servers', async () => {
      expectError('system', await send(t.app, { method: 'GET', url: '/api/v1/servers' }), 401, 'unauthorized')
      const bad = await send(t.app, {
        method: 'GET',
        url: '/api/v1/servers',
        headers: { 'x-api-key': 'nope' },
      })
      expectError('system', bad, 401, 'invalid_api_key')
    })

    it('application: the API log', async () => {
      const url = `/apis/v1/communities/${c.id}/api-logs`
      expectError('application', await send(t.app, { method: 'GET', url }), 401, 'unauthorized')
      const bad = await send(t.app, { method: 'GET', url, headers: { authorization: 'Bearer not-a-key' } })
      expectError('application', bad, 401, 'invalid_api_key')
      const malformedHeader = await send(t.app, {
        method: 'GET',
        url,
        headers: { authorization: 'Basic abc' },
      })
      expectError('application', malformedHeader, 401, 'invalid_authorization_header')
    })

    it('integration: the bulk job list (or another integration route while it is not built)', async () => {
      const candidates: Array<{ method: 'GET' | 'POST'; url: string }> = [
        { method: 'GET', url: '/apis/v1/users/bulk-updates' },
        { method: 'POST', url: '/apis/v1/users/info' },
      ]
      const real = candidates.find((r) => t.app.hasRoute(r))
      const target = real
        ? { app: t.app, ...real }
        : { app: probes, method: 'POST' as const, url: PROBE.integration }
      expectError(
        'integration',
        await send(target.app, { method: target.method, url: target.url }),
        401,
        'unauthorized',
      )
      const bad = await send(target.app, {
        method: target.method,
        url: target.url,
        headers: { authorization: 'Bearer nope' },
      })
      expectError('integration', bad, 401, 'invalid_api_key')
    })

    it.each(FAMILIES)('%s probe route', async (family) => {
      expectError(
        family,
        await send(probes, { method: 'POST', url: PROBE[family], payload: { name: 'a' } }),
        401,
        'unauthorized',
      )
      const bad = await send(probes, {
        method: 'POST',
        url: PROBE[family],
        headers: { authorization: 'Bearer nope' },
        payload: { name: 'a' },
      })
      expectError(family, bad, 401, 'invalid_api_key')
    })
  })

  describe('bad bodies', () => {
    const serverUrl = () => `/api/v1/servers/${c.id}`

    it('system (real route): 413 body_too_large, 415 unsupported_media_type, 400 malformed_json', async () => {
      const headers = { 'x-api-key': c.systemKey, 'content-type': 'application/json' }
      const big = await send(t.app, { method: 'PUT', url: serverUrl(), headers, payload: oversized() })
      expectError('system', big, 413, 'body_too_large')
      const xml = await send(t.app, {
        method: 'PUT',
        url: serverUrl(),
        headers: { ...headers, 'content-type': 'application/xml' },
        payload: '<name>x</name>',
      })
      expectError('system', xml, 415, 'unsupported_media_type')
      const malformed = await send(t.app, { method: 'PUT', url: serverUrl(), headers, payload: '{"name":' })
      expectError('system', malformed, 400, 'malformed_json')
      const name = await t.deps.database.db
        .selectFrom('communities')
        .select('name')
        .where('id', '=', c.id)
        .executeTakeFirst()
      expect(name?.name).toBe(c.community.name)
    })

    it.each(FAMILIES)('%s: 413, 415, malformed JSON, wrong types and unknown fields', async (family) => {
      const headers = { ...c.bearer, 'content-type': 'application/json' }
      const url = PROBE[family]
      expectError(
        family,
        await send(probes, { method: 'POST', url, headers, payload: oversized() }),
        413,
        'body_too_large',
      )
      const xml = await send(probes, {
        method: 'POST',
        url,
        headers: { ...headers, 'content-type': 'application/xml' },
        payload: '<a/>',
      })
      expectError(family, xml, 415, 'unsupported_media_type')
      expectError(
        family,
        await send(probes, { method: 'POST', url, headers, payload: '{"name":' }),
        400,
        'malformed_json',
      )
      const wrongType = await send(probes, { method: 'POST', url, headers, payload: { name: 42 } })
      expectError(family, wrongType, 400, 'invalid_field')
      expect(wrongType.json().error.field).toBe('name')
      const missing = await send(probes, { method: 'POST', url, headers, payload: {} })
      expectError(family, missing, 400, 'invalid_field')
      const unknown = await send(probes, { method: 'POST', url, headers, payload: { name: 'a', extra: 1 } })
      expectError(family, unknown, 400, 'unknown_field')
      expect(unknown.json().error.field).toBe('extra')
      const fine = await send(probes, { method: 'POST', url, headers, payload: { name: 'a' } })
      expect(fine.statusCode).toBe(200)
    })
  })

  describe('server errors', () => {
    it.each(FAMILIES)(
      '%s: a thrown error and a failing query become a bare 500 with the request id',
      async (family) => {
        for (const path of ['crash', 'bad-sql']) {
          const res = await send(probes, { method: 'GET', url: `${PROBE[family]}/${path}` })
          expectError(family, res, 500, 'internal_error')
        }
      },
    )
  })
})

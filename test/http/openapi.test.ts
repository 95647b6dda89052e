import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * Generic checks over every operation of /openapi.json, so routes added later are held to the same
 * rules: a schema for the success answer, a request body for writes, a schema for each path param.
 */

let t: TestApp
let doc: OpenApiDoc
beforeAll(async () => {
  t = await startTestApp()
  const res = await t.app.inject({ method: 'GET', url: '/openapi.json' })
  expect(res.statusCode).toBe(200)
  doc = res.json()
})
afterAll(() => t.close())

type Json = Record<string, any>
interface OpenApiDoc {
  openapi: string
  paths: Record<string, Record<string, Json>>
  components?: { schemas?: Record<string, Json>; securitySchemes?: Record<string, Json> }
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options']
const WRITE_METHODS = new Set(['post', 'put', 'patch'])
// Served without schemas on purpose: health probes, the document itself, and static assets.
const EXEMPT = [
  /^\/healthz$/,
  /^\/readyz$/,
  /^\/openapi\.json$/,
  /^\/docs(\/|$)/,
  /^\/admin(\/|$)/,
  /^\/widgets(\/|$)/,
]

interface Operation {
  method: string
  path: string
  op: Json
}

function operations(): Operation[] {
  const out: Operation[] = []
  for (const [path, item] of Object.entries(doc.paths)) {
    if (EXEMPT.some((re) => re.test(path))) continue
    for (const method of METHODS) if (item[method]) out.push({ method, path, op: item[method] })
  }
  return out
}

const label = (o: Operation) => `${o.method.toUpperCase()} ${o.path}`

/** A schema that says something: a $ref, a type, properties, a combinator or an enum/const. */
function isRealSchema(schema: unknown): boolean {
  if (!schema || typeof schema !== 'object') return false
  const s = schema as Json
  return ['$ref', 'type', 'properties', 'anyOf', 'oneOf', 'allOf', 'enum', 'const', 'items'].some(
    (k) => k in s,
  )
}

function contentSchemas(content: Json | undefined): unknown[] {
  return Object.values(content ?? {}).map((media: Json) => media?.schema)
}

/** Every problem of one operation, as readable strings (empty when it is well documented). */
function problemsOf(o: Operation): string[] {
  const problems: string[] = []
  const responses: Json = o.op.responses ?? {}
  const success = Object.keys(responses).filter((code) => /^2(\d\d|XX)$/i.test(code))
  if (success.length === 0) problems.push('no success (2xx) response')
  for (const code of success) {
    if (code === '204') continue
    const schemas = contentSchemas(responses[code].content)
    if (schemas.length === 0 || !schemas.every(isRealSchema)) problems.push(`response ${code} has no schema`)
  }
  if (!responses['4XX'] && !Object.keys(responses).some((c) => /^4\d\d$/.test(c))) {
    problems.push('no error (4xx) response')
  }
  if (WRITE_METHODS.has(o.method)) {
    const body = o.op.requestBody as Json | undefined
    const content: Json = body?.content ?? {}
    const multipart =
      'multipart/form-data' in content || [o.op.consumes ?? []].flat().includes('multipart/form-data')
    const schemas = contentSchemas(content)
    if (!multipart && (schemas.length === 0 || !schemas.every(isRealSchema)))
      problems.push('no requestBody schema')
  }
  const params: Json[] = o.op.parameters ?? []
  for (const name of [...o.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1])) {
    const p = params.find((x) => x.in === 'path' && x.name === name)
    if (!p) problems.push(`path param ${name} is not documented`)
    else {
      if (!isRealSchema(p.schema)) problems.push(`path param ${name} has no schema`)
      if (p.required !== true) problems.push(`path param ${name} is not required`)
    }
  }
  if (typeof o.op.operationId !== 'string' || o.op.operationId.length === 0) problems.push('no operationId')
  return problems
}

function collectRefs(value: unknown, out: Set<string>) {
  if (Array.isArray(value)) for (const v of value) collectRefs(v, out)
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref' && typeof v === 'string') out.add(v)
      else collectRefs(v, out)
    }
  }
}

describe('OpenAPI document', () => {
  it('is an OpenAPI 3 document that lists the routes of every module', () => {
    expect(doc.openapi).toMatch(/^3\./)
    const paths = Object.keys(doc.paths)
    expect(paths).toEqual(
      expect.arrayContaining([
        '/api/v1/servers',
        '/api/v1/servers/{id}',
        '/apis/v1/communities/{communityId}/api-logs',
        '/apis/v1/communities/{communityId}/api-logs/{logId}',
      ]),
    )
    expect(paths.filter((p) => EXEMPT.some((re) => re.test(p)))).toEqual([])
    expect(Object.keys(doc.components?.securitySchemes ?? {})).toEqual(
      expect.arrayContaining(['bearer', 'systemKey']),
    )
  })

  it('documents a success response schema, a request body for writes and every path param', () => {
    const ops = operations()
    expect(ops.length).toBeGreaterThan(3)
    const report = ops.flatMap((o) => problemsOf(o).map((p) => `${label(o)}: ${p}`))
    expect(report).toEqual([])
  })

  it('gives every operation a unique operationId', () => {
    const ids = operations().map((o) => o.op.operationId)
    const dupes = ids.filter((id, i) => ids.indexOf(id) !== i)
    expect(dupes).toEqual([])
  })

  it('resolves every $ref to a component', () => {
    const refs = new Set<string>()
    collectRefs(doc, refs)
    const missing = [...refs].filter((ref) => {
      const m = /^#\/components\/schemas\/(.+)$/.exec(ref)
      return !m || !doc.components?.schemas?.[decodeURIComponent(m[1])]
    })
    expect(missing).toEqual([])
  })

  it('flags an undocumented operation (the checker itself works)', () => {
    const bad: Operation = {
      method: 'post',
      path: '/x/{id}',
      op: { responses: { '200': { description: 'Default Response' } }, parameters: [] },
    }
    expect(problemsOf(bad)).toEqual([
      'response 200 has no schema',
      'no error (4xx) response',
      'no requestBody schema',
      'path param id is not documented',
      'no operationId',
    ])
    const multipart: Operation = {
      method: 'post',
      path: '/upload',
      op: {
        operationId: 'upload',
        requestBody: { content: { 'multipart/form-data': {} } },
        responses: { '200': { content: { 'application/json': { schema: { type: 'object' } } } }, '4XX': {} },
      },
    }
    expect(problemsOf(multipart)).toEqual([])
  })

  it('serves the rendered reference at /docs as HTML', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/docs' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^text\/html/)
    expect(res.body).toMatch(/<html/i)
  })
})

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken, randomToken } from '../../src/lib/auth/secrets.ts'
import { newId } from '../../src/lib/ids.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'
import { multipart } from '../support/multipart.ts'

let t: TestApp
beforeAll(async () => {
  // The worker runs real bulk jobs for the end-to-end progress test.
  t = await startTestApp({ worker: true })
})
afterAll(() => t.close())

type Community = Awaited<ReturnType<TestApp['factory']['community']>>

const logsUrl = (communityId: string, rest = '') => `/apis/v1/communities/${communityId}/api-logs${rest}`

async function ownerSession(communityId: string) {
  const owner = await t.factory.user(communityId, { role: 'owner' })
  return t.factory.session(owner)
}

/** Inserts a log row directly (for filters and paging); created_at defaults to a fixed day in 2020. */
async function insertLog(
  communityId: string,
  over: Partial<{
    kind: 'request' | 'bulk_job'
    method: string
    path: string
    status: number
    apiKeyId: string | null
    bulkJobId: string | null
    createdAt: string
  }> = {},
) {
  const id = newId()
  await t.deps.database.db
    .insertInto('api_log')
    .values({
      id,
      community_id: communityId,
      api_key_id: over.apiKeyId === undefined ? 'key-test' : over.apiKeyId,
      kind: over.kind ?? 'request',
      method: over.method ?? 'GET',
      path: over.path ?? '/apis/v1/test',
      status: over.status ?? 200,
      duration_ms: 3,
      request_id: newId(),
      summary: JSON.stringify({ query: { a: '1' } }),
      bulk_job_id: over.bulkJobId ?? null,
      created_at: over.createdAt ?? '2020-06-01T12:00:00.000000Z',
    })
    .execute()
  return id
}

async function insertBulkJob(
  communityId: string,
  over: { total?: number; processed?: number; status?: string } = {},
) {
  const id = newId()
  await t.deps.database.db
    .insertInto('bulk_jobs')
    .values({
      id,
      community_id: communityId,
      type: 'update',
      status: (over.status ?? 'processing') as 'processing',
      file_name: 'users.csv',
      file_bytes: 1234,
      file_chunks: 1,
      total: over.total ?? 200,
      processed: over.processed ?? 50,
      created: 0,
      updated: over.processed ?? 50,
      skipped: 0,
      failed: 0,
      started_at: '2020-06-01T12:00:01.000Z',
      finished_at: over.status === 'completed' ? '2020-06-01T12:05:00.000Z' : null,
    })
    .execute()
  return id
}

/** The log row is written after the answer is sent, so wait for it briefly. */
async function waitForLog(communityId: string, requestPath: string, apiKeyId?: string) {
  for (let i = 0; i < 100; i++) {
    let q = t.deps.database.db
      .selectFrom('api_log')
      .select(['id', 'path', 'status', 'api_key_id', 'summary'])
      .where('community_id', '=', communityId)
      .where('path', '=', requestPath)
    if (apiKeyId) q = q.where('api_key_id', '=', apiKeyId)
    const row = await q.executeTakeFirst()
    if (row) return row
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error(`no API log row for ${requestPath}`)
}

async function keyId(key: string) {
  const row = await t.deps.database.db
    .selectFrom('api_keys')
    .select('id')
    .where('key_hash', '=', hashToken(key))
    .executeTakeFirstOrThrow()
  return row.id
}

async function list(c: { id: string }, headers: Record<string, string>, query = '') {
  return t.app.inject({ method: 'GET', url: `${logsUrl(c.id)}${query}`, headers })
}

describe('API log', () => {
  describe('recording', () => {
    it('records a request made with a community key and lists it with the documented fields', async () => {
      const c = await t.factory.community()
      const first = await list(c, c.bearer, '?limit=5')
      expect(first.statusCode).toBe(200)
      const id = await keyId(c.apiKey)
      await waitForLog(c.id, logsUrl(c.id), id)

      const res = await list(c, c.bearer)
      const body = res.json()
      expect(body.meta).toEqual({ status: 'success', statusCode: 200, limit: 50, nextCursor: null })
      expect(body.message).toBe('Read API logs success.')
      // The summary holds the validated query, so the limit is a number there.
      const entry = body.data.find(
        (e: { summary: { query?: { limit?: number } } }) => e.summary.query?.limit === 5,
      )
      expect(Object.keys(entry).sort()).toEqual(
        [
          '_id',
          'apiKeyId',
          'bulkJob',
          'createdAt',
          'durationMs',
          'kind',
          'method',
          'path',
          'requestId',
          'status',
          'summary',
        ].sort(),
      )
      expect(entry).toMatchObject({
        kind: 'request',
        method: 'GET',
        path: logsUrl(c.id),
        status: 200,
        requestId: expect.stringMatching(/^[0-9a-f]{24}$/),
        apiKeyId: id,
        bulkJob: null,
        summary: { query: { limit: 5 } },
      })
      expect(entry._id).toMatch(/^[0-9a-f]{24}$/)
      expect(Number.isNaN(Date.parse(entry.createdAt))).toBe(false)
      expect(entry.durationMs).toBeGreaterThanOrEqual(0)
    })

    it('records system-key requests as system:<communityId> and failed requests with their status', async () => {
      const c = await t.factory.community()
      await t.app.inject({ method: 'GET', url: '/api/v1/servers', headers: { 'x-api-key': c.systemKey } })
      const bad = await t.app.inject({
        method: 'PUT',
        url: `/api/v1/servers/${c.id}`,
        headers: { 'x-api-key': c.systemKey },
        payload: { colour: 'red' },
      })
      expect(bad.statusCode).toBe(400)
      await waitForLog(c.id, '/api/v1/servers')
      const failed = await waitForLog(c.id, `/api/v1/servers/${c.id}`)
      expect(failed).toMatchObject({ status: 400, api_key_id: `system:${c.id}` })

      const query = `?apiKeyId=${encodeURIComponent(`system:${c.id}`)}`
      const res = await list(c, { 'x-api-key': c.systemKey }, query)
      expect(res.statusCode).toBe(200)
      const paths = res.json().data.map((e: { path: string }) => e.path)
      expect(paths).toEqual(expect.arrayContaining(['/api/v1/servers', `/api/v1/servers/${c.id}`]))
    })

    it('does not record requests made with a session (no key involved)', async () => {
      const c = await t.factory.community()
      const session = await ownerSession(c.id)
      expect((await list(c, session)).statusCode).toBe(200)
      await new Promise((r) => setTimeout(r, 100))
      const rows = await t.deps.database.db
        .selectFrom('api_log')
        .select('id')
        .where('community_id', '=', c.id)
        .execute()
      expect(rows).toEqual([])
    })

    it('never stores or returns secrets from request bodies', async () => {
      const c = await t.factory.community()
      const secret = `s3cret-${randomToken(8)}`
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/v1/servers',
        headers: { 'x-api-key': c.systemKey },
        payload: {
          name: 'With secrets',
          appearance: {
            password: secret,
            apiToken: secret,
            nested: { clientSecret: secret, colour: 'blue' },
          },
        },
      })
      expect(res.statusCode).toBe(201)
      const rejected = await t.app.inject({
        method: 'PUT',
        url: `/api/v1/servers/${c.id}`,
        headers: { 'x-api-key': c.systemKey },
        payload: { name: 'x', password: secret, token: secret, confirmPassword: secret },
      })
      expect(rejected.statusCode).toBe(400)
      await waitForLog(c.id, '/api/v1/servers')
      await waitForLog(c.id, `/api/v1/servers/${c.id}`)

      const listed = await list(c, c.bearer)
      expect(listed.statusCode).toBe(200)
      expect(listed.body).not.toContain(secret)
      const created = listed.json().data.find((e: { method: string }) => e.method === 'POST')
      expect(created.summary.body).toEqual({
        name: 'With secrets',
        appearance: {
          password: '[redacted]',
          apiToken: '[redacted]',
          nested: { clientSecret: '[redacted]', colour: 'blue' },
        },
      })
      const put = listed.json().data.find((e: { method: string }) => e.method === 'PUT')
      expect(put.summary.body).toEqual({
        name: 'x',
        password: '[redacted]',
        token: '[redacted]',
        confirmPassword: '[redacted]',
      })
      const stored = await t.deps.database.db
        .selectFrom('api_log')
        .select('summary')
        .where('community_id', '=', c.id)
        .execute()
      expect(JSON.stringify(stored)).not.toContain(secret)
    })
  })

  describe('filters', () => {
    let c: Community
    let session: Record<string, string>
    const ids: Record<string, string> = {}
    beforeAll(async () => {
      c = await t.factory.community()
      session = await ownerSession(c.id)
      ids.get = await insertLog(c.id, {
        method: 'GET',
        path: '/apis/v1/users/info',
        status: 200,
        createdAt: '2020-01-01T00:00:00Z',
      })
      ids.post = await insertLog(c.id, {
        method: 'POST',
        path: '/apis/v1/users',
        status: 201,
        createdAt: '2020-02-01T00:00:00Z',
      })
      ids.notFound = await insertLog(c.id, {
        method: 'GET',
        path: '/apis/v1/users/x',
        status: 404,
        createdAt: '2020-03-01T00:00:00Z',
      })
      ids.error = await insertLog(c.id, {
        method: 'PUT',
        path: '/api/v1/servers/x',
        status: 500,
        apiKeyId: 'other-key',
        createdAt: '2020-04-01T00:00:00Z',
      })
      const job = await insertBulkJob(c.id)
      ids.bulk = await insertLog(c.id, {
        kind: 'bulk_job',
        method: 'POST',
        path: '/apis/v1/users/bulk-update',
        status: 200,
        bulkJobId: job,
        createdAt: '2020-05-01T00:00:00Z',
      })
    })

    const cases: Array<[string, string, string[]]> = [
      ['kind=request', '?kind=request', ['error', 'notFound', 'post', 'get']],
      ['kind=bulk_job', '?kind=bulk_job', ['bulk']],
      ['method (any case)', '?method=post', ['bulk', 'post']],
      ['exact status', '?status=404', ['notFound']],
      ['statusClass 2xx', '?statusClass=2xx', ['bulk', 'post', 'get']],
      ['statusClass 5xx', '?statusClass=5xx', ['error']],
      ['apiKeyId', '?apiKeyId=other-key', ['error']],
      ['path prefix', '?path=/apis/v1/users/', ['bulk', 'notFound', 'get']],
      ['path prefix with LIKE wildcards is literal', '?path=/apis/v1/u_ers', []],
      ['from', '?from=2020-03-01T00:00:00Z', ['bulk', 'error', 'notFound']],
      ['to', '?to=2020-02-01T00:00:00Z', ['post', 'get']],
      ['from and to', '?from=2020-02-01T00:00:00Z&to=2020-03-15T00:00:00%2B01:00', ['notFound', 'post']],
      ['combined', '?method=GET&statusClass=4xx&path=/apis', ['notFound']],
    ]
    it.each(cases)('filters by %s', async (_name, query, expected) => {
      const res = await list(c, session, query)
      expect(res.statusCode).toBe(200)
      expect(res.json().data.map((e: { _id: string }) => e._id)).toEqual(expected.map((k) => ids[k]))
    })

    it('rejects bad filter values with 400 naming the field', async () => {
      const bad: Array<[string, string, string]> = [
        ['?kind=job', 'invalid_field', 'kind'],
        ['?method=FETCH', 'invalid_field', 'method'],
        ['?status=abc', 'invalid_field', 'status'],
        ['?status=99', 'invalid_field', 'status'],
        ['?statusClass=6xx', 'invalid_field', 'statusClass'],
        ['?status=200&statusClass=2xx', 'invalid_field', 'statusClass'],
        ['?path=apis', 'invalid_field', 'path'],
        ['?from=yesterday', 'invalid_field', 'from'],
        ['?from=2020-03-01T00:00:00Z&to=2020-02-01T00:00:00Z', 'invalid_field', 'to'],
        ['?limit=0', 'invalid_field', 'limit'],
        ['?limit=201', 'invalid_field', 'limit'],
        ['?limit=ten', 'invalid_field', 'limit'],
        ['?colour=red', 'unknown_field', 'colour'],
        ['?cursor=not-a-cursor', 'invalid_cursor', 'cursor'],
        [
          `?cursor=${Buffer.from('["2020-01-01T00:00:00.000000Z","nope"]').toString('base64url')}`,
          'invalid_cursor',
          'cursor',
        ],
        [`?cursor=${Buffer.from('{"a":1}').toString('base64url')}`, 'invalid_cursor', 'cursor'],
      ]
      for (const [query, code, field] of bad) {
        const res = await list(c, session, query)
        expect(res.statusCode, query).toBe(400)
        expect(res.json(), query).toMatchObject({
          meta: { status: 'error', statusCode: 400 },
          error: { code, field },
        })
      }
    })
  })

  describe('pagination', () => {
    it('walks every entry newest first with an opaque cursor, ties broken by id, none repeated', async () => {
      const c = await t.factory.community()
      const session = await ownerSession(c.id)
      const inserted: string[] = []
      // Several rows in one millisecond (microseconds apart) and several at the very same instant.
      const stamps = [
        '2021-01-01T00:00:00.000001Z',
        '2021-01-01T00:00:00.000002Z',
        '2021-01-01T00:00:00.000003Z',
        '2021-01-01T00:00:00.000003Z',
        '2021-01-01T00:00:00.000003Z',
        '2021-01-02T00:00:00Z',
        '2021-01-03T00:00:00Z',
      ]
      for (const createdAt of stamps) inserted.push(await insertLog(c.id, { createdAt }))
      const seen: string[] = []
      let cursor: string | null = null
      let pages = 0
      do {
        const res = await list(c, session, `?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
        expect(res.statusCode).toBe(200)
        const body = res.json()
        expect(body.meta.limit).toBe(2)
        expect(body.data.length).toBeLessThanOrEqual(2)
        seen.push(...body.data.map((e: { _id: string }) => e._id))
        cursor = body.meta.nextCursor
        pages++
      } while (cursor && pages < 10)
      expect(pages).toBe(4)
      // Same-instant rows come in descending id order; ids from newId() grow, so that is reverse insertion order.
      expect(seen).toEqual([...inserted].reverse())
    })

    it('gives no cursor when the last page is exactly full', async () => {
      const c = await t.factory.community()
      const session = await ownerSession(c.id)
      await insertLog(c.id)
      await insertLog(c.id)
      const res = await list(c, session, '?limit=2')
      expect(res.json().data).toHaveLength(2)
      expect(res.json().meta.nextCursor).toBeNull()
    })
  })

  describe('bulk jobs', () => {
    it('follows a real bulk update from upload to finish', async () => {
      expect(t.app.hasRoute({ method: 'POST', url: '/apis/v1/users/bulk-update' })).toBe(true)
      const c = await t.factory.community()
      const a = await t.factory.user(c.id)
      const b = await t.factory.user(c.id)
      const form = multipart({
        file: `email,first_name\n${a.email},Ann\n${b.email},Bob\nnobody@example.com,Zed\n`,
      })
      const res = await t.app.inject({
        method: 'POST',
        url: '/apis/v1/users/bulk-update',
        headers: { ...c.bearer, ...form.headers },
        payload: form.payload,
      })
      expect(res.statusCode, res.body).toBe(200)
      const jobId = res.json().data.jobId
      const session = await ownerSession(c.id)
      let entry: any
      for (let i = 0; i < 600; i++) {
        const listed = await list(c, session, '?kind=bulk_job')
        entry = listed.json().data.find((e: { bulkJob: { _id: string } | null }) => e.bulkJob?._id === jobId)
        if (entry?.bulkJob.finishedAt) break
        await new Promise((r) => setTimeout(r, 100))
      }
      expect(entry).toMatchObject({
        kind: 'bulk_job',
        method: 'POST',
        path: '/apis/v1/users/bulk-update',
        apiKeyId: await keyId(c.apiKey),
        // Ann and Bob are updated; nobody@example.com is no user, and an update creates none.
        bulkJob: {
          _id: jobId,
          type: 'update',
          status: 'completed_with_errors',
          total: 3,
          processed: 3,
          created: 0,
          updated: 2,
          skipped: 0,
          failed: 1,
          percentage: 100,
        },
      })
      // The upload is one row, the job's, with the status its answer had: not a request row beside it.
      const uploads = (await list(c, session))
        .json()
        .data.filter((e: { path: string }) => e.path === entry.path)
      expect(uploads).toEqual([expect.objectContaining({ kind: 'bulk_job', status: 200 })])
    })

    it('shows the linked job with its live progress', async () => {
      const c = await t.factory.community()
      const session = await ownerSession(c.id)
      const job = await insertBulkJob(c.id, { total: 3, processed: 1 })
      const logId = await insertLog(c.id, {
        kind: 'bulk_job',
        bulkJobId: job,
        method: 'POST',
        path: '/apis/v1/users/bulk-update',
      })
      const read = async () =>
        (await t.app.inject({ method: 'GET', url: logsUrl(c.id, `/${logId}`), headers: session })).json()

      const before = await read()
      expect(before.message).toBe('Read API log success.')
      expect(before.data.bulkJob).toEqual({
        _id: job,
        type: 'update',
        dryRun: false,
        status: 'processing',
        total: 3,
        processed: 1,
        created: 0,
        updated: 1,
        skipped: 0,
        failed: 0,
        percentage: 33.3,
        startedAt: '2020-06-01T12:00:01.000Z',
        finishedAt: null,
        unreachedRowsInCsv: false,
        error: null,
      })
      await t.deps.database.db
        .updateTable('bulk_jobs')
        .set({
          processed: 3,
          updated: 2,
          failed: 1,
          status: 'completed_with_errors',
          finished_at: new Date('2020-06-01T12:10:00Z'),
        })
        .where('id', '=', job)
        .execute()
      const after = await read()
      expect(after.data.bulkJob).toMatchObject({
        status: 'completed_with_errors',
        processed: 3,
        failed: 1,
        percentage: 100,
        finishedAt: '2020-06-01T12:10:00.000Z',
      })
      // A job that fails as a whole says why, in the log as on its status.
      await t.deps.database.db
        .updateTable('bulk_jobs')
        .set({
          status: 'failed',
          dry_run: true,
          error_code: 'duplicate_column',
          error_message: 'The column "email" appears twice',
        })
        .where('id', '=', job)
        .execute()
      expect((await read()).data.bulkJob).toMatchObject({
        status: 'failed',
        dryRun: true,
        error: { code: 'duplicate_column', message: 'The column "email" appears twice' },
      })
    })

    it('reports 100% for a finished empty job and 0% for a queued one', async () => {
      const c = await t.factory.community()
      const session = await ownerSession(c.id)
      const done = await insertBulkJob(c.id, { total: 0, processed: 0, status: 'completed' })
      const queued = await insertBulkJob(c.id, { total: 0, processed: 0, status: 'queued' })
      await insertLog(c.id, { kind: 'bulk_job', bulkJobId: done, createdAt: '2020-01-02T00:00:00Z' })
      await insertLog(c.id, { kind: 'bulk_job', bulkJobId: queued, createdAt: '2020-01-01T00:00:00Z' })
      const res = await list(c, session, '?kind=bulk_job')
      expect(res.json().data.map((e: { bulkJob: { percentage: number } }) => e.bulkJob.percentage)).toEqual([
        100, 0,
      ])
    })

    it("never joins another community's job, even when the id matches", async () => {
      const a = await t.factory.community()
      const b = await t.factory.community()
      const bJob = await insertBulkJob(b.id)
      const logId = await insertLog(a.id, { kind: 'bulk_job', bulkJobId: bJob })
      const res = await t.app.inject({
        method: 'GET',
        url: logsUrl(a.id, `/${logId}`),
        headers: await ownerSession(a.id),
      })
      expect(res.statusCode).toBe(200)
      expect(res.json().data.bulkJob).toBeNull()
    })
  })

  describe('access', () => {
    it('accepts a key with readApiLog, the system key and owner/admin sessions', async () => {
      const c = await t.factory.community()
      const limited = await t.factory.apiKey(c.id, ['readApiLog'])
      const admin = await t.factory.session(await t.factory.user(c.id, { role: 'admin' }))
      for (const headers of [{ authorization: `Bearer ${limited}` }, { 'x-api-key': c.systemKey }, admin]) {
        expect((await list(c, headers)).statusCode).toBe(200)
      }
    })

    it('refuses keys without the permission, members, user keys and missing or bad credentials', async () => {
      const c = await t.factory.community()
      const noPerm = await t.factory.apiKey(c.id, ['getUserData'])
      const member = await t.factory.session(await t.factory.user(c.id, { role: 'member' }))
      const userKey = randomToken(32)
      await t.deps.database.db
        .insertInto('api_keys')
        .values({
          id: newId(),
          community_id: c.id,
          kind: 'user',
          user_id: (await t.factory.user(c.id)).id,
          name: 'mine',
          key_hash: hashToken(userKey),
          key_prefix: userKey.slice(0, 6),
          permissions: ['readOwnProfile'],
        })
        .execute()
      const expectations: Array<[Record<string, string>, number, string]> = [
        [{ authorization: `Bearer ${noPerm}` }, 403, 'missing_permission'],
        [member, 403, 'admin_only'],
        [{ authorization: `Bearer ${userKey}` }, 401, 'credential_not_accepted'],
        [{}, 401, 'unauthorized'],
        [{ authorization: `Bearer ${randomToken(32)}` }, 401, 'invalid_api_key'],
        [{ 'x-api-key': 'wrong' }, 401, 'invalid_api_key'],
      ]
      for (const [headers, status, code] of expectations) {
        const res = await list(c, headers)
        expect(res.statusCode, code).toBe(status)
        expect(res.json()).toMatchObject({
          meta: { status: 'error', statusCode: status },
          error: { code },
          requestId: expect.any(String),
        })
      }
    })

    it('rejects malformed ids with 400 and an absent entry with 404', async () => {
      const c = await t.factory.community()
      const badCommunity = await t.app.inject({ method: 'GET', url: logsUrl('nope'), headers: c.bearer })
      expect(badCommunity.statusCode).toBe(400)
      expect(badCommunity.json().error).toMatchObject({ code: 'invalid_field', field: 'communityId' })
      const badLog = await t.app.inject({ method: 'GET', url: logsUrl(c.id, '/zzz'), headers: c.bearer })
      expect(badLog.statusCode).toBe(400)
      expect(badLog.json().error).toMatchObject({ code: 'invalid_field', field: 'logId' })
      const missing = await t.app.inject({
        method: 'GET',
        url: logsUrl(c.id, `/${newId()}`),
        headers: c.bearer,
      })
      expect(missing.statusCode).toBe(404)
      expect(missing.json().error).toMatchObject({ code: 'api_log_not_found', field: 'logId' })
    })
  })

  describe('isolation between communities', () => {
    it("never lets A list or read B's log, and B's log stays unchanged", async () => {
      const a = await t.factory.community()
      const b = await t.factory.community()
      const bLog = await insertLog(b.id, { path: '/b/only' })
      const aSession = await ownerSession(a.id)
      const before = await t.deps.database.db
        .selectFrom('api_log')
        .select(['id', 'path'])
        .where('community_id', '=', b.id)
        .execute()

      for (const headers of [a.bearer, { 'x-api-key': a.systemKey }, aSession]) {
        const listB = await t.app.inject({ method: 'GET', url: logsUrl(b.id), headers })
        expect(listB.statusCode).toBe(403)
        expect(listB.json().error.code).toBe('community_forbidden')
        expect(listB.body).not.toContain(bLog)
        const readB = await t.app.inject({ method: 'GET', url: logsUrl(b.id, `/${bLog}`), headers })
        expect(readB.statusCode).toBe(403)
        // B's entry through A's own path: not found, exactly like an id that never existed.
        const viaA = await t.app.inject({ method: 'GET', url: logsUrl(a.id, `/${bLog}`), headers })
        expect(viaA.statusCode).toBe(404)
        expect(viaA.json().error.code).toBe('api_log_not_found')
      }
      const listA = await t.app.inject({ method: 'GET', url: logsUrl(a.id), headers: aSession })
      expect(listA.json().data.map((e: { _id: string }) => e._id)).not.toContain(bLog)

      const after = await t.deps.database.db
        .selectFrom('api_log')
        .select(['id', 'path'])
        .where('community_id', '=', b.id)
        .execute()
      expect(after).toEqual(before)
      // A's attempts are logged in A's log, never in B's.
      await waitForLog(a.id, logsUrl(b.id))
    })
  })
})

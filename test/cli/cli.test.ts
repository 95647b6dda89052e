import { spawn } from 'node:child_process'
import { mkdtempSync, openAsBlob, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'kysely'
import { afterAll, describe, expect, it } from 'vitest'
import { loadMigrations } from '../../src/lib/db/migrate.ts'
import { type ChildServer, startChildServer, stopChild } from '../support/child-server.ts'
import { createTestDatabase, type TestDatabase } from '../support/database.ts'

const work = mkdtempSync(join(tmpdir(), 'hearth-cli-'))
const servers: ChildServer[] = []
let testDb: TestDatabase | null = null

afterAll(async () => {
  for (const s of servers) await stopChild(s)
  await testDb?.drop()
  rmSync(work, { recursive: true, force: true })
})

function hearth(env: Record<string, string>, args: string[]) {
  const child = spawn(process.execPath, ['bin/hearth.mjs', ...args], {
    env: { ...process.env, LOG_LEVEL: 'silent', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  return new Promise<{ code: number; json: any; stderr: string }>((resolve) =>
    child.once('exit', (code) => {
      let json: unknown = null
      try {
        json = JSON.parse(stdout.trim().split('\n').pop() ?? '')
      } catch {}
      resolve({ code: code ?? -1, json, stderr })
    }),
  )
}

async function env(): Promise<Record<string, string>> {
  if (!process.env.DATABASE_URL) return { DATA_DIR: mkdtempSync(join(work, 'data-')) }
  testDb ??= await createTestDatabase()
  return { DATABASE_URL: testDb.url! }
}

describe('hearth CLI', () => {
  it('bootstraps a community, a key and an owner with no server running, then again through a running server', async () => {
    const e = await env()
    const community = await hearth(e, ['community', 'create', '--name', 'Acme'])
    expect(community.code, community.stderr).toBe(0)
    expect(community.json).toMatchObject({
      id: expect.stringMatching(/^[0-9a-f]{24}$/),
      systemKey: expect.stringMatching(/^[0-9a-f]{64}$/),
    })
    const key = await hearth(e, [
      'keys',
      'create',
      '--community',
      community.json.id,
      '--permissions',
      'getUserData,bulkUpdateUser',
    ])
    expect(key.json).toMatchObject({
      id: expect.any(String),
      key: expect.stringMatching(/^[0-9a-f]{64}$/),
      permissions: ['bulkUpdateUser', 'getUserData'],
    })
    const owner = await hearth(e, [
      'admin',
      'create',
      '--email',
      'Owner@Acme.test',
      '--password',
      'correct horse',
      '--community',
      community.json.id,
    ])
    expect(owner.json).toMatchObject({ email: 'owner@acme.test', role: 'owner' })

    const server = await startChildServer(e)
    servers.push(server)
    // With the server holding the database, the same commands go through it.
    const second = await hearth(e, ['community', 'create', '--name', 'Beta'])
    expect(second.code, second.stderr).toBe(0)
    const mine = await fetch(`${server.base}/api/v1/servers`, {
      headers: { 'x-api-key': second.json.systemKey },
    })
    expect(((await mine.json()) as any).body[0]).toMatchObject({ _id: second.json.id, name: 'Beta' })
    const badPermission = await hearth(e, [
      'keys',
      'create',
      '--community',
      second.json.id,
      '--permissions',
      'fly',
    ])
    expect(badPermission.code).toBe(1)
    expect(badPermission.stderr).toContain('invalid_permission')

    // hearth import runs the same job path and prints the finished job.
    const file = join(work, 'import.csv')
    writeFileSync(file, 'email,first_name,xp\nann@acme.test,Ann,5\nnot-an-email,Bob,1\n')
    const imported = await hearth(e, ['import', file, '--community', community.json.id])
    expect(imported.code, imported.stderr).toBe(0)
    expect(imported.json).toMatchObject({
      status: 'completed_with_errors',
      total: 2,
      created: 1,
      failed: 1,
      percentage: 100,
    })
    // Not a terminal here: progress comes as plain lines, the last one at 100 %.
    expect(imported.stderr.trim().split('\n').pop()).toMatch(
      /^import [0-9a-f]{24}: 100\.0% 2\/2 completed_with_errors$/,
    )
    const login = await fetch(`${server.base}/apis/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        email: 'owner@acme.test',
        password: 'correct horse',
        communityId: community.json.id,
      }),
    })
    expect(login.status).toBe(200)
    // On PostgreSQL the tests of this file share one database: a worker left running here could
    // claim the job a later test expects to stay queued.
    await stopChild(server)
  }, 180_000)

  it('two servers started at once: on PostgreSQL both migrate once and serve; on PGlite the second is refused clearly', async () => {
    if (!process.env.DATABASE_URL) {
      const e = await env()
      const results = await Promise.allSettled([startChildServer(e), startChildServer(e)])
      const up = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
      const refused = results.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []))
      servers.push(...up)
      expect(up).toHaveLength(1)
      expect(refused).toHaveLength(1)
      expect(refused[0]).toMatch(/Another Hearth process \(pid \d+\) has the embedded database/)
      expect((await fetch(`${up[0].base}/readyz`)).status).toBe(200)
      return
    }
    const pgDb = await createTestDatabase()
    try {
      // A fresh, empty database: drop what the template brought so both servers race on the migrations.
      await sql`DROP SCHEMA public CASCADE; CREATE SCHEMA public; DROP SCHEMA IF EXISTS pgboss CASCADE`.execute(
        pgDb.database.db,
      )
      const e = { DATABASE_URL: pgDb.url! }
      const [a, b] = await Promise.all([startChildServer(e), startChildServer(e)])
      servers.push(a, b)
      for (const s of [a, b]) expect((await fetch(`${s.base}/readyz`)).status).toBe(200)
      const rows = await sql<{
        version: number
      }>`SELECT version FROM hearth_migrations ORDER BY version`.execute(pgDb.database.db)
      expect(rows.rows.map((r) => r.version)).toEqual(loadMigrations().map((m) => m.version))
      await stopChild(a)
      await stopChild(b)
    } finally {
      await pgDb.drop()
    }
  }, 120_000)

  it('a job queued by `serve --no-worker` is run by a worker started later in another folder, after the API process died', async () => {
    const onPostgres = Boolean(process.env.DATABASE_URL)
    const shared = await env()
    const apiDir = mkdtempSync(join(work, 'api-'))
    const workerDir = mkdtempSync(join(work, 'worker-'))
    // On PostgreSQL each process has a data folder of its own: nothing the worker needs may live in
    // the API's. (PGlite's data folder is the database itself: there both use the one folder.)
    const apiEnv = onPostgres ? { ...shared, DATA_DIR: join(apiDir, 'data') } : shared
    const community = await hearth(apiEnv, ['community', 'create', '--name', 'Split'])
    const key = await hearth(apiEnv, ['keys', 'create', '--community', community.json.id])
    expect(key.code, key.stderr).toBe(0)
    const auth = { authorization: `Bearer ${key.json.key}` }

    const api = await startChildServer(apiEnv, { args: ['serve', '--no-worker'], cwd: apiDir })
    servers.push(api)
    const rows = ['email,first_name,xp', 'bad-email,Bad,1']
    for (let i = 0; i < 2000; i++) rows.push(`split${i}@acme.test,User ${i},${i % 50}`)
    const file = join(apiDir, 'split.csv')
    writeFileSync(file, `${rows.join('\n')}\n`)
    const form = new FormData()
    form.append('data', await openAsBlob(file), 'split.csv')
    const queued = await fetch(`${api.base}/apis/v1/users/bulk-import`, {
      method: 'POST',
      headers: auth,
      body: form,
    })
    expect(queued.status).toBe(200)
    const { jobId } = ((await queued.json()) as any).data
    const status = async (base: string) =>
      ((await (await fetch(`${base}/apis/v1/users/bulk-updates/${jobId}`, { headers: auth })).json()) as any)
        .data
    // No worker in this process: the job waits.
    expect(await status(api.base)).toMatchObject({ status: 'queued', processed: 0 })
    await stopChild(api, 'SIGKILL')
    if (onPostgres) rmSync(apiDir, { recursive: true, force: true })

    // The worker's own folder; on PGlite a full server, whose HTTP API shows the job.
    const worker = onPostgres
      ? await startChildServer(
          { ...shared, DATA_DIR: join(workerDir, 'data') },
          { args: ['worker'], cwd: workerDir },
        )
      : await startChildServer(shared, { cwd: workerDir })
    servers.push(worker)
    const finished = async () => {
      if (!onPostgres) return status(worker.base)
      return testDb!.database.db
        .selectFrom('bulk_jobs')
        .selectAll()
        .where('id', '=', jobId)
        .executeTakeFirstOrThrow()
    }
    let job: any
    for (let i = 0; i < 600; i++) {
      job = await finished()
      if (job.status !== 'queued' && job.status !== 'processing' && job.status !== 'validating') break
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(job).toMatchObject({ status: 'completed_with_errors', created: 2000, failed: 1 })
    await stopChild(worker)
  }, 180_000)
})

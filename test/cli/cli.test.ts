import { execFileSync, spawn } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openAsBlob, openSync, rmSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Kysely, sql } from 'kysely'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { acquireDataLock } from '../../src/lib/data-lock.ts'
import { openDatabase } from '../../src/lib/db/database.ts'
import { loadMigrations } from '../../src/lib/db/migrate.ts'
import type { DB } from '../../src/lib/db/schema.ts'
import { JOBS } from '../support/bulk.ts'
import { type ChildServer, startChildServer, stopChild } from '../support/child-server.ts'
import { createTestDatabase, type TestDatabase } from '../support/database.ts'
import { slowChunks } from '../support/faults.ts'

const work = mkdtempSync(join(tmpdir(), 'hearth-cli-'))
const servers: ChildServer[] = []
let testDb: TestDatabase | null = null

afterAll(async () => {
  for (const s of servers) await stopChild(s)
  await testDb?.drop()
  rmSync(work, { recursive: true, force: true })
})

type Run = { code: number; signal: NodeJS.Signals | null; json: any; stderr: string }

/**
 * Starts the CLI: `done` resolves when it exits; `stderr()` is what it wrote so far. With `shell`,
 * a bash script runs instead of `args`, with the CLI as `"$0" bin/hearth.mjs`: for a real pipe on
 * its standard input (a child's own stdin is a socket) or a process substitution such as `<(cat f)`.
 */
function startHearth(
  env: Record<string, string>,
  args: string[],
  opts: { stdin?: 'pipe'; shell?: string } = {},
) {
  const [command, argv] = opts.shell
    ? ['bash', ['-c', opts.shell, process.execPath]]
    : [process.execPath, ['bin/hearth.mjs', ...args]]
  const child = spawn(command, argv, {
    env: { ...process.env, LOG_LEVEL: 'silent', ...env },
    stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d) => (stdout += d))
  child.stderr!.on('data', (d) => (stderr += d))
  const done = new Promise<Run>((resolve) =>
    child.once('exit', (code, signal) => {
      let json: unknown = null
      try {
        json = JSON.parse(stdout.trim().split('\n').pop() ?? '')
      } catch {}
      resolve({ code: code ?? -1, signal, json, stderr })
    }),
  )
  return { child, done, stderr: () => stderr }
}

const hearth = (env: Record<string, string>, args: string[]) => startHearth(env, args).done

async function env(): Promise<Record<string, string>> {
  if (!process.env.DATABASE_URL) return { DATA_DIR: mkdtempSync(join(work, 'data-')) }
  testDb ??= await createTestDatabase()
  return { DATABASE_URL: testDb.url! }
}

/**
 * Reads the database the CLI wrote: on PostgreSQL beside it; on PGlite by opening the data folder,
 * which only one process may do, so only while no CLI or server runs on it.
 */
async function inspect<T>(e: Record<string, string>, read: (db: Kysely<DB>) => Promise<T>): Promise<T> {
  if (e.DATABASE_URL) return read(testDb!.database.db)
  const release = acquireDataLock(e.DATA_DIR)
  const database = await openDatabase({ dataDir: e.DATA_DIR })
  try {
    return await read(database.db)
  } finally {
    await database.close()
    release()
  }
}

function csv(name: string, text: string): string {
  const file = join(work, name)
  writeFileSync(file, text)
  return file
}

/** A refusal: exit code 1, and one line on stderr that names the problem (never a stack trace). */
function expectRefused(run: Run, line: string | RegExp) {
  expect(run.code, run.stderr).toBe(1)
  expect(run.json).toBeNull()
  expect(run.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(line)])
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls `read` until `done` holds of what it returns; fails with `what` and the last value past the deadline. */
async function until<T>(
  what: string,
  read: () => Promise<T>,
  done: (v: T) => boolean,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await read()
    if (done(v)) return v
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms (last: ${JSON.stringify(v)})`)
    await sleep(50)
  }
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
    expect(owner.json).toMatchObject({ email: 'owner@acme.test', username: 'owner', role: 'owner' })

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
    // Not a terminal here: progress comes as plain lines, the last one at 100 %, then the summary.
    const lines = imported.stderr.trim().split('\n')
    expect(lines.at(-2)).toMatch(/^import [0-9a-f]{24}: 100\.0% 2\/2 completed_with_errors$/)
    expect(lines.at(-1)).toBe(
      `import ${imported.json.jobId} completed_with_errors: 2 of 2 rows, 1 created, 1 failed`,
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
    // Through the server too; the email's local part is taken (usernames are unique in any case).
    const another = await hearth(e, [
      'admin',
      'create',
      '--email',
      'OWNER@partner.test',
      '--password',
      'correct horse',
      '--community',
      community.json.id,
    ])
    expect(another.code, another.stderr).toBe(0)
    expect(another.json).toMatchObject({ email: 'owner@partner.test', username: null, role: 'owner' })
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
  it('without a server, `hearth import` applies its own job and leaves other queued jobs to the workers', async () => {
    const e = await env()
    const own = await hearth(e, ['community', 'create', '--name', 'Own'])
    const other = await hearth(e, ['community', 'create', '--name', 'Other'])
    const key = await hearth(e, ['keys', 'create', '--community', other.json.id])
    expect(key.code, key.stderr).toBe(0)
    const api = await startChildServer(e, { args: ['serve', '--no-worker'] })
    servers.push(api)
    const form = new FormData()
    form.append('data', new Blob(['email,first_name\nzed@other.test,Zed\n']), 'other.csv')
    const queued = await fetch(`${api.base}/apis/v1/users/bulk-import`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.json.key}` },
      body: form,
    })
    expect(queued.status).toBe(200)
    const otherJob: string = ((await queued.json()) as any).data.jobId
    await stopChild(api)

    const run = await hearth(e, [
      'import',
      csv('own.csv', 'email,first_name\nann@own.test,Ann\n'),
      '--community',
      own.json.id,
    ])
    expect(run.code, run.stderr).toBe(0)
    expect(run.json).toMatchObject({ status: 'completed', created: 1 })
    const left = await inspect(e, (db) =>
      db
        .selectFrom('bulk_jobs')
        .select(['status', 'processed'])
        .where('id', '=', otherJob)
        .executeTakeFirstOrThrow(),
    )
    expect(left).toEqual({ status: 'queued', processed: 0 })
  }, 180_000)

  it('import --update, --premium-currency and --dry-run print their summary and leave the database as it says; bad invocations are refused in one line', async () => {
    const e = await env()
    const community = await hearth(e, ['community', 'create', '--name', 'Ops'])
    expect(community.code, community.stderr).toBe(0)
    const id: string = community.json.id
    const last = (stderr: string) => stderr.trimEnd().split('\n').pop()

    const seeded = await hearth(e, [
      'import',
      csv('ops-seed.csv', 'email,first_name,xp,coins\nann@ops.test,Ann,10,100\nbob@ops.test,Bob,20,50\n'),
      '--community',
      id,
    ])
    expect(seeded.code, seeded.stderr).toBe(0)
    expect(seeded.json).toMatchObject({ type: 'import', status: 'completed', created: 2, failed: 0 })

    // --update: only the columns present change; <field>_op steers xp and coins; an empty cell keeps the value.
    const updated = await hearth(e, [
      'import',
      csv(
        'ops-update.csv',
        'email,first_name,xp_op,xp,coins_op,coins\n' +
          'ann@ops.test,Annie,add,5,subtract,30\n' +
          'bob@ops.test,,overwrite,3,,\n' +
          'nobody@ops.test,No,add,1,,\n',
      ),
      '--community',
      id,
      '--update',
    ])
    expect(updated.code, updated.stderr).toBe(0)
    expect(updated.json).toMatchObject({
      type: 'update',
      status: 'completed_with_errors',
      dryRun: false,
      total: 3,
      created: 0,
      updated: 2,
      failed: 1,
    })
    expect(last(updated.stderr)).toBe(
      `import ${updated.json.jobId} completed_with_errors: 3 of 3 rows, 2 updated, 1 failed`,
    )

    // --premium-currency: one ledger row per applied row; a row that would go below zero fails alone.
    const premium = await hearth(e, [
      'import',
      csv(
        'ops-premium.csv',
        'email,amount,amount_op,reason\n' +
          'ann@ops.test,50,,welcome\n' +
          'bob@ops.test,10,subtract,\n' +
          'ann@ops.test,20,subtract,fee\n',
      ),
      '--community',
      id,
      '--premium-currency',
    ])
    expect(premium.code, premium.stderr).toBe(0)
    expect(premium.json).toMatchObject({
      type: 'premium_currency',
      status: 'completed_with_errors',
      total: 3,
      updated: 2,
      failed: 1,
    })
    expect(last(premium.stderr)).toBe(
      `import ${premium.json.jobId} completed_with_errors: 3 of 3 rows, 2 updated, 1 failed`,
    )

    // --dry-run: the counts say what the file would do; nothing is written.
    const dry = await hearth(e, [
      'import',
      csv(
        'ops-dry.csv',
        'email,first_name,xp\ncarl@ops.test,Carl,1\nann@ops.test,Ann Again,99\nbad-email,Bad,1\n',
      ),
      '--community',
      id,
      '--dry-run',
    ])
    expect(dry.code, dry.stderr).toBe(0)
    expect(dry.json).toMatchObject({
      type: 'import',
      dryRun: true,
      status: 'completed_with_errors',
      total: 3,
      created: 1,
      updated: 1,
      failed: 1,
    })
    expect(last(dry.stderr)).toBe(
      `import ${dry.json.jobId} dry run completed_with_errors: 3 of 3 rows, 1 would be created, 1 would be updated, 1 would fail (nothing was written)`,
    )

    // Refused before any job starts: exit 1 and one line saying why.
    const both = await hearth(e, [
      'import',
      csv('ops-both.csv', 'email,amount\nann@ops.test,1\n'),
      '--community',
      id,
      '--update',
      '--premium-currency',
    ])
    expectRefused(both, /^conflicting_options: --update and --premium-currency cannot be combined/)
    const missingFile = join(work, 'no-such.csv')
    expectRefused(
      await hearth(e, ['import', missingFile, '--community', id]),
      `file_not_found: No file ${missingFile}`,
    )
    expectRefused(
      await hearth(e, ['import', join(work, 'ops-seed.csv')]),
      'missing_option: --community is required',
    )
    expectRefused(
      await hearth(e, ['import', join(work, 'ops-seed.csv'), '--community', 'ffffffffffffffffffffffff']),
      'community_not_found: No community has the id ffffffffffffffffffffffff',
    )
    expectRefused(
      await hearth(e, ['import', '--community', id]),
      /^Usage: hearth import FILE\|- --community ID/,
    )
    expectRefused(await hearth(e, ['import', work, '--community', id]), `not_a_file: ${work} is not a file`)
    expectRefused(
      await hearth(e, ['import', join(work, 'ops-seed.csv'), join(work, 'ops-dry.csv'), '--community', id]),
      'hearth import takes one FILE, not 2: run it once per file',
    )

    const state = await inspect(e, async (db) => ({
      users: await db
        .selectFrom('users')
        .select(['email', 'first_name', 'xp', 'coins', 'premium'])
        .where('community_id', '=', id)
        .orderBy('email')
        .execute(),
      ledger: await db
        .selectFrom('currency_ledger')
        .innerJoin('users', 'users.id', 'currency_ledger.user_id')
        .select([
          'users.email',
          'currency_ledger.currency',
          'currency_ledger.amount',
          'currency_ledger.balance_after',
          'currency_ledger.reason',
        ])
        .where('currency_ledger.community_id', '=', id)
        .orderBy('currency_ledger.currency')
        .orderBy('users.email')
        .orderBy('currency_ledger.id')
        .execute(),
      jobs: await db
        .selectFrom('bulk_jobs')
        .select(['type', 'dry_run', 'status'])
        .where('community_id', '=', id)
        .orderBy('created_at')
        .execute(),
    }))
    expect(state.users).toEqual([
      { email: 'ann@ops.test', first_name: 'Annie', xp: 15, coins: 70, premium: 30 },
      { email: 'bob@ops.test', first_name: 'Bob', xp: 3, coins: 50, premium: 0 },
    ])
    const ledger = (currency: string) =>
      state.ledger
        .filter((r) => r.currency === currency)
        .map((r) => [r.email, r.amount, r.balance_after, r.reason])
    expect(ledger('premium')).toEqual([
      ['ann@ops.test', 50, 50, 'welcome'],
      ['ann@ops.test', -20, 30, 'fee'],
    ])
    // The dry run's xp 99 for Ann left no ledger row; the update's moves did.
    expect(ledger('xp').map(([email, amount, balance]) => [email, amount, balance])).toEqual([
      ['ann@ops.test', 10, 10],
      ['ann@ops.test', 5, 15],
      ['bob@ops.test', 20, 20],
      ['bob@ops.test', -17, 3],
    ])
    // The refused invocations started no job.
    expect(state.jobs).toEqual([
      { type: 'import', dry_run: false, status: 'completed' },
      { type: 'update', dry_run: false, status: 'completed_with_errors' },
      { type: 'premium_currency', dry_run: false, status: 'completed_with_errors' },
      { type: 'import', dry_run: true, status: 'completed_with_errors' },
    ])
  }, 240_000)

  it('a job that fails as a whole exits 2 and says why; nothing is written', async () => {
    const e = await env()
    const community = await hearth(e, ['community', 'create', '--name', 'Twice'])
    const id: string = community.json.id
    const failed = await hearth(e, [
      'import',
      csv('twice.csv', 'email,first_name,email\nann@twice.test,Ann,ann2@twice.test\n'),
      '--community',
      id,
    ])
    expect(failed.code, failed.stderr).toBe(2)
    expect(failed.json).toMatchObject({
      status: 'failed',
      processed: 0,
      error: { code: 'duplicate_column', message: 'The column "email" appears twice' },
    })
    expect(failed.stderr.trimEnd().split('\n').pop()).toBe(
      `import ${failed.json.jobId} failed: duplicate_column: The column "email" appears twice; no row was applied`,
    )
    const users = await inspect(e, (db) =>
      db.selectFrom('users').select('id').where('community_id', '=', id).execute(),
    )
    expect(users).toEqual([])
  }, 120_000)

  it('a job cancelled while the CLI waits for it exits 3 and says so', async () => {
    const e = await env()
    const community = await hearth(e, ['community', 'create', '--name', 'Cancel'])
    const id: string = community.json.id
    const file = csv('cancel.csv', 'email,first_name\nann@cancel.test,Ann\nbob@cancel.test,Bob\n')
    const run = await heldImport(e, id, file, async (held) => {
      const job = await held.job()
      if (held.server) {
        const cancel = await fetch(`${held.server.base}/apis/v1/users/bulk-updates/${job.jobId}/cancel`, {
          method: 'POST',
          headers: held.auth,
        })
        expect(cancel.status).toBe(200)
      } else {
        await testDb!.database.db
          .updateTable('bulk_jobs')
          .set({ cancel_requested: true })
          .where('id', '=', job.jobId)
          .execute()
      }
    })
    await expectCancelledUnapplied(e, id, run)
  }, 180_000)

  it('Ctrl-C while the CLI waits cancels the job: exit 3, nothing applied', async () => {
    const e = await env()
    const community = await hearth(e, ['community', 'create', '--name', 'Interrupt'])
    const id: string = community.json.id
    const file = csv('interrupt.csv', 'email,first_name\nann@interrupt.test,Ann\nbob@interrupt.test,Bob\n')
    const run = await heldImport(e, id, file, async (held) => {
      // Once the CLI reports on its job, it listens for Ctrl-C.
      const job = await held.job()
      for (let i = 0; i < 300 && !held.cli.stderr().includes(`import ${job.jobId}: `); i++) await sleep(100)
      held.cli.child.kill('SIGINT')
      for (let i = 0; i < 300 && !held.cli.stderr().includes('cancelling'); i++) await sleep(100)
    })
    expect(run.stderr).toContain(
      `import ${run.json?.jobId}: cancelling (the rows applied so far stay); press Ctrl-C again to stop waiting`,
    )
    await expectCancelledUnapplied(e, id, run)
  }, 180_000)

  it('Ctrl-C during the upload (from a named pipe) cancels the job as soon as it is queued: exit 3, nothing applied', async () => {
    const e = await env()
    const community = await hearth(e, ['community', 'create', '--name', 'Pipe'])
    const id: string = community.json.id
    const pipe = join(work, `upload-${id}.fifo`)
    execFileSync('mkfifo', [pipe])
    const run = await heldImport(e, id, pipe, async (held) => {
      // Opening the pipe returns once the upload has opened it to read: the CLI listens by then.
      const writer = await open(pipe, 'w')
      await writer.write('email,first_name\nann@pipe.test,Ann\n')
      held.cli.child.kill('SIGINT')
      for (let i = 0; i < 300 && !held.cli.stderr().includes('cancelling'); i++) await sleep(100)
      await writer.write('bob@pipe.test,Bob\n')
      await writer.close()
    })
    expect(run.stderr).toContain(
      'import: cancelling: the job is cancelled as soon as the upload is queued, before any row applies',
    )
    expect(run.json, run.stderr).toMatchObject({ fileName: `upload-${id}.fifo`, total: 2 })
    await expectCancelledUnapplied(e, id, run)
  }, 180_000)

  it('during the upload a second Ctrl-C keeps waiting to cancel, a third ends the CLI at once, by the signal', async () => {
    const e = await env()
    const community = await hearth(e, ['community', 'create', '--name', 'Quit'])
    const id: string = community.json.id
    const pipe = join(work, `quit-${id}.fifo`)
    execFileSync('mkfifo', [pipe])
    const run = await heldImport(e, id, pipe, async (held) => {
      const writer = await open(pipe, 'w')
      await writer.write('email,first_name\nann@quit.test,Ann\n')
      for (const [i, said] of ['cancelling', 'still uploading'].entries()) {
        held.cli.child.kill('SIGINT')
        for (let n = 0; n < 300 && !held.cli.stderr().includes(said); n++) await sleep(100)
        expect(held.cli.stderr(), `interrupt ${i + 1}`).toContain(said)
      }
      held.cli.child.kill('SIGINT')
      const quit = await held.cli.done
      await writer.close()
      // Ended by the signal itself, as a shell reports with status 130.
      expect([quit.code, quit.signal]).toEqual([-1, 'SIGINT'])
    })
    expect(run.json).toBeNull()
    expect(run.stderr).toContain(
      'import: still uploading, to cancel the job once queued; press Ctrl-C again to quit at once (the upload then breaks off: no job)',
    )
  }, 180_000)

  it('with a server running, an import killed while its pipe is silent leaves no reader on the pipe and no job; the server imports on', async () => {
    const onPostgres = Boolean(process.env.DATABASE_URL)
    const e = await env()
    const community = await hearth(e, ['community', 'create', '--name', 'Killed'])
    const id: string = community.json.id
    const key = await hearth(e, ['keys', 'create', '--community', id, '--permissions', 'bulkUpdateUser'])
    expect(key.code, key.stderr).toBe(0)
    const auth = { authorization: `Bearer ${key.json.key}` }
    const server = await startChildServer(e)
    servers.push(server)
    const pipe = join(work, `killed-${id}.fifo`)
    execFileSync('mkfifo', [pipe])
    const pieces = (db: Kysely<DB>) =>
      db
        .selectFrom('bulk_files')
        .select('seq')
        .where('community_id', '=', id)
        .execute()
        .then((rows) => rows.length)
    /** Opening a FIFO to write without blocking fails with ENXIO exactly when no process has it open to read. */
    const hasReader = () => {
      try {
        closeSync(openSync(pipe, constants.O_WRONLY | constants.O_NONBLOCK))
        return true
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENXIO') return false
        throw err
      }
    }
    try {
      const cli = startHearth(e, ['import', pipe, '--community', id])
      // Resolves once the upload has opened the pipe to read.
      const writer = await open(pipe, 'w')
      try {
        // 2.5 MiB (two pieces stored), then silence: the writer neither writes nor closes.
        const rows = Array.from({ length: 80_000 }, (_, i) => `cut${i}@killed.test,Name ${i}`).join('\n')
        const head = Buffer.from(`email,first_name\n${rows}\n`).subarray(0, 2.5 * 1024 * 1024)
        await writer.write(head)
        if (onPostgres) {
          // Here the CLI stores the pieces itself; see them arrive.
          for (let i = 0; i < 300 && (await pieces(testDb!.database.db)) < 2; i++) await sleep(100)
          expect(await pieces(testDb!.database.db)).toBeGreaterThanOrEqual(2)
        } else await sleep(1500)
        expect(hasReader()).toBe(true)

        cli.child.kill('SIGKILL')
        const killed = await cli.done
        expect(killed.signal).toBe('SIGKILL')
        for (let i = 0; i < 100 && hasReader(); i++) await sleep(100)
        // Nothing reads the pipe any more: the server holds no descriptor of it (nor a thread blocked on it).
        expect.soft(hasReader()).toBe(false)

        // The writer finishes late: nobody takes the rest, and no job appears from the part sent.
        await writer.write('late@killed.test,Late\n').catch(() => {})
      } finally {
        await writer.close().catch(() => {})
      }
      await sleep(1000)
      const jobs = async () =>
        ((await (await fetch(`${server.base}${JOBS}`, { headers: auth })).json()) as any).data.jobs as any[]
      expect(await jobs()).toEqual([])
      if (!onPostgres) expect(server.log()).not.toMatch(/error|exception/i)

      // The server still answers, and runs the next import, from a pipe, to its end.
      const next = await hearth(e, [
        'import',
        csv(`killed-next-${id}.csv`, 'email,first_name\nann@killed.test,Ann\nbob@killed.test,Bob\n'),
        '--community',
        id,
      ])
      expect(next.code, next.stderr).toBe(0)
      expect(next.json).toMatchObject({ status: 'completed', total: 2, created: 2 })
      expect((await jobs()).map((j) => [j.jobId, j.status])).toEqual([[next.json.jobId, 'completed']])
      expect((await fetch(`${server.base}/readyz`)).status).toBe(200)
      expect(server.child.exitCode).toBeNull()
    } finally {
      await stopChild(server)
    }
    // On PGlite the server stored the pieces and deleted them when the upload broke off. (On
    // PostgreSQL the killed CLI stored them itself; the sweeper deletes them after an hour idle.)
    if (!onPostgres) expect(await inspect(e, pieces)).toBe(0)
  }, 180_000)

  it('with a server running, imports from standard input and from a process substitution take every row', async () => {
    const e = await env()
    const community = await hearth(e, ['community', 'create', '--name', 'Streams'])
    const id: string = community.json.id
    const server = await startChildServer(e)
    servers.push(server)
    try {
      // 40,000 rows, over a MiB: the upload is stored in several pieces.
      const lines = ['email,first_name,xp']
      for (let i = 0; i < 40_000; i++) lines.push(`in${i}@streams.test,Streamed ${i},${i % 7}`)
      const text = `${lines.join('\n')}\n`
      expect(text.length).toBeGreaterThan(1024 * 1024)
      const cli = startHearth(e, [], {
        stdin: 'pipe',
        shell: `cat | "$0" bin/hearth.mjs import - --community ${id}`,
      })
      const stdin = cli.child.stdin!
      stdin.on('error', () => {}) // a CLI that quit early: its exit code tells
      // In pieces, as a producer writes them.
      for (let at = 0; at < text.length; at += 64 * 1024)
        await new Promise((r) => stdin.write(text.slice(at, at + 64 * 1024), r))
      stdin.end()
      const fromStdin = await cli.done
      expect(fromStdin.code, fromStdin.stderr).toBe(0)
      expect(fromStdin.json).toMatchObject({
        fileName: 'stdin.csv',
        status: 'completed',
        total: 40_000,
        processed: 40_000,
        created: 40_000,
        failed: 0,
      })

      const file = csv(
        `streams-${id}.csv`,
        'email,first_name\nin0@streams.test,Renamed\nnew@streams.test,New\n',
      )
      const substituted = await startHearth(e, [], {
        shell: `exec "$0" bin/hearth.mjs import <(cat '${file}') --community ${id}`,
      }).done
      expect(substituted.code, substituted.stderr).toBe(0)
      expect(substituted.json).toMatchObject({
        fileName: 'pipe.csv',
        status: 'completed',
        total: 2,
        created: 1,
        updated: 1,
      })
    } finally {
      await stopChild(server)
    }
    const users = await inspect(e, (db) =>
      db
        .selectFrom('users')
        .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.sum<number>('xp').as('xp')])
        .where('community_id', '=', id)
        .executeTakeFirstOrThrow(),
    )
    let xp = 0
    for (let i = 0; i < 40_000; i++) xp += i % 7
    expect({ n: Number(users.n), xp: Number(users.xp) }).toEqual({ n: 40_001, xp })
  }, 240_000)

  // PostgreSQL only: on PGlite the CLI hands its job to the running server and never applies it.
  if (process.env.DATABASE_URL)
    it('on PostgreSQL, an import whose job a server worker holds is taken over by the CLI when that server is killed mid-job: every row applied once', async () => {
      const e = await env()
      const { db } = testDb!.database
      const community = await hearth(e, ['community', 'create', '--name', 'Takeover'])
      expect(community.code, community.stderr).toBe(0)
      const id: string = community.json.id
      const ROWS = 3000
      // xp is never 0 (one xp ledger row per user), coins is 0 for one row in 7 (no coins row then).
      const xpOf = (i: number) => (i % 50) + 1
      const coinsOf = (i: number) => i % 7
      const lines = ['email,first_name,xp,coins']
      for (let i = 0; i < ROWS; i++) lines.push(`t${i}@takeover.test,Taken ${i},${xpOf(i)},${coinsOf(i)}`)
      const file = csv(`takeover-${id}.csv`, `${lines.join('\n')}\n`)
      // Small chunks, each held 0.3 s, so the job spans several seconds; a 3 s lease, renewed by each chunk.
      const jobEnv = { ...e, BULK_LEASE_SECONDS: '3', BULK_CHUNK_ROWS: '200' }
      const server = await startChildServer({ ...jobEnv, DATA_DIR: mkdtempSync(join(work, 'takeover-')) })
      servers.push(server)
      const serverOwns = `:${server.child.pid}:` // instance ids are host:pid:random
      // Both processes race to claim the new job and the CLI, polling, would nearly always win: here
      // a job of this community that no worker has held yet can be claimed by the server alone.
      await sql
        .raw(`CREATE OR REPLACE FUNCTION test_claim_gate() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            IF NEW.community_id = '${id}' AND OLD.lease_owner IS NULL AND NEW.lease_owner IS NOT NULL
              AND position('${serverOwns}' in NEW.lease_owner) = 0 THEN
              RETURN NULL;
            END IF;
            RETURN NEW;
          END $$`)
        .execute(db)
      await sql`CREATE TRIGGER test_claim_gate BEFORE UPDATE ON bulk_jobs
        FOR EACH ROW EXECUTE FUNCTION test_claim_gate()`.execute(db)
      await slowChunks(db, 0.3)
      let launched: ReturnType<typeof startHearth> | null = null
      try {
        const cli = startHearth(jobEnv, ['import', file, '--community', id])
        launched = cli
        const job = () =>
          db
            .selectFrom('bulk_jobs')
            .select(['id', 'status', 'processed', 'lease_owner', 'lease_until'])
            .where('community_id', '=', id)
            .executeTakeFirst()
        // The server's worker holds the job and has committed some chunks, not all.
        const held = await until(
          'the server applies the job',
          job,
          (j) => j !== undefined && j.processed >= 400,
        )
        expect(held!.lease_owner).toContain(serverOwns)
        expect(held!.processed).toBeLessThan(ROWS)
        expect(cli.child.exitCode).toBeNull()
        await stopChild(server, 'SIGKILL')
        const killedAt = (await sql<{ now: Date }>`SELECT now()`.execute(db)).rows[0].now
        const left = await job()
        expect(left!.processed).toBeLessThan(ROWS)

        // The lease lapses within 3 s; the CLI then takes the job over and finishes it.
        let timer: NodeJS.Timeout | undefined
        const run = await Promise.race([
          cli.done,
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () =>
                reject(new Error(`the CLI did not finish the job after the server died: ${cli.stderr()}`)),
              30_000,
            )
          }),
        ]).finally(() => clearTimeout(timer))
        expect(run.code, run.stderr).toBe(0)
        expect(run.json).toMatchObject({
          jobId: held!.id,
          status: 'completed',
          total: ROWS,
          processed: ROWS,
          created: ROWS,
          updated: 0,
          failed: 0,
        })
        expect(run.stderr.trimEnd().split('\n').pop()).toBe(
          `import ${held!.id} completed: ${ROWS} of ${ROWS} rows, ${ROWS} created, 0 failed`,
        )
        expect(run.stderr).not.toContain('broke off')
        // It said so: first standing by, then taking over.
        const standing = run.stderr.indexOf(`import ${held!.id}: another worker is applying it`)
        const taking = run.stderr.indexOf(`import ${held!.id}: the other worker stopped; applying it here`)
        expect(standing).toBeGreaterThanOrEqual(0)
        expect(taking).toBeGreaterThan(standing)

        // Chunks were committed both before the server died and after: the rest by the CLI, which
        // began once the server's lease had lapsed.
        const chunks = await db
          .selectFrom('bulk_job_chunks')
          .select(['first_row', 'lines', 'actions', 'started_at', 'booked_at'])
          .where('job_id', '=', held!.id)
          .orderBy('first_row')
          .execute()
        const before = chunks.filter((c) => c.booked_at! <= killedAt)
        expect(before.length).toBeGreaterThanOrEqual(2)
        expect(before.length).toBeLessThan(chunks.length)
        const after = chunks.filter((c) => c.booked_at! > killedAt)
        for (const c of after)
          expect(c.started_at!.getTime()).toBeGreaterThanOrEqual(left!.lease_until!.getTime())
        // Each row's outcome is booked once: the chunks cover rows 1..ROWS without overlap, all created.
        const rowNos = chunks.flatMap((c) => c.lines.map((_, k) => c.first_row + k))
        expect(rowNos).toEqual(Array.from({ length: ROWS }, (_, k) => k + 1))
        expect(chunks.map((c) => c.actions).join('')).toBe('c'.repeat(ROWS))
        const errors = await db
          .selectFrom('bulk_job_errors')
          .select('row_no')
          .where('job_id', '=', held!.id)
          .execute()
        expect(errors).toEqual([])

        // One user per row, with the file's balances, and exactly the ledger rows the file implies.
        const users = await sql<{
          email: string
          xp: number
          coins: number
          xp_rows: number
          coin_rows: number
          xp_sum: number
          coin_sum: number
        }>`
          SELECT u.email, u.xp::int AS xp, u.coins::int AS coins,
            count(*) FILTER (WHERE l.currency = 'xp')::int AS xp_rows,
            count(*) FILTER (WHERE l.currency = 'coins')::int AS coin_rows,
            coalesce(sum(l.amount) FILTER (WHERE l.currency = 'xp'), 0)::int AS xp_sum,
            coalesce(sum(l.amount) FILTER (WHERE l.currency = 'coins'), 0)::int AS coin_sum
          FROM users u LEFT JOIN currency_ledger l ON l.community_id = u.community_id AND l.user_id = u.id
          WHERE u.community_id = ${id}
          GROUP BY u.id, u.email, u.xp, u.coins`.execute(db)
        const byEmail = (a: { email: string }, b: { email: string }) =>
          a.email < b.email ? -1 : a.email > b.email ? 1 : 0
        const want = Array.from({ length: ROWS }, (_, i) => ({
          email: `t${i}@takeover.test`,
          xp: xpOf(i),
          coins: coinsOf(i),
          xp_rows: 1,
          coin_rows: coinsOf(i) > 0 ? 1 : 0,
          xp_sum: xpOf(i),
          coin_sum: coinsOf(i),
        })).sort(byEmail)
        expect(users.rows.sort(byEmail)).toEqual(want)
        const ledger = await db
          .selectFrom('currency_ledger')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('community_id', '=', id)
          .executeTakeFirstOrThrow()
        expect(Number(ledger.n)).toBe(want.reduce((n, u) => n + u.xp_rows + u.coin_rows, 0))
      } finally {
        await stopChild(server, 'SIGKILL')
        // A CLI that never finished (the test failed) must not outlive it.
        if (launched?.child.exitCode === null && launched.child.signalCode === null)
          launched.child.kill('SIGKILL')
        await sql`DROP TRIGGER IF EXISTS test_slow_chunk ON bulk_job_chunks`.execute(db)
        await sql`DROP TRIGGER IF EXISTS test_claim_gate ON bulk_jobs`.execute(db)
      }
    }, 120_000)
})

/**
 * Runs `hearth import` on a job no worker applies until `act` has run: on PGlite the CLI hands the
 * job to a server without a worker, where it stays queued; on PostgreSQL the CLI runs the job in its
 * own worker, and a SHARE lock on users keeps it from writing any row until then (its chunk then
 * sees a cancel and rolls back, whether the job was still queued or already applying).
 */
async function heldImport(
  e: Record<string, string>,
  communityId: string,
  file: string,
  act: (held: {
    cli: ReturnType<typeof startHearth>
    server: ChildServer | null
    auth: Record<string, string>
    job: () => Promise<{ jobId: string }>
  }) => Promise<void>,
): Promise<Run> {
  if (!e.DATABASE_URL) {
    const key = await hearth(e, [
      'keys',
      'create',
      '--community',
      communityId,
      '--permissions',
      'bulkUpdateUser',
    ])
    expect(key.code, key.stderr).toBe(0)
    const auth = { authorization: `Bearer ${key.json.key}` }
    const server = await startChildServer(e, { args: ['serve', '--no-worker'] })
    servers.push(server)
    try {
      const cli = startHearth(e, ['import', file, '--community', communityId])
      const job = async () => {
        for (let i = 0; i < 300; i++) {
          const list = await fetch(`${server.base}/apis/v1/users/bulk-updates`, { headers: auth })
          const first = ((await list.json()) as any).data.jobs[0]
          if (first) return first as { jobId: string }
          await sleep(100)
        }
        throw new Error('no job appeared')
      }
      await act({ cli, server, auth, job })
      return await cli.done
    } finally {
      await stopChild(server)
    }
  }
  const lock = new pg.Client({ connectionString: e.DATABASE_URL })
  await lock.connect()
  try {
    await lock.query('BEGIN')
    await lock.query('LOCK TABLE users IN SHARE MODE')
    const cli = startHearth(e, ['import', file, '--community', communityId])
    const job = async () => {
      for (let i = 0; i < 300; i++) {
        const row = await testDb!.database.db
          .selectFrom('bulk_jobs')
          .select('id')
          .where('community_id', '=', communityId)
          .executeTakeFirst()
        if (row) return { jobId: row.id }
        await sleep(100)
      }
      throw new Error('no job appeared')
    }
    await act({ cli, server: null, auth: {}, job })
    await lock.query('COMMIT')
    return await cli.done
  } finally {
    await lock.end()
  }
}

async function expectCancelledUnapplied(e: Record<string, string>, communityId: string, run: Run) {
  expect(run.code, run.stderr).toBe(3)
  expect(run.json).toMatchObject({ status: 'cancelled', cancelRequested: true, processed: 0 })
  expect(run.stderr.trimEnd().split('\n').pop()).toBe(
    `import ${run.json.jobId} cancelled on request; no row was applied`,
  )
  const users = await inspect(e, (db) =>
    db.selectFrom('users').select('id').where('community_id', '=', communityId).execute(),
  )
  expect(users).toEqual([])
}

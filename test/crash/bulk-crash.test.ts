import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type RawBuilder, sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openDatabase } from '../../src/lib/db/database.ts'
import { type ChildServer, startChildServer, stopChild } from '../support/child-server.ts'
import { createTestDatabase, type TestDatabase } from '../support/database.ts'

/**
 * A worker killed with SIGKILL in the middle of a job, then started again, must leave exactly what
 * the files call for, as an uninterrupted run does: the counts of each job, the users, their field
 * histories and the ledger, row for row (worked out from the rows in `expected`).
 */
// 100k rows on both databases; on PostgreSQL the worker applies two chunks at once, so the kill
// can land with a later chunk committed before an earlier one.
const ROWS = 100_000
/**
 * Rows of the bulk update file (`xp_op add` applied twice would double: the riskiest job to resume).
 * 100k as well: the update part added 28 s on PGlite and 14 s on PostgreSQL (quiet machine).
 */
const UPDATE_ROWS = 100_000
const work = mkdtempSync(join(tmpdir(), 'hearth-crash-'))
let testDb: TestDatabase | null = null
let env: Record<string, string>
let server: ChildServer

const importCsv = join(work, 'import.csv')
const premiumCsv = join(work, 'premium.csv')
const updateCsv = join(work, 'update.csv')

/** Row `i` of the import file. */
function importRow(i: number) {
  // Every 997th row is bad (a failed row must stay failed, counted once). In the second half the
  // last three rows of every 1000 name the user of the row before them, so that user comes four
  // times in a chunk: those chunks are played (bulk.users-play.ts), those of the first half go
  // through the set-based SQL, so the kill and the resume meet both.
  const repeat = i >= ROWS / 2 && i % 1000 >= 997
  return {
    email: `u${repeat ? i - (i % 1000) + 996 : i}@crash.test`,
    firstName: `First, ${i}`,
    xp: i % 997 === 0 ? 'abc' : String(i % 300),
    coins: i % 50,
    deposit: i % 7,
    tier: i % 2 ? 'gold' : 'silver',
  }
}

/** Row `i` of the premium file: one row per user in the first half (set-based), then users named three times a chunk (played). */
function premiumRow(i: number) {
  return {
    email: `u${i < ROWS / 2 ? i : i % 1000}@crash.test`,
    op: i % 5 === 4 ? 'subtract' : 'add',
    amount: (i % 9) + 1,
  }
}

/** A hash of a number, so that a user named every 1000 rows meets every op and amount, not always the same. */
function mix(n: number) {
  let x = Math.imul(n ^ (n >>> 16), 0x45d9f3b)
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b)
  return (x ^ (x >>> 16)) >>> 0
}

type Change = [op: string, value: string]

/**
 * Row `i` of the update file (email,xp_op,xp,coins_op,coins,deposit_op,deposit,tier): ops add,
 * subtract, overwrite and empty (= overwrite), empty values (= unchanged), subtracts that would
 * take xp or coins below zero, a few bad rows (an op in the wrong case, a number that is none, a
 * negative amount with add/subtract, a deposit that is no number, an email nobody has) and a
 * row every 1000 that changes nothing. In the first half each user comes once (set-based SQL);
 * in the second half 1000 users come three times each per chunk of 3000 (played).
 */
function updateRow(i: number) {
  const pick = <T>(options: readonly T[], k: number): T => options[mix(i * 8 + k) % options.length]
  const amount = (k: number, below: number) => String(mix(i * 8 + k) % below)
  const email =
    i % 1009 === 500
      ? `ghost${i}@crash.test`
      : i < UPDATE_ROWS / 2
        ? `u${i}@crash.test`
        : `u${ROWS / 2 + (i % 1000)}@crash.test`
  if (i % 1000 === 999) {
    const none: Change = ['', '']
    return { email, xp: none, coins: none, deposit: none, tier: '' }
  }
  const xp: Change = [
    i % 1013 === 11 ? 'Add' : pick(['add', 'add', 'subtract', 'overwrite', ''], 0),
    i % 1021 === 13 ? '1x' : i % 1031 === 17 ? '-5' : pick(['', amount(1, 40)], 2),
  ]
  const coins: Change = [pick(['add', 'subtract', 'subtract', 'overwrite'], 3), pick(['', amount(4, 30)], 5)]
  const deposit: Change = [
    i % 1019 === 19 ? 'plus' : pick(['add', 'subtract', 'overwrite', ''], 6),
    i % 1033 === 23 ? 'lots' : pick(['', '', amount(7, 9)], 1),
  ]
  return { email, xp, coins, deposit, tier: pick(['', 'gold', 'silver', 'bronze'], 4) }
}

function writeFiles() {
  const lines = ['email,first_name,xp,coins,deposit,tier']
  for (let i = 0; i < ROWS; i++) {
    const r = importRow(i)
    lines.push(`${r.email},"${r.firstName}",${r.xp},${r.coins},${r.deposit},${r.tier}`)
  }
  writeFileSync(importCsv, `${lines.join('\n')}\n`)
  const p = ['email,amount_op,amount,reason']
  for (let i = 0; i < ROWS; i++) {
    const r = premiumRow(i)
    p.push(`${r.email},${r.op},${r.amount},crash test`)
  }
  writeFileSync(premiumCsv, `${p.join('\n')}\n`)
  const u = ['email,xp_op,xp,coins_op,coins,deposit_op,deposit,tier']
  for (let i = 0; i < UPDATE_ROWS; i++) {
    const r = updateRow(i)
    u.push([r.email, ...r.xp, ...r.coins, ...r.deposit, r.tier].join(','))
  }
  writeFileSync(updateCsv, `${u.join('\n')}\n`)
}

const OPS = ['add', 'subtract', 'overwrite']

type Changes = { xp?: [string, number]; coins?: [string, number]; deposit?: [string, number] }

/**
 * An update row as checked before the database: the first column at fault, in column order, its op
 * cell before its value (an empty op overwrites, an invalid one fails even without a value; xp and
 * coins take whole numbers, not negative with add or subtract; the deposit any number), else the
 * changes it asks for (an empty value asks for none).
 */
function checkUpdate(
  r: ReturnType<typeof updateRow>,
): { code: string; field: string } | { changes: Changes } {
  const changes: Changes = {}
  for (const f of ['xp', 'coins', 'deposit'] as const) {
    const op = r[f][0] || 'overwrite'
    const raw = r[f][1]
    if (!OPS.includes(op)) return { code: 'invalid_op', field: `${f}_op` }
    if (raw === '') continue
    if (f === 'deposit' ? !Number.isFinite(Number(raw)) : !/^[+-]?\d+$/.test(raw))
      return { code: f === 'deposit' ? 'invalid_value' : 'invalid_number', field: f }
    if (f !== 'deposit' && Number(raw) < 0 && op !== 'overwrite') return { code: 'invalid_number', field: f }
    changes[f] = [op, Number(raw)]
  }
  return { changes }
}

const applyOp = (current: number, [op, n]: [string, number]) =>
  op === 'add' ? current + n : op === 'subtract' ? current - n : n

const md5 = (lines: string[]) =>
  createHash('md5')
    .update([...lines].sort().join('\n'))
    .digest('hex')

/**
 * What the two files must leave, worked out from the rows alone, one by one in file order: the
 * counts of each job and, in the form `fingerprint` reads them, the users, the field histories and
 * the ledger. A row whose xp is not a number fails; a row whose user exists updates it (its first
 * name always differs), else creates it; xp, coins and the custom fields are overwritten, each
 * changed balance writes one ledger row (xp, coins: `bulk:<job>:<row>:<currency>`, reason
 * "bulk job <job>") and each changed custom field one history row. A premium row names an existing
 * user or fails, and fails if it would take the balance below 0; else it writes one ledger row
 * (`bulk:<job>:<row>`, the file's reason). An update row that passes its checks (`checkUpdate`) names
 * an existing user or fails; its ops apply to the balances and the deposit as they stand after the
 * rows before it; it fails if xp (named first) or coins would end below 0, is skipped if it changes
 * nothing, else writes a ledger row per changed balance (`bulk:<job>:<row>:<currency>`) and a history
 * row per changed custom field. Its failed rows are listed as `row|code|field`.
 */
function expected() {
  type User = { firstName: string; xp: number; coins: number; premium: number; deposit: number; tier: string }
  const users = new Map<string, User>()
  const ledger: Record<'xp' | 'coins' | 'premium', string[]> = { xp: [], coins: [], premium: [] }
  const sums = { xp: 0, coins: 0, premium: 0 }
  const histories: Record<'deposit' | 'tier', string[]> = { deposit: [], tier: [] }
  const importJob = { created: 0, updated: 0, skipped: 0, failed: 0 }
  for (let i = 0; i < ROWS; i++) {
    const r = importRow(i)
    if (!/^\d+$/.test(r.xp)) {
      importJob.failed++
      continue
    }
    const old = users.get(r.email)
    const next: User = {
      firstName: r.firstName,
      xp: Number(r.xp),
      coins: r.coins,
      premium: 0,
      deposit: r.deposit,
      tier: r.tier,
    }
    for (const c of ['xp', 'coins'] as const) {
      const before = old?.[c] ?? 0
      if (next[c] === before) continue
      ledger[c].push(
        `${r.email}|bulk_import|bulk job IMPORT|bulk:IMPORT:${i + 1}:${c}|${next[c] - before}|${next[c]}`,
      )
      sums[c] += next[c] - before
    }
    for (const f of ['deposit', 'tier'] as const) {
      const before = old ? JSON.stringify(old[f]) : '~'
      if (JSON.stringify(next[f]) !== before)
        histories[f].push(`${r.email}|${before}|${JSON.stringify(next[f])}|bulk_import|IMPORT`)
    }
    if (!old) importJob.created++
    else if (JSON.stringify(old) === JSON.stringify(next)) importJob.skipped++
    else importJob.updated++
    users.set(r.email, next)
  }
  const premiumJob = { created: 0, updated: 0, skipped: 0, failed: 0 }
  for (let i = 0; i < ROWS; i++) {
    const r = premiumRow(i)
    const u = users.get(r.email)
    const next = u ? u.premium + (r.op === 'subtract' ? -r.amount : r.amount) : -1
    if (!u || next < 0) premiumJob.failed++
    else if (next === u.premium) premiumJob.skipped++
    else {
      premiumJob.updated++
      ledger.premium.push(
        `${r.email}|bulk_premium_currency|crash test|bulk:PREMIUM:${i + 1}|${next - u.premium}|${next}`,
      )
      sums.premium += next - u.premium
      u.premium = next
    }
  }
  const updateJob = { created: 0, updated: 0, skipped: 0, failed: 0 }
  const updateErrors: string[] = []
  for (let i = 0; i < UPDATE_ROWS; i++) {
    const r = updateRow(i)
    const fail = (code: string, field: string) => {
      updateJob.failed++
      updateErrors.push(`${i + 1}|${code}|${field}`)
    }
    const checked = checkUpdate(r)
    if (!('changes' in checked)) {
      fail(checked.code, checked.field)
      continue
    }
    const { changes } = checked
    const u = users.get(r.email)
    if (!u) {
      fail('user_not_found', 'email')
      continue
    }
    const next: User = {
      ...u,
      xp: changes.xp ? applyOp(u.xp, changes.xp) : u.xp,
      coins: changes.coins ? applyOp(u.coins, changes.coins) : u.coins,
      deposit: changes.deposit ? applyOp(u.deposit, changes.deposit) : u.deposit,
      tier: r.tier || u.tier,
    }
    if (next.xp < 0) fail('negative_balance', 'xp')
    else if (next.coins < 0) fail('negative_balance', 'coins')
    else if (JSON.stringify(next) === JSON.stringify(u)) updateJob.skipped++
    else {
      updateJob.updated++
      for (const c of ['xp', 'coins'] as const) {
        if (next[c] === u[c]) continue
        ledger[c].push(
          `${r.email}|bulk_update|bulk job UPDATE|bulk:UPDATE:${i + 1}:${c}|${next[c] - u[c]}|${next[c]}`,
        )
        sums[c] += next[c] - u[c]
      }
      for (const f of ['deposit', 'tier'] as const) {
        if (next[f] !== u[f])
          histories[f].push(
            `${r.email}|${JSON.stringify(u[f])}|${JSON.stringify(next[f])}|bulk_update|UPDATE`,
          )
      }
      users.set(r.email, next)
    }
  }
  const userLines = [...users].map(
    ([email, u]) => `${email}|${u.firstName}|${u.xp}|${u.coins}|${u.premium}|${u.deposit}|${u.tier}|{}`,
  )
  return {
    importJob,
    premiumJob,
    updateJob,
    fingerprint: {
      users: { n: users.size, h: md5(userLines) },
      ledger: (['coins', 'premium', 'xp'] as const).map((currency) => ({
        currency,
        n: ledger[currency].length,
        sum: sums[currency],
        h: md5(ledger[currency]),
      })),
      histories: (['deposit', 'tier'] as const).map((field) => ({
        field,
        n: histories[field].length,
        h: md5(histories[field]),
      })),
      updateErrors: { n: updateErrors.length, h: md5(updateErrors) },
    },
  }
}

async function cli(args: string[]) {
  const child = spawn(process.execPath, ['bin/hearth.mjs', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  const code = await new Promise((r) => child.once('exit', r))
  if (code !== 0) throw new Error(`hearth ${args.join(' ')}: ${err}`)
  return JSON.parse(out)
}

async function api(path: string, key: string, init: RequestInit = {}) {
  const res = await fetch(`${server.base}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${key}`, ...(init.headers ?? {}) },
  })
  const body: any = await res.json()
  if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`)
  return body
}

async function upload(key: string, path: string, file: string): Promise<string> {
  const form = new FormData()
  const { openAsBlob } = await import('node:fs')
  form.append('data', await openAsBlob(file), 'rows.csv')
  return (await api(path, key, { method: 'POST', body: form })).data.jobId
}

/** The job state last read, for the message of a wait that times out. */
let lastSeen: unknown = null

async function jobOf(key: string, jobId: string) {
  const job = (await api(`/apis/v1/users/bulk-updates/${jobId}`, key)).data
  lastSeen = counts(job)
  return job
}

async function until<T>(what: string, fn: () => Promise<T | null>, timeoutMs = 240_000): Promise<T> {
  const end = Date.now() + timeoutMs
  let error: unknown = null
  for (;;) {
    const v = await fn().catch((err) => {
      error = err
      return null
    })
    if (v) return v
    // A server that died answers nothing: say so at once, with its log, instead of timing out.
    const { exitCode, signalCode } = server.child
    if (exitCode !== null || signalCode !== null)
      throw new Error(
        `the server exited (${exitCode ?? signalCode}) during ${what}:\n${server.log().slice(-4000)}`,
      )
    if (Date.now() > end) {
      const state = `last job state ${JSON.stringify(lastSeen)}, last error ${String(error)}`
      throw new Error(`timed out waiting for ${what} (${state}); server log:\n${server.log().slice(-4000)}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}

const DONE = ['completed', 'completed_with_errors', 'failed', 'cancelled']

async function setupCommunity(name: string) {
  const community = await cli(['community', 'create', '--name', name])
  const { key } = await cli(['keys', 'create', '--community', community.id])
  for (const [field, type] of [
    ['deposit', 'number'],
    ['tier', 'text'],
  ]) {
    await api(`/apis/v1/communities/${community.id}/user-fields`, key, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ field, name: field, type }),
    })
  }
  return { id: community.id as string, key: key as string }
}

/**
 * Runs a job, SIGKILLs the server as soon as it has seen between 20 % and 80 % of the rows committed
 * (the kill follows that reading at once; a chunk may commit in between), restarts it, waits.
 */
async function runWithCrash(key: string, path: string, file: string, rows = ROWS) {
  const jobId = await upload(key, path, file)
  const seen = await until('progress', async () => {
    const j = await jobOf(key, jobId)
    return j.processed >= rows * 0.2 ? j : null
  })
  expect(seen.processed, 'the kill lands mid-job').toBeLessThanOrEqual(rows * 0.8)
  await stopChild(server, 'SIGKILL')
  server = await startChildServer(env)
  return {
    jobId,
    job: await until('job end', async () => {
      const j = await jobOf(key, jobId)
      return DONE.includes(j.status) ? j : null
    }),
  }
}

async function runPlain(key: string, path: string, file: string) {
  const jobId = await upload(key, path, file)
  return {
    jobId,
    job: await until('job end', async () => {
      const j = await jobOf(key, jobId)
      return DONE.includes(j.status) ? j : null
    }),
  }
}

/**
 * Everything the three jobs left in a community, as `expected` states it: each row a line, the lines
 * in byte order, hashed. The ids of the community's own jobs (in ledger keys and reasons, and as
 * the author of field histories) read IMPORT, PREMIUM and UPDATE, so two communities compare equal.
 * The update job's failed rows come as `row|code|field`.
 */
async function fingerprint(communityId: string, jobs: { import: string; premium: string; update: string }) {
  const database = await openDatabase(testDb ? { databaseUrl: testDb.url } : { dataDir: join(work, 'data') })
  const named = (text: RawBuilder<unknown>) =>
    sql`replace(replace(replace(coalesce(${text}, '~'), ${jobs.import}, 'IMPORT'), ${jobs.premium}, 'PREMIUM'),
      ${jobs.update}, 'UPDATE')`
  const rows = async <T>(q: RawBuilder<T>) => (await q.execute(database.db)).rows
  try {
    const [users] = await rows(sql<{ n: number; h: string }>`SELECT count(*)::int AS n,
      md5(string_agg(line, chr(10) ORDER BY line COLLATE "C")) AS h
      FROM (SELECT email || '|' || first_name || '|' || xp || '|' || coins || '|' || premium || '|'
        || coalesce(custom_fields ->> 'deposit', '~') || '|' || coalesce(custom_fields ->> 'tier', '~') || '|'
        || (custom_fields - 'deposit' - 'tier')::text AS line
        FROM users WHERE community_id = ${communityId}) x`)
    const ledger = await rows(sql<{ currency: string; n: number; sum: number; h: string }>`SELECT currency,
      count(*)::int AS n, sum(amount)::float8 AS sum, md5(string_agg(line, chr(10) ORDER BY line COLLATE "C")) AS h
      FROM (SELECT l.currency, l.amount, coalesce(u.email, '?') || '|' || l.source || '|' || ${named(sql`l.reason`)} || '|'
        || ${named(sql`l.idempotency_key`)} || '|' || l.amount || '|' || l.balance_after AS line
        FROM currency_ledger l LEFT JOIN users u ON u.id = l.user_id AND u.community_id = l.community_id
        WHERE l.community_id = ${communityId}) x
      GROUP BY currency ORDER BY currency`)
    const histories = await rows(sql<{
      field: string
      n: number
      h: string
    }>`SELECT field, count(*)::int AS n,
      md5(string_agg(line, chr(10) ORDER BY line COLLATE "C")) AS h
      FROM (SELECT h.field, coalesce(u.email, '?') || '|' || coalesce(h.old_value::text, '~') || '|'
        || coalesce(h.new_value::text, '~') || '|' || h.source || '|' || ${named(sql`h.changed_by`)} AS line
        FROM field_histories h LEFT JOIN users u ON u.id = h.user_id AND u.community_id = h.community_id
        WHERE h.community_id = ${communityId}) x
      GROUP BY field ORDER BY field`)
    const [updateErrors] = await rows(sql<{ n: number; h: string }>`SELECT count(*)::int AS n,
      md5(string_agg(line, chr(10) ORDER BY line COLLATE "C")) AS h
      FROM (SELECT row_no || '|' || code || '|' || coalesce(field, '~') AS line
        FROM bulk_job_errors WHERE community_id = ${communityId} AND job_id = ${jobs.update}) x`)
    return { users, ledger, histories, updateErrors }
  } finally {
    await database.close()
  }
}

const counts = (j: any) => ({
  status: j.status,
  total: j.total,
  processed: j.processed,
  created: j.created,
  updated: j.updated,
  skipped: j.skipped,
  failed: j.failed,
})

beforeAll(async () => {
  writeFiles()
  if (process.env.DATABASE_URL) {
    testDb = await createTestDatabase()
    env = { DATABASE_URL: testDb.url!, BULK_LEASE_SECONDS: '2', BULK_CHUNK_ROWS: '3000' }
  } else {
    env = { DATA_DIR: join(work, 'data'), BULK_LEASE_SECONDS: '2', BULK_CHUNK_ROWS: '3000' }
  }
  server = await startChildServer(env)
}, 120_000)

afterAll(async () => {
  if (server) await stopChild(server)
  await testDb?.drop()
  rmSync(work, { recursive: true, force: true })
})

describe('bulk jobs across a worker crash', () => {
  it(`a ${ROWS / 1000}k-row import, a premium-currency update and a ${UPDATE_ROWS / 1000}k-row bulk update with _op columns killed mid-job end exactly as uninterrupted runs`, async () => {
    const want = expected()
    const crashed = await setupCommunity('Crashed')
    const plain = await setupCommunity('Plain')
    const done = (job: Record<string, number>, rows = ROWS) => ({
      status: 'completed_with_errors',
      total: rows,
      processed: rows,
      ...job,
    })

    const importCrashed = await runWithCrash(crashed.key, '/apis/v1/users/bulk-import', importCsv)
    const importPlain = await runPlain(plain.key, '/apis/v1/users/bulk-import', importCsv)
    expect(counts(importPlain.job)).toEqual(done(want.importJob))
    expect(counts(importCrashed.job)).toEqual(done(want.importJob))

    const premiumCrashed = await runWithCrash(
      crashed.key,
      '/apis/v1/users/bulk-update/premium-currency',
      premiumCsv,
    )
    const premiumPlain = await runPlain(plain.key, '/apis/v1/users/bulk-update/premium-currency', premiumCsv)
    expect(counts(premiumPlain.job)).toEqual(done(want.premiumJob))
    expect(counts(premiumCrashed.job)).toEqual(done(want.premiumJob))

    const update = '/apis/v1/users/bulk-update'
    const updateCrashed = await runWithCrash(crashed.key, update, updateCsv, UPDATE_ROWS)
    const updatePlain = await runPlain(plain.key, update, updateCsv)
    expect(counts(updatePlain.job)).toEqual(done(want.updateJob, UPDATE_ROWS))
    expect(counts(updateCrashed.job)).toEqual(done(want.updateJob, UPDATE_ROWS))

    await stopChild(server)
    const a = await fingerprint(crashed.id, {
      import: importCrashed.jobId,
      premium: premiumCrashed.jobId,
      update: updateCrashed.jobId,
    })
    const b = await fingerprint(plain.id, {
      import: importPlain.jobId,
      premium: premiumPlain.jobId,
      update: updatePlain.jobId,
    })
    // The files make every kind of row: histories, and ledger rows of each currency; the update
    // skips rows and fails some.
    for (const part of [...want.fingerprint.ledger, ...want.fingerprint.histories])
      expect(part.n).toBeGreaterThan(0)
    expect(want.updateJob.skipped).toBeGreaterThan(0)
    expect(want.fingerprint.updateErrors.n).toBeGreaterThan(0)
    expect(b).toEqual(want.fingerprint)
    expect(a).toEqual(want.fingerprint)
    server = await startChildServer(env)
  }, 900_000)
})

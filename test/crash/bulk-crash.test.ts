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
const work = mkdtempSync(join(tmpdir(), 'hearth-crash-'))
let testDb: TestDatabase | null = null
let env: Record<string, string>
let server: ChildServer

const importCsv = join(work, 'import.csv')
const premiumCsv = join(work, 'premium.csv')

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
}

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
 * (`bulk:<job>:<row>`, the file's reason).
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
  const userLines = [...users].map(
    ([email, u]) => `${email}|${u.firstName}|${u.xp}|${u.coins}|${u.premium}|${u.deposit}|${u.tier}|{}`,
  )
  return {
    importJob,
    premiumJob,
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

async function jobOf(key: string, jobId: string) {
  return (await api(`/apis/v1/users/bulk-updates/${jobId}`, key)).data
}

async function until<T>(what: string, fn: () => Promise<T | null>, timeoutMs = 240_000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn().catch(() => null)
    if (v) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
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
async function runWithCrash(key: string, path: string, file: string) {
  const jobId = await upload(key, path, file)
  const seen = await until('progress', async () => {
    const j = await jobOf(key, jobId)
    return j.processed >= ROWS * 0.2 ? j : null
  })
  expect(seen.processed, 'the kill lands mid-job').toBeLessThanOrEqual(ROWS * 0.8)
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
 * Everything the two jobs left in a community, as `expected` states it: each row a line, the lines
 * in byte order, hashed. The ids of the community's own jobs (in ledger keys and reasons, and as
 * the author of field histories) read IMPORT and PREMIUM, so two communities compare equal.
 */
async function fingerprint(communityId: string, jobs: { import: string; premium: string }) {
  const database = await openDatabase(testDb ? { databaseUrl: testDb.url } : { dataDir: join(work, 'data') })
  const named = (text: RawBuilder<unknown>) =>
    sql`replace(replace(coalesce(${text}, '~'), ${jobs.import}, 'IMPORT'), ${jobs.premium}, 'PREMIUM')`
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
    return { users, ledger, histories }
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
  it(`a ${ROWS / 1000}k-row import and a premium-currency update killed mid-job end exactly as uninterrupted runs`, async () => {
    const want = expected()
    const crashed = await setupCommunity('Crashed')
    const plain = await setupCommunity('Plain')
    const done = (job: Record<string, number>) => ({
      status: 'completed_with_errors',
      total: ROWS,
      processed: ROWS,
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

    await stopChild(server)
    const a = await fingerprint(crashed.id, { import: importCrashed.jobId, premium: premiumCrashed.jobId })
    const b = await fingerprint(plain.id, { import: importPlain.jobId, premium: premiumPlain.jobId })
    // The files make every kind of row: histories, and ledger rows of each currency.
    for (const part of [...want.fingerprint.ledger, ...want.fingerprint.histories])
      expect(part.n).toBeGreaterThan(0)
    expect(b).toEqual(want.fingerprint)
    expect(a).toEqual(want.fingerprint)
    server = await startChildServer(env)
  }, 900_000)
})

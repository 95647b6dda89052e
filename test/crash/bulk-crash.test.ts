import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openDatabase } from '../../src/lib/db/database.ts'
import { type ChildServer, startChildServer, stopChild } from '../support/child-server.ts'
import { createTestDatabase, type TestDatabase } from '../support/database.ts'

/**
 * A worker killed with SIGKILL in the middle of a job, then started again, must leave exactly what
 * an uninterrupted run leaves: same users, field histories, ledger, and exact counts.
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

function writeFiles() {
  const lines = ['email,first_name,xp,coins,deposit,tier']
  for (let i = 0; i < ROWS; i++) {
    // Every 997th row is bad (a failed row must stay failed, counted once). In the second half the
    // last three rows of every 1000 name the user of the row before them, so that user comes four
    // times in a chunk: those chunks are played (bulk.users-play.ts), those of the first half go
    // through the set-based SQL, so the kill and the resume meet both.
    const repeat = i >= ROWS / 2 && i % 1000 >= 997
    const email = `u${repeat ? i - (i % 1000) + 996 : i}@crash.test`
    const xp = i % 997 === 0 ? 'abc' : String(i % 300)
    lines.push(`${email},"First, ${i}",${xp},${i % 50},${i % 7},${i % 2 ? 'gold' : 'silver'}`)
  }
  writeFileSync(importCsv, `${lines.join('\n')}\n`)
  // Premium: one row per user in the first half (set-based), then users named three times a chunk (played).
  const p = ['email,amount_op,amount,reason']
  for (let i = 0; i < ROWS; i++)
    p.push(
      `u${i < ROWS / 2 ? i : i % 1000}@crash.test,${i % 5 === 4 ? 'subtract' : 'add'},${(i % 9) + 1},crash test`,
    )
  writeFileSync(premiumCsv, `${p.join('\n')}\n`)
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

/** Runs a job, SIGKILLs the server once between 20% and 80% of the rows are committed, restarts it, waits. */
async function runWithCrash(key: string, path: string, file: string) {
  const jobId = await upload(key, path, file)
  const seen = await until('progress', async () => {
    const j = await jobOf(key, jobId)
    return j.processed >= ROWS * 0.2 ? j : null
  })
  expect(seen.processed).toBeLessThan(ROWS) // the kill lands mid-job
  await stopChild(server, 'SIGKILL')
  server = await startChildServer(env)
  return until('job end', async () => {
    const j = await jobOf(key, jobId)
    return DONE.includes(j.status) ? j : null
  })
}

async function runPlain(key: string, path: string, file: string) {
  const jobId = await upload(key, path, file)
  return until('job end', async () => {
    const j = await jobOf(key, jobId)
    return DONE.includes(j.status) ? j : null
  })
}

/** Everything a job leaves, per community, keyed by email so two communities compare equal. */
async function fingerprint(communityId: string) {
  const database = await openDatabase(testDb ? { databaseUrl: testDb.url } : { dataDir: join(work, 'data') })
  try {
    const one = async (q: ReturnType<typeof sql>) =>
      (await q.execute(database.db)).rows[0] as { n: number; h?: string }
    return {
      users:
        await one(sql`SELECT count(*)::int AS n, md5(string_agg(email || '|' || first_name || '|' || xp || '|' || coins || '|' || premium
        || '|' || custom_fields::text, ',' ORDER BY email)) AS h FROM users WHERE community_id = ${communityId}`),
      histories:
        await one(sql`SELECT count(*)::int AS n, md5(string_agg(u.email || '|' || h.field || '|' || coalesce(h.old_value::text, '~')
        || '|' || coalesce(h.new_value::text, '~'), ',' ORDER BY u.email, h.field, h.created_at, h.new_value::text, h.old_value::text)) AS h
        FROM field_histories h JOIN users u ON u.id = h.user_id WHERE h.community_id = ${communityId}`),
      ledger:
        await one(sql`SELECT count(*)::int AS n, md5(string_agg(u.email || '|' || l.currency || '|' || l.amount || '|' || l.balance_after,
        ',' ORDER BY u.email, l.currency, l.id)) AS h FROM currency_ledger l JOIN users u ON u.id = l.user_id WHERE l.community_id = ${communityId}`),
      duplicateKeys: await one(sql`SELECT count(*)::int AS n FROM (SELECT idempotency_key FROM currency_ledger
        WHERE community_id = ${communityId} GROUP BY idempotency_key HAVING count(*) > 1) d`),
    }
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
    const crashed = await setupCommunity('Crashed')
    const plain = await setupCommunity('Plain')

    const importCrashed = await runWithCrash(crashed.key, '/apis/v1/users/bulk-import', importCsv)
    const importPlain = await runPlain(plain.key, '/apis/v1/users/bulk-import', importCsv)
    expect(counts(importCrashed)).toEqual(counts(importPlain))
    expect(counts(importPlain)).toMatchObject({
      status: 'completed_with_errors',
      total: ROWS,
      processed: ROWS,
    })
    expect(importPlain.created + importPlain.updated + importPlain.skipped + importPlain.failed).toBe(ROWS)

    const premiumCrashed = await runWithCrash(
      crashed.key,
      '/apis/v1/users/bulk-update/premium-currency',
      premiumCsv,
    )
    const premiumPlain = await runPlain(plain.key, '/apis/v1/users/bulk-update/premium-currency', premiumCsv)
    expect(counts(premiumCrashed)).toEqual(counts(premiumPlain))
    expect(premiumPlain.processed).toBe(ROWS)

    await stopChild(server)
    const a = await fingerprint(crashed.id)
    const b = await fingerprint(plain.id)
    expect(a).toEqual(b)
    expect(a.duplicateKeys.n).toBe(0)
    expect(a.users.n).toBe(importPlain.created)
    expect(a.ledger.n).toBeGreaterThan(ROWS) // xp, coins and premium entries
    server = await startChildServer(env)
  }, 900_000)
})

import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/lib/config.ts'
import type { AppDeps } from '../../src/lib/deps.ts'
import { newId } from '../../src/lib/ids.ts'
import { pruneOldRecords, startRetention } from '../../src/modules/api-log/api-log.retention.ts'
import { createTestDatabase, type TestDatabase } from '../support/database.ts'

let testDb: TestDatabase
beforeAll(async () => {
  testDb = await createTestDatabase()
})
afterAll(() => testDb.drop())

const daysAgo = (n: number) => sql<Date>`now() - make_interval(days => ${n})`

async function community() {
  const id = newId()
  await testDb.database.db
    .insertInto('communities')
    .values({ id, name: 'C', system_key_hash: id, system_key_prefix: 'p' })
    .execute()
  return id
}

/** `count` API log entries of `communityId` made `age` days ago, in one statement. */
async function logEntries(communityId: string, age: number, count: number) {
  await sql`INSERT INTO api_log (id, community_id, method, path, status, duration_ms, request_id, created_at)
    SELECT ${communityId} || lpad(g::text, 8, '0'), ${communityId}, 'GET', '/x', 200, 1, 'r', ${daysAgo(age)}
    FROM generate_series(1, ${count}) g`.execute(testDb.database.db)
}

async function bulkJob(communityId: string, age: number, finished: boolean) {
  const id = newId()
  const { db } = testDb.database
  await db
    .insertInto('bulk_jobs')
    .values({
      id,
      community_id: communityId,
      type: 'import',
      status: finished ? 'completed_with_errors' : 'processing',
      file_name: 'f.csv',
      file_bytes: 1,
      file_chunks: 1,
      created_at: daysAgo(age),
      finished_at: finished ? daysAgo(age) : null,
    })
    .execute()
  await db
    .insertInto('bulk_job_chunks')
    .values({
      community_id: communityId,
      job_id: id,
      chunk_no: 0,
      first_row: 1,
      lines: [2],
      keys: ['a@x.io'],
      actions: 'f',
    })
    .execute()
  await db
    .insertInto('bulk_job_errors')
    .values({
      community_id: communityId,
      job_id: id,
      row_no: 1,
      line: 2,
      code: 'invalid_email',
      message: 'bad',
    })
    .execute()
  return id
}

const count = async (
  table: 'api_log' | 'bulk_jobs' | 'bulk_job_chunks' | 'bulk_job_errors',
  communityId: string,
) =>
  Number(
    (
      await testDb.database.db
        .selectFrom(table)
        .select((eb) => eb.fn.countAll().as('n'))
        .where('community_id', '=', communityId)
        .executeTakeFirstOrThrow()
    ).n,
  )

describe('retention of the API log and bulk jobs', () => {
  it('deletes entries and finished jobs older than the cutoff, in batches, in every community, and nothing newer', async () => {
    const a = await community()
    const b = await community()
    await logEntries(a, 100, 5_003) // more than one batch
    await logEntries(b, 91, 2)
    const recentA = newId()
    await sql`INSERT INTO api_log (id, community_id, method, path, status, duration_ms, request_id, created_at)
      VALUES (${recentA}, ${a}, 'GET', '/x', 200, 1, 'r', ${daysAgo(89)})`.execute(testDb.database.db)
    const oldDone = await bulkJob(a, 100, true)
    const oldRunning = await bulkJob(a, 100, false)
    const recentDone = await bulkJob(b, 10, true)

    expect(await pruneOldRecords(testDb.database.db, 90)).toEqual({ logEntries: 5_005, bulkJobs: 1 })

    const left = await testDb.database.db
      .selectFrom('api_log')
      .select('id')
      .where('community_id', 'in', [a, b])
      .execute()
    expect(left.map((r) => r.id)).toEqual([recentA])
    const jobs = await testDb.database.db
      .selectFrom('bulk_jobs')
      .select('id')
      .where('community_id', 'in', [a, b])
      .orderBy('id')
      .execute()
    expect(jobs.map((j) => j.id)).toEqual([oldRunning, recentDone].sort())
    expect(jobs.map((j) => j.id)).not.toContain(oldDone)
    // The deleted job's outcomes went with it; the others' stayed.
    expect(await count('bulk_job_chunks', a)).toBe(1)
    expect(await count('bulk_job_errors', a)).toBe(1)
    expect(await count('bulk_job_chunks', b)).toBe(1)

    expect(await pruneOldRecords(testDb.database.db, 90)).toEqual({ logEntries: 0, bulkJobs: 0 })
  })

  it('runs in the worker from its start with API_LOG_RETENTION_DAYS, and not at all with 0', async () => {
    const c = await community()
    await logEntries(c, 40, 3)
    const run = (days: string) => {
      const deps = {
        config: loadConfig({ API_LOG_RETENTION_DAYS: days }),
        database: testDb.database,
      } as AppDeps
      const lines: string[] = []
      return { stop: startRetention(deps, (m) => lines.push(m)), lines }
    }
    const off = run('0')
    await new Promise((r) => setTimeout(r, 300))
    off.stop()
    expect(off.lines).toEqual([])
    expect(await count('api_log', c)).toBe(3)

    const on = run('30')
    for (let i = 0; i < 100 && on.lines.length === 0; i++) await new Promise((r) => setTimeout(r, 50))
    on.stop()
    // 3 entries of this community, and the 89-day-old one the test above kept.
    expect(on.lines).toEqual(['retention: deleted 4 API log entries and 0 bulk jobs older than 30 days'])
    expect(await count('api_log', c)).toBe(0)
  })
})

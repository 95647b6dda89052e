import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PREMIUM, upload, waitForJob } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

let t: TestApp
beforeAll(async () => {
  t = await startTestApp({ worker: true })
})
afterAll(() => t.close())

async function premiumOf(userId: string) {
  const row = await t.deps.database.db
    .selectFrom('users')
    .select('premium')
    .where('id', '=', userId)
    .executeTakeFirstOrThrow()
  return row.premium
}

async function ledgerCount(userId: string) {
  const rows = await t.deps.database.db
    .selectFrom('currency_ledger')
    .select('id')
    .where('user_id', '=', userId)
    .execute()
  return rows.length
}

describe('retried bulk uploads', () => {
  it('an upload retried with the same Idempotency-Key answers with the job it started and credits once', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    const file = `email,amount\n${u.email},25\n`
    const auth = { ...c.bearer, 'idempotency-key': 'crm-sync-2026-11-27' }
    const first = await upload(t, PREMIUM, auth, { file })
    expect(first.statusCode, first.body).toBe(200)
    const jobId = first.json().data.jobId
    await waitForJob(t, c.bearer, jobId)
    const retry = await upload(t, PREMIUM, auth, { file })
    expect(retry.statusCode).toBe(200)
    expect(retry.json().data.jobId).toBe(jobId)
    expect(await premiumOf(u.id)).toBe(25)
    expect(await ledgerCount(u.id)).toBe(1)
    const list = await t.app.inject({ method: 'GET', url: '/apis/v1/users/bulk-updates', headers: c.bearer })
    expect(list.json().data.jobs).toHaveLength(1)
  })

  it('refuses a key reused for another kind of job, and a malformed key', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    const auth = { ...c.bearer, 'idempotency-key': 'key-1' }
    const premium = await upload(t, PREMIUM, auth, { file: `email,amount\n${u.email},1\n` })
    await waitForJob(t, c.bearer, premium.json().data.jobId)
    const update = await upload(t, '/apis/v1/users/bulk-update', auth, {
      file: `email,first_name\n${u.email},Zed\n`,
    })
    expect([update.statusCode, update.json().error.code, update.json().error.field]).toEqual([
      409,
      'idempotency_key_reused',
      'Idempotency-Key',
    ])
    const bad = await upload(
      t,
      PREMIUM,
      { ...c.bearer, 'idempotency-key': 'has space' },
      { file: `email,amount\n${u.email},1\n` },
    )
    expect([bad.statusCode, bad.json().error.field]).toEqual([400, 'Idempotency-Key'])
    // Refused before the file was read: no piece of it was stored.
    const leftovers = await t.deps.database.db
      .selectFrom('bulk_files')
      .select('upload_id')
      .where('community_id', '=', c.id)
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(selectFrom('bulk_jobs').select('id').whereRef('bulk_jobs.id', '=', 'bulk_files.upload_id')),
        ),
      )
      .execute()
    expect(leftovers).toEqual([])
    // The same key in another community is another key.
    const d = await t.factory.community()
    const v = await t.factory.user(d.id)
    const other = await upload(
      t,
      '/apis/v1/users/bulk-update',
      { ...d.bearer, 'idempotency-key': 'key-1' },
      { file: `email,first_name\n${v.email},Zed\n` },
    )
    expect(other.statusCode).toBe(200)
  })

  it('refuses a key sent again with another file, or for the real run after its dry run', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    const file = `email,amount\n${u.email},5\n`
    const dry = await upload(
      t,
      PREMIUM,
      { ...c.bearer, 'idempotency-key': 'sync-7' },
      {
        file,
        fields: { dryRun: 'true' },
      },
    )
    expect(dry.statusCode, dry.body).toBe(200)
    await waitForJob(t, c.bearer, dry.json().data.jobId)
    const real = await upload(t, PREMIUM, { ...c.bearer, 'idempotency-key': 'sync-7' }, { file })
    expect([real.statusCode, real.json().error.code, real.json().message]).toEqual([
      409,
      'idempotency_key_reused',
      'This Idempotency-Key was used for a dry run: send a new key for a new request',
    ])
    const first = await upload(t, PREMIUM, { ...c.bearer, 'idempotency-key': 'sync-8' }, { file })
    await waitForJob(t, c.bearer, first.json().data.jobId)
    const otherFile = await upload(
      t,
      PREMIUM,
      { ...c.bearer, 'idempotency-key': 'sync-8' },
      {
        file: `email,amount\n${u.email},50\n`,
      },
    )
    expect([otherFile.statusCode, otherFile.json().error.code, otherFile.json().error.field]).toEqual([
      409,
      'idempotency_key_reused',
      'Idempotency-Key',
    ])
    expect(otherFile.json().message).toContain('another file')
    // Only the real run with sync-8 credited; the refused uploads left no job and no piece.
    expect(await premiumOf(u.id)).toBe(5)
    const jobs = await t.deps.database.db
      .selectFrom('bulk_jobs')
      .select('id')
      .where('community_id', '=', c.id)
      .execute()
    expect(jobs).toHaveLength(2)
    const pieces = await t.deps.database.db
      .selectFrom('bulk_files')
      .select('upload_id')
      .where('community_id', 'in', [c.id, ''])
      .where(
        'upload_id',
        'not in',
        jobs.map((j) => j.id),
      )
      .execute()
    expect(pieces).toEqual([])
  })
})

describe('premium rows with an idempotency_key column', () => {
  it('a row re-sent in a later file (or twice in one file) never credits twice', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    const first = await upload(t, PREMIUM, c.bearer, {
      file: `email,amount,idempotency_key\n${u.email},10,order-1\n${u.email},20,order-2\n${u.email},20,order-2\n`,
    })
    const a = await waitForJob(t, c.bearer, first.json().data.jobId)
    expect(a).toMatchObject({ updated: 2, skipped: 1, failed: 0 })
    const second = await upload(t, PREMIUM, c.bearer, {
      file: `email,amount,idempotency_key\n${u.email},20,order-2\n${u.email},5,order-3\n`,
    })
    const b = await waitForJob(t, c.bearer, second.json().data.jobId)
    expect(b).toMatchObject({ updated: 1, skipped: 1, failed: 0 })
    expect(await premiumOf(u.id)).toBe(35)
    expect(await ledgerCount(u.id)).toBe(3)
  })
})

import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newId } from '../../src/lib/ids.ts'
import { applyAsDryRun } from '../../src/modules/bulk/bulk.dry-run.ts'
import { detailRows, IMPORT, PREMIUM, runJob, UPDATE } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * A dry run is applied chunk by chunk under savepoints that are rolled back. With chunks of 2 rows,
 * a user named in several rows is named in several chunks: the dry run must still predict exactly
 * what the real run then does, and leave nothing behind.
 */

let t: TestApp
beforeAll(async () => {
  t = await startTestApp({ env: { BULK_CHUNK_ROWS: '2', BULK_PARALLEL_CHUNKS: '2' }, worker: true })
})
afterAll(() => t.close())

const db = () => t.deps.database.db

async function actionsOf(auth: Record<string, string>, jobId: string) {
  const rows = await detailRows(t, auth, jobId, 'limit=100')
  return rows.map((r) => [r.row, r.action, r.error?.code ?? null])
}

/** Everything a job could write for a community, in a stable order. */
async function worldOf(communityId: string) {
  const [users, ledger, histories] = await Promise.all([
    db()
      .selectFrom('users')
      .select(['id', 'email', 'external_id', 'first_name', 'xp', 'coins', 'premium', 'custom_fields'])
      .where('community_id', '=', communityId)
      .orderBy('id')
      .execute(),
    db().selectFrom('currency_ledger').select('id').where('community_id', '=', communityId).execute(),
    db().selectFrom('field_histories').select('id').where('community_id', '=', communityId).execute(),
  ])
  return { users, ledger: ledger.length, histories: histories.length }
}

/** Runs `file` as a dry run, then for real: the dry run wrote nothing and predicted every row. */
async function expectDryRunPredicts(
  path: string,
  c: { id: string; bearer: Record<string, string> },
  file: string,
) {
  const before = await worldOf(c.id)
  const dry = await runJob(t, path, c.bearer, { file, fields: { dryRun: 'true' } })
  expect(await worldOf(c.id)).toEqual(before)
  const kept = await db()
    .selectFrom('bulk_dry_run_users')
    .select('user_id')
    .where('job_id', '=', dry.jobId)
    .execute()
  const names = await db()
    .selectFrom('bulk_dry_run_names')
    .select('name')
    .where('job_id', '=', dry.jobId)
    .execute()
  expect([kept, names]).toEqual([[], []])

  const real = await runJob(t, path, c.bearer, { file })
  const counts = (j: Record<string, unknown>) => [
    j.status,
    j.total,
    j.created,
    j.updated,
    j.skipped,
    j.failed,
  ]
  expect(counts(dry)).toEqual(counts(real))
  expect(await actionsOf(c.bearer, dry.jobId)).toEqual(await actionsOf(c.bearer, real.jobId))
  return { dry, real }
}

describe('a dry run sees what its earlier chunks would have done', () => {
  it('import: a user created in one chunk is updated, not created again, in later ones', async () => {
    const c = await t.factory.community()
    await t.factory.userField(c.id, 'deposit', 'number')
    const old = await t.factory.user(c.id, { email: 'old@x.io' })
    const file = [
      'email,first_name,xp_op,xp,deposit_op,deposit',
      'new@x.io,New,,10,,100', // chunk 1: created
      'old@x.io,Old,add,5,,', // chunk 1: updated
      'other@x.io,Other,,1,,', // chunk 2: created
      'new@x.io,New,add,5,add,50', // chunk 2: updated (new@ exists in the dry run's world)
      'old@x.io,Old,,5,,', // chunk 3: skipped (xp is already 5 after row 2)
      'new@x.io,Renamed,subtract,20,,', // chunk 3: failed (15 - 20 < 0)
      'NEW@X.IO,New,overwrite,15,,150', // chunk 4: skipped (exactly the state rows 1 and 4 left)
      'bad-email,X,,1,,', // chunk 4: failed (invalid email)
    ].join('\n')
    const { dry, real } = await expectDryRunPredicts(IMPORT, c, `${file}\n`)
    expect(dry).toMatchObject({ created: 2, updated: 2, skipped: 2, failed: 2 })
    expect(real).toMatchObject({ created: 2, updated: 2, skipped: 2, failed: 2 })
    const users = await worldOf(c.id)
    expect(users.users.find((u) => u.email === 'new@x.io')).toMatchObject({
      first_name: 'New',
      xp: 15,
      custom_fields: { deposit: 150 },
    })
    expect(users.users.find((u) => u.id === old.id)).toMatchObject({ first_name: 'Old', xp: 5 })
  })

  it('import: a username one chunk gives is taken in later ones, and one it frees is free', async () => {
    const c = await t.factory.community()
    await t.factory.user(c.id, { email: 'a@x.io', username: 'alpha' })
    const file = [
      'email,username',
      'n1@x.io,zed', // chunk 1: created
      'a@x.io,alpha2', // chunk 1: updated, alpha is free
      'n2@x.io,ZED', // chunk 2: failed, n1 holds zed (in any case)
      'n3@x.io,Alpha', // chunk 2: created with the name a@ left
      '',
    ].join('\n')
    const { real } = await expectDryRunPredicts(IMPORT, c, file)
    expect(await actionsOf(c.bearer, real.jobId)).toEqual([
      [1, 'created', null],
      [2, 'updated', null],
      [3, 'failed', 'username_taken'],
      [4, 'created', null],
    ])
  })

  it('update keyed by external id: an email one chunk frees is free for a later chunk', async () => {
    const c = await t.factory.externalIdCommunity()
    await t.factory.user(c.id, { email: 'a@x.io', externalId: 'A' })
    await t.factory.user(c.id, { email: 'b@x.io', externalId: 'B' })
    // Row 1 moves A to a2@; row 3 (another chunk) gives B the email A had: allowed once row 1 ran.
    const file = 'crm_id,email,xp\nA,a2@x.io,1\nB,,2\nB,a@x.io,2\nA,,3\n'
    const { real } = await expectDryRunPredicts(UPDATE, c, file)
    expect(real).toMatchObject({ status: 'completed', updated: 4, failed: 0 })
  })

  it('update keyed by external id: a later chunk that names only the freed email sees it free', async () => {
    const c = await t.factory.externalIdCommunity()
    await t.factory.user(c.id, { email: 'a@x.io', externalId: 'A' })
    await t.factory.user(c.id, { email: 'b@x.io', externalId: 'B' })
    await t.factory.user(c.id, { email: 'c@x.io', externalId: 'C' })
    // Chunk 2 never names A: it finds A's kept state by the email A really holds (a@).
    const file = 'crm_id,email,xp\nA,a2@x.io,1\nC,,1\nB,a@x.io,2\nB,,3\n'
    const { dry } = await expectDryRunPredicts(UPDATE, c, file)
    expect(dry).toMatchObject({ status: 'completed', updated: 4, failed: 0 })
  })

  it('premium currency: a balance spent in one chunk is gone in the next', async () => {
    const c = await t.factory.community()
    const a = await t.factory.user(c.id)
    await db().updateTable('users').set({ premium: 10 }).where('id', '=', a.id).execute()
    const file = `email,amount,amount_op\n${a.email},6,subtract\nnobody@x.io,1,add\n${a.email},6,subtract\n${a.email},2,subtract\n`
    const { dry } = await expectDryRunPredicts(PREMIUM, c, file)
    expect(dry).toMatchObject({ updated: 2, failed: 2 })
    expect(await actionsOf(c.bearer, dry.jobId)).toEqual([
      [1, 'updated', null],
      [2, 'failed', 'user_not_found'],
      [3, 'failed', 'insufficient_balance'],
      [4, 'updated', null],
    ])
  })

  it('premium currency keyed by userId: a user named by _id, then by numeric id, in later chunks', async () => {
    const c = await t.factory.community()
    const a = await t.factory.user(c.id)
    await db().updateTable('users').set({ premium: 10 }).where('id', '=', a.id).execute()
    const file = `userId,amount,amount_op\n${a.id},6,subtract\n${a.id},1,add\n${a.seq},6,subtract\n${a.seq},5,subtract\n`
    const { dry } = await expectDryRunPredicts(PREMIUM, c, file)
    expect(await actionsOf(c.bearer, dry.jobId)).toEqual([
      [1, 'updated', null],
      [2, 'updated', null],
      [3, 'failed', 'insufficient_balance'],
      [4, 'updated', null],
    ])
  })

  it('update keyed by external id without emails: a balance one chunk spends is gone in the next', async () => {
    const c = await t.factory.externalIdCommunity()
    await t.factory.user(c.id, { email: 'a@x.io', externalId: 'A' })
    const file = 'crm_id,xp_op,xp\nA,add,5\nA,,5\nA,subtract,6\nA,subtract,5\n'
    const { dry } = await expectDryRunPredicts(UPDATE, c, file)
    expect(await actionsOf(c.bearer, dry.jobId)).toEqual([
      [1, 'updated', null],
      [2, 'skipped', null],
      [3, 'failed', 'negative_balance'],
      [4, 'updated', null],
    ])
  })

  it('premium currency: a key re-sent in a later chunk is a skip there, as in the real run', async () => {
    const c = await t.factory.community()
    const a = await t.factory.user(c.id)
    const b = await t.factory.user(c.id)
    // Chunks of two rows: row 3 sends again the key row 1 used, row 4 one used before the job.
    await runJob(t, PREMIUM, c.bearer, { file: `email,amount,idempotency_key\n${b.email},1,before\n` })
    const file = `email,amount,idempotency_key\n${a.email},5,k1\n${b.email},5,k2\n${b.email},5,k1\n${a.email},5,before\n`
    const { dry } = await expectDryRunPredicts(PREMIUM, c, file)
    expect(await actionsOf(c.bearer, dry.jobId)).toEqual([
      [1, 'updated', null],
      [2, 'updated', null],
      [3, 'skipped', null],
      [4, 'skipped', null],
    ])
  })

  it('keeps the state of a user it changed without the password hash, and leaves the user as it was', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id, { password: 'correct horse battery' })
    const jobId = newId()
    await db()
      .insertInto('bulk_jobs')
      .values({
        id: jobId,
        community_id: c.id,
        type: 'update',
        status: 'processing',
        dry_run: true,
        file_name: 'f.csv',
        file_bytes: 0,
        file_chunks: 0,
      })
      .execute()
    await db()
      .transaction()
      .execute((tx) =>
        applyAsDryRun(
          tx,
          {
            jobId,
            communityId: c.id,
            names: [u.email],
            usernames: [],
            nameKinds: ['id', 'seq', 'email'],
            ledgerKeys: [],
          },
          async () => {
            await sql`UPDATE users SET first_name = 'Dry' WHERE id = ${u.id}`.execute(tx)
            return [{ rowNo: 1, action: 'u', userId: u.id }]
          },
        ),
      )
    const kept = await db()
      .selectFrom('bulk_dry_run_users')
      .select('state')
      .where('job_id', '=', jobId)
      .execute()
    expect(kept).toHaveLength(1)
    expect(kept[0].state).toMatchObject({ id: u.id, first_name: 'Dry' })
    expect(kept[0].state).not.toHaveProperty('password_hash')
    const real = await db()
      .selectFrom('users')
      .select(['first_name', 'password_hash'])
      .where('id', '=', u.id)
      .executeTakeFirstOrThrow()
    expect(real).toEqual({ first_name: 'Test', password_hash: u.password_hash })
    const names = await db()
      .selectFrom('bulk_dry_run_names')
      .select('name')
      .where('job_id', '=', jobId)
      .execute()
    expect(names.map((n) => n.name)).toEqual(expect.arrayContaining([u.id, String(u.seq), u.email]))
  })
})

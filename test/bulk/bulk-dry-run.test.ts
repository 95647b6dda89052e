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

/** The usernames of a community's users, by email. */
async function usernamesOf(communityId: string) {
  const users = await db()
    .selectFrom('users')
    .select(['email', 'username'])
    .where('community_id', '=', communityId)
    .where('username', 'is not', null)
    .execute()
  return Object.fromEntries(users.map((u) => [u.email, u.username]))
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

  it('import: a row giving the name of a user the dry run renamed replays the user that really holds it too', async () => {
    const c = await t.factory.community()
    await t.factory.user(c.id, { email: 'a@x.io', username: 'alice' })
    await t.factory.user(c.id, { email: 'b@x.io', username: 'bob' })
    // Chunk 2 names bob (by "bob"), who holds "alice" in the dry run's world; ann, who really
    // still holds "alice" but moved to "zed", must be replayed with him.
    const file = 'email,username\na@x.io,zed\nb@x.io,alice\nn@x.io,bob\nm@x.io,\n'
    const { real } = await expectDryRunPredicts(IMPORT, c, file)
    expect(await actionsOf(c.bearer, real.jobId)).toEqual([
      [1, 'updated', null],
      [2, 'updated', null],
      [3, 'created', null],
      [4, 'created', null],
    ])
  })

  it('import: a user the dry run created is replayed even where the name it holds is really held by a renamed user', async () => {
    const c = await t.factory.community()
    await t.factory.user(c.id, { email: 'b@x.io', username: 'bob' })
    // Row 2 creates n@ with "bob", which bob (row 1) gave up; row 3 (chunk 2) names only n@.
    const file = 'email,username,first_name\nb@x.io,robert,\nn@x.io,bob,\nn@x.io,,Nina\nm@x.io,,\n'
    const { real } = await expectDryRunPredicts(IMPORT, c, file)
    expect(await actionsOf(c.bearer, real.jobId)).toEqual([
      [1, 'updated', null],
      [2, 'created', null],
      [3, 'updated', null],
      [4, 'created', null],
    ])
  })

  it('import: three users passing their names round across chunks', async () => {
    const c = await t.factory.community()
    await t.factory.user(c.id, { email: 'c@x.io', username: 'carl' })
    await t.factory.user(c.id, { email: 'd@x.io', username: 'dave' })
    await t.factory.user(c.id, { email: 'e@x.io', username: 'eve' })
    const file = [
      'email,username',
      'c@x.io,tmp', // chunk 1: carl -> tmp
      'e@x.io,carl', // chunk 1: eve -> carl
      'd@x.io,eve', // chunk 2: dave -> eve
      'c@x.io,dave', // chunk 2: carl -> dave: the names went round (carl dave eve -> dave eve carl)
      'c@x.io,dave', // chunk 3: skipped; it names all three, and no order of one update puts them back
      'd@x.io,eve', // chunk 3: skipped
      'n@x.io,Carl', // chunk 4: taken (eve holds carl)
      'm@x.io,TMP', // chunk 4: created (carl left tmp)
      '',
    ].join('\n')
    const { real } = await expectDryRunPredicts(IMPORT, c, file)
    expect(await actionsOf(c.bearer, real.jobId)).toEqual([
      [1, 'updated', null],
      [2, 'updated', null],
      [3, 'updated', null],
      [4, 'updated', null],
      [5, 'skipped', null],
      [6, 'skipped', null],
      [7, 'failed', 'username_taken'],
      [8, 'created', null],
    ])
    expect(await usernamesOf(c.id)).toEqual({
      'c@x.io': 'dave',
      'd@x.io': 'eve',
      'e@x.io': 'carl',
      'm@x.io': 'TMP',
    })
  })

  it('import: a username compares as the database lowers it, not as JavaScript does', async () => {
    const c = await t.factory.community()
    await t.factory.user(c.id, { email: 'o@x.io', username: 'ivan' })
    // lower('İvan') is 'ivan' in PostgreSQL; 'İvan'.toLowerCase() is 'i̇van' (with a combining dot).
    const file = [
      'email,username',
      'o@x.io,olga', // chunk 1: olga gives up ivan
      'm1@x.io,',
      'n@x.io,İvan', // chunk 2: created: ivan is free in the dry run's world too
      'm2@x.io,',
      'p@x.io,İVAN', // chunk 3: taken: n@ holds it
      'm3@x.io,',
      '',
    ].join('\n')
    const { real } = await expectDryRunPredicts(IMPORT, c, file)
    expect(await actionsOf(c.bearer, real.jobId)).toEqual([
      [1, 'updated', null],
      [2, 'created', null],
      [3, 'created', null],
      [4, 'created', null],
      [5, 'failed', 'username_taken'],
      [6, 'created', null],
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

  it('update keyed by external id: three users passing their emails round across chunks', async () => {
    const c = await t.factory.externalIdCommunity()
    await t.factory.user(c.id, { email: 'a@x.io', externalId: 'A' })
    await t.factory.user(c.id, { email: 'b@x.io', externalId: 'B' })
    await t.factory.user(c.id, { email: 'c@x.io', externalId: 'C' })
    const file = [
      'crm_id,email',
      'A,tmp@x.io', // chunk 1
      'C,a@x.io', // chunk 1
      'B,c@x.io', // chunk 2
      'A,b@x.io', // chunk 2: the emails went round (a b c -> b c a)
      'A,b@x.io', // chunk 3: skipped, A holds b@ (replaying A needs B, B needs C, C needs A)
      'B,a@x.io', // chunk 3: failed, C holds a@
      '',
    ].join('\n')
    const { real } = await expectDryRunPredicts(UPDATE, c, file)
    expect((await actionsOf(c.bearer, real.jobId)).map((a) => a.slice(0, 2))).toEqual([
      [1, 'updated'],
      [2, 'updated'],
      [3, 'updated'],
      [4, 'updated'],
      [5, 'skipped'],
      [6, 'failed'],
    ])
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

describe('a replay the real table no longer fits', () => {
  /** A dry-run job keeping `users` as the dry run left them (`dry` over their real columns), named by their emails. */
  async function keptJob(communityId: string, users: { id: string; email: string }[], dry: object[]) {
    const jobId = newId()
    await db()
      .insertInto('bulk_jobs')
      .values({
        id: jobId,
        community_id: communityId,
        type: 'import',
        status: 'processing',
        dry_run: true,
        file_name: 'f.csv',
        file_bytes: 0,
        file_chunks: 0,
      })
      .execute()
    for (const [i, u] of users.entries()) {
      await sql`INSERT INTO bulk_dry_run_users (job_id, user_id, state)
        SELECT ${jobId}, id, (to_jsonb(u) - 'password_hash') || ${JSON.stringify(dry[i])}::jsonb FROM users u WHERE id = ${u.id}`.execute(
        db(),
      )
      await sql`INSERT INTO bulk_dry_run_names (job_id, name, user_id) VALUES (${jobId}, ${u.email}, ${u.id})`.execute(
        db(),
      )
    }
    return jobId
  }

  /** Applies a dry-run chunk naming `email` (and `others`): the username the chunk sees its user hold. */
  async function usernameSeen(jobId: string, communityId: string, email: string, others: string[] = []) {
    let seen: string | null = null
    await db()
      .transaction()
      .execute((tx) =>
        applyAsDryRun(
          tx,
          {
            jobId,
            communityId,
            names: [email, ...others],
            usernames: [],
            nameKinds: ['email'],
            ledgerKeys: [],
          },
          async () => {
            const r = await sql<{
              username: string | null
            }>`SELECT username FROM users WHERE community_id = ${communityId} AND email = ${email}`.execute(
              tx,
            )
            seen = r.rows[0]?.username ?? null
            return []
          },
        ),
      )
    return seen
  }

  it('judges the chunk against the real table once a user outside the job took a name a kept state holds', async () => {
    const c = await t.factory.community()
    const k = await t.factory.user(c.id, { email: 'k@x.io', username: 'k' })
    const other = await t.factory.user(c.id, { email: 'o@x.io', username: 'o' })
    const jobId = await keptJob(c.id, [k], [{ username: 'kay' }])
    expect(await usernameSeen(jobId, c.id, 'k@x.io')).toBe('kay')
    await db().updateTable('users').set({ username: 'KAY' }).where('id', '=', other.id).execute()
    expect(await usernameSeen(jobId, c.id, 'k@x.io')).toBe('k')
  })

  it('fails the chunk, rather than judge it against the wrong world, when kept states collide', async () => {
    const c = await t.factory.community()
    const a = await t.factory.user(c.id, { email: 'a@x.io', username: 'a' })
    const b = await t.factory.user(c.id, { email: 'b@x.io', username: 'b' })
    // No dry run keeps two users holding one name; if one did, its predictions would be wrong.
    const jobId = await keptJob(c.id, [a, b], [{ username: 'same' }, { username: 'Same' }])
    await expect(usernameSeen(jobId, c.id, 'a@x.io', ['b@x.io'])).rejects.toThrow(/users_community_username/)
  })
})

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { detailRows, IMPORT, JOBS, PREMIUM, runJob, UPDATE, upload, waitForJob } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * Community isolation on the paths bulk-security.test.ts does not reach: chunks played in JS
 * (bulk.premium-play.ts: a premium chunk naming a user twice; bulk.users-play.ts: an import or
 * update chunk naming a user three times), the premium ledger keys a dry run carries from chunk to
 * chunk (bulk.dry-run.ts), and Idempotency-Key lookups. Chunks of three rows, so that a file
 * of four rows has a second chunk.
 */
let t: TestApp
beforeAll(async () => {
  t = await startTestApp({ worker: true, env: { BULK_CHUNK_ROWS: '3' } })
})
afterAll(() => t?.close())

type Community = Awaited<ReturnType<TestApp['factory']['community']>>

const actions = async (c: Community, jobId: string) =>
  (await detailRows(t, c.bearer, jobId, 'limit=50')).map((r) => [r.row, r.action, r.error?.code ?? null])

const ledgerOf = (userId: string) =>
  t.deps.database.db
    .selectFrom('currency_ledger')
    .select(['community_id', 'currency', 'amount', 'balance_after', 'idempotency_key'])
    .where('user_id', '=', userId)
    .orderBy('id')
    .execute()

const premiumOf = async (userId: string) =>
  (
    await t.deps.database.db
      .selectFrom('users')
      .select('premium')
      .where('id', '=', userId)
      .executeTakeFirstOrThrow()
  ).premium

/** B with a user whose premium job wrote the ledger key `row:shared-key`. */
async function communityWithKey() {
  const b = await t.factory.community()
  const bUser = await t.factory.user(b.id)
  const bJob = await runJob(t, PREMIUM, b.bearer, {
    file: `email,amount,idempotency_key\n${bUser.email},3,shared-key\n`,
  })
  expect(bJob).toMatchObject({ status: 'completed', updated: 1 })
  expect(await ledgerOf(bUser.id)).toEqual([
    expect.objectContaining({ community_id: b.id, amount: 3, idempotency_key: 'row:shared-key' }),
  ])
  return { b, bUser }
}

describe("premium idempotency keys are the community's own", () => {
  /** A with a user, and a premium file naming that user twice (a played chunk), the first row with B's key. */
  async function playedFile() {
    const a = await t.factory.community()
    const aUser = await t.factory.user(a.id)
    const file = `email,amount,idempotency_key\n${aUser.email},5,shared-key\n${aUser.email},7,\n`
    return { a, aUser, file }
  }

  it("a played chunk (one user named twice) credits A's row whose key B's job already wrote", async () => {
    const { bUser } = await communityWithKey()
    const { a, aUser, file } = await playedFile()
    const real = await runJob(t, PREMIUM, a.bearer, { file })
    expect(real).toMatchObject({ status: 'completed', updated: 2, skipped: 0, failed: 0 })
    expect(await actions(a, real.jobId)).toEqual([
      [1, 'updated', null],
      [2, 'updated', null],
    ])
    expect(await premiumOf(aUser.id)).toBe(12)
    expect(await ledgerOf(aUser.id)).toEqual([
      {
        community_id: a.id,
        currency: 'premium',
        amount: 5,
        balance_after: 5,
        idempotency_key: 'row:shared-key',
      },
      expect.objectContaining({ community_id: a.id, amount: 7, balance_after: 12 }),
    ])
    // B's balance and ledger are untouched.
    expect(await premiumOf(bUser.id)).toBe(3)
    expect(await ledgerOf(bUser.id)).toHaveLength(1)
  })

  it("the dry run of that played chunk reports A's row with B's key as would-be updated", async () => {
    const { bUser } = await communityWithKey()
    const { a, aUser, file } = await playedFile()
    const dry = await runJob(t, PREMIUM, a.bearer, { file, fields: { dryRun: 'true' } })
    expect(dry).toMatchObject({ status: 'completed', dryRun: true, updated: 2, skipped: 0, failed: 0 })
    expect(await actions(a, dry.jobId)).toEqual([
      [1, 'updated', null],
      [2, 'updated', null],
    ])
    expect(await premiumOf(aUser.id)).toBe(0)
    expect(await ledgerOf(aUser.id)).toEqual([])
    expect(await premiumOf(bUser.id)).toBe(3)
    expect(await ledgerOf(bUser.id)).toHaveLength(1)
  })

  it("a dry run does not carry B's ledger key into a later chunk: A's row with that key would be credited", async () => {
    const { bUser } = await communityWithKey()
    const a = await t.factory.community()
    const aUser = await t.factory.user(a.id)
    // Chunk 1 (rows 1-3) sends the key on a row that changes nothing, so A writes no ledger row with
    // it; chunk 2 (row 4) sends it again on a row that credits.
    const file = [
      'email,amount,idempotency_key',
      `${aUser.email},0,shared-key`,
      `${aUser.email},5,`,
      `${aUser.email},2,`,
      `${aUser.email},7,shared-key`,
      '',
    ].join('\n')
    const expected = [
      [1, 'skipped', null],
      [2, 'updated', null],
      [3, 'updated', null],
      [4, 'updated', null],
    ]

    const dry = await runJob(t, PREMIUM, a.bearer, { file, fields: { dryRun: 'true' } })
    expect(dry).toMatchObject({ status: 'completed', dryRun: true, updated: 3, skipped: 1 })
    expect(await actions(a, dry.jobId)).toEqual(expected)
    expect(await ledgerOf(aUser.id)).toEqual([])

    // The real run gives what the dry run said.
    const real = await runJob(t, PREMIUM, a.bearer, { file })
    expect(real).toMatchObject({ status: 'completed', updated: 3, skipped: 1 })
    expect(await actions(a, real.jobId)).toEqual(expected)
    expect(await premiumOf(aUser.id)).toBe(14)
    expect((await ledgerOf(aUser.id)).map((l) => [l.community_id, l.amount])).toEqual([
      [a.id, 5],
      [a.id, 2],
      [a.id, 7],
    ])
    expect(await premiumOf(bUser.id)).toBe(3)
    expect(await ledgerOf(bUser.id)).toHaveLength(1)
  })
})

describe("played import and update chunks find only the community's own users", () => {
  /** All that A's job could have changed of B's user: its row, field histories and ledger rows. */
  async function traceOf(b: Community, userId: string) {
    const db = t.deps.database.db
    return {
      user: await db.selectFrom('users').selectAll().where('id', '=', userId).executeTakeFirstOrThrow(),
      histories: await db
        .selectFrom('field_histories')
        .selectAll()
        .where((eb) => eb.or([eb('user_id', '=', userId), eb('community_id', '=', b.id)]))
        .orderBy('id')
        .execute(),
      ledger: await db
        .selectFrom('currency_ledger')
        .selectAll()
        .where((eb) => eb.or([eb('user_id', '=', userId), eb('community_id', '=', b.id)]))
        .orderBy('id')
        .execute(),
    }
  }

  /** A and B alike (keyed by email or by the external id crm_id), each with custom fields; B's user has values. */
  async function setUp(externalId: boolean) {
    const make = () => (externalId ? t.factory.externalIdCommunity() : t.factory.community())
    const [a, b] = [await make(), await make()]
    for (const c of [a, b]) {
      await t.factory.userField(c.id, 'tier', 'text')
      await t.factory.userField(c.id, 'deposit', 'number')
    }
    const bUser = await t.factory.user(b.id, { email: `bee-${b.id}@x.io`, externalId: 'CRM-1' })
    await t.deps.database.db
      .updateTable('users')
      .set({
        xp: 10,
        coins: 4,
        custom_fields: JSON.stringify({
          tier: 'gold',
          deposit: 2,
          ...(externalId ? { crm_id: 'CRM-1' } : {}),
        }),
      })
      .where('id', '=', bUser.id)
      .execute()
    return { a, b, bUser, before: await traceOf(b, bUser.id) }
  }

  for (const externalId of [false, true]) {
    const keyed = externalId ? 'by external id' : 'by email'

    it(`an update ${keyed} naming B's user three times in one chunk fails user_not_found and leaves B's user alone`, async () => {
      const { a, b, bUser, before } = await setUp(externalId)
      const keys = externalId
        ? ['CRM-1', 'CRM-1', 'CRM-1']
        : [bUser.email, bUser.email.toUpperCase(), bUser.email]
      const file = [
        `${externalId ? 'crm_id' : 'email'},first_name,xp_op,xp,coins_op,coins,tier,deposit_op,deposit`,
        `${keys[0]},Hijack1,add,5,add,1,silver,add,1.5`,
        `${keys[1]},Hijack2,subtract,3,,,bronze,,`,
        `${keys[2]},Hijack3,overwrite,50,subtract,2,,add,3`,
        '',
      ].join('\n')
      const job = await runJob(t, UPDATE, a.bearer, { file })
      expect(job).toMatchObject({ status: 'completed_with_errors', updated: 0, created: 0, failed: 3 })
      expect(await actions(a, job.jobId)).toEqual([
        [1, 'failed', 'user_not_found'],
        [2, 'failed', 'user_not_found'],
        [3, 'failed', 'user_not_found'],
      ])
      expect(await traceOf(b, bUser.id)).toEqual(before)
      expect(
        await t.deps.database.db.selectFrom('users').select('id').where('community_id', '=', a.id).execute(),
      ).toEqual([])
    })

    it(`an import ${keyed} naming B's user three times in one chunk creates A's own user and leaves B's user alone`, async () => {
      const { a, b, bUser, before } = await setUp(externalId)
      const file = externalId
        ? [
            'crm_id,email,first_name,xp_op,xp,tier',
            `CRM-1,${bUser.email},Copy1,add,5,silver`,
            'CRM-1,,Copy2,add,6,',
            'CRM-1,,Copy3,subtract,1,bronze',
            '',
          ].join('\n')
        : [
            'email,first_name,xp_op,xp,tier',
            `${bUser.email},Copy1,add,5,silver`,
            `${bUser.email.toUpperCase()},Copy2,add,6,`,
            `${bUser.email},Copy3,subtract,1,bronze`,
            '',
          ].join('\n')
      const job = await runJob(t, IMPORT, a.bearer, { file })
      expect(job).toMatchObject({ status: 'completed', created: 1, updated: 2, failed: 0 })
      expect(await actions(a, job.jobId)).toEqual([
        [1, 'created', null],
        [2, 'updated', null],
        [3, 'updated', null],
      ])
      const db = t.deps.database.db
      const mine = await db
        .selectFrom('users')
        .select(['id', 'email', 'external_id', 'first_name', 'xp', 'custom_fields'])
        .where('community_id', '=', a.id)
        .execute()
      expect(mine).toEqual([
        {
          id: expect.any(String),
          email: bUser.email,
          external_id: externalId ? 'CRM-1' : null,
          first_name: 'Copy3',
          xp: 10,
          custom_fields: expect.objectContaining({ tier: 'bronze' }),
        },
      ])
      expect(mine[0].id).not.toBe(bUser.id)
      expect((await ledgerOf(mine[0].id)).map((l) => [l.community_id, l.currency, l.amount])).toEqual([
        [a.id, 'xp', 5],
        [a.id, 'xp', 6],
        [a.id, 'xp', -1],
      ])
      expect(await traceOf(b, bUser.id)).toEqual(before)
    })
  }
})

describe('an Idempotency-Key is looked up in the uploading community only', () => {
  it('the same key and the same file in C then D: D gets a new job of its own, and its user is credited', async () => {
    const c = await t.factory.community()
    const d = await t.factory.community()
    // One address in both communities, so the two uploads are the very same file.
    const cUser = await t.factory.user(c.id, { email: 'same@x.io' })
    const dUser = await t.factory.user(d.id, { email: 'same@x.io' })
    const file = 'email,amount\nsame@x.io,25\n'

    const first = await upload(t, PREMIUM, { ...c.bearer, 'idempotency-key': 'k' }, { file })
    expect(first.statusCode, first.body).toBe(200)
    const cJob = await waitForJob(t, c.bearer, first.json().data.jobId)
    expect(cJob).toMatchObject({ status: 'completed', updated: 1 })

    const second = await upload(t, PREMIUM, { ...d.bearer, 'idempotency-key': 'k' }, { file })
    expect(second.statusCode, second.body).toBe(200)
    const dJobId = second.json().data.jobId
    expect(dJobId).not.toBe(cJob.jobId)
    const dJob = await waitForJob(t, d.bearer, dJobId)
    expect(dJob).toMatchObject({ jobId: dJobId, type: 'premium_currency', status: 'completed', updated: 1 })
    const fromC = await t.app.inject({ method: 'GET', url: `${JOBS}/${dJobId}`, headers: c.bearer })
    expect(fromC.statusCode).toBe(404)

    expect(await premiumOf(dUser.id)).toBe(25)
    expect(await premiumOf(cUser.id)).toBe(25)
    expect((await ledgerOf(dUser.id)).map((l) => [l.community_id, l.amount])).toEqual([[d.id, 25]])
    expect((await ledgerOf(cUser.id)).map((l) => [l.community_id, l.amount])).toEqual([[c.id, 25]])
    const owners = await t.deps.database.db
      .selectFrom('bulk_jobs')
      .select(['id', 'community_id'])
      .where('id', 'in', [cJob.jobId, dJobId])
      .execute()
    expect(new Map(owners.map((o) => [o.id, o.community_id]))).toEqual(
      new Map([
        [cJob.jobId, c.id],
        [dJobId, d.id],
      ]),
    )
    // A retry in D now answers with D's job.
    const retry = await upload(t, PREMIUM, { ...d.bearer, 'idempotency-key': 'k' }, { file })
    expect(retry.json().data.jobId).toBe(dJobId)
    expect(await premiumOf(dUser.id)).toBe(25)
  })
})

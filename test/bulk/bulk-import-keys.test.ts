import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { failedRows, IMPORT, runJob } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/** Bulk import: created/updated/skipped counts, email keys (any case) and the community's external id key. */

let t: TestApp
beforeAll(async () => {
  t = await startTestApp({ worker: true })
})
afterAll(() => t.close())

const db = () => t.deps.database.db

function usersOf(communityId: string) {
  return db()
    .selectFrom('users')
    .select(['id', 'email', 'external_id', 'first_name', 'custom_fields'])
    .where('community_id', '=', communityId)
    .orderBy('email')
    .execute()
}

const externalIdCommunity = () => t.factory.externalIdCommunity()

describe('bulk import keyed by email', () => {
  it('counts created, updated and skipped rows; emails match in any case and are stored lower case', async () => {
    const c = await t.factory.community()
    const same = await t.factory.user(c.id, { email: 'same@x.io' })
    const changed = await t.factory.user(c.id, { email: 'changed@x.io' })
    const job = await runJob(t, IMPORT, c.bearer, {
      file: 'email,first_name\nSAME@X.IO,Test\nChanged@x.io,Changed\nNew.Person@X.io,New\n',
    })
    expect(job).toMatchObject({
      type: 'import',
      status: 'completed',
      total: 3,
      processed: 3,
      created: 1,
      updated: 1,
      skipped: 1,
      failed: 0,
    })
    const users = await usersOf(c.id)
    expect(users.map((u) => [u.email, u.first_name])).toEqual([
      ['changed@x.io', 'Changed'],
      ['new.person@x.io', 'New'],
      ['same@x.io', 'Test'],
    ])
    expect(users.find((u) => u.email === 'same@x.io')!.id).toBe(same.id)
    expect(users.find((u) => u.email === 'changed@x.io')!.id).toBe(changed.id)
  })

  it('one email twice in a file (different case): the first row creates, the second updates the same user', async () => {
    const c = await t.factory.community()
    const job = await runJob(t, IMPORT, c.bearer, {
      file: 'email,first_name,xp\nTwice@x.io,One,5\ntwice@X.IO,Two,7\n',
    })
    expect(job).toMatchObject({ status: 'completed', created: 1, updated: 1, failed: 0 })
    const users = await usersOf(c.id)
    expect(users.map((u) => [u.email, u.first_name])).toEqual([['twice@x.io', 'Two']])
  })

  it('importing the same file twice creates nothing twice', async () => {
    const c = await t.factory.community()
    const file = 'email,first_name,last_name\nann@x.io,Ann,A\nbob@x.io,Bob,B\nANN@x.io,Ann,A\n'
    const first = await runJob(t, IMPORT, c.bearer, { file })
    expect(first).toMatchObject({ status: 'completed', created: 2, skipped: 1, updated: 0 })
    const second = await runJob(t, IMPORT, c.bearer, { file })
    expect(second).toMatchObject({ status: 'completed', created: 0, updated: 0, skipped: 3 })
    expect((await usersOf(c.id)).map((u) => u.email)).toEqual(['ann@x.io', 'bob@x.io'])
  })
})

describe('bulk import keyed by the community external id', () => {
  it('matches by external id, creates new users with it, and fails new users without an email (missing_email)', async () => {
    const c = await externalIdCommunity()
    const existing = await t.factory.user(c.id, { email: 'eve.old@x.io', externalId: 'CRM-1' })
    const file = 'crm_id,email,first_name\nCRM-1,eve.new@x.io,Eve\nCRM-2,Finn@x.io,Finn\nCRM-3,,Gus\n'
    const job = await runJob(t, IMPORT, c.bearer, { file })
    expect(job).toMatchObject({
      status: 'completed_with_errors',
      created: 1,
      updated: 1,
      failed: 1,
      unknownColumns: [],
    })
    expect(await failedRows(t, c.bearer, job.jobId)).toEqual([
      expect.objectContaining({
        row: 3,
        line: 4,
        key: 'CRM-3',
        error: expect.objectContaining({ code: 'missing_email', field: 'email' }),
      }),
    ])
    const users = await usersOf(c.id)
    expect(users.map((u) => [u.external_id, u.email, u.first_name])).toEqual([
      ['CRM-1', 'eve.new@x.io', 'Eve'],
      ['CRM-2', 'finn@x.io', 'Finn'],
    ])
    expect(users[0].id).toBe(existing.id)
    // users.external_id mirrors the identifier field.
    expect(users.map((u) => u.custom_fields)).toEqual([{ crm_id: 'CRM-1' }, { crm_id: 'CRM-2' }])
    const hist = await db()
      .selectFrom('field_histories')
      .select(['user_id', 'field', 'old_value', 'new_value', 'source', 'changed_by'])
      .where('community_id', '=', c.id)
      .orderBy('new_value')
      .execute()
    expect(hist).toEqual([
      {
        user_id: existing.id,
        field: 'crm_id',
        old_value: null,
        new_value: 'CRM-1',
        source: 'bulk_import',
        changed_by: job.jobId,
      },
      {
        user_id: users[1].id,
        field: 'crm_id',
        old_value: null,
        new_value: 'CRM-2',
        source: 'bulk_import',
        changed_by: job.jobId,
      },
    ])

    // The same file again: nothing is created twice, the user without email still fails.
    const again = await runJob(t, IMPORT, c.bearer, { file })
    expect(again).toMatchObject({ created: 0, updated: 0, skipped: 2, failed: 1 })
    expect(await usersOf(c.id)).toHaveLength(2)
  })

  it('an external-id file whose new user takes an email already in use fails that row only', async () => {
    const c = await externalIdCommunity()
    await t.factory.user(c.id, { email: 'taken@x.io' })
    const job = await runJob(t, IMPORT, c.bearer, {
      file: 'crm_id,email\nCRM-9,taken@x.io\nCRM-10,free@x.io\n',
    })
    expect(job).toMatchObject({ status: 'completed_with_errors', created: 1, failed: 1 })
    const [f] = await failedRows(t, c.bearer, job.jobId)
    expect(f).toMatchObject({ row: 1, key: 'CRM-9' })
    // The INSERT … ON CONFLICT skips that row and the update pass finds no user with its key.
    expect(f.error).toMatchObject({ code: 'duplicate_user', field: 'email' })
    expect((await usersOf(c.id)).map((u) => [u.email, u.external_id])).toEqual([
      ['free@x.io', 'CRM-10'],
      ['taken@x.io', null],
    ])
  })

  it('emails that clash inside one wave fail only their rows: a held email, and two rows taking one free email', async () => {
    const c = await externalIdCommunity()
    await t.factory.user(c.id, { email: 'held@x.io' })
    const rows = Array.from({ length: 40 }, (_, i) => `CRM-${i},u${i}@x.io,Old`)
    await runJob(t, IMPORT, c.bearer, { file: `crm_id,email,first_name\n${rows.join('\n')}\n` })
    // One wave (40 distinct keys): row 6 takes an email a user no row moves holds (decided before
    // the UPDATE); rows 10 and 31 both take the same free email (the database refuses the wave,
    // which is split until only the later of the two fails); every other row renames its user.
    const update = Array.from({ length: 40 }, (_, i) =>
      i === 5 ? 'CRM-5,held@x.io,New' : i === 9 || i === 30 ? `CRM-${i},both@x.io,New` : `CRM-${i},,New`,
    )
    const job = await runJob(t, IMPORT, c.bearer, { file: `crm_id,email,first_name\n${update.join('\n')}\n` })
    expect(job).toMatchObject({ status: 'completed_with_errors', updated: 38, failed: 2, created: 0 })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed.map((f) => [f.row, f.key, f.error.code, f.error.field])).toEqual([
      [6, 'CRM-5', 'email_taken', 'email'],
      [31, 'CRM-30', 'email_taken', 'email'],
    ])
    const users = await usersOf(c.id)
    const byKey = new Map(users.map((u) => [u.external_id, u]))
    expect(byKey.get('CRM-9')).toMatchObject({ email: 'both@x.io', first_name: 'New' })
    expect(byKey.get('CRM-30')).toMatchObject({ email: 'u30@x.io', first_name: 'Old' })
    expect(byKey.get('CRM-5')).toMatchObject({ email: 'u5@x.io', first_name: 'Old' })
    expect(users.filter((u) => u.first_name === 'New')).toHaveLength(38)
  })

  it('without the external id column the file is keyed by email', async () => {
    const c = await externalIdCommunity()
    const u = await t.factory.user(c.id, { email: 'by.email@x.io' })
    const job = await runJob(t, IMPORT, c.bearer, {
      file: 'email,first_name\nBY.EMAIL@x.io,Mail\nfresh@x.io,Fresh\n',
    })
    expect(job).toMatchObject({ status: 'completed', created: 1, updated: 1 })
    const users = await usersOf(c.id)
    expect(users.map((x) => [x.email, x.first_name, x.external_id])).toEqual([
      ['by.email@x.io', 'Mail', null],
      ['fresh@x.io', 'Fresh', null],
    ])
    expect(users[0].id).toBe(u.id)
  })
})

describe('the identifier field mirrors users.external_id', () => {
  it('an email taken by another user fails only that row (the rest of the file still applies)', async () => {
    const c = await externalIdCommunity()
    await t.factory.user(c.id, { email: 'one@x.io', externalId: 'E1' })
    await t.factory.user(c.id, { email: 'two@x.io', externalId: 'E2' })
    const job = await runJob(t, IMPORT, c.bearer, {
      file: 'crm_id,email,first_name\nE1,two@x.io,Clash\nE2,two@x.io,Two\nE3,three@x.io,Three\n',
    })
    expect(job).toMatchObject({ status: 'completed_with_errors', created: 1, updated: 1, failed: 1 })
    const failed = await failedRows(t, c.bearer, job.jobId)
    expect(failed.map((r) => [r.row, r.key, r.error.code])).toEqual([[1, 'E1', 'email_taken']])
    const users = await usersOf(c.id)
    expect(users.map((u) => [u.external_id, u.email, u.first_name])).toEqual([
      ['E1', 'one@x.io', 'Test'],
      ['E3', 'three@x.io', 'Three'],
      ['E2', 'two@x.io', 'Two'],
    ])
  })

  it('a file keyed by an "externalId" column also fills the identifier field of the users it creates', async () => {
    const c = await externalIdCommunity()
    const job = await runJob(t, IMPORT, c.bearer, { file: 'externalId,email\nX-1,x1@x.io\n' })
    expect(job).toMatchObject({ status: 'completed', created: 1, unknownColumns: [] })
    const [u] = await usersOf(c.id)
    expect(u.external_id).toBe('X-1')
    expect(u.custom_fields).toEqual({ crm_id: 'X-1' })
  })

  it('spaces around the external id are trimmed in both users.external_id and the identifier field', async () => {
    const c = await externalIdCommunity()
    const job = await runJob(t, IMPORT, c.bearer, { file: 'crm_id,email\n  S-1  ,s1@x.io\n' })
    expect(job).toMatchObject({ status: 'completed', created: 1 })
    const [u] = await usersOf(c.id)
    expect(u.external_id).toBe('S-1')
    expect(u.custom_fields).toEqual({ crm_id: 'S-1' })
  })
})

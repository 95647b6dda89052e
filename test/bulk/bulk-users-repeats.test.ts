import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { detailRows, IMPORT, runJob, startPlayedAndOneByOne, UPDATE } from '../support/bulk.ts'
import type { TestApp } from '../support/harness.ts'

/**
 * Import and update files that name users many times are played in JS, chunk by chunk
 * (bulk.users-play.ts). With BULK_CHUNK_ROWS=1 every row is a chunk of its own, applied alone by the
 * per-wave SQL: the one-by-one reference the played chunks must equal, row for row.
 */
let played: TestApp
let oneByOne: TestApp
beforeAll(async () => {
  ;[played, oneByOne] = await startPlayedAndOneByOne()
})
afterAll(() => Promise.all([played?.close(), oneByOne?.close()]))

const DATES = ['2024-02-29', '2025-07-01T10:20:30.123Z']

interface Scenario {
  path: string
  externalId: boolean
  file: string
}

/** Sets a community up the same way in either app, runs the file, and reads back all it wrote. */
async function run(t: TestApp, s: Scenario) {
  const db = t.deps.database.db
  const c = s.externalId ? await t.factory.externalIdCommunity() : await t.factory.community()
  await t.factory.userField(c.id, 'deposit', 'number')
  await t.factory.userField(c.id, 'tier', 'text')
  const seeds = [
    { email: 'ann@x.io', crm: 'A1', xp: 10, coins: 3, custom: { deposit: 1.5, tier: 'gold' } },
    { email: 'bob@x.io', crm: 'B2', xp: 0, coins: 0, custom: {} },
    { email: 'cat@x.io', crm: 'C3', xp: 5, coins: 5, custom: { deposit: 2 } },
  ]
  for (const seed of seeds) {
    const u = await t.factory.user(c.id, { email: seed.email, externalId: seed.crm })
    await db
      .updateTable('users')
      .set({
        username: seed.email.split('@')[0],
        xp: seed.xp,
        coins: seed.coins,
        custom_fields: JSON.stringify({ ...seed.custom, ...(s.externalId ? { crm_id: seed.crm } : {}) }),
        join_date: new Date('2020-01-01T00:00:00.000Z'),
        deleted_at: seed.email === 'cat@x.io' ? new Date() : null,
      })
      .where('id', '=', u.id)
      .execute()
  }
  const job = await runJob(t, s.path, c.bearer, { file: s.file })
  const ownJob = (v: unknown) => (typeof v === 'string' ? v.replaceAll(job.jobId, 'JOB') : v)
  const rows = await detailRows(t, c.bearer, job.jobId, 'limit=1000')
  const users = await db
    .selectFrom('users')
    .select([
      'id',
      'email',
      'external_id',
      'username',
      'country',
      'language',
      'join_date',
      'xp',
      'coins',
      'custom_fields',
      'deleted_at',
    ])
    .where('community_id', '=', c.id)
    .orderBy('email')
    .execute()
  const nameOf = new Map(users.map((u) => [u.id, u.email]))
  const histories = await db
    .selectFrom('field_histories')
    .select(['user_id', 'field', 'old_value', 'new_value', 'source', 'changed_by'])
    .where('community_id', '=', c.id)
    .orderBy('id')
    .execute()
  const ledger = await db
    .selectFrom('currency_ledger')
    .select(['user_id', 'currency', 'amount', 'balance_after', 'source', 'reason', 'idempotency_key'])
    .where('community_id', '=', c.id)
    .orderBy('id')
    .execute()
  const byUser = <T extends { user_id: string }>(list: T[]) =>
    list
      .map(({ user_id, ...rest }) => ({ user: nameOf.get(user_id), ...rest }))
      .map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, ownJob(v)])))
      // Each user's entries in the order they were written; users in one order.
      .sort((a, b) => String(a.user).localeCompare(String(b.user)))
  return {
    counts: [job.created, job.updated, job.skipped, job.failed],
    rows: rows.map((r) => [r.row, r.action, r.error?.code ?? null]),
    users: users.map(({ id: _, join_date, ...u }) => ({
      ...u,
      deleted_at: u.deleted_at !== null,
      // A user created without a join_date gets the time of its transaction.
      join_date: DATES.some((d) => new Date(d).getTime() === new Date(join_date).getTime())
        ? new Date(join_date).toISOString()
        : new Date(join_date).getTime() === Date.parse('2020-01-01T00:00:00.000Z')
          ? 'seeded'
          : 'now',
    })),
    histories: byUser(histories),
    ledger: byUser(ledger),
  }
}

async function expectSame(s: Scenario) {
  const [fast, reference] = await Promise.all([run(played, s), run(oneByOne, s)])
  expect(fast.rows).toEqual(reference.rows)
  expect(fast.counts).toEqual(reference.counts)
  expect(fast.users).toEqual(reference.users)
  expect(fast.histories).toEqual(reference.histories)
  expect(fast.ledger).toEqual(reference.ledger)
  return reference
}

const kinds = (rows: unknown[][]) => [...new Set(rows.map((r) => r[2] ?? r[1]))].sort()

describe('user rows naming users many times', () => {
  it('a bulk update played in chunks ends exactly as rows applied one by one', async () => {
    const emails = ['ann@x.io', 'bob@x.io', 'cat@x.io', 'ANN@x.io', 'nobody@x.io']
    const ops = ['add', 'subtract', 'overwrite', '']
    const decimals = ['0.1', '0.2', '2.5', '10', '0.05', '']
    const lines = ['email,username,xp_op,xp,coins_op,coins,deposit_op,deposit,tier,join_date']
    for (let i = 0; i < 160; i++) {
      const same = i % 13 === 12 // a row that writes the values the user already has
      lines.push(
        [
          emails[i % 5],
          same ? '' : i % 3 === 0 ? `name${i % 4}` : '',
          ops[i % 4],
          same ? '' : (i * 7) % 9,
          ops[(i + 1) % 4],
          same ? '' : (i * 5) % 4,
          ops[(i + 2) % 4],
          same ? '' : decimals[i % 6],
          same ? '' : i % 4 === 1 ? ['gold', 'silver'][i % 2] : '',
          same ? '' : i % 10 === 3 ? DATES[i % 2] : '',
        ].join(','),
      )
    }
    const ref = await expectSame({
      path: '/apis/v1/users/bulk-update',
      externalId: false,
      file: `${lines.join('\n')}\n`,
    })
    expect(kinds(ref.rows)).toEqual([
      'negative_balance',
      'skipped',
      'updated',
      'user_deleted',
      'user_not_found',
      'username_taken',
    ])
  })

  it('an import passing usernames between new and existing users, in any case, ends as one by one', async () => {
    // Seeded: ann, bob and (deleted) cat hold the usernames ann, bob and cat.
    const emails = ['ann@x.io', 'new1@x.io', 'bob@x.io', 'new2@x.io', 'cat@x.io', 'new3@x.io']
    const names = ['bob', 'ANN', 'robert', 'Cat', 'ann', 'zed', '', 'Robert', 'bob', 'ZED', 'new']
    const lines = ['email,username,xp_op,xp']
    for (let i = 0; i < 120; i++) {
      lines.push([emails[i % 6], names[(i * 5) % 11], 'add', i % 3].join(','))
    }
    const ref = await expectSame({
      path: '/apis/v1/users/bulk-import',
      externalId: false,
      file: `${lines.join('\n')}\n`,
    })
    expect(kinds(ref.rows)).toEqual(['created', 'skipped', 'updated', 'user_deleted', 'username_taken'])
  })

  it('a username freed or taken by a later row of the same wave is judged in file order', async () => {
    // Distinct users, so one wave, whose updates run before its inserts: as one by one, new1 cannot
    // take bob before bob@x.io leaves it; new2, after, can; ann cannot take robert (any case) once
    // bob has it; the deleted cat keeps its name.
    const file = [
      'email,username',
      'new1@x.io,bob',
      'bob@x.io,robert',
      'new2@x.io,Bob',
      'ann@x.io,ROBERT',
      'new3@x.io,cat',
      '',
    ].join('\n')
    const ref = await expectSame({ path: '/apis/v1/users/bulk-import', externalId: false, file })
    expect(ref.rows).toEqual([
      [1, 'failed', 'username_taken'],
      [2, 'updated', null],
      [3, 'created', null],
      [4, 'failed', 'username_taken'],
      [5, 'failed', 'username_taken'],
    ])
    expect(ref.users.map((u) => [u.email, u.username])).toEqual([
      ['ann@x.io', 'ann'],
      ['bob@x.io', 'robert'],
      ['cat@x.io', 'cat'],
      ['new2@x.io', 'Bob'],
    ])
  })

  it('an import keyed by external id, creating users and then changing them, ends as one by one', async () => {
    const keys = ['A1', 'N1', 'N2', 'C3', 'N3', 'B2']
    const lines = ['crm_id,email,first_name,xp,coins_op,coins,deposit_op,deposit,tier']
    for (let i = 0; i < 90; i++) {
      const key = keys[i % 6]
      // N3 never has an email: a new user needs one. The others keep the email they have or get.
      const email = key === 'N3' ? '' : key.startsWith('N') ? `${key.toLowerCase()}@new.io` : ''
      lines.push(
        [
          key,
          email,
          i % 4 === 0 ? `First${i % 3}` : '',
          i % 5 === 0 ? i % 50 : '',
          i % 2 ? 'add' : 'subtract',
          i % 7,
          'add',
          ['1.25', '0.1', ''][i % 3],
          i % 6 === 2 ? 'new' : '',
        ].join(','),
      )
    }
    const ref = await expectSame({
      path: '/apis/v1/users/bulk-import',
      externalId: true,
      file: `${lines.join('\n')}\n`,
    })
    expect(kinds(ref.rows)).toEqual(
      expect.arrayContaining(['created', 'updated', 'missing_email', 'user_deleted', 'negative_balance']),
    )
  })

  it('a file that moves emails (left to the per-wave SQL) ends as one by one too', async () => {
    const file = [
      'crm_id,email,xp_op,xp',
      'A1,ann2@x.io,add,1',
      'B2,ann@x.io,add,2',
      'A1,,add,3',
      'B2,ann2@x.io,add,4',
      'A1,ann@x.io,add,5',
      '',
    ].join('\n')
    const ref = await expectSame({ path: '/apis/v1/users/bulk-update', externalId: true, file })
    expect(ref.rows.map((r) => r[1])).toEqual(['updated', 'updated', 'updated', 'failed', 'failed'])
  })

  it('an email freed by a later row of the same wave is still taken for the earlier row', async () => {
    // Distinct users, so one wave: as one by one, A1 cannot take bob@x.io before B2 leaves it.
    // Both orders of the holder (ann was stored first, bob second), whatever order the UPDATE takes.
    for (const file of [
      'crm_id,email\nA1,bob@x.io\nB2,bob2@x.io\n',
      'crm_id,email\nB2,ann@x.io\nA1,ann2@x.io\n',
    ]) {
      const ref = await expectSame({ path: '/apis/v1/users/bulk-update', externalId: true, file })
      expect(ref.rows).toEqual([
        [1, 'failed', 'email_taken'],
        [2, 'updated', null],
      ])
    }
  })

  it('rows of different users keep file order across waves when names pass between them', async () => {
    // Seeded: ann, bob, (deleted) cat. A user named twice puts its second row in a later wave than
    // the rows after its first: rows of other users that give or free names must still come after.
    const cases: [string, boolean, string, unknown[][]][] = [
      // ann asks for bob before bob leaves it; then the same in an import, for a new user.
      [
        UPDATE,
        false,
        'email,first_name,username\nann@x.io,Ann,\nann@x.io,,bob\nbob@x.io,,robert\n',
        [
          [1, 'updated', null],
          [2, 'failed', 'username_taken'],
          [3, 'updated', null],
        ],
      ],
      [
        IMPORT,
        false,
        'email,first_name,username\nn@x.io,N,\nn@x.io,,bob\nbob@x.io,,robert\n',
        [
          [1, 'created', null],
          [2, 'failed', 'username_taken'],
          [3, 'updated', null],
        ],
      ],
      // ann takes zed before bob asks for it.
      [
        UPDATE,
        false,
        'email,first_name,username\nann@x.io,Ann,\nann@x.io,,zed\nbob@x.io,,zed\n',
        [
          [1, 'updated', null],
          [2, 'updated', null],
          [3, 'failed', 'username_taken'],
        ],
      ],
      // Played (ann three times), with a swap through a spare name: ann→tmp, bob→ann, ann→bob.
      [
        UPDATE,
        false,
        'email,first_name,username\nann@x.io,A,\nann@x.io,B,\nann@x.io,,tmp\nbob@x.io,,ann\nann@x.io,,bob\n',
        [
          [1, 'updated', null],
          [2, 'updated', null],
          [3, 'updated', null],
          [4, 'updated', null],
          [5, 'updated', null],
        ],
      ],
      // Emails, keyed by external id: A1 asks for bob@ before B2 leaves it.
      [
        UPDATE,
        true,
        'crm_id,first_name,email\nA1,Ann,\nA1,,bob@x.io\nB2,,bob2@x.io\n',
        [
          [1, 'updated', null],
          [2, 'failed', 'email_taken'],
          [3, 'updated', null],
        ],
      ],
    ]
    // A new user's email is taken: its name is not, though a later new user of the wave takes it.
    cases.push([
      IMPORT,
      true,
      'crm_id,email,username\nN1,ann@x.io,dup\nN3,n3@x.io,DUP\n',
      [
        [1, 'failed', 'duplicate_user'],
        [2, 'created', null],
      ],
    ])
    for (const [path, externalId, file, expected] of cases) {
      const ref = await expectSame({ path, externalId, file })
      expect(ref.rows, file).toEqual(expected)
    }
  })

  it("compares usernames as the database's lower() does, which JS's toLowerCase() does not match", async () => {
    // lower('İVAN') is 'ivan' in the database; in JS it keeps a combining dot. Set-based, then played.
    for (const file of [
      'email,username\nn1@x.io,ivan\nn2@x.io,İVAN\n',
      'email,username,xp\nn1@x.io,ivan,1\nn1@x.io,,2\nn1@x.io,,3\nn2@x.io,İVAN,1\n',
    ]) {
      const ref = await expectSame({ path: IMPORT, externalId: false, file })
      expect(ref.rows.at(-1), file).toEqual([ref.rows.length, 'failed', 'username_taken'])
    }
  })

  it('an import keyed by external id: a new user cannot take an email a later row of its wave frees', async () => {
    const file = 'crm_id,email\nN1,bob@x.io\nB2,bob2@x.io\nN2,bob@x.io\n'
    const ref = await expectSame({ path: '/apis/v1/users/bulk-import', externalId: true, file })
    expect(ref.rows).toEqual([
      [1, 'failed', 'duplicate_user'],
      [2, 'updated', null],
      [3, 'created', null],
    ])
  })

  it('an import keyed by email that names new and existing users many times ends as one by one', async () => {
    const lines = ['email,country,xp_op,xp,deposit']
    for (let i = 0; i < 60; i++) {
      lines.push(
        [
          ['ann@x.io', 'new1@x.io', 'New2@x.io', 'bob@x.io'][i % 4],
          ['SG', 'GB', ''][i % 3],
          'add',
          i % 3,
          i % 4 ? '' : i / 4,
        ].join(','),
      )
    }
    const ref = await expectSame({
      path: '/apis/v1/users/bulk-import',
      externalId: false,
      file: `${lines.join('\n')}\n`,
    })
    expect(ref.counts[0]).toBe(2)
  })
})

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newId } from '../../src/lib/ids.ts'
import { IMPORT, PREMIUM, runJob, UPDATE } from '../support/bulk.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/** GET /apis/v1/users/bulk-import/template: the columns of each kind of bulk file, per community. */

let t: TestApp
beforeAll(async () => {
  t = await startTestApp({ worker: true })
})
afterAll(() => t.close())

const TEMPLATE = '/apis/v1/users/bulk-import/template'
type Auth = Record<string, string>

/** The writable default fields, in the order of DEFAULT_FIELDS. */
const DEFAULTS = 'email,username,first_name,last_name,display_name,phone,country,language,avatar,join_date'

const template = (auth: Auth, query = '') =>
  t.app.inject({ method: 'GET', url: `${TEMPLATE}${query}`, headers: auth })

async function templateBody(auth: Auth, query = '') {
  const res = await template(auth, query)
  expect(res.statusCode, res.body).toBe(200)
  expect(res.headers['content-type']).toBe('text/csv; charset=utf-8')
  return res.body
}

/** A custom field created at a given time: creation order is what the template follows. */
function fieldCreatedAt(communityId: string, field: string, type: string, createdAt: string) {
  return t.deps.database.db
    .insertInto('user_fields')
    .values({
      id: newId(),
      community_id: communityId,
      field,
      name: field,
      type,
      created_at: new Date(createdAt),
      updated_at: new Date(createdAt),
    })
    .execute()
}

/** A community whose custom fields were created zeta (text), alpha (number), then mid (date). */
async function communityWithFields() {
  const c = await t.factory.community()
  await t.factory.userField(c.id, 'zeta', 'text')
  await t.factory.userField(c.id, 'alpha', 'number')
  await t.factory.userField(c.id, 'mid', 'date')
  return c
}

describe('the import template', () => {
  it('is the writable default fields, then one column per custom field in creation order', async () => {
    const c = await communityWithFields()
    const res = await template(c.bearer, '?type=import')
    expect(res.headers['content-disposition']).toBe('attachment; filename="hearth-import-template.csv"')
    expect(res.body).toBe(`${DEFAULTS},xp,coins,zeta,alpha,mid\r\n`)
    // import is the default type.
    expect(await templateBody(c.bearer)).toBe(res.body)
  })

  it('orders custom fields by when they were created, not by name or id', async () => {
    const c = await t.factory.community()
    await fieldCreatedAt(c.id, 'second', 'text', '2024-02-01T00:00:00Z')
    await fieldCreatedAt(c.id, 'first', 'text', '2024-01-01T00:00:00Z')
    expect(await templateBody(c.bearer)).toBe(`${DEFAULTS},xp,coins,first,second\r\n`)
  })

  it('of a community without custom fields is the default fields alone', async () => {
    const c = await t.factory.community()
    expect(await templateBody(c.bearer)).toBe(`${DEFAULTS},xp,coins\r\n`)
  })

  it("never shows another community's custom fields", async () => {
    const a = await communityWithFields()
    const b = await t.factory.community()
    await t.factory.userField(b.id, 'b_secret', 'text')
    await t.factory.userField(b.id, 'b_score', 'number')
    expect(await templateBody(a.bearer)).toBe(`${DEFAULTS},xp,coins,zeta,alpha,mid\r\n`)
    expect(await templateBody(a.bearer, '?type=update')).not.toMatch(/b_secret|b_score/)
    expect(await templateBody(b.bearer)).toBe(`${DEFAULTS},xp,coins,b_secret,b_score\r\n`)
  })

  it('of a community keyed by external id holds its identifier field like any custom field', async () => {
    const c = await t.factory.externalIdCommunity('crm_id')
    expect(await templateBody(c.bearer)).toBe(`${DEFAULTS},xp,coins,crm_id\r\n`)
  })
})

describe('the update and premium currency templates', () => {
  it('update: <field>_op right before each numeric column, default and custom', async () => {
    const c = await communityWithFields()
    const res = await template(c.bearer, '?type=update')
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-disposition']).toBe('attachment; filename="hearth-update-template.csv"')
    expect(res.body).toBe(`${DEFAULTS},xp_op,xp,coins_op,coins,zeta,alpha_op,alpha,mid\r\n`)
  })

  it('premium currency: the same columns for either spelling of the type, whatever the custom fields', async () => {
    const c = await communityWithFields()
    for (const type of ['premium-currency', 'premium_currency']) {
      const res = await template(c.bearer, `?type=${type}`)
      expect(res.statusCode, type).toBe(200)
      expect(res.headers['content-disposition'], type).toBe(
        'attachment; filename="hearth-premium-currency-template.csv"',
      )
      expect(res.body, type).toBe('email,amount_op,amount,reason,idempotency_key\r\n')
    }
  })

  it('each template is a header its upload takes whole: no unknown column', async () => {
    const c = await communityWithFields()
    const uploads = [
      ['import', IMPORT],
      ['update', UPDATE],
      ['premium-currency', PREMIUM],
    ] as const
    for (const [type, path] of uploads) {
      const file = await templateBody(c.bearer, `?type=${type}`)
      const job = await runJob(t, path, c.bearer, { file })
      expect(job, type).toMatchObject({ status: 'completed', total: 0, failed: 0, unknownColumns: [] })
    }
  })
})

describe('template and job list: the type parameter', () => {
  it('a type that is not a job type gets a 400 in the Integration envelope naming the field', async () => {
    const c = await t.factory.community()
    for (const type of ['bogus', 'Premium-Currency', 'premium', '']) {
      const res = await template(c.bearer, `?type=${type}`)
      expect(res.statusCode, type).toBe(400)
      expect(res.json(), type).toEqual({
        status: 'error',
        message: expect.stringContaining('"type"'),
        error: { code: 'invalid_field', field: 'type' },
        requestId: expect.any(String),
      })
    }
  })

  it('an unknown query parameter gets a 400 naming it', async () => {
    const c = await t.factory.community()
    const res = await template(c.bearer, '?kind=import')
    expect(res.statusCode).toBe(400)
    expect(res.json()).toMatchObject({ status: 'error', error: { code: 'unknown_field', field: 'kind' } })
  })

  it('the jobs list takes premium_currency and premium-currency alike', async () => {
    const c = await t.factory.community()
    const u = await t.factory.user(c.id)
    const premium = await runJob(t, PREMIUM, c.bearer, { file: `email,amount\n${u.email},1\n` })
    await runJob(t, IMPORT, c.bearer, { file: 'email\nnew@x.io\n' })
    for (const type of ['premium_currency', 'premium-currency']) {
      const res = await t.app.inject({
        method: 'GET',
        url: `/apis/v1/users/bulk-updates?type=${type}`,
        headers: c.bearer,
      })
      expect(res.statusCode, type).toBe(200)
      expect(
        res.json().data.jobs.map((j: { jobId: string; type: string }) => [j.jobId, j.type]),
        type,
      ).toEqual([[premium.jobId, 'premium_currency']])
    }
  })
})

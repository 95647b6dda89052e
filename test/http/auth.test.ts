import { decodeJwt } from 'jose'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/lib/auth/secrets.ts'
import { newId } from '../../src/lib/ids.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

let t: TestApp
beforeAll(async () => {
  t = await startTestApp()
})
afterAll(() => t.close())

const db = () => t.deps.database.db
const PASSWORD = 'correct horse battery'

const register = (payload: object) => t.app.inject({ method: 'POST', url: '/apis/v1/auth/register', payload })
const login = (payload: object) => t.app.inject({ method: 'POST', url: '/apis/v1/auth/login', payload })

/** The raw token in the newest verification mail to `email`. */
function mailedToken(email: string): string {
  const mail = [...t.mails].reverse().find((m) => m.to === email)
  const m = /\/apis\/v1\/auth\/verify-email\?token=([0-9a-f]{64})/.exec(mail?.text ?? '')
  if (!m) throw new Error(`no verification mail to ${email}`)
  return m[1]
}

/** Back-dates or expires a one-time token, found by its hash. */
const alterToken = (token: string, values: { expires_at?: Date; created_at?: Date }) =>
  db().updateTable('auth_tokens').set(values).where('token_hash', '=', hashToken(token)).execute()

async function registered(communityId: string, email = `u-${newId()}@example.com`) {
  const res = await register({ communityId, email, password: PASSWORD, confirmPassword: PASSWORD })
  expect(res.statusCode).toBe(201)
  return { email, userId: res.json().data.user._id as string }
}

/** The user a Secure Auth answer's login URL signs in. */
async function loginUserOf(res: { json: () => { loginUrl: string } }) {
  const token = new URL(res.json().loginUrl).searchParams.get('token')!
  const row = await db()
    .selectFrom('auth_tokens')
    .select('user_id')
    .where('token_hash', '=', hashToken(token))
    .executeTakeFirstOrThrow()
  return row.user_id
}

describe('Auth', () => {
  describe('POST /apis/v1/auth/register', () => {
    it('creates an unverified member and mails a single verification link, never answering the token', async () => {
      const c = await t.factory.community()
      const res = await register({
        communityId: c.id,
        email: 'New.Person@Example.com',
        password: PASSWORD,
        confirmPassword: PASSWORD,
        username: 'newperson',
        firstname: 'New',
        lastname: 'Person',
        displayname: 'Newbie',
      })
      expect(res.statusCode).toBe(201)
      const body = res.json()
      expect(body.status).toBe('success')
      expect(body.message).toMatch(/check your email/i)
      expect(body.data).toEqual({
        user: {
          _id: expect.stringMatching(/^[0-9a-f]{24}$/),
          id: expect.any(Number),
          email: 'new.person@example.com',
          username: 'newperson',
          role: 'member',
          communityId: c.id,
        },
        emailVerified: false,
      })
      const token = mailedToken('new.person@example.com')
      expect(res.body).not.toContain(token)
      const mail = t.mails.at(-1)!
      expect(mail.text).toContain(`http://localhost:3000/apis/v1/auth/verify-email?token=${token}`)
      const user = await db()
        .selectFrom('users')
        .selectAll()
        .where('id', '=', body.data.user._id)
        .executeTakeFirstOrThrow()
      expect(user).toMatchObject({
        community_id: c.id,
        email_verified_at: null,
        first_name: 'New',
        last_name: 'Person',
        display_name: 'Newbie',
      })
      expect(user.password_hash).toMatch(/^scrypt\$/)
      expect(user.password_hash).not.toContain(PASSWORD)
      const stored = await db().selectFrom('auth_tokens').selectAll().where('user_id', '=', user.id).execute()
      expect(stored).toHaveLength(1)
      expect(stored[0]).toMatchObject({
        token_hash: hashToken(token),
        purpose: 'verify_email',
        community_id: c.id,
        used_at: null,
      })
      const hours = (new Date(stored[0].expires_at).getTime() - Date.now()) / 3_600_000
      expect(hours).toBeGreaterThan(23.9)
      expect(hours).toBeLessThanOrEqual(24)
    })

    it('refuses a duplicate email in the same community (any case) with 409, but allows it in another', async () => {
      const a = await t.factory.community()
      const b = await t.factory.community()
      await registered(a.id, 'dup@example.com')
      const again = await register({
        communityId: a.id,
        email: 'DUP@example.com',
        password: PASSWORD,
        confirmPassword: PASSWORD,
      })
      expect(again.statusCode).toBe(409)
      expect(again.json()).toMatchObject({ status: 'error', error: { code: 'email_taken', field: 'email' } })
      await registered(b.id, 'dup@example.com')
    })

    it('refuses a username taken in the community (any case) with 409, but allows it in another', async () => {
      const a = await t.factory.community()
      const b = await t.factory.community()
      await t.factory.user(a.id, { username: 'Neo' })
      const form = (communityId: string, email: string) => ({
        communityId,
        email,
        password: PASSWORD,
        confirmPassword: PASSWORD,
        username: 'neo',
      })
      const again = await register(form(a.id, 'neo@example.com'))
      expect(again.statusCode).toBe(409)
      expect(again.json()).toMatchObject({
        status: 'error',
        error: { code: 'username_taken', field: 'username' },
      })
      expect(await db().selectFrom('users').where('email', '=', 'neo@example.com').execute()).toEqual([])
      expect((await register(form(b.id, 'neo@example.com'))).statusCode).toBe(201)
    })

    it('gives a username to one of several registrations racing for it; the others answer 409 username_taken', async () => {
      // They race on both databases: each checks the username, then hashes its password (scrypt, off
      // the event loop) before inserting, so all pass the check and the losers meet the unique index
      // (community_id, lower(username)), told apart from the email index by its name. Without that
      // mapping the three losers answered 500 in every run, on PostgreSQL and on PGlite.
      const c = await t.factory.community()
      const results = await Promise.all(
        ['racer', 'Racer', 'RACER', 'rAcEr'].map((username, i) =>
          register({
            communityId: c.id,
            email: `racer${i}@example.com`,
            password: PASSWORD,
            confirmPassword: PASSWORD,
            username,
          }),
        ),
      )
      expect(results.map((r) => r.statusCode).sort()).toEqual([201, 409, 409, 409])
      for (const r of results.filter((x) => x.statusCode === 409)) {
        expect(r.json()).toMatchObject({
          status: 'error',
          error: { code: 'username_taken', field: 'username' },
        })
      }
      const users = await db().selectFrom('users').select('email').where('community_id', '=', c.id).execute()
      expect(users).toHaveLength(1)
      expect(results.find((r) => r.statusCode === 201)!.json().data.user.email).toBe(users[0].email)
    })

    it('enforces the password policy and confirmPassword', async () => {
      const c = await t.factory.community()
      const short = await register({
        communityId: c.id,
        email: 'a@example.com',
        password: 'short',
        confirmPassword: 'short',
      })
      expect(short.statusCode).toBe(400)
      expect(short.json().error).toMatchObject({ code: 'invalid_field', field: 'password' })
      const mismatch = await register({
        communityId: c.id,
        email: 'a@example.com',
        password: PASSWORD,
        confirmPassword: `${PASSWORD}!`,
      })
      expect(mismatch.statusCode).toBe(400)
      expect(mismatch.json().error).toMatchObject({ code: 'password_mismatch', field: 'confirmPassword' })
      const none = await db()
        .selectFrom('users')
        .select('id')
        .where('community_id', '=', c.id)
        .where('email', '=', 'a@example.com')
        .execute()
      expect(none).toHaveLength(0)
    })

    it('rejects missing fields, wrong types, unknown fields, malformed JSON, bad and unknown communities', async () => {
      const c = await t.factory.community()
      const ok = { communityId: c.id, email: 'x@example.com', password: PASSWORD, confirmPassword: PASSWORD }
      const cases: [object, number, string, string][] = [
        [{ ...ok, email: undefined }, 400, 'invalid_field', 'email'],
        [{ ...ok, email: 'not-an-email' }, 400, 'invalid_field', 'email'],
        [{ ...ok, confirmPassword: undefined }, 400, 'invalid_field', 'confirmPassword'],
        [{ ...ok, password: 12345678 }, 400, 'invalid_field', 'password'],
        [{ ...ok, communityId: 'abc' }, 400, 'invalid_field', 'communityId'],
        [{ ...ok, role: 'owner' }, 400, 'unknown_field', 'role'],
        [{ ...ok, communityId: newId() }, 404, 'community_not_found', 'communityId'],
      ]
      for (const [payload, status, code, field] of cases) {
        const res = await register(payload)
        expect(res.statusCode, JSON.stringify(payload)).toBe(status)
        expect(res.json().error).toMatchObject({ code, field })
      }
      const malformed = await t.app.inject({
        method: 'POST',
        url: '/apis/v1/auth/register',
        headers: { 'content-type': 'application/json' },
        payload: '{"email":',
      })
      expect(malformed.statusCode).toBe(400)
      expect(malformed.json()).toMatchObject({ status: 'error', error: { code: 'malformed_json' } })
    })
  })

  describe('verify email', () => {
    it('verifies with POST {token} once; the second use is 400 invalid_token', async () => {
      const c = await t.factory.community()
      const { email, userId } = await registered(c.id)
      const token = mailedToken(email)
      const res = await t.app.inject({
        method: 'POST',
        url: '/apis/v1/auth/verify-email',
        payload: { token },
      })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toMatchObject({
        status: 'success',
        message: 'Email verified successfully',
        data: { emailVerified: true, user: { _id: userId, email } },
      })
      const user = await db()
        .selectFrom('users')
        .select('email_verified_at')
        .where('id', '=', userId)
        .executeTakeFirstOrThrow()
      expect(user.email_verified_at).not.toBeNull()
      const again = await t.app.inject({
        method: 'POST',
        url: '/apis/v1/auth/verify-email',
        payload: { token },
      })
      expect(again.statusCode).toBe(400)
      expect(again.json().error).toMatchObject({ code: 'invalid_token', field: 'token' })
    })

    it('verifies through the mailed GET link', async () => {
      const c = await t.factory.community()
      const { email, userId } = await registered(c.id)
      const link = new URL(/(http\S+verify-email\?token=\S+)/.exec(t.mails.at(-1)!.text)![1])
      const res = await t.app.inject({ method: 'GET', url: `${link.pathname}${link.search}` })
      expect(res.statusCode).toBe(200)
      expect(res.json().data).toMatchObject({ emailVerified: true, user: { _id: userId, email } })
    })

    it('refuses an expired token with 400 token_expired and leaves the user unverified', async () => {
      const c = await t.factory.community()
      const { email, userId } = await registered(c.id)
      const token = mailedToken(email)
      await alterToken(token, { expires_at: new Date(Date.now() - 1000) })
      const res = await t.app.inject({ method: 'GET', url: `/apis/v1/auth/verify-email?token=${token}` })
      expect(res.statusCode).toBe(400)
      expect(res.json().error).toMatchObject({ code: 'token_expired', field: 'token' })
      const user = await db()
        .selectFrom('users')
        .select('email_verified_at')
        .where('id', '=', userId)
        .executeTakeFirstOrThrow()
      expect(user.email_verified_at).toBeNull()
    })

    it('rejects unknown, missing and extra inputs', async () => {
      const unknown = await t.app.inject({
        method: 'POST',
        url: '/apis/v1/auth/verify-email',
        payload: { token: 'f'.repeat(64) },
      })
      expect(unknown.json().error).toMatchObject({ code: 'invalid_token' })
      const missing = await t.app.inject({ method: 'POST', url: '/apis/v1/auth/verify-email', payload: {} })
      expect(missing.json().error).toMatchObject({ code: 'invalid_field', field: 'token' })
      const extra = await t.app.inject({ method: 'GET', url: '/apis/v1/auth/verify-email?token=abc&email=x' })
      expect(extra.json().error).toMatchObject({ code: 'unknown_field', field: 'email' })
      // A secure-auth token is not a verification token.
      const c = await t.factory.community()
      const u = await t.factory.user(c.id)
      const sa = await t.app.inject({
        method: 'GET',
        url: `/api/secureAuth?userId=${u.id}`,
        headers: { apikey: c.apiKey, hostname: 'h.example' },
      })
      const saToken = new URL(sa.json().loginUrl).searchParams.get('token')
      const crossed = await t.app.inject({
        method: 'POST',
        url: '/apis/v1/auth/verify-email',
        payload: { token: saToken },
      })
      expect(crossed.json().error).toMatchObject({ code: 'invalid_token' })
    })
  })

  describe('POST /apis/v1/auth/verify-email/resend', () => {
    const resend = (payload: object) =>
      t.app.inject({ method: 'POST', url: '/apis/v1/auth/verify-email/resend', payload })
    const verify = (token: string) =>
      t.app.inject({ method: 'POST', url: '/apis/v1/auth/verify-email', payload: { token } })
    const mailsTo = (email: string) => t.mails.filter((m) => m.to === email).length

    it('mails a new link that works, and retires the old one', async () => {
      const c = await t.factory.community()
      const { email } = await registered(c.id)
      const first = mailedToken(email)
      // The first mail was sent a moment ago: make it older than the one-per-minute limit.
      await alterToken(first, { created_at: new Date(Date.now() - 120_000) })
      const res = await resend({ communityId: c.id, email: email.toUpperCase() })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toMatchObject({ status: 'success', data: {} })
      expect(mailsTo(email)).toBe(2)
      const second = mailedToken(email)
      expect(second).not.toBe(first)
      expect((await verify(first)).json().error).toMatchObject({ code: 'invalid_token' })
      expect((await verify(second)).statusCode).toBe(200)
    })

    it("answers the same and mails nothing for an unknown, a verified or another community's account", async () => {
      const c = await t.factory.community()
      const other = await t.factory.community()
      const { email } = await registered(c.id)
      await verify(mailedToken(email))
      const mailsBefore = t.mails.length
      const answers = []
      for (const body of [
        { communityId: c.id, email: 'nobody@example.com' },
        { communityId: c.id, email }, // verified already
        { communityId: other.id, email }, // no such account in that community
      ]) {
        const res = await resend(body)
        expect(res.statusCode).toBe(200)
        answers.push(res.json())
      }
      expect(new Set(answers.map((a) => JSON.stringify(a))).size).toBe(1)
      expect(t.mails.length).toBe(mailsBefore)
    })

    it('sends at most one mail per account per minute', async () => {
      const c = await t.factory.community()
      const { email } = await registered(c.id)
      for (let i = 0; i < 3; i++) expect((await resend({ communityId: c.id, email })).statusCode).toBe(200)
      expect(mailsTo(email)).toBe(1) // the registration mail only
    })

    it('rejects a bad body with the field at fault', async () => {
      for (const [payload, field] of [
        [{ communityId: 'nope', email: 'a@b.io' }, 'communityId'],
        [{ communityId: newId(), email: 'not-an-email' }, 'email'],
        [{ communityId: newId(), email: 'a@b.io', extra: 1 }, 'extra'],
      ] as const) {
        const res = await resend(payload)
        expect(res.statusCode, JSON.stringify(payload)).toBe(400)
        expect(res.json()).toMatchObject({ status: 'error', error: { field } })
      }
    })
  })

  describe('POST /apis/v1/auth/login', () => {
    it('logs a verified user in with the documented fields and sets last_login', async () => {
      const c = await t.factory.community()
      const user = await t.factory.user(c.id, {
        email: `login-${newId()}@example.com`,
        password: PASSWORD,
        role: 'admin',
      })
      const res = await login({ email: user.email.toUpperCase(), password: PASSWORD })
      expect(res.statusCode).toBe(200)
      const body = res.json()
      expect(body).toMatchObject({ status: 'success', message: 'Login successful' })
      expect(body.data).toEqual({
        token: expect.any(String),
        expiresIn: 7 * 24 * 3600,
        user: {
          _id: user.id,
          id: Number(user.seq),
          email: user.email,
          username: user.username,
          role: 'admin',
          communityId: c.id,
        },
      })
      const claims = decodeJwt(body.data.token)
      expect(claims).toMatchObject({ _id: user.id, id: Number(user.seq), communityId: c.id, role: 'admin' })
      expect(claims.exp! - claims.iat!).toBe(7 * 24 * 3600)
      const row = await db()
        .selectFrom('users')
        .select('last_login')
        .where('id', '=', user.id)
        .executeTakeFirstOrThrow()
      expect(row.last_login).not.toBeNull()
      // The token is a working session.
      const mine = await t.app.inject({
        method: 'GET',
        url: `/apis/v1/users/${user.id}/api-keys`,
        headers: { authorization: `Bearer ${body.data.token}` },
      })
      expect(mine.statusCode).toBe(200)
    })

    it('completes register → verify → login', async () => {
      const c = await t.factory.community()
      const { email } = await registered(c.id)
      const before = await login({ email, password: PASSWORD })
      expect(before.statusCode).toBe(403)
      expect(before.json().error.code).toBe('email_not_verified')
      await t.app.inject({
        method: 'POST',
        url: '/apis/v1/auth/verify-email',
        payload: { token: mailedToken(email) },
      })
      const after = await login({ email, password: PASSWORD, communityId: c.id })
      expect(after.statusCode).toBe(200)
      expect(after.json().data.user).toMatchObject({ email, role: 'member', communityId: c.id })
    })

    it('needs communityId when the email is in several communities', async () => {
      const a = await t.factory.community()
      const b = await t.factory.community()
      const email = `multi-${newId()}@example.com`
      const inA = await t.factory.user(a.id, { email, password: PASSWORD })
      const inB = await t.factory.user(b.id, { email, password: 'another password' })
      const res = await login({ email, password: PASSWORD })
      expect(res.statusCode).toBe(400)
      expect(res.json().error).toMatchObject({ code: 'community_required', field: 'communityId' })
      const toA = await login({ email, password: PASSWORD, communityId: a.id })
      expect(toA.json().data.user._id).toBe(inA.id)
      const toB = await login({ email, password: 'another password', communityId: b.id })
      expect(toB.json().data.user._id).toBe(inB.id)
      // A's password does not open B's account.
      const crossed = await login({ email, password: PASSWORD, communityId: b.id })
      expect(crossed.statusCode).toBe(401)
    })

    it('answers wrong password and unknown email alike with 401 invalid_credentials', async () => {
      const c = await t.factory.community()
      const user = await t.factory.user(c.id, { password: PASSWORD })
      const wrong = await login({ email: user.email, password: 'wrong password' })
      const unknown = await login({ email: `nobody-${newId()}@example.com`, password: PASSWORD })
      const otherCommunity = await login({ email: user.email, password: PASSWORD, communityId: newId() })
      for (const res of [wrong, unknown, otherCommunity]) {
        expect(res.statusCode).toBe(401)
        expect(res.json()).toMatchObject({
          status: 'error',
          message: 'Invalid email or password',
          error: { code: 'invalid_credentials' },
        })
      }
      // An unverified account with a wrong password learns nothing about verification.
      const { email } = await registered(c.id)
      const unverifiedWrong = await login({ email, password: 'wrong password' })
      expect(unverifiedWrong.json().error.code).toBe('invalid_credentials')
      // An account without a password (SSO) cannot log in with one.
      const sso = await t.factory.user(c.id)
      expect((await login({ email: sso.email, password: PASSWORD })).statusCode).toBe(401)
    })

    it('ignores a stale Authorization header (public route)', async () => {
      const c = await t.factory.community()
      const user = await t.factory.user(c.id, { password: PASSWORD })
      const res = await t.app.inject({
        method: 'POST',
        url: '/apis/v1/auth/login',
        headers: { authorization: 'Bearer not.a.jwt' },
        payload: { email: user.email, password: PASSWORD },
      })
      expect(res.statusCode).toBe(200)
      const sa = await t.app.inject({
        method: 'GET',
        url: `/api/secureAuth?userId=${user.id}`,
        headers: { apikey: c.apiKey, authorization: `Bearer ${c.apiKey}` },
      })
      expect(sa.statusCode).toBe(200)
    })

    it('refuses soft-deleted users', async () => {
      const c = await t.factory.community()
      const user = await t.factory.user(c.id, { password: PASSWORD })
      await db().updateTable('users').set({ deleted_at: new Date() }).where('id', '=', user.id).execute()
      const res = await login({ email: user.email, password: PASSWORD })
      expect(res.statusCode).toBe(401)
      expect(res.json().error.code).toBe('invalid_credentials')
    })

    it('rejects bad bodies', async () => {
      const cases: [unknown, string, string][] = [
        [{ password: PASSWORD }, 'invalid_field', 'email'],
        [{ email: 'a@example.com' }, 'invalid_field', 'password'],
        [{ email: 'a@example.com', password: PASSWORD, communityId: 42 }, 'invalid_field', 'communityId'],
        [{ email: 'a@example.com', password: PASSWORD, remember: true }, 'unknown_field', 'remember'],
      ]
      for (const [payload, code, field] of cases) {
        const res = await login(payload as object)
        expect(res.statusCode, JSON.stringify(payload)).toBe(400)
        expect(res.json().error).toMatchObject({ code, field })
      }
    })
  })
})

describe('Secure Auth', () => {
  const secureAuth = (query: string, headers: Record<string, string>) =>
    t.app.inject({ method: 'GET', url: `/api/secureAuth?${query}`, headers })

  async function broker() {
    const c = await t.factory.community()
    const user = await t.factory.user(c.id)
    const keyRow = await db()
      .selectFrom('api_keys')
      .select('id')
      .where('key_hash', '=', hashToken(c.apiKey))
      .executeTakeFirstOrThrow()
    return { c, user, keyId: keyRow.id, headers: { apikey: c.apiKey, hostname: 'cname.yourdomain.com' } }
  }

  const pathOf = (loginUrl: string) => {
    const u = new URL(loginUrl)
    return `${u.pathname}${u.search}`
  }

  describe('GET /api/secureAuth', () => {
    it('answers exactly {error, loginUrl, sessionId}; the URL names the key id, never the key', async () => {
      const b = await broker()
      const res = await secureAuth(`userId=${b.user.username}&accessLevel=3&action=login`, b.headers)
      expect(res.statusCode).toBe(200)
      const body = res.json()
      expect(Object.keys(body).sort()).toEqual(['error', 'loginUrl', 'sessionId'])
      expect(body.error).toBe(false)
      expect(body.sessionId).toMatch(/^[0-9a-f]{24}$/)
      const m = new RegExp(
        `^https://cname\\.yourdomain\\.com/v2/app/loginApi/${b.keyId}/3\\?token=([0-9a-f]{64})$`,
      ).exec(body.loginUrl)
      expect(m, body.loginUrl).not.toBeNull()
      expect(body.loginUrl).not.toContain(b.c.apiKey)
      const stored = await db()
        .selectFrom('auth_tokens')
        .selectAll()
        .where('token_hash', '=', hashToken(m![1]))
        .executeTakeFirstOrThrow()
      expect(stored).toMatchObject({
        purpose: 'secure_auth',
        community_id: b.c.id,
        user_id: b.user.id,
        used_at: null,
      })
      const minutes = (new Date(stored.expires_at).getTime() - Date.now()) / 60_000
      expect(minutes).toBeGreaterThan(4.9)
      expect(minutes).toBeLessThanOrEqual(5)
      // Recorded in the API log against the key (written just after the answer, hence the poll).
      const readLog = () =>
        db()
          .selectFrom('api_log')
          .select(['api_key_id', 'path', 'summary'])
          .where('community_id', '=', b.c.id)
          .execute()
      await expect
        .poll(readLog)
        .toEqual([expect.objectContaining({ api_key_id: b.keyId, path: '/api/secureAuth' })])
    })

    it('finds the user by external id, username, email or 24-hex id', async () => {
      const b = await broker()
      await db()
        .updateTable('users')
        .set({ external_id: 'bamboostick' })
        .where('id', '=', b.user.id)
        .execute()
      const username = b.user.username!.toUpperCase() // usernames compare in any case
      for (const userId of ['bamboostick', username, b.user.email.toUpperCase(), b.user.id]) {
        const res = await secureAuth(`userId=${encodeURIComponent(userId)}&accessLevel=2`, b.headers)
        expect(res.statusCode, userId).toBe(200)
        expect(await loginUserOf(res), userId).toBe(b.user.id)
      }
    })

    it('finds a username as the database compares names: "İVAN" names the user "ivan"', async () => {
      // JS lower-cases 'İVAN' to 'i̇van' (i + U+0307); lower() gives 'ivan', as the unique index compares.
      const b = await broker()
      await db().updateTable('users').set({ username: 'ivan' }).where('id', '=', b.user.id).execute()
      const folds = await sql<{ same: boolean }>`SELECT lower('İVAN') = 'ivan' AS same`.execute(db())
      expect(folds.rows[0].same, "lower() folds 'İ' to 'i' here (PGlite; PostgreSQL in C.UTF-8)").toBe(true)
      const res = await secureAuth(`userId=${encodeURIComponent('İVAN')}`, b.headers)
      expect(res.statusCode).toBe(200)
      expect(await loginUserOf(res)).toBe(b.user.id)
    })

    it("uses the user's own access level when none is given", async () => {
      const b = await broker()
      await db().updateTable('users').set({ access_level: 4 }).where('id', '=', b.user.id).execute()
      const res = await secureAuth(`userId=${b.user.id}`, b.headers)
      expect(res.json().loginUrl).toContain(`/loginApi/${b.keyId}/4?token=`)
    })

    it('refuses a missing, unknown, disabled or expired key and the system key with 401 {error:true}', async () => {
      const b = await broker()
      const missing = await secureAuth(`userId=${b.user.id}`, { hostname: 'h.example' })
      expect(missing.statusCode).toBe(401)
      expect(missing.json()).toMatchObject({
        error: true,
        code: 'api_key_required',
        message: expect.any(String),
      })
      const unknown = await secureAuth(`userId=${b.user.id}`, { apikey: 'f'.repeat(64) })
      expect(unknown.json()).toMatchObject({ error: true, code: 'invalid_api_key' })
      const system = await secureAuth(`userId=${b.user.id}`, { apikey: b.c.systemKey })
      expect(system.json()).toMatchObject({ error: true, code: 'invalid_api_key' })
      const expiredKey = await t.factory.apiKey(b.c.id, ['createUser'], {
        expireDate: new Date(Date.now() - 1000),
      })
      const expired = await secureAuth(`userId=${b.user.id}`, { apikey: expiredKey })
      expect(expired.statusCode).toBe(401)
      expect(expired.json()).toMatchObject({ error: true, code: 'api_key_expired' })
      await db().updateTable('api_keys').set({ is_active: false }).where('id', '=', b.keyId).execute()
      const disabled = await secureAuth(`userId=${b.user.id}`, b.headers)
      expect(disabled.json()).toMatchObject({ error: true, code: 'api_key_disabled' })
    })

    it('rejects a missing userId, bad accessLevel or hostname and unknown query fields with 400 {error:true}', async () => {
      const b = await broker()
      const cases: [string, Record<string, string>, string, string][] = [
        ['accessLevel=3', b.headers, 'invalid_field', 'userId'],
        [`userId=${b.user.id}&accessLevel=high`, b.headers, 'invalid_field', 'accessLevel'],
        [
          `userId=${b.user.id}`,
          { ...b.headers, hostname: 'evil.example/steal?x=' },
          'invalid_field',
          'hostname',
        ],
        [`userId=${b.user.id}&redirect=x`, b.headers, 'unknown_field', 'redirect'],
      ]
      for (const [query, headers, code, field] of cases) {
        const res = await secureAuth(query, headers)
        expect(res.statusCode, query).toBe(400)
        expect(res.json()).toMatchObject({ error: true, code, field })
      }
    })

    it('cannot reach a user of another community: 404 and no token issued', async () => {
      const a = await broker()
      const b = await broker()
      const before = await db()
        .selectFrom('auth_tokens')
        .select('token_hash')
        .where('user_id', '=', b.user.id)
        .execute()
      for (const userId of [b.user.id, b.user.email, b.user.username!]) {
        const res = await secureAuth(`userId=${encodeURIComponent(userId)}`, a.headers)
        expect(res.statusCode, userId).toBe(404)
        expect(res.json()).toMatchObject({ error: true, code: 'user_not_found', field: 'userId' })
      }
      const after = await db()
        .selectFrom('auth_tokens')
        .select('token_hash')
        .where('user_id', '=', b.user.id)
        .execute()
      expect(after).toHaveLength(before.length)
    })
  })

  describe('GET /v2/app/loginApi/:keyId/:accessLevel', () => {
    it('exchanges the one-time token for a session, once', async () => {
      const b = await broker()
      const { loginUrl, sessionId } = (
        await secureAuth(`userId=${b.user.id}&accessLevel=3`, b.headers)
      ).json()
      const res = await t.app.inject({ method: 'GET', url: pathOf(loginUrl) })
      expect(res.statusCode).toBe(200)
      const body = res.json()
      expect(body).toMatchObject({
        error: false,
        token: expect.any(String),
        sessionId,
        user: {
          _id: b.user.id,
          id: Number(b.user.seq),
          email: b.user.email,
          username: b.user.username,
          role: 'member',
          communityId: b.c.id,
        },
      })
      expect(decodeJwt(body.token)).toMatchObject({
        _id: b.user.id,
        communityId: b.c.id,
        accessLevel: 3,
        sessionId,
      })
      const session = await t.app.inject({
        method: 'GET',
        url: `/apis/v1/users/${b.user.id}/api-keys`,
        headers: { authorization: `Bearer ${body.token}` },
      })
      expect(session.statusCode).toBe(200)
      const again = await t.app.inject({ method: 'GET', url: pathOf(loginUrl) })
      expect(again.statusCode).toBe(400)
      expect(again.json()).toMatchObject({ error: true, code: 'invalid_token', field: 'token' })
    })

    it('refuses an expired token, a changed access level or key id, and a malformed key id', async () => {
      const b = await broker()
      const issue = async () =>
        (await secureAuth(`userId=${b.user.id}&accessLevel=3`, b.headers)).json().loginUrl as string
      const expiredUrl = await issue()
      const token = new URL(expiredUrl).searchParams.get('token')!
      await alterToken(token, { expires_at: new Date(Date.now() - 1000) })
      const expired = await t.app.inject({ method: 'GET', url: pathOf(expiredUrl) })
      expect(expired.statusCode).toBe(400)
      expect(expired.json()).toMatchObject({ error: true, code: 'token_expired' })
      const raised = await t.app.inject({ method: 'GET', url: pathOf(await issue()).replace('/3?', '/9?') })
      expect(raised.json()).toMatchObject({ error: true, code: 'invalid_token' })
      const otherKey = await t.app.inject({
        method: 'GET',
        url: pathOf(await issue()).replace(b.keyId, newId()),
      })
      expect(otherKey.json()).toMatchObject({ error: true, code: 'invalid_token' })
      const malformed = await t.app.inject({
        method: 'GET',
        url: `/v2/app/loginApi/${b.c.apiKey}/3?token=abc`,
      })
      expect(malformed.statusCode).toBe(400)
      expect(malformed.json()).toMatchObject({ error: true, code: 'invalid_field', field: 'keyId' })
      const noToken = await t.app.inject({ method: 'GET', url: `/v2/app/loginApi/${b.keyId}/3` })
      expect(noToken.json()).toMatchObject({ error: true, code: 'invalid_field', field: 'token' })
    })

    it('stops working when the key is disabled or the user deleted after the URL was issued', async () => {
      const b = await broker()
      const first = (await secureAuth(`userId=${b.user.id}`, b.headers)).json().loginUrl
      const second = (await secureAuth(`userId=${b.user.id}`, b.headers)).json().loginUrl
      await db().updateTable('api_keys').set({ is_active: false }).where('id', '=', b.keyId).execute()
      const disabled = await t.app.inject({ method: 'GET', url: pathOf(first) })
      expect(disabled.statusCode).toBe(401)
      expect(disabled.json()).toMatchObject({ error: true, code: 'api_key_disabled' })
      await db().updateTable('api_keys').set({ is_active: true }).where('id', '=', b.keyId).execute()
      await db().updateTable('users').set({ deleted_at: new Date() }).where('id', '=', b.user.id).execute()
      const deleted = await t.app.inject({ method: 'GET', url: pathOf(second) })
      expect(deleted.statusCode).toBe(401)
      expect(deleted.json()).toMatchObject({ error: true, code: 'invalid_credentials' })
    })
  })
})

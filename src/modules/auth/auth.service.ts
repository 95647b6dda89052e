import { hashPassword, verifyPassword } from '../../lib/auth/secrets.ts'
import { isUniqueViolation } from '../../lib/db/sql-errors.ts'
import type { AppDeps } from '../../lib/deps.ts'
import { badRequest, conflict, forbidden, notFound, unauthorized } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import { usernameTakenConflict } from '../users/create-user.service.ts'
import { isUsernameTakenError, usernameTaken } from '../users/users.repo.ts'
import * as repo from './auth.repo.ts'
import { consumeToken, issueToken, lastIssuedAt, retireTokens } from './one-time-tokens.ts'

/** The unique index keeping an email to one user of a community (migration 000001). */
const EMAIL_INDEX = 'users_community_email'

/** Session JWT lifetime (seconds); login answers it as `expiresIn`. */
export const SESSION_TTL_SECONDS = 7 * 24 * 3600
const VERIFY_TTL_SECONDS = 24 * 3600
/** A new verification mail at most this often per account (mail bombing, token churn). */
const RESEND_INTERVAL_SECONDS = 60

export interface RegisterInput {
  communityId: string
  email: string
  password: string
  confirmPassword: string
  username?: string
  firstname?: string
  lastname?: string
  displayname?: string
}

export interface LoginInput {
  email: string
  password: string
  communityId?: string
}

type Deps = Pick<AppDeps, 'database' | 'mailer' | 'jwt' | 'config'>

/** The base of links we mail: PUBLIC_URL, else this server on localhost. */
export function publicBase(config: AppDeps['config']): string {
  return (config.publicUrl ?? `http://localhost:${config.port}`).replace(/\/+$/, '')
}

/** Registration with email verification, and password login; sessions are JWTs. */
export function createAuthService(deps: Deps) {
  const { db } = deps.database

  async function mailVerification(user: repo.AuthUserRow, communityName: string) {
    const token = await issueToken(db, {
      purpose: 'verify_email',
      communityId: user.community_id,
      userId: user.id,
      ttlSeconds: VERIFY_TTL_SECONDS,
    })
    const link = `${publicBase(deps.config)}/apis/v1/auth/verify-email?token=${token}`
    await deps.mailer.send({
      to: user.email,
      subject: `Verify your email for ${communityName}`,
      text: `Welcome to ${communityName}.\n\nOpen this link to verify your email address:\n${link}\n\nThe link works once and expires in 24 hours.`,
    })
  }

  /** Signs a session for a user (login and Secure Auth). */
  async function issueSession(user: repo.AuthUserRow, extraClaims: Record<string, unknown> = {}) {
    const token = await deps.jwt.sign(
      { _id: user.id, id: Number(user.seq), communityId: user.community_id, role: user.role },
      SESSION_TTL_SECONDS,
      extraClaims,
    )
    return { token, expiresIn: SESSION_TTL_SECONDS }
  }

  return {
    issueSession,

    /** Creates an unverified member and mails a one-time verification link. */
    async register(input: RegisterInput) {
      if (input.confirmPassword !== input.password) {
        throw badRequest('password_mismatch', 'confirmPassword does not match password', 'confirmPassword')
      }
      const community = await repo.findCommunityName(db, input.communityId)
      if (!community) throw notFound('community', 'communityId')
      const email = input.email.toLowerCase()
      const taken = () =>
        conflict('email_taken', 'An account with this email already exists in this community', 'email')
      if (await repo.emailTaken(db, community.id, email)) throw taken()
      if (input.username && (await usernameTaken(db, community.id, input.username)))
        throw usernameTakenConflict()
      const passwordHash = await hashPassword(input.password)
      const user = await repo
        .insertUser(db, {
          id: newId(),
          communityId: community.id,
          email,
          passwordHash,
          username: input.username ?? null,
          firstName: input.firstname ?? null,
          lastName: input.lastname ?? null,
          displayName: input.displayname ?? null,
        })
        .catch((err) => {
          // Registrations racing past the checks above meet a unique index; its name says which.
          if (isUsernameTakenError(err)) throw usernameTakenConflict()
          if (isUniqueViolation(err) && (err as { constraint?: unknown }).constraint === EMAIL_INDEX)
            throw taken()
          throw err
        })
      await mailVerification(user, community.name)
      return user
    },

    /**
     * Mails a new verification link to an unverified account and retires the earlier ones. Says
     * nothing about whether the account exists; at most one mail per account per minute.
     */
    async resendVerification(input: { communityId: string; email: string }) {
      const [user] = await repo.findLoginCandidates(db, input.email.toLowerCase(), input.communityId)
      if (!user || user.email_verified_at || !user.password_hash) return
      const last = await lastIssuedAt(db, 'verify_email', user.community_id, user.id)
      if (last && Date.now() - last.getTime() < RESEND_INTERVAL_SECONDS * 1000) return
      const community = await repo.findCommunityName(db, user.community_id)
      if (!community) return
      await retireTokens(db, 'verify_email', user.community_id, user.id)
      await mailVerification(user, community.name)
    },

    /** Consumes a verification token (single use) and marks the email verified. */
    async verifyEmail(token: string) {
      const t = await consumeToken(db, 'verify_email', token)
      const user = await repo.markEmailVerified(db, t.communityId, t.userId)
      if (!user) throw badRequest('invalid_token', 'This token is invalid or was already used', 'token')
      return user
    },

    /**
     * Password login. Unknown email and wrong password answer the same 401 after the same scrypt
     * work; "not verified" is told only to someone who knows the password.
     */
    async login(input: LoginInput) {
      const candidates = await repo.findLoginCandidates(db, input.email.toLowerCase(), input.communityId)
      if (input.communityId === undefined && candidates.length > 1) {
        throw badRequest(
          'community_required',
          'This email has accounts in several communities; send communityId',
          'communityId',
        )
      }
      const user = candidates[0]
      const ok = await verifyPassword(input.password, user?.password_hash ?? null)
      if (!user || !ok) throw unauthorized('Invalid email or password', 'invalid_credentials')
      if (!user.email_verified_at)
        throw forbidden('Verify your email before logging in', 'email_not_verified')
      await repo.touchLastLogin(db, user.community_id, user.id)
      return { ...(await issueSession(user)), user }
    },
  }
}
export type AuthService = ReturnType<typeof createAuthService>

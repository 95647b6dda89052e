import { z } from 'zod'
import type { App } from '../../app.ts'
import type { AppDeps } from '../../lib/deps.ts'
import { integration, integrationOk } from '../../lib/http/envelope.ts'
import { authUserSchema, presentAuthUser, sessionSchema } from './auth.presenter.ts'
import {
  loginBody,
  registerBody,
  resendVerificationBody,
  verifyEmailBody,
  verifyEmailQuery,
} from './auth.schema.ts'
import { createAuthService } from './auth.service.ts'
import { registerSecureAuth } from './secure-auth.routes.ts'

const family = 'integration' as const
/**
 * Public routes: no `config.auth`, so credential resolution is skipped. A client that attaches a
 * (possibly stale) Authorization header to every call must still be able to log in.
 */
const tags = ['Authentication']

const verifiedSchema = z.object({ user: authUserSchema, emailVerified: z.boolean() })

/** Register, verify email and log in (Integration API), plus Secure Auth from secure-auth.routes.ts. */
export async function registerAuth(app: App, deps: AppDeps) {
  const service = createAuthService(deps)

  app.route({
    method: 'POST',
    url: '/apis/v1/auth/register',
    config: { family },
    schema: {
      operationId: 'registerUser',
      tags,
      summary: 'Register user with password',
      description:
        'Creates an unverified member of the community and mails a verification link (valid 24 hours, single use). ' +
        'The account cannot log in until the email is verified. ' +
        'An email another account of the community holds (in any case) answers 409 email_taken; a username ' +
        'another user of the community holds, in any case (usernames are unique per community), answers 409 ' +
        'username_taken, also when several registrations race for one name: one gets it, the others 409.',
      body: registerBody,
      response: { 201: integrationOk(verifiedSchema) },
    },
    handler: async (req, reply) => {
      const user = await service.register(req.body)
      const data = { user: presentAuthUser(user), emailVerified: false }
      return reply
        .code(201)
        .send(integration(data, 'Registration successful. Check your email to verify your account.'))
    },
  })

  const verify = async (token: string) => {
    const user = await service.verifyEmail(token)
    return integration({ user: presentAuthUser(user), emailVerified: true }, 'Email verified successfully')
  }

  app.route({
    method: 'POST',
    url: '/apis/v1/auth/verify-email',
    config: { family },
    schema: {
      operationId: 'verifyUserEmail',
      tags,
      summary: 'Verify user email',
      description:
        'Consumes the token from the verification mail. Used → 400 invalid_token; expired → 400 token_expired.',
      body: verifyEmailBody,
      response: { 200: integrationOk(verifiedSchema) },
    },
    handler: async (req) => verify(req.body.token),
  })

  app.route({
    method: 'GET',
    url: '/apis/v1/auth/verify-email',
    config: { family },
    schema: {
      operationId: 'verifyUserEmailLink',
      tags,
      summary: 'Verify user email (mailed link)',
      description: 'The link in the verification mail; same effect and answer as the POST.',
      querystring: verifyEmailQuery,
      response: { 200: integrationOk(verifiedSchema) },
    },
    handler: async (req) => verify(req.query.token),
  })

  app.route({
    method: 'POST',
    url: '/apis/v1/auth/verify-email/resend',
    config: { family },
    schema: {
      operationId: 'resendVerificationEmail',
      tags,
      summary: 'Send the verification mail again',
      description:
        'Mails a new verification link to an unverified account of the community and retires the earlier links. ' +
        'Answers the same whether or not such an account exists; at most one mail per account per minute.',
      body: resendVerificationBody,
      response: { 200: integrationOk(z.object({})) },
    },
    handler: async (req) => {
      await service.resendVerification(req.body)
      return integration(
        {},
        'If this account exists and is not verified yet, a new verification link was sent',
      )
    },
  })

  app.route({
    method: 'POST',
    url: '/apis/v1/auth/login',
    config: { family },
    schema: {
      operationId: 'loginUser',
      tags,
      summary: 'Log in user with password',
      description:
        'Answers a session JWT. Without communityId the email must belong to exactly one community ' +
        '(else 400 community_required). Wrong email or password → 401 invalid_credentials; unverified → 403 email_not_verified.',
      body: loginBody,
      response: { 200: integrationOk(sessionSchema) },
    },
    handler: async (req) => {
      const { token, expiresIn, user } = await service.login(req.body)
      return integration({ token, expiresIn, user: presentAuthUser(user) }, 'Login successful')
    },
  })

  await registerSecureAuth(app, deps, service)
}

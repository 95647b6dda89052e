import type { App } from '../../app.ts'
import type { AppDeps } from '../../lib/deps.ts'
import { createApiKeyService } from '../api-keys/api-keys.service.ts'
import { presentAuthUser } from './auth.presenter.ts'
import type { AuthService } from './auth.service.ts'
import {
  loginApiParams,
  loginApiQuery,
  loginApiResponse,
  secureAuthHeaders,
  secureAuthQuery,
  secureAuthResponse,
} from './secure-auth.schema.ts'
import { createSecureAuthService } from './secure-auth.service.ts'

/** Answers `{error:false,...}` and errors as `{error:true, message, code}`. */
const family = 'secureAuth' as const
// No `config.auth`: the key comes in Secure Auth's own `apiKey` header and the service checks it,
// so a stray Authorization header cannot get in the way; the login URL is public by design.
const tags = ['Authentication']

/** Secure Auth (api-reference section 1) and the login URL it hands out. */
export async function registerSecureAuth(app: App, deps: AppDeps, authService: AuthService) {
  const service = createSecureAuthService(deps, createApiKeyService(deps), authService)

  app.route({
    method: 'GET',
    url: '/api/secureAuth',
    config: { family },
    schema: {
      operationId: 'secureAuth',
      tags,
      summary: 'Secure Auth',
      description:
        'With a community API key in the `apiKey` header, answers a one-time login URL (5 minutes, single use) for a user ' +
        'of that community. The URL carries the key id, never the key. Missing or bad key → 401.',
      querystring: secureAuthQuery,
      headers: secureAuthHeaders,
      response: { 200: secureAuthResponse },
    },
    handler: async (req) => {
      const { loginUrl, sessionId, context } = await service.createLoginUrl({
        apiKey: req.headers.apikey,
        hostname: req.headers.hostname ?? req.host,
        ...req.query,
      })
      req.auth = context // so the API log records the request against the key
      return { error: false as const, loginUrl, sessionId }
    },
  })

  app.route({
    method: 'GET',
    url: '/v2/app/loginApi/:keyId/:accessLevel',
    config: { family },
    schema: {
      operationId: 'secureAuthLogin',
      tags,
      summary: 'Secure Auth login URL',
      description: 'Exchanges the one-time token of a Secure Auth login URL for a session JWT.',
      params: loginApiParams,
      querystring: loginApiQuery,
      response: { 200: loginApiResponse },
    },
    handler: async (req) => {
      const { token, expiresIn, sessionId, user } = await service.exchange(
        req.params.keyId,
        req.params.accessLevel,
        req.query.token,
      )
      return { error: false as const, token, expiresIn, sessionId, user: presentAuthUser(user) }
    },
  })
}

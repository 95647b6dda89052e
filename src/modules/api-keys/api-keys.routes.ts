import { z } from 'zod'
import type { App } from '../../app.ts'
import type { AppDeps } from '../../lib/deps.ts'
import type { AuthSpec } from '../../lib/http/auth.ts'
import { requireCommunity } from '../../lib/http/auth.ts'
import { application, applicationOk } from '../../lib/http/envelope.ts'
import { communityKeySchema, createdCommunityKeySchema, presentCommunityKey } from './api-keys.presenter.ts'
import type { KeyScope } from './api-keys.repo.ts'
import {
  communityKeyParams,
  communityParams,
  createCommunityKeyBody,
  listQuery,
  updateKeyBody,
} from './api-keys.schema.ts'
import { createApiKeyService } from './api-keys.service.ts'
import { registerUserApiKeys } from './user-api-keys.routes.ts'

const family = 'application' as const
/** Owners and admins of the community (session), or the community's system key. */
const auth: AuthSpec = { any: ['session', 'systemKey'], adminOnly: true }
const tags = ['API Keys']
const base = '/apis/v1/communities/:communityId/api-keys'

/** Community API keys (Application API) and, from user-api-keys.routes.ts, user API keys. */
export async function registerApiKeys(app: App, deps: AppDeps) {
  const service = createApiKeyService(deps)
  const scopeOf = (authCtx: Parameters<typeof requireCommunity>[0], communityId: string): KeyScope => ({
    communityId: requireCommunity(authCtx, communityId),
    kind: 'community',
  })

  app.route({
    method: 'POST',
    url: base,
    config: { family, auth },
    schema: {
      operationId: 'createCommunityApiKey',
      tags,
      summary: 'Create community API key',
      description:
        'Creates a Bearer key for the Application and Integration APIs. The raw `key` is in this answer only.',
      params: communityParams,
      body: createCommunityKeyBody,
      response: { 201: applicationOk(createdCommunityKeySchema) },
    },
    handler: async (req, reply) => {
      const scope = scopeOf(req.auth, req.params.communityId)
      const { row, key } = await service.create(scope, req.body, req.auth?.userId ?? null)
      return reply
        .code(201)
        .send(application({ ...presentCommunityKey(row), key }, 'Create API key success.', 201))
    },
  })

  app.route({
    method: 'GET',
    url: base,
    config: { family, auth },
    schema: {
      operationId: 'listCommunityApiKeys',
      tags,
      summary: 'Get community API keys',
      description: 'Newest first, keys masked.',
      params: communityParams,
      querystring: listQuery,
      response: {
        200: applicationOk(z.array(communityKeySchema), {
          page: z.number(),
          limit: z.number(),
          total: z.number(),
        }),
      },
    },
    handler: async (req) => {
      const { page, limit } = req.query
      const { rows, total } = await service.list(scopeOf(req.auth, req.params.communityId), page, limit)
      return application(rows.map(presentCommunityKey), 'Get API keys success.', 200, { page, limit, total })
    },
  })

  app.route({
    method: 'GET',
    url: `${base}/:apiKeyId`,
    config: { family, auth },
    schema: {
      operationId: 'getCommunityApiKey',
      tags,
      summary: 'Get community API key',
      params: communityKeyParams,
      response: { 200: applicationOk(communityKeySchema) },
    },
    handler: async (req) => {
      const row = await service.get(scopeOf(req.auth, req.params.communityId), req.params.apiKeyId)
      return application(presentCommunityKey(row), 'Get API key success.')
    },
  })

  app.route({
    method: 'PUT',
    url: `${base}/:apiKeyId`,
    config: { family, auth },
    schema: {
      operationId: 'updateCommunityApiKey',
      tags,
      summary: 'Update community API key',
      description:
        'Changes only the fields sent. A new expirePeriod counts from now; isActive=false disables the key.',
      params: communityKeyParams,
      body: updateKeyBody,
      response: { 200: applicationOk(communityKeySchema) },
    },
    handler: async (req) => {
      const row = await service.update(
        scopeOf(req.auth, req.params.communityId),
        req.params.apiKeyId,
        req.body,
      )
      return application(presentCommunityKey(row), 'Update API key success.')
    },
  })

  app.route({
    method: 'DELETE',
    url: `${base}/:apiKeyId`,
    config: { family, auth },
    schema: {
      operationId: 'deleteCommunityApiKey',
      tags,
      summary: 'Delete community API key',
      description: 'Permanent; the key is refused from the next request on. Returns the deleted key, masked.',
      params: communityKeyParams,
      response: { 200: applicationOk(communityKeySchema) },
    },
    handler: async (req) => {
      const row = await service.remove(scopeOf(req.auth, req.params.communityId), req.params.apiKeyId)
      return application(presentCommunityKey(row), 'Delete API key success.')
    },
  })

  await registerUserApiKeys(app, service)
}

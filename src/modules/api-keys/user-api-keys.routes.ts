import { z } from 'zod'
import type { App } from '../../app.ts'
import { forbidden } from '../../lib/errors.ts'
import type { AuthContext, AuthSpec } from '../../lib/http/auth.ts'
import { requireCommunity } from '../../lib/http/auth.ts'
import { integration, integrationOk } from '../../lib/http/envelope.ts'
import { createdUserKeySchema, presentUserKey, userKeySchema } from './api-keys.presenter.ts'
import type { KeyScope } from './api-keys.repo.ts'
import {
  createUserKeyBody,
  createUserKeyQuery,
  updateKeyBody,
  userKeyParams,
  userParams,
} from './api-keys.schema.ts'
import { type ApiKeyService, MAX_USER_KEYS } from './api-keys.service.ts'

const family = 'integration' as const
/** Only the user's own session manages their keys (a key cannot mint keys). */
const auth: AuthSpec = { any: ['session'] }
const tags = ['User API Keys']

/** The keys of the session user; any other userId is refused with 403. */
function ownScope(authCtx: AuthContext | null, userId: string, communityId?: string): KeyScope {
  const community = requireCommunity(authCtx, communityId)
  if (userId.toLowerCase() !== authCtx?.userId) {
    throw forbidden('You can manage only your own API keys', 'user_forbidden')
  }
  return { communityId: community, kind: 'user', userId: authCtx.userId }
}

/** User API keys (Integration API), documented as Post / Update User Api Key. */
export async function registerUserApiKeys(app: App, service: ApiKeyService) {
  app.route({
    method: 'POST',
    url: '/apis/v1/users/apikeys',
    config: { family, auth },
    schema: {
      operationId: 'createUserApiKey',
      tags,
      summary: 'Post User Api Key',
      description: 'Creates a Bearer key acting as the session user. The raw `key` is in this answer only.',
      querystring: createUserKeyQuery,
      body: createUserKeyBody,
      response: { 201: integrationOk(createdUserKeySchema) },
    },
    handler: async (req, reply) => {
      const scope = ownScope(req.auth, req.query.userId, req.body.communityId)
      const { row, key } = await service.create(scope, req.body, req.auth?.userId ?? null)
      return reply
        .code(201)
        .send(integration({ ...presentUserKey(row), key }, 'Create user API key success.'))
    },
  })

  app.route({
    method: 'GET',
    url: '/apis/v1/users/:userId/api-keys',
    config: { family, auth },
    schema: {
      operationId: 'listUserApiKeys',
      tags,
      summary: 'Get User Api Key',
      description: 'All keys of the session user, newest first, masked.',
      params: userParams,
      response: { 200: integrationOk(z.array(userKeySchema)) },
    },
    handler: async (req) => {
      // Creation caps a user's keys at MAX_USER_KEYS, so one page holds them all.
      const { rows } = await service.list(ownScope(req.auth, req.params.userId), 1, MAX_USER_KEYS)
      return integration(rows.map(presentUserKey), 'Get user API keys success.')
    },
  })

  app.route({
    method: 'PUT',
    url: '/apis/v1/users/:userId/api-keys/:keyId',
    config: { family, auth },
    schema: {
      operationId: 'updateUserApiKey',
      tags,
      summary: 'Update User Api Key',
      params: userKeyParams,
      body: updateKeyBody,
      response: { 200: integrationOk(userKeySchema) },
    },
    handler: async (req) => {
      const row = await service.update(ownScope(req.auth, req.params.userId), req.params.keyId, req.body)
      return integration(presentUserKey(row), 'Update user API key success.')
    },
  })

  app.route({
    method: 'DELETE',
    url: '/apis/v1/users/:userId/api-keys/:keyId',
    config: { family, auth },
    schema: {
      operationId: 'deleteUserApiKey',
      tags,
      summary: 'Delete User Api Key',
      params: userKeyParams,
      response: { 200: integrationOk(userKeySchema) },
    },
    handler: async (req) => {
      const row = await service.remove(ownScope(req.auth, req.params.userId), req.params.keyId)
      return integration(presentUserKey(row), 'Delete user API key success.')
    },
  })
}

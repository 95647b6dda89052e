import { z } from 'zod'
import type { App } from '../../app.ts'
import type { AppDeps } from '../../lib/deps.ts'
import { requireCommunity } from '../../lib/http/auth.ts'
import { application, applicationOk } from '../../lib/http/envelope.ts'
import { userDataAuth } from '../user-fields/user-fields.routes.ts'
import { actorOf } from './actor.ts'
import { fieldHistorySchema, presentHistory } from './field-histories.presenter.ts'
import {
  createHistoryBody,
  fieldHistoryParams,
  fieldUserHistoryParams,
  historyParams,
  historyQuery,
  userHistoryParams,
} from './field-histories.schema.ts'
import { createFieldHistoryService } from './field-histories.service.ts'

const family = 'application' as const
const tags = ['User Data']
const base = '/apis/v1/communities/:communityId/user-field-histories'
const OURS = "The docs list this endpoint as nav only: the path and shapes are Hearth's design. "
const LISTED =
  'Newest first; `page` from 1, `limit` up to 100 (default 20); `from`/`to` bound the change time (ISO 8601). ' +
  '`meta` carries page, limit and total.'
const pageMeta = { page: z.number(), limit: z.number(), total: z.number() }
const listResponse = { 200: applicationOk(z.array(fieldHistorySchema), pageMeta) }

/** The five user field history endpoints (Application API). */
export async function registerFieldHistories(app: App, deps: AppDeps) {
  const service = createFieldHistoryService(deps)
  const listed = (page: Awaited<ReturnType<typeof service.list>>, q: { page: number; limit: number }) =>
    application(page.rows.map(presentHistory), 'Get user field histories successful', 200, {
      page: q.page,
      limit: q.limit,
      total: page.total,
    })

  app.route({
    method: 'GET',
    url: base,
    config: { family, auth: userDataAuth },
    schema: {
      operationId: 'getCommunityUserFieldHistories',
      tags,
      summary: 'Get all user field histories in a community',
      description: OURS + LISTED,
      params: historyParams,
      querystring: historyQuery,
      response: listResponse,
    },
    handler: async (req) => {
      const communityId = requireCommunity(req.auth, req.params.communityId)
      return listed(await service.list(communityId, {}, req.query), req.query)
    },
  })

  app.route({
    method: 'GET',
    url: `${base}/fields/:fieldId`,
    config: { family, auth: userDataAuth },
    schema: {
      operationId: 'getUserFieldHistoriesByField',
      tags,
      summary: 'Get user field histories for a specific field',
      description: `${OURS}A deleted field's histories stay readable by its id. ${LISTED}`,
      params: fieldHistoryParams,
      querystring: historyQuery,
      response: listResponse,
    },
    handler: async (req) => {
      const communityId = requireCommunity(req.auth, req.params.communityId)
      return listed(await service.list(communityId, { fieldId: req.params.fieldId }, req.query), req.query)
    },
  })

  app.route({
    method: 'GET',
    url: `${base}/users/:userId`,
    config: { family, auth: userDataAuth },
    schema: {
      operationId: 'getUserFieldHistoriesByUser',
      tags,
      summary: 'Get user field histories for a specific user',
      description: `${OURS}\`userId\` is the user's _id. ${LISTED}`,
      params: userHistoryParams,
      querystring: historyQuery,
      response: listResponse,
    },
    handler: async (req) => {
      const communityId = requireCommunity(req.auth, req.params.communityId)
      return listed(await service.list(communityId, { userId: req.params.userId }, req.query), req.query)
    },
  })

  app.route({
    method: 'GET',
    url: `${base}/fields/:fieldId/users/:userId`,
    config: { family, auth: userDataAuth },
    schema: {
      operationId: 'getUserFieldHistoriesByFieldAndUser',
      tags,
      summary: 'Get user field histories of a specific user field and user',
      description: OURS + LISTED,
      params: fieldUserHistoryParams,
      querystring: historyQuery,
      response: listResponse,
    },
    handler: async (req) => {
      const communityId = requireCommunity(req.auth, req.params.communityId)
      const { fieldId, userId } = req.params
      return listed(await service.list(communityId, { fieldId, userId }, req.query), req.query)
    },
  })

  app.route({
    method: 'POST',
    url: `${base}/users/:userId`,
    config: { family, auth: userDataAuth },
    schema: {
      operationId: 'createUserFieldHistory',
      tags,
      summary: 'Create user field history for specific user',
      description:
        OURS +
        "Body `{fieldId | field, value}`: sets the user's custom value (and the external id when the field is the " +
        "community's identifier field) and records the change in one transaction; 201 with the history row " +
        '(source `api` for a key, `admin` for a session). When the user already holds that value nothing changes: ' +
        '200 with `data: null`.',
      params: userHistoryParams,
      body: createHistoryBody,
      response: {
        201: applicationOk(fieldHistorySchema),
        200: applicationOk(fieldHistorySchema.nullable()),
      },
    },
    handler: async (req, reply) => {
      const communityId = requireCommunity(req.auth, req.params.communityId)
      const row = await service.create(communityId, req.params.userId, req.body, actorOf(req.auth!))
      if (!row) return application(null, 'No change: the user already holds this value')
      return reply
        .code(201)
        .send(application(presentHistory(row), 'Create user field history successful', 201))
    },
  })
}

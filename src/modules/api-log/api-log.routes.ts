import { z } from 'zod'
import type { App } from '../../app.ts'
import type { AppDeps } from '../../lib/deps.ts'
import type { AuthSpec } from '../../lib/http/auth.ts'
import { requireCommunity } from '../../lib/http/auth.ts'
import { application, applicationOk } from '../../lib/http/envelope.ts'
import { apiLogSchema, presentLog } from './api-log.presenter.ts'
import { communityParams, listLogsQuery, logParams } from './api-log.schema.ts'
import { createApiLogService } from './api-log.service.ts'

const family = 'application' as const
// Community keys need readApiLog; sessions must be owner or admin; the system key has every right.
const auth: AuthSpec = {
  any: ['communityKey', 'systemKey', 'session'],
  permission: 'readApiLog',
  adminOnly: true,
}
const tags = ['API Log']

/** The API log (community settings > API Log): requests made with keys, and bulk jobs with live progress. */
export async function registerApiLog(app: App, deps: AppDeps) {
  const service = createApiLogService(deps)

  app.route({
    method: 'GET',
    url: '/apis/v1/communities/:communityId/api-logs',
    config: { family, auth },
    schema: {
      operationId: 'listApiLogs',
      tags,
      summary: 'List API log entries',
      description:
        'Newest first, keyset paginated: pass `meta.nextCursor` back as `cursor` until it is null. ' +
        'Entries linked to a bulk job carry the job with its current counts and percentage.',
      params: communityParams,
      querystring: listLogsQuery,
      response: {
        200: applicationOk(z.array(apiLogSchema), {
          limit: z.number(),
          nextCursor: z.string().nullable().describe('Cursor of the next page; null on the last page'),
        }),
      },
    },
    handler: async (req) => {
      const communityId = requireCommunity(req.auth, req.params.communityId)
      const { rows, nextCursor } = await service.list(communityId, req.query)
      return application(rows.map(presentLog), 'Read API logs success.', 200, {
        limit: req.query.limit,
        nextCursor,
      })
    },
  })

  app.route({
    method: 'GET',
    url: '/apis/v1/communities/:communityId/api-logs/:logId',
    config: { family, auth },
    schema: {
      operationId: 'getApiLog',
      tags,
      summary: 'Get one API log entry',
      params: logParams,
      response: { 200: applicationOk(apiLogSchema) },
    },
    handler: async (req) => {
      const communityId = requireCommunity(req.auth, req.params.communityId)
      const row = await service.get(communityId, req.params.logId)
      return application(presentLog(row), 'Read API log success.')
    },
  })
}

import { z } from 'zod'
import type { App } from '../../app.ts'
import type { AppDeps } from '../../lib/deps.ts'
import { forbidden } from '../../lib/errors.ts'
import { requireCommunity } from '../../lib/http/auth.ts'
import { system, systemOk } from '../../lib/http/envelope.ts'
import { presentServer, serverSchema } from './communities.presenter.ts'
import { createServerBody, serverIdParams, updateServerBody } from './communities.schema.ts'
import { createCommunityService } from './communities.service.ts'
import { communitiesOfUser, createOwnedCommunity } from './ownership.ts'

const family = 'system' as const

/** Servers (communities) in the System API family. */
export async function registerCommunities(app: App, deps: AppDeps) {
  const service = createCommunityService(deps)

  app.route({
    method: 'POST',
    url: '/api/v1/servers',
    config: { family, auth: { any: ['systemKey', 'session'] } },
    schema: {
      operationId: 'createServer',
      tags: ['Servers'],
      summary: 'Create new server',
      description:
        'Creates a community. The answer carries its system key (`x-api-key`) once; it is stored hashed. ' +
        'With a session token the caller becomes the owner of the new server.',
      body: createServerBody,
      response: { 201: systemOk(serverSchema.extend({ systemKey: z.string() })) },
    },
    handler: async (req, reply) => {
      const auth = req.auth!
      const { community, systemKey } = await createOwnedCommunity(deps, service, req.body, auth)
      return reply
        .code(201)
        .send(system({ ...presentServer(community), systemKey }, 'Server created successfully'))
    },
  })

  app.route({
    method: 'GET',
    url: '/api/v1/servers',
    config: { family, auth: { any: ['systemKey', 'session'] } },
    schema: {
      operationId: 'getMyServers',
      tags: ['Servers'],
      summary: 'Get my servers',
      description:
        'With a system key: that server. With a session: every server where the account (by email) is a member.',
      response: { 200: systemOk(z.array(serverSchema)) },
    },
    handler: async (req) => {
      const ids = await communitiesOfUser(deps, req.auth!)
      const rows = await service.list(ids)
      return system(rows.map(presentServer), 'Servers fetched successfully')
    },
  })

  app.route({
    method: 'PUT',
    url: '/api/v1/servers/:id',
    config: { family, auth: { any: ['systemKey', 'session'], adminOnly: true } },
    schema: {
      operationId: 'updateServer',
      tags: ['Servers'],
      summary: 'Update server',
      params: serverIdParams,
      body: updateServerBody,
      response: { 200: systemOk(serverSchema) },
    },
    handler: async (req) => {
      const communityId = requireCommunity(req.auth, req.params.id)
      if (
        req.auth?.credential === 'session' &&
        req.body.allowPublicBulkImport !== undefined &&
        req.auth.role !== 'owner'
      ) {
        throw forbidden('Only the owner can change the public bulk import switch', 'owner_only')
      }
      const c = await service.update(communityId, req.body)
      return system(presentServer(c), 'Server updated successfully')
    },
  })
}

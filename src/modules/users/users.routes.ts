import { z } from 'zod'
import type { App } from '../../app.ts'
import type { AppDeps } from '../../lib/deps.ts'
import { application, applicationOk, integration, integrationOk } from '../../lib/http/envelope.ts'
import { createUserCreator } from './create-user.service.ts'
import { filteredUserSchema } from './filter/filter.presenter.ts'
import { presentUserData, userDataSchema } from './user-data.presenter.ts'
import {
  createdUserSchema,
  includedFields,
  presentCreatedUser,
  presentPublicUser,
  publicUserSchema,
} from './users.presenter.ts'
import {
  createUserBody,
  filterUsersBody,
  getUserQuery,
  manageUserBody,
  userIdParams,
  userInfoBody,
} from './users.schema.ts'
import { createUsersService } from './users.service.ts'

const tags = ['Users']

/** Users (api-reference section 2): get, filter, create, user data, manage. */
export async function registerUsers(app: App, deps: AppDeps) {
  const service = createUsersService(deps)
  const createUser = createUserCreator({
    ...deps,
    onMailError: (err) => app.log.warn({ err }, 'welcome mail failed'),
  })

  app.route({
    method: 'GET',
    url: '/apis/v1/users/:userId',
    config: {
      family: 'application',
      auth: {
        any: ['communityKey', 'session', 'userKey'],
        permission: 'getUserData',
        userPermission: 'readOwnProfile',
      },
    },
    schema: {
      operationId: 'getUser',
      tags,
      summary: 'Get user',
      description:
        'A community API key (getUserData) or an owner/admin session reads any user of the community; a member ' +
        'session or a user API key (readOwnProfile) only its own record. Flags set to "true" pick the fields; ' +
        'with none, all fields are returned (a flag set to "false" leaves its field out).',
      params: userIdParams,
      querystring: getUserQuery,
      response: { 200: applicationOk(publicUserSchema) },
    },
    handler: async (req) => {
      const user = await service.get(req.auth!, req.params.userId)
      return application(presentPublicUser(user, includedFields(req.query)), 'Get user success.')
    },
  })

  app.route({
    method: 'POST',
    url: '/apis/v1/users/filter',
    // Admin sessions too: the admin console's users page searches with it.
    config: {
      family: 'integration',
      auth: { any: ['communityKey', 'session'], permission: 'getUserData', adminOnly: true },
    },
    schema: {
      operationId: 'getUsersWithFilters',
      tags,
      summary: 'Get Users with Filters',
      description:
        'The public docs do not show this path; Hearth serves it here. 200 users per page. Cursor mode (the ' +
        'default) answers next_cursor (null on the last page); page mode (send page) answers total_pages and ' +
        'current_page; cursor and page together are a 400. Users are ordered by creation. Deleted users never appear.',
      body: filterUsersBody,
      response: {
        200: integrationOk(
          z.object({
            users: z.array(filteredUserSchema),
            next_cursor: z.string().nullable().optional(),
            total_pages: z.number().int().optional(),
            current_page: z.number().int().optional(),
          }),
        ),
      },
    },
    handler: async (req) =>
      integration(await service.filter(req.auth!.communityId, req.body), 'Users fetched successfully'),
  })

  app.route({
    method: 'POST',
    url: '/apis/v1/users',
    config: { family: 'integration', auth: { any: ['communityKey'], permission: 'createUser' } },
    schema: {
      operationId: 'createUser',
      tags,
      summary: 'Create New User',
      description:
        'Password flow (password + confirmPassword) or SSO/broker flow (no password; customFields, externalId). ' +
        'A duplicate email answers 409 email_taken with the existing user in error.details, so a retried create ' +
        'never makes a second user. sendEmail mails a welcome without any password; emailPassword, joinServer and ' +
        'emailTemplate are accepted for compatibility.',
      body: createUserBody,
      response: { 201: integrationOk(createdUserSchema) },
    },
    handler: async (req, reply) => {
      const user = await createUser(req.auth!, req.body)
      return reply.code(201).send(integration(presentCreatedUser(user), 'User created successfully'))
    },
  })

  app.route({
    method: 'POST',
    url: '/apis/v1/users/info',
    config: { family: 'integration', auth: { any: ['communityKey'], permission: 'getUserData' } },
    schema: {
      operationId: 'getUserData',
      tags,
      summary: 'Get User Data',
      description:
        'idOrEmail is tried as _id, numeric id, email, then external id. Answers the documented fields plus ' +
        'premium, _id and email; the documented envelope has no message.',
      body: userInfoBody,
      response: { 200: integrationOk(userDataSchema) },
    },
    handler: async (req) =>
      integration(presentUserData(await service.info(req.auth!.communityId, req.body.idOrEmail))),
  })

  app.route({
    method: 'POST',
    url: '/apis/v1/users/manage',
    config: { family: 'integration', auth: { any: ['communityKey'], permission: 'manageUser' } },
    schema: {
      operationId: 'manageUserAccount',
      tags,
      summary: 'Manage User Account',
      description:
        'Soft-deletes or restores a user named by username, email, _id or numeric id. The docs print the bare ' +
        'request as the answer; Hearth keeps that echo in data inside the Integration envelope. Repeating an ' +
        'action answers the same. The owner cannot be deleted.',
      body: manageUserBody,
      response: { 200: integrationOk(z.object({ action: z.enum(['delete', 'restore']), user: z.string() })) },
    },
    handler: async (req) => {
      await service.manage(req.auth!.communityId, req.body)
      const message =
        req.body.action === 'delete' ? 'User deleted successfully' : 'User restored successfully'
      return integration({ action: req.body.action, user: req.body.user }, message)
    },
  })
}

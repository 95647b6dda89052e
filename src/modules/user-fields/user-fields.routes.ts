import { z } from 'zod'
import type { App } from '../../app.ts'
import type { AppDeps } from '../../lib/deps.ts'
import type { AuthSpec } from '../../lib/http/auth.ts'
import { requireCommunity } from '../../lib/http/auth.ts'
import { application, applicationOk } from '../../lib/http/envelope.ts'
import { actorOf } from '../field-histories/actor.ts'
import {
  customUserFieldSchema,
  presentCustomField,
  presentDefaultField,
  userFieldSchema,
} from './user-fields.presenter.ts'
import {
  communityParams,
  createUserFieldBody,
  fieldParams,
  updateUserFieldBody,
} from './user-fields.schema.ts'
import { createUserFieldService } from './user-fields.service.ts'

const family = 'application' as const
/** Docs: owner/admin of the community, or a community API key with the `userFields` permission. */
export const userDataAuth: AuthSpec = {
  any: ['communityKey', 'session'],
  permission: 'userFields',
  adminOnly: true,
}
const tags = ['User Data']
const base = '/apis/v1/communities/:communityId/user-fields'

/** Default and custom user fields (Application API). */
export async function registerUserFields(app: App, deps: AppDeps) {
  const service = createUserFieldService(deps)

  app.route({
    method: 'GET',
    url: base,
    config: { family, auth: userDataAuth },
    schema: {
      operationId: 'getAllUserFields',
      tags,
      summary: 'Get all user fields',
      description:
        'Default fields (system-maintained; `isDefault: true`, `_id: null`, `field` = the column name used by ' +
        'filters and CSV) followed by the custom fields in creation order. The docs list this page as nav only: ' +
        'the shape is ours, the same as a custom field.',
      params: communityParams,
      response: { 200: applicationOk(z.array(userFieldSchema)) },
    },
    handler: async (req) => {
      const communityId = requireCommunity(req.auth, req.params.communityId)
      const { defaults, custom } = await service.list(communityId)
      const data = [
        ...defaults.map((f) => presentDefaultField(f, communityId)),
        ...custom.map(presentCustomField),
      ]
      return application(data, 'Get user fields successful')
    },
  })

  app.route({
    method: 'GET',
    url: `${base}/:fieldId`,
    config: { family, auth: userDataAuth },
    schema: {
      operationId: 'getUserField',
      tags,
      summary: 'Get specific user field',
      description: 'One custom field of the community (nav only in the docs; the shape is ours).',
      params: fieldParams,
      response: { 200: applicationOk(customUserFieldSchema) },
    },
    handler: async (req) => {
      const communityId = requireCommunity(req.auth, req.params.communityId)
      return application(
        presentCustomField(await service.get(communityId, req.params.fieldId)),
        'Get user field successful',
      )
    },
  })

  app.route({
    method: 'POST',
    url: base,
    config: { family, auth: userDataAuth },
    schema: {
      operationId: 'createUserField',
      tags,
      summary: 'Create custom user field',
      description:
        'Accepts the documented bodies `{field, name, type}` and the oldest `{name, type, description?, required?, ' +
        'defaultValue?, options?}` (the key is then derived from name: lower case, spaces as hyphens). A key equal ' +
        'to a default field or to another custom field (ignoring case) answers 409 field_exists.',
      params: communityParams,
      body: createUserFieldBody,
      response: { 201: applicationOk(customUserFieldSchema) },
    },
    handler: async (req, reply) => {
      const communityId = requireCommunity(req.auth, req.params.communityId)
      const row = await service.create(communityId, req.body, actorOf(req.auth!))
      return reply.code(201).send(application(presentCustomField(row), 'Create user field successful', 201))
    },
  })

  app.route({
    method: 'PUT',
    url: `${base}/:fieldId`,
    config: { family, auth: userDataAuth },
    schema: {
      operationId: 'updateUserField',
      tags,
      summary: 'Update custom user field',
      description:
        'Documented body `{name, type}`. The key cannot change. Changing the kind of value (text, number, ' +
        'boolean, date, select) needs every value users hold to fit the new type, else 409 type_change_conflict ' +
        'with `details.count`; fitting values are rewritten to the new type, each with a history row.',
      params: fieldParams,
      body: updateUserFieldBody,
      response: { 200: applicationOk(customUserFieldSchema) },
    },
    handler: async (req) => {
      const communityId = requireCommunity(req.auth, req.params.communityId)
      const row = await service.update(communityId, req.params.fieldId, req.body, actorOf(req.auth!))
      return application(presentCustomField(row), 'Updated user field')
    },
  })

  app.route({
    method: 'DELETE',
    url: `${base}/:fieldId`,
    config: { family, auth: userDataAuth },
    schema: {
      operationId: 'deleteUserField',
      tags,
      summary: 'Delete custom user field',
      description:
        "Removes the definition and every user's value, writing a history row per removed value (nav only in the " +
        "docs; answers with the deleted field). The community's identifier field cannot be deleted (409 field_in_use).",
      params: fieldParams,
      response: { 200: applicationOk(customUserFieldSchema) },
    },
    handler: async (req) => {
      const communityId = requireCommunity(req.auth, req.params.communityId)
      const row = await service.remove(communityId, req.params.fieldId, actorOf(req.auth!))
      return application(presentCustomField(row), 'Delete user field success.')
    },
  })
}

import { sql } from 'kysely'
import type { Database, Tx } from '../../lib/db/database.ts'
import { isUniqueViolation } from '../../lib/db/sql-errors.ts'
import { transact } from '../../lib/db/transact.ts'
import { AppError, badRequest, conflict, notFound } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import type { Actor } from '../field-histories/actor.ts'
import { currentValue, recordRewrites } from '../field-histories/set-based.ts'
import { DEFAULT_FIELDS } from '../users/default-fields.ts'
import { lockFieldDefinitions } from './definitions-lock.ts'
import { checkFieldKey, deriveFieldKey, isReservedKey } from './field-keys.ts'
import { coerceFieldValue, type FieldKind, type FieldValue, kindOf } from './field-types.ts'
import { converted, convertValues, countMisfits } from './type-change.ts'
import * as repo from './user-fields.repo.ts'
import type { CreateUserFieldBody, UpdateUserFieldBody } from './user-fields.schema.ts'

/** Options belong to select fields only, and a select field needs at least one. */
function checkOptions(kind: FieldKind, options: string[] | null | undefined): string[] | null {
  if (kind !== 'select') {
    if (options?.length) throw badRequest('invalid_field', 'Only select fields take options', 'options')
    return null
  }
  if (!options?.length)
    throw badRequest('options_required', 'A select field needs at least one option', 'options')
  if (new Set(options).size !== options.length)
    throw badRequest('invalid_field', 'Options must be unique', 'options')
  return options
}

function checkDefault(
  key: string,
  type: string,
  options: string[] | null,
  raw: unknown,
  message?: string,
): FieldValue {
  const c = coerceFieldValue({ id: null, field: key, type, options }, raw)
  if (!c.ok) throw badRequest(c.code, message ?? c.message, 'defaultValue')
  return c.value
}

const fieldExists = (key: string) => conflict('field_exists', `A user field "${key}" already exists`, 'field')

/** Default and custom user fields of a community (api-reference section 7). */
export function createUserFieldService(deps: { database: Database }) {
  const { db } = deps.database

  async function get(communityId: string, id: string, tx: Tx = db) {
    const row = await repo.findField(tx, communityId, id)
    if (!row) throw notFound('user_field', 'fieldId')
    return row
  }

  /** The field, locked for a change; bulk chunks writing the community's users wait, or are waited for. */
  async function lock(tx: Tx, communityId: string, id: string) {
    await lockFieldDefinitions(tx, communityId)
    if (!(await repo.lockField(tx, communityId, id))) throw notFound('user_field', 'fieldId')
    return get(communityId, id, tx)
  }

  return {
    get: (communityId: string, id: string) => get(communityId, id),

    async list(communityId: string) {
      return { defaults: DEFAULT_FIELDS, custom: await repo.listFields(db, communityId) }
    },

    async create(communityId: string, body: CreateUserFieldBody, actor: Actor) {
      const checked = body.field !== undefined ? checkFieldKey(body.field) : deriveFieldKey(body.name)
      if (!checked.ok)
        throw badRequest('invalid_field', checked.message, body.field !== undefined ? 'field' : 'name')
      const key = checked.key
      if (isReservedKey(key)) throw conflict('field_exists', `"${key}" is a default user field`, 'field')
      const options = checkOptions(kindOf(body.type), body.options)
      const defaultValue = checkDefault(key, body.type, options, body.defaultValue)
      if (await repo.findKeyClash(db, communityId, key)) throw fieldExists(key)
      const id = newId()
      try {
        await repo.insertField(db, {
          id,
          communityId,
          field: key,
          name: body.name,
          type: body.type,
          description: body.description ?? '',
          required: body.required ?? false,
          defaultValue,
          options,
          creatorId: actor.userId,
        })
      } catch (err) {
        if (isUniqueViolation(err)) throw fieldExists(key)
        throw err
      }
      return get(communityId, id)
    },

    /**
     * Renames and retypes a field. When the kind of value changes, the values users hold must all
     * fit the new type (else 409 type_change_conflict with the count); they are then rewritten into
     * the new stored form, with a history row each.
     */
    update(communityId: string, id: string, body: UpdateUserFieldBody, actor: Actor) {
      return transact(db, async (tx) => {
        const row = await lock(tx, communityId, id)
        const oldKind = kindOf(row.type)
        const newKind = kindOf(body.type)
        const kindChanged = newKind !== oldKind
        if (kindChanged && (await repo.identifierFieldOf(tx, communityId)) === row.field) {
          throw conflict(
            'field_in_use',
            `"${row.field}" is the community's identifier field; its kind of value cannot change`,
            'type',
          )
        }
        const oldOptions = (row.options ?? null) as string[] | null
        const options = checkOptions(newKind, body.options ?? (newKind === oldKind ? oldOptions : undefined))
        const defaultValue =
          body.defaultValue !== undefined
            ? checkDefault(row.field, body.type, options, body.defaultValue)
            : checkDefault(
                row.field,
                body.type,
                options,
                row.default_value,
                'The current default value does not fit the new type; send defaultValue',
              )
        const optionsChanged = newKind === 'select' && JSON.stringify(options) !== JSON.stringify(oldOptions)
        if (kindChanged || optionsChanged) {
          const count = await countMisfits(tx, communityId, row.field, newKind, options)
          if (count > 0) {
            throw new AppError(
              409,
              'type_change_conflict',
              `${count} user(s) hold a value of "${row.field}" that does not fit type ${body.type}`,
              'type',
              { count },
            )
          }
        }
        if (kindChanged) {
          const next = converted(currentValue(row.field), newKind)
          await recordRewrites(tx, {
            communityId,
            fieldId: id,
            field: row.field,
            next,
            source: actor.source,
            changedBy: actor.changedBy,
          })
          await convertValues(tx, communityId, row.field, newKind)
        }
        await repo.updateField(tx, communityId, id, {
          name: body.name,
          type: body.type,
          description: body.description,
          required: body.required,
          defaultValue,
          options,
        })
        return get(communityId, id, tx)
      })
    },

    /** Deletes the definition and every user's value, with a history row per removed value. */
    remove(communityId: string, id: string, actor: Actor) {
      return transact(db, async (tx) => {
        const row = await lock(tx, communityId, id)
        if ((await repo.identifierFieldOf(tx, communityId)) === row.field) {
          throw conflict(
            'field_in_use',
            `"${row.field}" is the community's identifier field; unset it first`,
            'fieldId',
          )
        }
        await recordRewrites(tx, {
          communityId,
          fieldId: id,
          field: row.field,
          next: sql`NULL::jsonb`,
          source: actor.source,
          changedBy: actor.changedBy,
        })
        await repo.removeValues(tx, communityId, row.field)
        await repo.deleteField(tx, communityId, id)
        return row
      })
    },
  }
}
export type UserFieldService = ReturnType<typeof createUserFieldService>

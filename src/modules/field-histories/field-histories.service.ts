import type { Database } from '../../lib/db/database.ts'
import { isUniqueViolation } from '../../lib/db/sql-errors.ts'
import { transact } from '../../lib/db/transact.ts'
import { badRequest, conflict, notFound } from '../../lib/errors.ts'
import { isReservedKey } from '../user-fields/field-keys.ts'
import {
  coerceFieldValue,
  type FieldValue,
  normalizeFieldKey,
  parseIsoDate,
} from '../user-fields/field-types.ts'
import { identifierFieldOf } from '../user-fields/user-fields.repo.ts'
import type { Actor } from './actor.ts'
import * as repo from './field-histories.repo.ts'
import type { CreateHistoryBody, HistoryQuery } from './field-histories.schema.ts'
import { recordFieldChanges } from './field-histories.writer.ts'

const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/
const DAY_MS = 86_400_000

/** Turns from/to into bounds: a YYYY-MM-DD `to` covers that whole day, times without an offset are UTC. */
function bounds(q: HistoryQuery): Pick<repo.HistoryFilter, 'from' | 'until' | 'before'> {
  const from = q.from ? (parseIsoDate(q.from) ?? undefined) : undefined
  let until: Date | undefined
  let before: Date | undefined
  const to = q.to ? parseIsoDate(q.to) : null
  if (to && DATE_ONLY.test(q.to ?? '')) before = new Date(to.getTime() + DAY_MS)
  else if (to) until = to
  const end = until ?? before
  if (from && end && from.getTime() > end.getTime())
    throw badRequest('invalid_field', '`from` is after `to`', 'to')
  return { from, until, before }
}

/** Histories of custom field values: every change by any path leaves one row. */
export function createFieldHistoryService(deps: { database: Database }) {
  const { db } = deps.database

  async function requireField(communityId: string, fieldId: string) {
    if (!(await repo.fieldKnown(db, communityId, fieldId))) throw notFound('user_field', 'fieldId')
  }
  async function requireUser(communityId: string, userId: string) {
    if (!(await repo.findUser(db, communityId, userId))) throw notFound('user', 'userId')
  }

  return {
    async list(communityId: string, scope: { fieldId?: string; userId?: string }, q: HistoryQuery) {
      if (scope.fieldId) await requireField(communityId, scope.fieldId)
      if (scope.userId) await requireUser(communityId, scope.userId)
      return repo.listHistories(db, { communityId, ...scope, ...bounds(q) }, q.page, q.limit)
    },

    /**
     * Sets one custom value of a user and records the change, in one transaction. Returns the history
     * row, or null when the user already held that value (no change, no row).
     */
    async create(communityId: string, userId: string, body: CreateHistoryBody, actor: Actor) {
      if (!body.fieldId && body.field === undefined)
        throw badRequest('invalid_field', 'Send fieldId or field', 'fieldId')
      const key = body.field !== undefined ? normalizeFieldKey(body.field) : undefined
      return transact(db, async (tx) => {
        const def = await repo.findDefinition(tx, communityId, { id: body.fieldId, field: key })
        if (!def) {
          if (!body.fieldId && key && isReservedKey(key)) {
            throw badRequest(
              'not_custom_field',
              `"${key}" is a default field; histories cover custom fields`,
              'field',
            )
          }
          throw notFound('user_field', body.fieldId ? 'fieldId' : 'field')
        }
        if (key !== undefined && key !== def.field)
          throw badRequest('invalid_field', '`field` does not match `fieldId`', 'field')
        const user = await repo.lockUser(tx, communityId, userId)
        if (!user || user.deleted_at) throw notFound('user', 'userId')
        const options = (def.options ?? null) as string[] | null
        const c = coerceFieldValue({ id: def.id, field: def.field, type: def.type, options }, body.value)
        if (!c.ok) throw badRequest(c.code, c.message, 'value')
        if (c.value === null && def.required)
          throw badRequest('value_required', `${def.field} is required`, 'value')
        const old = ((user.custom_fields ?? {}) as Record<string, FieldValue>)[def.field]
        let externalId: string | null | undefined
        if ((await identifierFieldOf(tx, communityId)) === def.field) {
          externalId = c.value === null ? null : String(c.value)
          if (externalId !== null && (await repo.externalIdOwner(tx, communityId, externalId, userId))) {
            throw conflict(
              'external_id_exists',
              `Another user already has ${def.field} "${externalId}"`,
              'value',
            )
          }
        }
        try {
          await repo.setUserValue(tx, communityId, userId, def.field, c.value, externalId)
        } catch (err) {
          if (isUniqueViolation(err))
            throw conflict('external_id_exists', `Another user already has this ${def.field}`, 'value')
          throw err
        }
        const written = await recordFieldChanges(tx, [
          {
            communityId,
            userId,
            fieldId: def.id,
            field: def.field,
            oldValue: old,
            newValue: c.value,
            ...actorFields(actor),
          },
        ])
        return written ? ((await repo.findWrittenNow(tx, communityId, userId, def.id)) ?? null) : null
      })
    },
  }
}

const actorFields = (a: Actor) => ({ source: a.source, changedBy: a.changedBy })

import { hashPassword } from '../../lib/auth/secrets.ts'
import type { Database } from '../../lib/db/database.ts'
import { isUniqueViolation } from '../../lib/db/sql-errors.ts'
import { transact } from '../../lib/db/transact.ts'
import { AppError, badRequest, conflict } from '../../lib/errors.ts'
import type { AuthContext } from '../../lib/http/auth.ts'
import { requireCommunity } from '../../lib/http/auth.ts'
import { newId } from '../../lib/ids.ts'
import type { Mailer } from '../../lib/mailer.ts'
import { recordFieldChanges } from '../field-histories/field-histories.writer.ts'
import { coerceFieldValue, type FieldValue } from '../user-fields/field-types.ts'
import { type ResolvedCustomField, resolveCustomFields } from './custom-field-input.ts'
import * as repo from './users.repo.ts'
import type { CreateUserBody } from './users.schema.ts'

/** 409 username_taken: another user of the community holds the name (in any case). Sign-up answers it too. */
export const usernameTakenConflict = () =>
  conflict('username_taken', 'This username is already used in this community', 'username')

export interface CreateUserDeps {
  database: Database
  mailer: Mailer
  /** Where a failed welcome mail is reported; the user is created either way. */
  onMailError?: (err: unknown) => void
}

const TAKEN = {
  email: { code: 'email_taken', field: 'email', what: 'email' },
  external_id: { code: 'external_id_taken', field: 'externalId', what: 'external id' },
} as const

/** 409 naming the user who holds the value, so a retried create can pick that user up. */
function taken(column: keyof typeof TAKEN, holder: { id: string; seq: number }) {
  const t = TAKEN[column]
  return new AppError(409, t.code, `A user with this ${t.what} already exists in this community`, t.field, {
    _id: holder.id,
    id: Number(holder.seq),
  })
}

/**
 * Create New User (api-reference 2.3), in both documented flows: with a password, or SSO/broker
 * (no password; the broker id in customFields or externalId). The user row and the history of
 * every custom field it sets are written in one transaction.
 */
export function createUserCreator(deps: CreateUserDeps) {
  const { db } = deps.database

  /** Applies `externalId` to the identifier field and returns the value users.external_id mirrors. */
  function applyExternalId(
    body: CreateUserBody,
    identifier: repo.FieldDefRow | null,
    fields: ResolvedCustomField[],
  ): string | null {
    if (body.externalId !== undefined) {
      if (!identifier) {
        throw badRequest(
          'identifier_field_not_configured',
          'This community has no identifier field; set one on the server or use customFields',
          'externalId',
        )
      }
      const c = coerceFieldValue(identifier, body.externalId)
      if (!c.ok) throw badRequest('invalid_external_id', c.message, 'externalId')
      const given = fields.find((f) => f.def.id === identifier.id)
      if (given && given.value !== c.value) {
        throw badRequest(
          'external_id_mismatch',
          `externalId and customFields give "${identifier.field}" different values`,
          'externalId',
        )
      }
      if (!given) fields.push({ def: identifier, value: c.value })
    }
    const value = identifier ? fields.find((f) => f.def.id === identifier.id)?.value : null
    return value === null || value === undefined ? null : String(value)
  }

  return async function createUser(auth: AuthContext, body: CreateUserBody) {
    const communityId = requireCommunity(auth, body.communityId)
    if (body.password === undefined && body.confirmPassword !== undefined) {
      throw badRequest('password_required', 'confirmPassword was given without password', 'password')
    }
    if (body.password !== undefined && body.confirmPassword !== body.password) {
      throw badRequest('password_mismatch', 'password and confirmPassword differ', 'confirmPassword')
    }
    const email = body.email.trim().toLowerCase()
    // First, so a retried create answers with the user the first attempt made.
    const holder = await repo.findUserHolding(db, communityId, 'email', email)
    if (holder) throw taken('email', holder)

    const [defs, community] = await Promise.all([
      repo.listFieldDefs(db, communityId),
      repo.findCommunitySettings(db, communityId),
    ])
    const fields = resolveCustomFields(defs, body.customFields ?? [])
    const identifier = defs.find((d) => d.field === community.identifier_field) ?? null
    const externalId = applyExternalId(body, identifier, fields)
    if (externalId !== null) {
      const other = await repo.findUserHolding(db, communityId, 'external_id', externalId)
      if (other) throw taken('external_id', other)
    }
    let referredBy: string | null = null
    if (body.referral !== undefined) {
      const referrer = await repo.findReferrer(db, communityId, body.referral, identifier?.field ?? null)
      if (!referrer)
        throw badRequest('unknown_referral', `No user with identifier "${body.referral}"`, 'referral')
      referredBy = referrer.id
    }
    if (body.username !== undefined && (await repo.usernameTaken(db, communityId, body.username))) {
      throw usernameTakenConflict()
    }

    const setFields = fields.filter((f) => f.value !== null)
    const customFields: Record<string, FieldValue> = Object.fromEntries(
      setFields.map((f) => [f.def.field, f.value]),
    )
    const passwordHash = body.password !== undefined ? await hashPassword(body.password) : null
    const id = newId()
    let user: repo.UserRow
    try {
      user = await transact(db, async (tx) => {
        const row = await repo.insertUser(tx, {
          id,
          communityId,
          email,
          username: body.username ?? null,
          firstName: body.firstname ?? null,
          lastName: body.lastname ?? null,
          displayName: body.displayname ?? null,
          passwordHash,
          accessLevel: body.accessLevel,
          customFields,
          externalId,
          referredBy,
        })
        await recordFieldChanges(
          tx,
          setFields.map((f) => ({
            communityId,
            userId: id,
            fieldId: f.def.id,
            field: f.def.field,
            oldValue: undefined,
            newValue: f.value,
            source: 'api' as const,
            changedBy: auth.apiKeyId,
          })),
        )
        return row
      })
    } catch (err) {
      // Lost a race with another create: answer as the retry would. A taken username is told by
      // the name of the index that refused it, never by a second lookup that might compare names
      // otherwise than the index (and answer 500).
      if (!isUniqueViolation(err)) throw err
      if (repo.isUsernameTakenError(err)) throw usernameTakenConflict()
      const byEmail = await repo.findUserHolding(db, communityId, 'email', email)
      if (byEmail) throw taken('email', byEmail)
      const byExternal =
        externalId !== null
          ? await repo.findUserHolding(db, communityId, 'external_id', externalId)
          : undefined
      if (byExternal) throw taken('external_id', byExternal)
      throw err
    }
    if (body.sendEmail) await sendWelcome(user, community.name)
    return user
  }

  async function sendWelcome(user: repo.UserRow, communityName: string) {
    const name = user.first_name || user.display_name || user.username || 'there'
    try {
      await deps.mailer.send({
        to: user.email,
        subject: `Welcome to ${communityName}`,
        text: `Hi ${name},\n\nan account was created for you in ${communityName} with this email address.\n`,
      })
    } catch (err) {
      deps.onMailError?.(err)
    }
  }
}

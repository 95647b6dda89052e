import { z } from 'zod'
import type { UserRow } from './users.repo.ts'
import { GET_USER_FLAGS, type GetUserFlag } from './users.schema.ts'

export const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString())

/** Custom field values are JSON scalars (coerceFieldValue); anything else is shown as its JSON text. */
export const scalarSchema = z.union([z.string(), z.number(), z.boolean(), z.null()])
export type Scalar = z.infer<typeof scalarSchema>
export const toScalar = (v: unknown): Scalar =>
  v === null || v === undefined
    ? null
    : ['string', 'number', 'boolean'].includes(typeof v)
      ? (v as Scalar)
      : JSON.stringify(v)

/** The stored custom values of `keys` that the user has, as scalars. */
export function pickCustomFields(stored: unknown, keys: Iterable<string>): Record<string, Scalar> {
  const values = (stored ?? {}) as Record<string, unknown>
  const out: Record<string, Scalar> = {}
  for (const key of keys) if (values[key] !== undefined) out[key] = toScalar(values[key])
  return out
}

/** Get user (api-reference 2.1); every key is optional because the include flags pick them. */
export const publicUserSchema = z
  .object({
    _id: z.string().optional(),
    id: z.number().int().optional().describe('Numeric legacy id'),
    avatar: z.string().nullable().optional(),
    displayName: z.string().nullable().optional(),
    username: z.string().nullable().optional(),
    firstName: z.string().nullable().optional(),
    lastName: z.string().nullable().optional(),
    email: z.string().optional(),
    isOnline: z.boolean().optional(),
    lastLogin: z.string().nullable().optional(),
  })
  .meta({ id: 'PublicUser' })

export function presentPublicUser(
  u: UserRow,
  include: ReadonlySet<GetUserFlag>,
): z.infer<typeof publicUserSchema> {
  const all = {
    _id: u.id,
    id: Number(u.seq),
    avatar: u.avatar,
    displayName: u.display_name,
    username: u.username,
    firstName: u.first_name,
    lastName: u.last_name,
    email: u.email,
    isOnline: u.is_online,
    lastLogin: iso(u.last_login),
  }
  return Object.fromEntries(GET_USER_FLAGS.filter((f) => include.has(f)).map((f) => [f, all[f]]))
}

/** Create New User's answer. */
export const createdUserSchema = z
  .object({
    _id: z.string(),
    id: z.number().int(),
    email: z.string(),
    username: z.string().nullable(),
    firstName: z.string().nullable(),
    lastName: z.string().nullable(),
    displayName: z.string().nullable(),
    accessLevel: z.number().int(),
    customFields: z.record(z.string(), scalarSchema),
    externalId: z.string().nullable(),
    referredBy: z.string().nullable().describe('_id of the referrer'),
    joinDate: z.string(),
  })
  .meta({ id: 'CreatedUser' })

export function presentCreatedUser(u: UserRow): z.infer<typeof createdUserSchema> {
  return {
    _id: u.id,
    id: Number(u.seq),
    email: u.email,
    username: u.username,
    firstName: u.first_name,
    lastName: u.last_name,
    displayName: u.display_name,
    accessLevel: u.access_level,
    customFields: pickCustomFields(u.custom_fields, Object.keys((u.custom_fields ?? {}) as object)),
    externalId: u.external_id,
    referredBy: u.referred_by,
    joinDate: iso(u.join_date)!,
  }
}

/** Flags given as "true" pick the fields; with none, every field but those set to "false". */
export function includedFields(query: Partial<Record<GetUserFlag, 'true' | 'false'>>): Set<GetUserFlag> {
  const on = GET_USER_FLAGS.filter((f) => query[f] === 'true')
  return new Set(on.length > 0 ? on : GET_USER_FLAGS.filter((f) => query[f] !== 'false'))
}

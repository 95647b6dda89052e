import { DEFAULT_FIELDS } from '../users/default-fields.ts'
import { normalizeFieldKey } from './field-types.ts'

export const MAX_FIELD_KEY = 50

/**
 * A key is what users.custom_fields, CSV headers and filters use, so it stays plain: letters
 * (any script), digits, `_` and `-`. A trailing `_op` is refused because bulk update reads a column
 * `X_op` as the operator of column `X` (design.md, Bulk operations).
 */
const KEY = /^[\p{L}\p{N}][\p{L}\p{N}_-]*$/u

export type KeyCheck = { ok: true; key: string } | { ok: false; message: string }

/** Checks a key sent in `field` (mid/latest docs): spaces become hyphens, then the rules above. */
export function checkFieldKey(raw: string): KeyCheck {
  const key = normalizeFieldKey(raw)
  if (key.length === 0 || key.length > MAX_FIELD_KEY) {
    return { ok: false, message: `The field key must be 1-${MAX_FIELD_KEY} characters` }
  }
  if (!KEY.test(key)) {
    return {
      ok: false,
      message: 'The field key may hold letters, digits, "_" and "-" only, starting with a letter or digit',
    }
  }
  if (/_op$/i.test(key))
    return { ok: false, message: 'The field key may not end in "_op" (bulk update reserves it)' }
  return { ok: true, key }
}

/**
 * The oldest docs send no `field`, only `name`: the key is derived from it the way the Update
 * example shows ("Department" → "department"), with spaces as hyphens ("Deposit amount" →
 * "deposit-amount") and other punctuation dropped.
 */
export function deriveFieldKey(name: string): KeyCheck {
  const key = normalizeFieldKey(name.toLowerCase())
    .replace(/[^\p{L}\p{N}_-]/gu, '')
    .replace(/-{2,}/g, '-')
    .replace(/^[-_]+|-+$/g, '')
    .slice(0, MAX_FIELD_KEY)
    .replace(/-+$/, '')
  if (!key) return { ok: false, message: 'Cannot derive a field key from this name; send `field`' }
  return checkFieldKey(key)
}

const camel = (s: string) => s.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase())

/**
 * Keys a custom field may not take: every default field column, its camelCase form as the users
 * API spells it (firstName), and the user identity keys. Compared case-insensitively.
 */
const RESERVED = new Set(
  [
    ...DEFAULT_FIELDS.flatMap((f) => [f.column, camel(f.column)]),
    'id',
    '_id',
    'userid',
    'externalid',
    'external_id',
    'customfields',
    'custom_fields',
    'password',
  ].map((k) => k.toLowerCase()),
)

/** Whether a key clashes with a default field or a user identity key. */
export const isReservedKey = (key: string) => RESERVED.has(key.toLowerCase())

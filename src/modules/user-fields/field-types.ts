/**
 * Custom user field types: the union of every enum the public docs show. They fold into five kinds
 * that decide how a value is checked and stored (jsonb in users.custom_fields).
 */
export const FIELD_TYPES = [
  'text',
  'single-line-text',
  'multi-line-text',
  'number',
  'numerical',
  'boolean',
  'date',
  'select',
] as const
export type FieldType = (typeof FIELD_TYPES)[number]
export type FieldKind = 'text' | 'number' | 'boolean' | 'date' | 'select'

export function kindOf(type: string): FieldKind {
  switch (type) {
    case 'number':
    case 'numerical':
      return 'number'
    case 'boolean':
      return 'boolean'
    case 'date':
      return 'date'
    case 'select':
      return 'select'
    default:
      return 'text'
  }
}

export interface FieldDef {
  id: string | null
  field: string
  type: string
  options?: string[] | null
}

export type FieldValue = string | number | boolean | null

export type Coerced = { ok: true; value: FieldValue } | { ok: false; code: string; message: string }

const MAX_TEXT = 10_000
const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/
/**
 * The date forms a field accepts: YYYY-MM-DD, optionally with a time and offset. Anything else is
 * refused rather than left to Date's lenient parser (which reads "12" or "maybe 1" as dates).
 * type-change.ts checks stored values with the same pattern in SQL.
 */
export const ISO_DATE =
  /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/

/**
 * Reads an ISO_DATE string; a date or a time without an offset is UTC (never the server's zone),
 * and a day that does not exist (2025-02-30) is refused. Null when it is not a date.
 */
export function parseIsoDate(s: string): Date | null {
  if (s.length === 10 && DATE_ONLY.test(s)) return parseDay(s)
  const m = ISO_DATE.exec(s)
  if (!m) return null
  const day = s.slice(0, 10)
  const time = s.length > 10 ? s.slice(11) : '00:00:00'
  const d = new Date(`${day}T${/(Z|[+-]\d{2}:?\d{2})$/.test(time) ? time : `${time}Z`}`)
  if (Number.isNaN(d.getTime())) return null
  return new Date(`${day}T00:00:00Z`).toISOString().startsWith(day) ? d : null
}

/**
 * YYYY-MM-DD at midnight UTC without parsing strings through Date (bulk files carry a date per row).
 * setUTCFullYear, not Date.UTC, which reads years 0-99 as 1900-1999.
 */
function parseDay(s: string): Date | null {
  const y = Number(s.slice(0, 4))
  const m = Number(s.slice(5, 7)) - 1
  const d = Number(s.slice(8, 10))
  const date = new Date(0)
  date.setUTCFullYear(y, m, d)
  return date.getUTCFullYear() === y && date.getUTCMonth() === m && date.getUTCDate() === d ? date : null
}

/** Checks one value (from JSON or a CSV cell) against a field's type; the stored form is JSON. */
export function coerceFieldValue(def: FieldDef, raw: unknown): Coerced {
  if (raw === null || raw === undefined) return { ok: true, value: null }
  const kind = kindOf(def.type)
  const fail = (message: string): Coerced => ({
    ok: false,
    code: 'invalid_value',
    message: `${def.field}: ${message}`,
  })
  // Arrays and objects are never a value (String([1]) would otherwise read as "1").
  if (typeof raw === 'object') return fail('must be a single value, not an object or a list')
  switch (kind) {
    case 'number': {
      const n =
        typeof raw === 'number'
          ? raw
          : typeof raw === 'string' && raw.trim() !== ''
            ? Number(raw.trim())
            : Number.NaN
      return Number.isFinite(n) ? { ok: true, value: n } : fail(`"${String(raw)}" is not a number`)
    }
    case 'boolean': {
      if (typeof raw === 'boolean') return { ok: true, value: raw }
      const s = String(raw).trim().toLowerCase()
      if (['true', '1', 'yes', 'y'].includes(s)) return { ok: true, value: true }
      if (['false', '0', 'no', 'n'].includes(s)) return { ok: true, value: false }
      return fail(`"${String(raw)}" is not true or false`)
    }
    case 'date': {
      const s = String(raw).trim()
      const d = parseIsoDate(s)
      if (!d) return fail(`"${s}" is not a date (use YYYY-MM-DD or ISO 8601)`)
      return { ok: true, value: DATE_ONLY.test(s) ? s : d.toISOString() }
    }
    case 'select': {
      const s = String(raw)
      if (def.options?.length && !def.options.includes(s)) {
        return fail(`"${s}" is not one of ${def.options.join(', ')}`)
      }
      return { ok: true, value: s }
    }
    default: {
      const s = String(raw)
      return s.length > MAX_TEXT ? fail(`longer than ${MAX_TEXT} characters`) : { ok: true, value: s }
    }
  }
}

/** A custom field key: the docs turn spaces into hyphens ("deposit amount" → "deposit-amount"). */
export function normalizeFieldKey(field: string): string {
  return field.trim().replace(/\s+/g, '-')
}

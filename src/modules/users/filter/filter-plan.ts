import { badRequest } from '../../../lib/errors.ts'
import { coerceFieldValue, type FieldDef, kindOf } from '../../user-fields/field-types.ts'
import { DEFAULT_FIELD_BY_COLUMN, DEFAULT_FIELDS, type DefaultField } from '../default-fields.ts'

/**
 * Turns the body of Get Users with Filters into a plan of known columns and typed conditions.
 * Pure: the SQL is built from the plan in filter.repo.ts, and field names only ever come from
 * DEFAULT_FIELDS or the community's own custom field definitions.
 */
export type ValueKind = 'text' | 'number' | 'date' | 'boolean'

export type Target =
  | { source: 'column'; name: string; kind: ValueKind }
  | { source: 'custom'; name: string; kind: ValueKind }

export type Condition =
  | { target: Target; op: 'is_null' }
  | { target: Target; op: 'eq'; value: string | number | boolean }
  | { target: Target; op: 'gte' | 'lte' | 'lt'; value: string | number }

export interface FilterPlan {
  columns: DefaultField[]
  customFields: FieldDef[]
  conditions: Condition[]
}

type Scalar = string | number | boolean | null
export type FilterValue = Scalar | { gte?: Scalar; lte?: Scalar }

export interface FilterInput {
  fields?: string[]
  filter?: Record<string, FilterValue>
}

const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/

function nextDay(dateOnly: string): string {
  const d = new Date(`${dateOnly}T00:00:00Z`)
  d.setUTCDate(d.getUTCDate() + 1)
  return d.toISOString()
}

const kindOfCustom = (def: FieldDef): ValueKind => {
  const k = kindOf(def.type)
  return k === 'select' ? 'text' : k
}

/** Finds a field by its database name: default columns first, then custom field keys. */
function resolve(name: string, customByKey: Map<string, FieldDef>): { target: Target; def: FieldDef } | null {
  const column = DEFAULT_FIELD_BY_COLUMN.get(name)
  if (column) {
    return {
      target: { source: 'column', name, kind: column.type },
      def: { id: null, field: name, type: column.type },
    }
  }
  const custom = customByKey.get(name)
  if (custom)
    return { target: { source: 'custom', name: custom.field, kind: kindOfCustom(custom) }, def: custom }
  return null
}

/** Checks one filter value against the field's type; select options do not restrict a search. */
function coerce(def: FieldDef, raw: Scalar, path: string): string | number | boolean | null {
  const r = coerceFieldValue({ ...def, options: null }, raw)
  if (!r.ok) throw badRequest('invalid_filter_value', r.message, path)
  return r.value
}

function conditionsFor(name: string, target: Target, def: FieldDef, value: FilterValue): Condition[] {
  const path = `filter.${name}`
  if (value !== null && typeof value === 'object') {
    if (target.kind !== 'number' && target.kind !== 'date') {
      throw badRequest(
        'range_not_supported',
        `gte/lte work only on number and date fields; "${name}" is ${target.kind}`,
        path,
      )
    }
    if (value.gte === undefined && value.lte === undefined) {
      throw badRequest('empty_range', `Give gte, lte or both for "${name}"`, path)
    }
    const out: Condition[] = []
    for (const op of ['gte', 'lte'] as const) {
      const raw = value[op]
      if (raw === undefined) continue
      const v = raw === null ? null : coerce(def, raw, `${path}.${op}`)
      if (v === null || typeof v === 'boolean')
        throw badRequest('invalid_filter_value', `${op} needs a value`, `${path}.${op}`)
      // A date-only upper bound takes in the whole of that day.
      if (op === 'lte' && target.kind === 'date' && typeof v === 'string' && DATE_ONLY.test(v)) {
        out.push({ target, op: 'lt', value: nextDay(v) })
      } else out.push({ target, op, value: v })
    }
    return out
  }
  const v = value === null ? null : coerce(def, value, path)
  if (v === null) return [{ target, op: 'is_null' }]
  if (target.kind === 'date' && typeof v === 'string' && DATE_ONLY.test(v)) {
    // An exact date matches any moment of that (UTC) day.
    return [
      { target, op: 'gte', value: `${v}T00:00:00.000Z` },
      { target, op: 'lt', value: nextDay(v) },
    ]
  }
  if (target.source === 'column' && target.name === 'email' && typeof v === 'string') {
    return [{ target, op: 'eq', value: v.toLowerCase() }] // emails are stored lower-cased
  }
  return [{ target, op: 'eq', value: v }]
}

/** Builds the plan; unknown names are a 400 unknown_field naming where they were given. */
export function planFilter(input: FilterInput, allCustomDefs: FieldDef[]): FilterPlan {
  // A custom key equal to a default column or to _id/id would shadow it in the answer: unreachable here.
  const customDefs = allCustomDefs.filter(
    (d) => !DEFAULT_FIELD_BY_COLUMN.has(d.field) && d.field !== '_id' && d.field !== 'id',
  )
  const customByKey = new Map(customDefs.map((d) => [d.field, d]))
  const columns: DefaultField[] = []
  const customFields: FieldDef[] = []
  if (input.fields === undefined) {
    columns.push(...DEFAULT_FIELDS)
    customFields.push(...customDefs)
  } else {
    const seen = new Set<string>()
    input.fields.forEach((name, i) => {
      if (seen.has(name)) return
      seen.add(name)
      const found = resolve(name, customByKey)
      if (!found) throw badRequest('unknown_field', `Unknown user field "${name}"`, `fields.${i}`, { name })
      if (found.target.source === 'column') columns.push(DEFAULT_FIELD_BY_COLUMN.get(name)!)
      else customFields.push(found.def)
    })
  }
  const conditions: Condition[] = []
  for (const [name, value] of Object.entries(input.filter ?? {})) {
    const found = resolve(name, customByKey)
    if (!found) throw badRequest('unknown_field', `Unknown user field "${name}"`, `filter.${name}`, { name })
    conditions.push(...conditionsFor(name, found.target, found.def, value))
  }
  return { columns, customFields, conditions }
}

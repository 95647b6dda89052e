import { badRequest } from '../../lib/errors.ts'
import { coerceFieldValue, type FieldValue, normalizeFieldKey } from '../user-fields/field-types.ts'
import type { FieldDefRow } from './users.repo.ts'

/** One entry of `customFields` in Create New User. */
export interface CustomFieldInput {
  fieldIdorName: string
  value: unknown
}

export interface ResolvedCustomField {
  def: FieldDefRow
  value: FieldValue
}

/**
 * Finds the definition `fieldIdorName` names: its id, its key (as given, then with spaces as
 * hyphens, then ignoring case) or its display name ignoring case. A name shared by several fields
 * names none of them.
 */
export function findFieldDef(defs: FieldDefRow[], idOrName: string): FieldDefRow | null {
  const s = idOrName.trim()
  const lower = s.toLowerCase()
  const tries: ((d: FieldDefRow) => boolean)[] = [
    (d) => d.id === lower,
    (d) => d.field === s,
    (d) => d.field === normalizeFieldKey(s),
    (d) => d.field.toLowerCase() === normalizeFieldKey(s).toLowerCase(),
    (d) => d.name.toLowerCase() === lower,
  ]
  for (const t of tries) {
    const hit = defs.filter(t)
    if (hit.length === 1) return hit[0]
  }
  return null
}

/** Resolves and checks every entry; the first bad one is a 400 naming its place in the body. */
export function resolveCustomFields(defs: FieldDefRow[], inputs: CustomFieldInput[]): ResolvedCustomField[] {
  const seen = new Set<string>()
  return inputs.map((input, i) => {
    const def = findFieldDef(defs, input.fieldIdorName)
    if (!def) {
      throw badRequest(
        'unknown_custom_field',
        `No custom user field "${input.fieldIdorName}" in this community`,
        `customFields.${i}.fieldIdorName`,
      )
    }
    if (seen.has(def.id)) {
      throw badRequest(
        'duplicate_custom_field',
        `Custom field "${def.field}" is given twice`,
        `customFields.${i}.fieldIdorName`,
      )
    }
    seen.add(def.id)
    const coerced = coerceFieldValue(def, input.value)
    if (!coerced.ok)
      throw badRequest('invalid_custom_field_value', coerced.message, `customFields.${i}.value`)
    return { def, value: coerced.value }
  })
}

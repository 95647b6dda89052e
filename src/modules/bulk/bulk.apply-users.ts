import { type RawBuilder, sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'
import { isDataError } from '../../lib/db/sql-errors.ts'
import { timed } from '../../lib/phase-timer.ts'
import { sqlObjectId } from '../field-histories/set-based.ts'
import { negativeBalance, rowFailure, userDeleted, userNotFound, usernameTaken } from './bulk.failures.ts'
import {
  emailsMayMove,
  type ImportPlan,
  isNumericTarget,
  type Target,
  targetName,
  usernameTarget,
} from './bulk.plan.ts'
import type { ImportRow } from './bulk.rows.ts'
import {
  assignWaves,
  consecutiveWaves,
  createStage,
  fillStage,
  indexWaves,
  type StageColumn,
} from './bulk.stage.ts'
import { playUsersChunk } from './bulk.users-play.ts'
import {
  currenciesOf,
  keyColumn,
  type RowOutcome,
  type UsersCtx,
  usernameName,
  WRITTEN,
} from './bulk.users-shape.ts'

/**
 * Set-based SQL for bulk import and bulk update: a chunk is COPYed into the stage, then per wave
 * (rows of one wave touch distinct users, so file order holds) one UPDATE of the matched users
 * and, for imports, one INSERT of the new ones, each writing its field histories and ledger rows in the
 * same statement.
 */

const col = (i: number) => `v${i}`
const opCol = (i: number) => `o${i}`

export function stageColumns(plan: ImportPlan): StageColumn[] {
  const cols: StageColumn[] = [
    { name: 'row_no', type: 'integer' },
    { name: 'wave', type: 'integer' },
    { name: 'key', type: 'text' },
    { name: 'new_id', type: 'text' },
    { name: 'email', type: 'text' },
  ]
  plan.targets.forEach((t, i) => {
    const type: StageColumn['type'] =
      t.kind === 'custom'
        ? 'jsonb'
        : t.def.type === 'number'
          ? 'bigint'
          : t.def.type === 'date'
            ? 'timestamptz'
            : 'text'
    cols.push({ name: col(i), type })
    if (t.opIndex !== null) cols.push({ name: opCol(i), type: 'text' })
  })
  return cols
}

function stageRow(plan: ImportPlan, r: ImportRow, wave: number): unknown[] {
  const out: unknown[] = [r.rowNo, wave, r.key, r.newId, r.email]
  plan.targets.forEach((t, i) => {
    out.push(r.values[i])
    if (t.opIndex !== null) out.push(r.ops[i])
  })
  return out
}

/** The username a stage row (alias `alias`) gives, lowered as the unique index compares names. */
const givenUsername = (plan: ImportPlan, alias: string) =>
  sql`lower(${sql.ref(`${alias}.${col(usernameTarget(plan))}`)})`

/** `base` is the alias holding current values: the matched user, or defaults for a new one. */
function numericExpr(t: Target, i: number, current: RawBuilder<unknown>): RawBuilder<unknown> {
  const v = sql.ref(`s.${col(i)}`)
  if (t.opIndex === null) return sql`coalesce(${v}, ${current})`
  const op = sql.ref(`s.${opCol(i)}`)
  return sql`CASE WHEN ${v} IS NULL THEN ${current} WHEN ${op} = 'add' THEN ${current} + ${v}
    WHEN ${op} = 'subtract' THEN ${current} - ${v} ELSE ${v} END`
}

function customExpr(t: Target, i: number): RawBuilder<unknown> {
  const v = sql.ref(`s.${col(i)}`)
  if (t.opIndex === null || !isNumericTarget(t)) return sql`${v}`
  const current = sql`coalesce((b.custom_fields ->> ${targetName(t)})::numeric, 0)`
  const op = sql.ref(`s.${opCol(i)}`)
  return sql`CASE WHEN ${v} IS NULL THEN NULL WHEN ${op} = 'add' THEN to_jsonb(${current} + (${v})::numeric)
    WHEN ${op} = 'subtract' THEN to_jsonb(${current} - (${v})::numeric) ELSE ${v} END`
}

/** New-value expressions (n_<column>, n_custom) computed from stage `s` and current values `b`. */
function newValues(plan: ImportPlan): RawBuilder<unknown> {
  const parts: RawBuilder<unknown>[] = []
  const defaults = new Map<string, RawBuilder<unknown>>()
  const customs: RawBuilder<unknown>[] = []
  plan.targets.forEach((t, i) => {
    if (t.kind === 'custom') customs.push(sql`${targetName(t)}::text, ${customExpr(t, i)}`)
    else if (isNumericTarget(t)) defaults.set(t.def.column, numericExpr(t, i, sql.ref(`b.${t.def.column}`)))
    else defaults.set(t.def.column, sql`coalesce(${sql.ref(`s.${col(i)}`)}, ${sql.ref(`b.${t.def.column}`)})`)
  })
  for (const c of WRITTEN) parts.push(sql`${defaults.get(c) ?? sql.ref(`b.${c}`)} AS ${sql.ref(`n_${c}`)}`)
  // jsonb_build_object takes at most 100 arguments: build in groups and concatenate.
  let custom: RawBuilder<unknown> = sql`b.custom_fields`
  for (let g = 0; g < customs.length; g += 40) {
    custom = sql`${custom} || jsonb_strip_nulls(jsonb_build_object(${sql.join(customs.slice(g, g + 40))}))`
  }
  parts.push(sql`${custom} AS n_custom`)
  return sql.join(parts)
}

/** Field-history rows for every custom field whose value changed (set-based). */
function historyInsert(
  ctx: UsersCtx,
  from: RawBuilder<unknown>,
  userId: RawBuilder<unknown>,
): RawBuilder<unknown> | null {
  const customs = ctx.plan.targets.filter((t) => t.kind === 'custom')
  if (customs.length === 0) return null
  const fields = sql.join(
    customs.map((t) => sql`(${targetName(t)}::text, ${t.kind === 'custom' ? t.def.id : null}::text)`),
  )
  return sql`INSERT INTO field_histories (id, community_id, user_id, field_id, field, old_value, new_value, source, changed_by)
    SELECT ${sqlObjectId}, ${ctx.communityId}, ${userId}, f.fid, f.k,
      r.o_custom -> f.k, r.n_custom -> f.k, ${ctx.source}, ${ctx.jobId}
    FROM ${from} r CROSS JOIN (VALUES ${fields}) AS f(k, fid)
    WHERE (r.o_custom -> f.k) IS DISTINCT FROM (r.n_custom -> f.k)`
}

function ledgerInsert(
  ctx: UsersCtx,
  from: RawBuilder<unknown>,
  userId: RawBuilder<unknown>,
): RawBuilder<unknown> | null {
  const currencies = currenciesOf(ctx.plan)
  if (currencies.length === 0) return null
  const selects = currencies.map(
    (
      c,
    ) => sql`SELECT ${ctx.communityId}, ${userId}, ${c}::text, ${sql.ref(`r.n_${c}`)} - ${sql.ref(`r.o_${c}`)},
      ${sql.ref(`r.n_${c}`)}, ${ctx.source}, 'bulk job ' || ${ctx.jobId}, ${`bulk:${ctx.jobId}:`} || r.row_no || ${`:${c}`}
      FROM ${from} r WHERE ${sql.ref(`r.n_${c}`)} <> ${sql.ref(`r.o_${c}`)}`,
  )
  return sql`INSERT INTO currency_ledger (community_id, user_id, currency, amount, balance_after, source, reason, idempotency_key)
    ${sql.join(selects, sql` UNION ALL `)}`
}

/** The balance a row would take below zero ('xp' first, then 'coins'), or NULL. */
const belowZero = (m: RawBuilder<unknown>) =>
  sql`CASE WHEN ${m}.n_xp < 0 THEN 'xp' WHEN ${m}.n_coins < 0 THEN 'coins' END`

/** Which stage rows a statement works on: a whole wave, some rows of it, or one row (the fallback). */
type Rows = { wave: number } | { rowNos: number[] }
const rowFilter = (rows: Rows) =>
  'wave' in rows ? sql`s.wave = ${rows.wave}` : sql`s.row_no = ANY(${rows.rowNos}::int[])`

/**
 * Updates matched users; returns an outcome for every row whose user exists. A first pass reads
 * without locking and finds the rows that would change anything (or fail); only those users are
 * locked, re-read and written. A row found unchanged is skipped without a lock: it is ordered
 * before any concurrent change, which it would not have altered anyway.
 */
async function updateMatched(tx: Tx, ctx: UsersCtx, rows: Rows): Promise<Updated> {
  const key = keyColumn(ctx.plan)
  const setList = sql.join(WRITTEN.map((c) => sql`${sql.ref(c)} = ok.${sql.ref(`n_${c}`)}`))
  const differs = (
    cur: string,
    next: string,
  ) => sql`(${sql.join(WRITTEN.map((c) => sql.ref(`${cur}.${c}`)))}, ${sql.ref(`${cur}.custom_fields`)}) IS DISTINCT FROM
    (${sql.join(WRITTEN.map((c) => sql.ref(`${next}.n_${c}`)))}, ${sql.ref(`${next}.n_custom`)})`
  const cur = [...WRITTEN, 'custom_fields'].map((c) => sql.ref(`b.${c}`))
  const next = [...WRITTEN, 'custom'].map((c) => sql.ref(`p0.n_${c}`))
  const stage = stageColumns(ctx.plan).map((c) => sql.ref(`p0.${c.name}`))
  // A file keyed by external id may move emails. A row whose new email another user holds, and
  // that no earlier row here moves off it, fails as it would alone (one by one, the holder still has
  // it), before the UPDATE, instead of making the database refuse the whole statement (see
  // applyOrSplit). A holder an earlier row moves away is left to the UPDATE: if that move fails
  // too, the database refuses the statement and the split applies the rows one after the other.
  const taken = emailsMayMove(ctx.plan)
    ? sql`(s.email IS NOT NULL AND s.email IS DISTINCT FROM b.email AND EXISTS (SELECT 1 FROM users o
          WHERE o.community_id = ${ctx.communityId} AND o.email = s.email AND o.id <> b.id
          AND NOT EXISTS (SELECT 1 FROM p WHERE p.uid = o.id AND p.row_no < s.row_no
            AND p.email IS NOT NULL AND p.email <> o.email)))`
    : sql`false`
  // The same for a username, compared in any case (unique in the community by lower(username)).
  const name = (alias: string) => givenUsername(ctx.plan, alias)
  const nameTaken =
    usernameTarget(ctx.plan) >= 0
      ? sql`(${name('s')} IS NOT NULL AND ${name('s')} IS DISTINCT FROM lower(b.username) AND EXISTS (SELECT 1 FROM users o
          WHERE o.community_id = ${ctx.communityId} AND lower(o.username) = ${name('s')} AND o.id <> b.id
          AND NOT EXISTS (SELECT 1 FROM p WHERE p.uid = o.id AND p.row_no < s.row_no
            AND ${name('p')} IS NOT NULL AND ${name('p')} <> lower(o.username))))`
      : sql`false`
  const ctes: RawBuilder<unknown>[] = [
    // A LATERAL subquery fenced with OFFSET 0 keeps each lookup an index probe: as a plain join
    // the planner may scan the community's whole key index once per chunk. (Not LIMIT 1: a limit
    // makes an index on community_id alone look cheap when statistics lag behind a fast import.)
    // The key is unique in the community, so at most one user matches.
    sql`p0 AS (SELECT s.*, b.id AS uid, b.deleted_at AS b_deleted_at, ROW(${sql.join(cur)}) AS b_row,
        ${newValues(ctx.plan)}
      FROM bulk_stage s JOIN LATERAL (SELECT * FROM users b WHERE b.community_id = ${ctx.communityId}
        AND ${sql.ref(`b.${key}`)} = s.key OFFSET 0) b ON true
      WHERE ${rowFilter(rows)})`,
    sql`p AS MATERIALIZED (SELECT ${sql.join(stage)}, p0.uid, (p0.b_deleted_at IS NOT NULL OR p0.n_xp < 0
      OR p0.n_coins < 0 OR p0.b_row IS DISTINCT FROM ROW(${sql.join(next)})) AS dirty FROM p0)`,
    sql`m AS (SELECT s.row_no, b.id AS uid, b.deleted_at, b.xp AS o_xp, b.coins AS o_coins, b.custom_fields AS o_custom,
      b.username AS o_username, b.email AS o_email, ${taken} AS taken, ${nameTaken} AS name_taken, ${newValues(ctx.plan)}
      FROM p s JOIN LATERAL (SELECT * FROM users b WHERE b.id = s.uid
        AND ${sql.ref(`b.${key}`)} = s.key FOR UPDATE) b ON true
      WHERE s.dirty)`,
    sql`ok AS (SELECT * FROM m WHERE deleted_at IS NULL AND n_xp >= 0 AND n_coins >= 0 AND NOT taken AND NOT name_taken)`,
    sql`upd AS (UPDATE users u SET ${setList}, custom_fields = ok.n_custom, updated_at = now()
      FROM ok WHERE u.id = ok.uid AND ${differs('u', 'ok')} RETURNING u.id)`,
  ]
  const hist = historyInsert(ctx, sql`ok`, sql`r.uid`)
  if (hist) ctes.push(sql`hist AS (${hist})`)
  const led = ledgerInsert(ctx, sql`ok`, sql`r.uid`)
  if (led) ctes.push(sql`led AS (${led})`)
  const res = await sql<{
    row_no: number
    deleted: boolean
    negative: 'xp' | 'coins' | null
    taken: boolean
    name_taken: boolean
    changed: string | null
    moved: string[] | null
  }>`
    WITH ${sql.join(ctes)}
    SELECT p.row_no, coalesce(m.deleted_at IS NOT NULL, false) AS deleted,
      ${belowZero(sql`m`)} AS negative, coalesce(m.taken, false) AS taken,
      coalesce(m.name_taken, false) AS name_taken, upd.id AS changed, ${movedNames(ctx)} AS moved
    FROM p LEFT JOIN m ON m.row_no = p.row_no LEFT JOIN upd ON upd.id = m.uid`.execute(tx)
  const moves: Move[] = []
  const outcomes = res.rows.map((r): RowOutcome => {
    if (r.deleted) return userDeleted(ctx.plan, r.row_no)
    if (r.negative) return negativeBalance(r.row_no, r.negative)
    if (r.taken) return { rowNo: r.row_no, action: 'f', field: 'email', ...EMAIL_TAKEN }
    if (r.name_taken) return usernameTaken(r.row_no)
    if (!r.changed) return { rowNo: r.row_no, action: 's' }
    if (r.moved) moves.push({ rowNo: r.row_no, names: r.moved })
    return { rowNo: r.row_no, action: 'u', userId: r.changed }
  })
  return { outcomes, moves }
}

/** The usernames and emails a changed row's user held before it and holds after (see crossesNewRows). */
interface Move {
  rowNo: number
  names: string[]
}
type Updated = { outcomes: RowOutcome[]; moves: Move[] }

/** The names a row gives that may pass between users: usernames, and emails that move. */
const passedNames = (plan: ImportPlan) => ({
  usernames: usernameTarget(plan) >= 0,
  emails: emailsMayMove(plan),
})

const namesMayPass = (plan: ImportPlan) => {
  const passed = passedNames(plan)
  return passed.usernames || passed.emails
}

/** SQL listing, for a changed row of an import, the usernames and emails its user had and took. */
function movedNames(ctx: UsersCtx): RawBuilder<unknown> {
  const passed = passedNames(ctx.plan)
  if (ctx.plan.type !== 'import' || !namesMayPass(ctx.plan)) return sql`NULL::text[]`
  const parts: RawBuilder<unknown>[] = []
  // A name the row leaves as it was cannot pass between users: only changed ones are listed.
  const pair = (prefix: string, before: RawBuilder<unknown>, after: RawBuilder<unknown>) =>
    parts.push(
      sql`CASE WHEN ${before} IS DISTINCT FROM ${after} THEN ${prefix} || ${before} END`,
      sql`CASE WHEN ${before} IS DISTINCT FROM ${after} THEN ${prefix} || ${after} END`,
    )
  if (passed.usernames) pair(usernameName(''), sql`lower(m.o_username)`, sql`lower(m.n_username)`)
  if (passed.emails) pair(EMAIL_NAME, sql`m.o_email`, sql`m.n_email`)
  return sql`CASE WHEN upd.id IS NOT NULL THEN array_remove(ARRAY[${sql.join(parts)}], NULL) END`
}

/**
 * Creates a user for each row (rows whose key no user holds), in file order: of two rows giving one
 * username (or, keyed by external id, one email), the earlier is created. Returns the outcomes it
 * decides (created, or failed for a missing email or a negative balance) and the rows that met a
 * unique key taken meanwhile or by another row's email or username: those go on to a second update pass.
 */
async function insertNew(tx: Tx, ctx: UsersCtx, rows: Rows) {
  const external = ctx.plan.keyKind === 'external_id' ? sql`r.key` : sql`NULL::text`
  const columns = WRITTEN.filter((c) => c !== 'join_date' && c !== 'language')
  const ctes: RawBuilder<unknown>[] = [
    // `b` holds a new user's defaults.
    sql`m AS (SELECT s.row_no, s.new_id, s.key, 0::bigint AS o_xp, 0::bigint AS o_coins, '{}'::jsonb AS o_custom,
      ${newValues(ctx.plan)}
      FROM bulk_stage s
      CROSS JOIN LATERAL (SELECT s.email AS email, NULL::text AS username, NULL::text AS first_name,
        NULL::text AS last_name, NULL::text AS display_name, NULL::text AS phone, NULL::text AS country,
        'English'::text AS language, NULL::text AS avatar, now() AS join_date, 0::bigint AS xp,
        0::bigint AS coins, '{}'::jsonb AS custom_fields) b
      WHERE ${rowFilter(rows)})`,
    sql`r AS (SELECT * FROM m WHERE n_email IS NOT NULL AND n_xp >= 0 AND n_coins >= 0)`,
    sql`ins AS (INSERT INTO users (id, community_id, external_id, join_date, language, custom_fields,
        ${sql.join(columns.map((c) => sql.ref(c)))})
      SELECT r.new_id, ${ctx.communityId}, ${external}, r.n_join_date, r.n_language, r.n_custom,
        ${sql.join(columns.map((c) => sql.ref(`r.n_${c}`)))}
      FROM r ORDER BY r.row_no ON CONFLICT DO NOTHING RETURNING id)`,
    sql`ok AS (SELECT r.* FROM r JOIN ins ON ins.id = r.new_id)`,
  ]
  const hist = historyInsert(ctx, sql`ok`, sql`r.new_id`)
  if (hist) ctes.push(sql`hist AS (${hist})`)
  const led = ledgerInsert(ctx, sql`ok`, sql`r.new_id`)
  if (led) ctes.push(sql`led AS (${led})`)
  const res = await sql<{
    row_no: number
    inserted: string | null
    no_email: boolean
    negative: 'xp' | 'coins' | null
  }>`
    WITH ${sql.join(ctes)}
    SELECT m.row_no, ins.id AS inserted, m.n_email IS NULL AS no_email,
      ${belowZero(sql`m`)} AS negative
    FROM m LEFT JOIN ins ON ins.id = m.new_id`.execute(tx)
  const decided: RowOutcome[] = []
  const conflicted: number[] = []
  for (const r of res.rows) {
    if (r.inserted) decided.push({ rowNo: r.row_no, action: 'c', userId: r.inserted })
    else if (r.no_email) decided.push({ rowNo: r.row_no, ...rowFailure.missingEmail })
    else if (r.negative) decided.push(negativeBalance(r.row_no, r.negative))
    else conflicted.push(r.row_no)
  }
  return { decided, conflicted }
}

const duplicateUser = (rowNo: number): RowOutcome => ({
  rowNo,
  action: 'f',
  code: 'duplicate_user',
  field: 'email',
  message: 'Another user already has this email or external id',
})

/**
 * A wave applies its updates before its inserts. That is file order unless a new user's row comes
 * before a row that moves the same username (or email) to or from an existing user: then the wave is
 * applied again one row at a time (rare; see applyOrSplit).
 */
class WaveOutOfOrder extends Error {}

const EMAIL_NAME = 'email:'

/** SQL for a stage row's names that may pass between users, as movedNames() spells them. */
function givenNames(ctx: UsersCtx): RawBuilder<unknown> {
  const passed = passedNames(ctx.plan)
  const parts: RawBuilder<unknown>[] = []
  if (passed.usernames) parts.push(sql`${usernameName('')} || ${givenUsername(ctx.plan, 's')}`)
  if (passed.emails) parts.push(sql`${EMAIL_NAME} || s.email`)
  return parts.length > 0 ? sql`array_remove(ARRAY[${sql.join(parts)}], NULL)` : sql`ARRAY[]::text[]`
}

async function crossesNewRows(tx: Tx, ctx: UsersCtx, fresh: number[], moves: Move[]): Promise<boolean> {
  if (moves.length === 0 || fresh.length === 0) return false
  const res = await sql<{ row_no: number; names: string[] }>`SELECT s.row_no, ${givenNames(ctx)} AS names
    FROM bulk_stage s WHERE s.row_no = ANY(${fresh}::int[])`.execute(tx)
  const firstNew = new Map<string, number>()
  for (const r of res.rows) {
    for (const n of r.names)
      if (!((firstNew.get(n) ?? Number.POSITIVE_INFINITY) < r.row_no)) firstNew.set(n, r.row_no)
  }
  return moves.some((m) => m.names.some((n) => (firstNew.get(n) ?? Number.POSITIVE_INFINITY) < m.rowNo))
}

/**
 * Of the new rows no insert or update could place, those whose username someone held when the row
 * came (not a user a later row of the same insert created) fail for it; the others met an email or
 * external id another user holds.
 */
async function sortConflicts(tx: Tx, ctx: UsersCtx, rowNos: number[], created: RowOutcome[]) {
  const named = new Set<number>()
  if (usernameTarget(ctx.plan) >= 0 && rowNos.length > 0) {
    const made = created.filter((o) => o.userId !== undefined)
    const name = givenUsername(ctx.plan, 's')
    const res = await sql<{ row_no: number }>`SELECT s.row_no FROM bulk_stage s
      WHERE s.row_no = ANY(${rowNos}::int[]) AND ${name} IS NOT NULL AND EXISTS (SELECT 1 FROM users o
        WHERE o.community_id = ${ctx.communityId} AND lower(o.username) = ${name}
        AND NOT EXISTS (SELECT 1 FROM unnest(${made.map((o) => o.userId)}::text[], ${made.map((o) => o.rowNo)}::int[])
          AS c(id, row_no) WHERE c.id = o.id AND c.row_no > s.row_no))`.execute(tx)
    for (const r of res.rows) named.add(r.row_no)
  }
  return rowNos.map((r) => (named.has(r) ? usernameTaken(r) : duplicateUser(r)))
}

/**
 * Applies rows of one wave (the whole wave, or a part of it in file order): updates the rows whose
 * user exists, then (imports) creates users for the others; a row that meets a key taken meanwhile
 * goes through the update again. Keys are distinct within a wave, so the order of the statements
 * cannot change an outcome, except where names pass between users (WaveOutOfOrder).
 */
async function applyWave(tx: Tx, ctx: UsersCtx, rowNos: number[], all: Rows) {
  const first = await timed('update', () => updateMatched(tx, ctx, all))
  const out = first.outcomes
  if (ctx.plan.type !== 'import') return out
  if (out.length === rowNos.length) return out
  const matched = new Set(out.map((o) => o.rowNo))
  const freshRows = rowNos.filter((r) => !matched.has(r))
  if (await crossesNewRows(tx, ctx, freshRows, first.moves)) throw new WaveOutOfOrder()
  const fresh: Rows = out.length === 0 ? all : { rowNos: freshRows }
  const created = await timed('insert', () => insertNew(tx, ctx, fresh))
  out.push(...created.decided)
  if (created.conflicted.length > 0) {
    const again = await timed('update', () => updateMatched(tx, ctx, { rowNos: created.conflicted }))
    out.push(...again.outcomes)
    const found = new Set(again.outcomes.map((o) => o.rowNo))
    const unplaced = created.conflicted.filter((r) => !found.has(r))
    out.push(...(await sortConflicts(tx, ctx, unplaced, created.decided)))
  }
  return out
}

/**
 * Applies rows of a wave under a savepoint. When the database refuses them (a constraint one row
 * breaks, such as an email another user holds), the rows are split in two halves applied one after
 * the other, down to the single rows that fail: k bad rows among n cost about 2k·log2(n) attempts,
 * not n (measured: one bad row in a thousand made a 50k-row update keyed by external id run for
 * minutes instead of 3.5 s when every row of a refused wave was retried alone).
 */
async function applyOrSplit(tx: Tx, ctx: UsersCtx, rowNos: number[], all: Rows): Promise<RowOutcome[]> {
  await sql`SAVEPOINT bulk_rows`.execute(tx)
  try {
    const out = await applyWave(tx, ctx, rowNos, all)
    await sql`RELEASE SAVEPOINT bulk_rows`.execute(tx)
    return out
  } catch (err) {
    // Only the rows' data can be split down to the rows at fault; a deadlock or a lost connection
    // fails the chunk, which is then tried again whole (commitChunkRetrying).
    const outOfOrder = err instanceof WaveOutOfOrder
    if (!outOfOrder && !isDataError(err)) throw err
    await sql`ROLLBACK TO SAVEPOINT bulk_rows`.execute(tx)
    await sql`RELEASE SAVEPOINT bulk_rows`.execute(tx)
    if (outOfOrder) {
      const out: RowOutcome[] = []
      for (const r of rowNos) out.push(...(await applyOrSplit(tx, ctx, [r], { rowNos: [r] })))
      return out
    }
    if (rowNos.length === 1) return [{ rowNo: rowNos[0], action: 'f', ...describeRowRejection(err) }]
    const half = Math.ceil(rowNos.length / 2)
    const first = rowNos.slice(0, half)
    const second = rowNos.slice(half)
    return [
      ...(await applyOrSplit(tx, ctx, first, { rowNos: first })),
      ...(await applyOrSplit(tx, ctx, second, { rowNos: second })),
    ]
  }
}

const EMAIL_TAKEN = { code: 'email_taken', message: 'Another user already has this email' }

/** Explains a database refusal of one row in words a CSV author can act on. */
export function describeRowRejection(err: unknown): { code: string; field?: string; message: string } {
  const e = err as { code?: string; constraint?: string; message?: string }
  const text = `${e.constraint ?? ''} ${e.message ?? ''}`
  if (text.includes('users_community_email')) return EMAIL_TAKEN
  if (text.includes('users_community_username')) return rowFailure.usernameTaken
  if (text.includes('users_community_external_id')) {
    return { code: 'external_id_taken', message: 'Another user already has this external id' }
  }
  if (e.code === '22P02' || e.code === '22003')
    return { code: 'invalid_value', message: 'A value does not fit its field type' }
  return { code: 'row_rejected', message: 'The database refused this row' }
}

/**
 * Applies one chunk of checked rows, wave by wave. A wave the database refuses is split until only
 * the offending rows fail (applyOrSplit).
 */
export async function applyUsersChunk(tx: Tx, ctx: UsersCtx, rows: ImportRow[]): Promise<RowOutcome[]> {
  if (rows.length === 0) return []
  const keys = rows.map((r) => r.key)
  const byOccurrence = assignWaves(keys)
  // Where usernames or emails may pass between users, rows of different users do not commute: a
  // chunk naming some user twice is played in JS (in file order) when it can be, else cut into
  // waves of consecutive rows. Otherwise a chunk where some user comes back three times or more is
  // played when it can be: each wave costs a statement. Up to two waves the set-based statements
  // below are as fast and hold less: an import with one repeated row per 1,000 peaked at 297-316 MB
  // played against 243-271 MB in waves (200k rows, PostgreSQL), at the same speed.
  const passing = namesMayPass(ctx.plan)
  if (byOccurrence.count > (passing ? 1 : 2)) {
    const played = await timed('play', () => playUsersChunk(tx, ctx, rows))
    if (played) return played
  }
  const { waves, count } = passing ? consecutiveWaves(keys) : byOccurrence
  const cols = stageColumns(ctx.plan)
  await timed('stage.create', () => createStage(tx, cols))
  await timed('stage.fill', () =>
    fillStage(
      tx,
      cols,
      rows.map((r, i) => stageRow(ctx.plan, r, waves[i])),
    ),
  )
  // Many waves (a played chunk sent back here) find their rows through an index; two scan the stage.
  if (count > 2) await indexWaves(tx)
  const byWave: number[][] = Array.from({ length: count }, () => [])
  for (const [i, r] of rows.entries()) byWave[waves[i]].push(r.rowNo)
  const outcomes: RowOutcome[] = []
  for (let w = 0; w < count; w++) outcomes.push(...(await applyOrSplit(tx, ctx, byWave[w], { wave: w })))
  const seen = new Set(outcomes.map((o) => o.rowNo))
  for (const r of rows) if (!seen.has(r.rowNo)) outcomes.push(userNotFound(ctx.plan, r))
  return outcomes
}

import { type RawBuilder, type SqlBool, sql } from 'kysely'
import type { Tx } from '../../../lib/db/database.ts'
import { CURSOR_TIME_FORMAT, type UserCursor } from './cursor.ts'
import type { Condition, FilterPlan, Target } from './filter-plan.ts'

/** Page size of Get Users with Filters, fixed by the public docs. */
export const FILTER_PAGE_SIZE = 200

const OPERATORS = { eq: '=', gte: '>=', lte: '<=', lt: '<' } as const

/**
 * The SQL value of a target. Column names come only from DEFAULT_FIELDS (via the plan) and
 * custom keys travel as bound parameters. Custom values are cast safely (migration 000020), so
 * a value stored before a field changed type does not match instead of failing the query.
 */
function targetSql(t: Target): RawBuilder<unknown> {
  if (t.source === 'column') return sql.ref(`users.${t.name}`)
  const json = sql`users.custom_fields -> ${t.name}::text`
  const text = sql`users.custom_fields ->> ${t.name}::text`
  switch (t.kind) {
    case 'number':
      return sql`(CASE jsonb_typeof(${json}) WHEN 'number' THEN (${text})::numeric WHEN 'string' THEN hearth_try_numeric(${text}) END)`
    case 'date':
      return sql`(CASE WHEN jsonb_typeof(${json}) = 'string' THEN hearth_try_timestamptz(${text}) END)`
    case 'boolean':
      return json
    default:
      return text
  }
}

function param(t: Target, value: string | number | boolean): RawBuilder<unknown> {
  if (t.kind === 'number') return sql`${value}::numeric`
  if (t.kind === 'date') return sql`${value}::timestamptz`
  if (t.kind === 'boolean')
    return t.source === 'custom' ? sql`${JSON.stringify(value)}::jsonb` : sql`${value}::boolean`
  return sql`${String(value)}::text`
}

function conditionSql(c: Condition): RawBuilder<SqlBool> {
  const v = targetSql(c.target)
  if (c.op === 'is_null') {
    return c.target.source === 'column'
      ? sql<SqlBool>`${v} IS NULL`
      : sql<SqlBool>`(users.custom_fields -> ${c.target.name}::text IS NULL OR jsonb_typeof(users.custom_fields -> ${c.target.name}::text) = 'null')`
  }
  return sql<SqlBool>`${v} ${sql.raw(OPERATORS[c.op])} ${param(c.target, c.value)}`
}

function matching(db: Tx, communityId: string, plan: FilterPlan) {
  let q = db
    .selectFrom('users')
    .where('users.community_id', '=', communityId)
    .where('users.deleted_at', 'is', null)
  for (const c of plan.conditions) q = q.where(conditionSql(c))
  return q
}

function selecting(db: Tx, communityId: string, plan: FilterPlan) {
  const columns = plan.columns.map((c) => sql.ref(`users.${c.column}`).as(c.column))
  return matching(db, communityId, plan)
    .select(['users.id', 'users.seq'])
    .select(sql<string>`to_char(users.created_at AT TIME ZONE 'UTC', ${CURSOR_TIME_FORMAT})`.as('cursor_at'))
    .select(columns)
    .$if(plan.customFields.length > 0, (q) => q.select('users.custom_fields'))
    .orderBy('users.created_at')
    .orderBy('users.id')
}

export type FilteredRow = Record<string, unknown> & {
  id: string
  seq: number
  cursor_at: string
  custom_fields?: unknown
}

/** One page after a keyset position; fetches one extra row to know whether another page follows. */
export async function findUsersAfter(
  db: Tx,
  communityId: string,
  plan: FilterPlan,
  after: UserCursor | null,
) {
  const rows = await selecting(db, communityId, plan)
    .$if(after !== null, (q) =>
      q.where(
        sql<SqlBool>`(users.created_at, users.id) > (${after!.createdAt}::timestamptz, ${after!.id}::text)`,
      ),
    )
    .limit(FILTER_PAGE_SIZE + 1)
    .execute()
  return rows as FilteredRow[]
}

export async function findUsersPage(db: Tx, communityId: string, plan: FilterPlan, page: number) {
  const rows = await selecting(db, communityId, plan)
    .limit(FILTER_PAGE_SIZE)
    .offset((page - 1) * FILTER_PAGE_SIZE)
    .execute()
  return rows as FilteredRow[]
}

export async function countUsers(db: Tx, communityId: string, plan: FilterPlan): Promise<number> {
  const row = await matching(db, communityId, plan)
    .select(sql<number>`count(*)`.as('total'))
    .executeTakeFirstOrThrow()
  return Number(row.total)
}

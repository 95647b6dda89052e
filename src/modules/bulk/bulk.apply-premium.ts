import { sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'
import { INSUFFICIENT, userDeleted, userNotFound } from './bulk.failures.ts'
import type { PremiumPlan } from './bulk.plan.ts'
import { ledgerKey, PREMIUM_SOURCE, playPremiumChunk, reasonOf } from './bulk.premium-play.ts'
import type { PremiumRow } from './bulk.rows.ts'
import { assignWaves, createStage, fillStage, type StageColumn } from './bulk.stage.ts'
import type { RowOutcome } from './bulk.users-shape.ts'

const COLUMNS: StageColumn[] = [
  { name: 'row_no', type: 'integer' },
  { name: 'wave', type: 'integer' },
  { name: 'key', type: 'text' },
  { name: 'amount', type: 'bigint' },
  { name: 'op', type: 'text' },
  { name: 'reason', type: 'text' },
  { name: 'ikey', type: 'text' },
  { name: 'uid', type: 'text' },
]

function matchUser(plan: PremiumPlan) {
  switch (plan.keyKind) {
    case 'email':
      return sql`u.email = lower(s.key)`
    case 'external_id':
      return sql`u.external_id = s.key`
    default:
      // userId: the 24-hex id or the numeric legacy id. The cast sits in a CASE: SQL does not keep
      // the order of AND, and a plan through the seq index would cast a 24-hex key and fail the chunk.
      return sql`(u.id = s.key OR u.seq = CASE WHEN s.key ~ '^[0-9]{1,15}$' THEN s.key::bigint END)`
  }
}

/**
 * Premium currency: every row is one ledger entry whose idempotency key is the row's own or (job,
 * row), written in the same statement that moves the user's balance, for a chunk of distinct users.
 */
export async function applyPremiumChunk(
  tx: Tx,
  ctx: { plan: PremiumPlan; communityId: string; jobId: string },
  rows: PremiumRow[],
): Promise<RowOutcome[]> {
  if (rows.length === 0) return []
  await createStage(tx, COLUMNS)
  await fillStage(
    tx,
    COLUMNS,
    rows.map((r) => [r.rowNo, 0, r.key, r.amount, r.op, reasonOf(ctx, r), ledgerKey(ctx, r), null]),
  )
  // Each row's user is looked up by its key once, here: whether a user repeats is judged by that user
  // (one user may be named by _id in one row and by numeric id in another), locked by primary key.
  const resolved = await sql<{ row_no: number; uid: string | null }>`
    UPDATE bulk_stage s SET uid = (SELECT u.id FROM users u WHERE u.community_id = ${ctx.communityId} AND ${matchUser(ctx.plan)})
    RETURNING s.row_no, s.uid`.execute(tx)
  const order = new Map(rows.map((r, i) => [r.rowNo, i]))
  const byRow = [...resolved.rows].sort((a, b) => order.get(a.row_no)! - order.get(b.row_no)!)
  const { count } = assignWaves(byRow.map((r) => r.uid ?? `row:${r.row_no}`))
  const keys = new Set(rows.map((r) => ledgerKey(ctx, r)))
  // A chunk naming some user (or ledger key) more than once is played in JS, in file order: one
  // statement per repeat was slow, and one INSERT … ON CONFLICT does not say which of two rows with
  // one key comes first. A chunk of distinct users and keys takes the set-based statement below.
  if (count > 1 || keys.size < rows.length) {
    return playPremiumChunk(tx, ctx, rows, new Map(byRow.map((r) => [r.row_no, r.uid])))
  }
  const res = await sql<{
    row_no: number
    found: boolean
    deleted: boolean
    negative: boolean
    applied: string | null
  }>`
    WITH m AS (
      SELECT s.row_no, s.reason, s.ikey, u.id AS uid, u.deleted_at, u.premium AS old,
        CASE s.op WHEN 'subtract' THEN u.premium - s.amount WHEN 'overwrite' THEN s.amount ELSE u.premium + s.amount END AS new
      FROM bulk_stage s JOIN LATERAL (SELECT * FROM users u WHERE u.id = s.uid AND u.community_id = ${ctx.communityId}
        FOR UPDATE) u ON true),
    ok AS (SELECT * FROM m WHERE deleted_at IS NULL AND new >= 0 AND new <> old),
    led AS (
      INSERT INTO currency_ledger (community_id, user_id, currency, amount, balance_after, source, reason, idempotency_key)
      SELECT ${ctx.communityId}, ok.uid, 'premium', ok.new - ok.old, ok.new, ${PREMIUM_SOURCE}, ok.reason, ok.ikey
      FROM ok ON CONFLICT DO NOTHING RETURNING user_id, balance_after),
    upd AS (UPDATE users u SET premium = led.balance_after, updated_at = now() FROM led WHERE u.id = led.user_id RETURNING u.id)
    SELECT s.row_no, m.uid IS NOT NULL AS found, m.deleted_at IS NOT NULL AS deleted, coalesce(m.new < 0, false) AS negative,
      upd.id AS applied
    FROM bulk_stage s LEFT JOIN m ON m.row_no = s.row_no LEFT JOIN upd ON upd.id = m.uid`.execute(tx)
  const keyOf = new Map(rows.map((r) => [r.rowNo, r.key]))
  return res.rows.map((r): RowOutcome => {
    if (!r.found) return userNotFound(ctx.plan, { rowNo: r.row_no, key: keyOf.get(r.row_no)! })
    if (r.deleted) return userDeleted(ctx.plan, r.row_no)
    if (r.negative) return { rowNo: r.row_no, ...INSUFFICIENT }
    return r.applied ? { rowNo: r.row_no, action: 'u', userId: r.applied } : { rowNo: r.row_no, action: 's' }
  })
}

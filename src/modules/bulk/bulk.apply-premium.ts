import { sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'
import type { RowOutcome } from './bulk.apply-users.ts'
import type { PremiumPlan } from './bulk.plan.ts'
import type { PremiumRow } from './bulk.rows.ts'
import { assignWaves, createStage, fillStage, indexWaves, type StageColumn } from './bulk.stage.ts'

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
      // userId: the 24-hex id or the numeric legacy id.
      return sql`(u.id = s.key OR (s.key ~ '^[0-9]{1,15}$' AND u.seq = s.key::bigint))`
  }
}

/**
 * Premium currency: every row is one ledger entry whose idempotency key is (job, row), written in
 * the same statement that moves the user's balance. Rows of one wave touch distinct users.
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
    rows.map((r) => [r.rowNo, 0, r.key, r.amount, r.op, r.reason, r.idempotencyKey, null]),
  )
  // Each row's user is looked up by its key once, here: the waves are cut by that user (one user may
  // be named by _id in one row and by numeric id in another) and each wave locks it by primary key,
  // so the rows of a wave touch distinct users by construction.
  const resolved = await sql<{ row_no: number; uid: string | null }>`
    UPDATE bulk_stage s SET uid = (SELECT u.id FROM users u WHERE u.community_id = ${ctx.communityId} AND ${matchUser(ctx.plan)})
    RETURNING s.row_no, s.uid`.execute(tx)
  const order = new Map(rows.map((r, i) => [r.rowNo, i]))
  const byRow = [...resolved.rows].sort((a, b) => order.get(a.row_no)! - order.get(b.row_no)!)
  const { waves, count } = assignWaves(byRow.map((r) => r.uid ?? `row:${r.row_no}`))
  if (count > 1) {
    await sql`UPDATE bulk_stage s SET wave = w.wave FROM (SELECT unnest(${byRow.map((r) => r.row_no)}::int[]) AS row_no,
      unnest(${waves}::int[]) AS wave) w WHERE s.row_no = w.row_no`.execute(tx)
    await indexWaves(tx)
  }
  const outcomes: RowOutcome[] = []
  for (let w = 0; w < count; w++) {
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
          FOR UPDATE) u ON true
        WHERE s.wave = ${w}),
      ok AS (SELECT * FROM m WHERE deleted_at IS NULL AND new >= 0 AND new <> old),
      led AS (
        INSERT INTO currency_ledger (community_id, user_id, currency, amount, balance_after, source, reason, idempotency_key)
        SELECT ${ctx.communityId}, ok.uid, 'premium', ok.new - ok.old, ok.new, 'bulk_premium_currency',
          coalesce(ok.reason, 'bulk job ' || ${ctx.jobId}), coalesce('row:' || ok.ikey, ${`bulk:${ctx.jobId}:`} || ok.row_no)
        FROM ok ON CONFLICT DO NOTHING RETURNING user_id, balance_after),
      upd AS (UPDATE users u SET premium = led.balance_after, updated_at = now() FROM led WHERE u.id = led.user_id RETURNING u.id)
      SELECT s.row_no, m.uid IS NOT NULL AS found, m.deleted_at IS NOT NULL AS deleted, coalesce(m.new < 0, false) AS negative,
        upd.id AS applied
      FROM bulk_stage s LEFT JOIN m ON m.row_no = s.row_no LEFT JOIN upd ON upd.id = m.uid
      WHERE s.wave = ${w}`.execute(tx)
    for (const r of res.rows) {
      if (!r.found)
        outcomes.push({
          rowNo: r.row_no,
          action: 'f',
          code: 'user_not_found',
          message: 'No such user in this community',
        })
      else if (r.deleted)
        outcomes.push({ rowNo: r.row_no, action: 'f', code: 'user_deleted', message: 'This user is deleted' })
      else if (r.negative) {
        outcomes.push({
          rowNo: r.row_no,
          action: 'f',
          code: 'insufficient_balance',
          field: 'amount',
          message: 'The balance cannot go below zero',
        })
      } else if (r.applied) outcomes.push({ rowNo: r.row_no, action: 'u', userId: r.applied })
      else outcomes.push({ rowNo: r.row_no, action: 's' })
    }
  }
  return outcomes
}

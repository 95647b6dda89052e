import { sql } from 'kysely'
import { CopyWriter } from '../../lib/db/copy.ts'
import type { Tx } from '../../lib/db/database.ts'
import { INSUFFICIENT, userDeleted, userNotFound } from './bulk.failures.ts'
import { copyLedger, writeLedger } from './bulk.ledger-copy.ts'
import type { PremiumPlan } from './bulk.plan.ts'
import type { PremiumRow } from './bulk.rows.ts'
import type { RowOutcome } from './bulk.users-shape.ts'

/**
 * Premium rows of a chunk that names some user (or ledger key) more than once, played in JS: the chunk's users are
 * locked and read once, the rows are applied to their balances in file order exactly as one by
 * one (the same outcomes, ledger keys and balances as the per-wave SQL), and the result is written
 * in two statements: the ledger by COPY, the balances by one UPDATE. Per wave, a user named 5,000
 * times in a chunk cost 5,000 statements.
 */
export interface PlayCtx {
  communityId: string
  jobId: string
}

/** The ledger key of a row: the file's idempotency key, else (job, row). */
export const ledgerKey = (ctx: PlayCtx, r: PremiumRow) =>
  r.idempotencyKey !== null ? `row:${r.idempotencyKey}` : `bulk:${ctx.jobId}:${r.rowNo}`

export const reasonOf = (ctx: PlayCtx, r: PremiumRow) => r.reason ?? `bulk job ${ctx.jobId}`
export const PREMIUM_SOURCE = 'bulk_premium_currency'

export async function playPremiumChunk(
  tx: Tx,
  ctx: PlayCtx & { plan: PremiumPlan },
  rows: PremiumRow[],
  userOf: Map<number, string | null>,
): Promise<RowOutcome[]> {
  const ids = [...new Set([...userOf.values()].filter((u): u is string => u !== null))]
  // In id order, so that two chunks played over the same users cannot deadlock on each other.
  const locked = await sql<{ id: string; premium: string | number; deleted: boolean }>`
    SELECT id, premium, deleted_at IS NOT NULL AS deleted FROM users
    WHERE id = ANY(${ids}::text[]) AND community_id = ${ctx.communityId} ORDER BY id FOR UPDATE`.execute(tx)
  const balance = new Map(locked.rows.map((u) => [u.id, BigInt(u.premium)]))
  const deleted = new Set(locked.rows.filter((u) => u.deleted).map((u) => u.id))
  const keys = rows.map((r) => ledgerKey(ctx, r))
  const taken = await sql<{ idempotency_key: string }>`
    SELECT idempotency_key FROM currency_ledger
    WHERE community_id = ${ctx.communityId} AND idempotency_key = ANY(${keys}::text[])`.execute(tx)
  const usedKeys = new Set(taken.rows.map((k) => k.idempotency_key))

  const outcomes: RowOutcome[] = []
  const changed = new Set<string>()
  const ledger = new CopyWriter()
  rows.forEach((r, i) => {
    const uid = userOf.get(r.rowNo) ?? null
    const old = uid === null ? undefined : balance.get(uid)
    if (uid === null || old === undefined) {
      outcomes.push(userNotFound(ctx.plan, r))
      return
    }
    if (deleted.has(uid)) {
      outcomes.push(userDeleted(ctx.plan, r.rowNo))
      return
    }
    const amount = BigInt(r.amount)
    const next = r.op === 'subtract' ? old - amount : r.op === 'overwrite' ? amount : old + amount
    if (next < 0n) {
      outcomes.push({ rowNo: r.rowNo, ...INSUFFICIENT })
      return
    }
    // A row that changes nothing, or whose ledger key is already written (a re-sent row), is skipped.
    if (next === old || usedKeys.has(keys[i])) {
      outcomes.push({ rowNo: r.rowNo, action: 's' })
      return
    }
    usedKeys.add(keys[i])
    balance.set(uid, next)
    changed.add(uid)
    writeLedger(ledger, {
      communityId: ctx.communityId,
      userId: uid,
      currency: 'premium',
      before: old,
      after: next,
      source: PREMIUM_SOURCE,
      reason: reasonOf(ctx, r),
      key: keys[i],
    })
    outcomes.push({ rowNo: r.rowNo, action: 'u', userId: uid })
  })

  if (changed.size > 0) {
    await copyLedger(tx, ledger)
    const users = [...changed]
    await sql`UPDATE users u SET premium = v.premium, updated_at = now()
      FROM (SELECT unnest(${users}::text[]) AS id, unnest(${users.map((u) => String(balance.get(u)))}::bigint[]) AS premium) v
      WHERE u.id = v.id`.execute(tx)
  }
  return outcomes
}

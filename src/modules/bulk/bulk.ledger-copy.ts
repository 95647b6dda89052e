import { copyCell, copyCsvInto } from '../../lib/db/copy.ts'
import type { Tx } from '../../lib/db/database.ts'

/** One ledger row a played chunk writes: a balance moved from `before` to `after`. */
export interface LedgerEntry {
  communityId: string
  userId: string
  currency: 'xp' | 'coins' | 'premium'
  before: bigint
  after: bigint
  source: string
  reason: string
  key: string
}

/** The entry as a line of COPY CSV, in copyLedger's column order. */
export function ledgerLine(e: LedgerEntry): string {
  return `${[e.communityId, e.userId, e.currency, String(e.after - e.before), String(e.after), e.source, e.reason, e.key].map(copyCell).join(',')}\n`
}

/** Writes the lines of a played chunk (ledgerLine) in one COPY. */
export function copyLedger(tx: Tx, lines: string) {
  return copyCsvInto(
    tx,
    'currency_ledger',
    ['community_id', 'user_id', 'currency', 'amount', 'balance_after', 'source', 'reason', 'idempotency_key'],
    lines,
  )
}

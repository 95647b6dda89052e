import { type CopyWriter, copyCsvInto } from '../../lib/db/copy.ts'
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

/** Writes the entry as a row of COPY CSV, in copyLedger's column order. */
export function writeLedger(w: CopyWriter, e: LedgerEntry) {
  w.cell(e.communityId)
    .cell(e.userId)
    .cell(e.currency)
    .cell(e.after - e.before)
    .cell(e.after)
  w.cell(e.source).cell(e.reason).cell(e.key).endRow()
}

/** Writes the rows of a played chunk (writeLedger) in one COPY. */
export function copyLedger(tx: Tx, rows: CopyWriter) {
  return copyCsvInto(
    tx,
    'currency_ledger',
    ['community_id', 'user_id', 'currency', 'amount', 'balance_after', 'source', 'reason', 'idempotency_key'],
    rows.bytes(),
  )
}

import type { Tx } from '../../lib/db/database.ts'
import { kindOf } from '../user-fields/field-types.ts'
import { DEFAULT_FIELDS } from '../users/default-fields.ts'
import { csvLine } from './csv/csv-writer.ts'

export type TemplateKind = 'import' | 'update' | 'premium-currency'

/** The premium file: the key, the amount and how it applies, and what the ledger row keeps. */
const PREMIUM_COLUMNS = ['email', 'amount_op', 'amount', 'reason', 'idempotency_key']

/**
 * The CSV template of the user list page: the writable default fields, then one column per custom
 * field of the community, oldest first. The update template puts `<field>_op` right before each
 * numeric column, as the docs ask.
 */
export async function templateColumns(db: Tx, communityId: string, kind: TemplateKind): Promise<string[]> {
  if (kind === 'premium-currency') return [...PREMIUM_COLUMNS]
  const custom = await db
    .selectFrom('user_fields')
    .select(['field', 'type'])
    .where('community_id', '=', communityId)
    .orderBy('created_at')
    .orderBy('id')
    .execute()
  const cols: string[] = []
  const add = (name: string, numeric: boolean) => {
    if (kind === 'update' && numeric) cols.push(`${name}_op`)
    cols.push(name)
  }
  for (const f of DEFAULT_FIELDS) if (f.writable) add(f.column, f.type === 'number')
  for (const f of custom) add(f.field, kindOf(f.type) === 'number')
  return cols
}

export async function templateCsv(db: Tx, communityId: string, kind: TemplateKind): Promise<string> {
  return csvLine(await templateColumns(db, communityId, kind))
}

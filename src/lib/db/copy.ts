import { type CompiledQuery, type Kysely, RawNode } from 'kysely'

/**
 * A COPY … FROM STDIN carried through Kysely: the drivers of Hearth recognise the `copyFrom`
 * payload on the compiled query and stream it with the wire protocol's COPY (pg) or a blob (PGlite),
 * so a COPY runs on the same connection, inside the same transaction, as the surrounding queries.
 */
export interface CopyFromQuery extends CompiledQuery {
  readonly copyFrom: { readonly csv: string }
}

export function isCopyFrom(q: CompiledQuery): q is CopyFromQuery {
  return typeof (q as Partial<CopyFromQuery>).copyFrom?.csv === 'string'
}

const IDENT = /^[a-z_][a-z0-9_]*$/

/** Copies CSV text (no header) into `table(columns)`. Table and column names must be plain identifiers. */
export async function copyCsvInto(db: Kysely<any>, table: string, columns: readonly string[], csv: string) {
  for (const name of [table, ...columns]) {
    if (!IDENT.test(name)) throw new Error(`copyCsvInto: unsafe identifier ${name}`)
  }
  if (csv.length === 0) return
  const query: CopyFromQuery = {
    sql: `COPY ${table} (${columns.join(', ')}) FROM STDIN WITH (FORMAT csv)`,
    parameters: [],
    query: RawNode.createWithSql(''),
    queryId: { queryId: 'copy' },
    copyFrom: { csv },
  }
  await db.executeQuery(query)
}

/** Quotes one value for COPY's CSV format; null becomes an unquoted empty field (SQL NULL). */
export function copyCell(value: string | number | boolean | null | undefined): string {
  if (value === null || value === undefined) return ''
  if (typeof value !== 'string') return String(value)
  return `"${value.replace(/"/g, '""')}"`
}

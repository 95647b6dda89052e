import { type CompiledQuery, type Kysely, RawNode } from 'kysely'

/**
 * A COPY … FROM STDIN carried through Kysely: the drivers of Hearth recognise the `copyFrom`
 * payload on the compiled query and stream it with the wire protocol's COPY (pg) or a blob (PGlite),
 * so a COPY runs on the same connection, inside the same transaction, as the surrounding queries.
 */
export interface CopyFromQuery extends CompiledQuery {
  readonly copyFrom: { readonly csv: string | Uint8Array }
}

export function isCopyFrom(q: CompiledQuery): q is CopyFromQuery {
  const csv = (q as Partial<CopyFromQuery>).copyFrom?.csv
  return typeof csv === 'string' || csv instanceof Uint8Array
}

const IDENT = /^[a-z_][a-z0-9_]*$/

/**
 * Copies CSV (no header; text, or UTF-8 bytes from a CopyWriter) into `table(columns)`. Table and
 * column names must be plain identifiers.
 */
export async function copyCsvInto(
  db: Kysely<any>,
  table: string,
  columns: readonly string[],
  csv: string | Uint8Array,
) {
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

const QUOTE = 0x22
const COMMA = 0x2c
const NEWLINE = 0x0a

/**
 * Writes COPY CSV straight into bytes. Every string is quoted (so an empty string stays distinct
 * from NULL, an unquoted empty field) with its quotes doubled; numbers and booleans go bare.
 * A chunk's stage is tens of thousands of cells: built as strings, every cell, quote and comma was
 * a string that lived until the COPY (measured: 100k rows staged as text cost ~0.7 s, mostly
 * garbage collection).
 */
export class CopyWriter {
  private buf = Buffer.allocUnsafe(1 << 16)
  private len = 0
  private rowStart = true

  /** Appends one cell to the current row; null and undefined are SQL NULL. */
  cell(value: string | number | bigint | boolean | null | undefined): this {
    if (!this.rowStart) this.byte(COMMA)
    this.rowStart = false
    if (value === null || value === undefined) return this
    if (typeof value !== 'string') return this.text(String(value))
    this.byte(QUOTE)
    this.text(value.includes('"') ? value.replace(/"/g, '""') : value)
    return this.byte(QUOTE)
  }

  endRow(): this {
    this.rowStart = true
    return this.byte(NEWLINE)
  }

  /** The bytes written so far (a view: copy it before writing on). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.len)
  }

  private text(s: string): this {
    // UTF-8 takes at most 3 bytes per UTF-16 code unit.
    this.room(s.length * 3)
    // Cells are short and mostly ASCII: copied here, they cost no call into native code each.
    const buf = this.buf
    let len = this.len
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i)
      if (c >= 0x80) {
        this.len = len + buf.write(s.slice(i), len, 'utf8')
        return this
      }
      buf[len++] = c
    }
    this.len = len
    return this
  }

  private byte(b: number): this {
    this.room(1)
    this.buf[this.len++] = b
    return this
  }

  private room(n: number) {
    if (this.len + n <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n))
    this.buf.copy(next, 0, 0, this.len)
    this.buf = next
  }
}

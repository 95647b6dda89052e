import type { CompiledQuery, Kysely } from 'kysely'
import { describe, expect, it } from 'vitest'
import { CopyWriter, copyCsvInto, isCopyFrom } from './copy.ts'

/** The COPY CSV text of one cell. */
const copyCell = (v: string | number | bigint | boolean | null | undefined) =>
  Buffer.from(new CopyWriter().cell(v).bytes()).toString('utf8')

describe('CopyWriter cells', () => {
  it('writes null and undefined as an unquoted empty field (SQL NULL)', () => {
    expect(copyCell(null)).toBe('')
    expect(copyCell(undefined)).toBe('')
  })

  it('quotes every string, so an empty string stays distinct from NULL', () => {
    expect(copyCell('')).toBe('""')
    expect(copyCell('abc')).toBe('"abc"')
  })

  it('doubles embedded quotes', () => {
    expect(copyCell('say "hi"')).toBe('"say ""hi"""')
    expect(copyCell('"')).toBe('""""')
  })

  it('keeps commas, newlines, carriage returns and backslashes inside the quotes, unchanged', () => {
    expect(copyCell('a,b')).toBe('"a,b"')
    expect(copyCell('line 1\nline 2\r\n')).toBe('"line 1\nline 2\r\n"')
    expect(copyCell('C:\\path\\N')).toBe('"C:\\path\\N"')
    // \N means NULL only in COPY's text format; quoted in CSV format it is the two characters.
    expect(copyCell('\\N')).toBe('"\\N"')
  })

  it('writes numbers and booleans bare', () => {
    expect(copyCell(0)).toBe('0')
    expect(copyCell(-12.5)).toBe('-12.5')
    expect(copyCell(true)).toBe('true')
    expect(copyCell(false)).toBe('false')
  })

  it('produces a line a CSV reader splits back into the same cells', () => {
    const cells = ['a,b', 'x"y', '', 'multi\nline']
    const line = cells.map(copyCell).join(',')
    const parsed: string[] = []
    const re = /"((?:[^"]|"")*)"(?:,|$)/gy
    for (let m = re.exec(line); m; m = re.exec(line)) parsed.push(m[1].replace(/""/g, '"'))
    expect(parsed).toEqual(cells)
  })
})

describe('copyCsvInto', () => {
  function fakeDb() {
    const queries: CompiledQuery[] = []
    const db = {
      async executeQuery(q: CompiledQuery) {
        queries.push(q)
        return { rows: [] }
      },
    } as unknown as Kysely<any>
    return { db, queries }
  }

  it('sends one COPY … FROM STDIN carrying the CSV', async () => {
    const { db, queries } = fakeDb()
    await copyCsvInto(db, 'users', ['id', 'email'], '"1","a@b.c"\n')
    expect(queries).toHaveLength(1)
    expect(queries[0].sql).toBe('COPY users (id, email) FROM STDIN WITH (FORMAT csv)')
    expect(isCopyFrom(queries[0])).toBe(true)
    expect((queries[0] as unknown as { copyFrom: { csv: string } }).copyFrom.csv).toBe('"1","a@b.c"\n')
  })

  it('does nothing for empty CSV', async () => {
    const { db, queries } = fakeDb()
    await copyCsvInto(db, 'users', ['id'], '')
    expect(queries).toEqual([])
  })

  it.each([
    ['a table', 'users; DROP TABLE users', ['id']],
    ['a column', 'users', ['id', 'email) FROM PROGRAM (rm']],
    ['a quoted name', '"Users"', ['id']],
  ])('refuses an unsafe identifier in %s', async (_what, table, columns) => {
    const { db, queries } = fakeDb()
    await expect(copyCsvInto(db, table, columns, '"x"\n')).rejects.toThrow(/unsafe identifier/)
    expect(queries).toEqual([])
  })

  it('does not mistake an ordinary query for a COPY', () => {
    expect(isCopyFrom({ sql: 'SELECT 1', parameters: [] } as unknown as CompiledQuery)).toBe(false)
  })
})

describe('CopyWriter', () => {
  const asText = (w: CopyWriter) => Buffer.from(w.bytes()).toString('utf8')

  it('joins the cells of a row with commas and ends each row with a newline', () => {
    const rows: (string | number | bigint | boolean | null | undefined)[][] = [
      [1, 'a,b', 'x"y', '', null, undefined, -12.5, 9007199254740993n, true],
      ['multi\nline\r\n', '\\N', 'zürich 東京 🎉', 0],
    ]
    const w = new CopyWriter()
    for (const r of rows) {
      for (const v of r) w.cell(v)
      w.endRow()
    }
    const expected = rows.map((r) => `${r.map(copyCell).join(',')}\n`).join('')
    expect(asText(w)).toBe(expected)
  })

  it('grows past its first buffer without losing or reordering a byte', () => {
    const w = new CopyWriter()
    let expected = ''
    for (let i = 0; i < 5000; i++) {
      const cell = `row ${i} ${'é'.repeat(i % 40)} "q"`
      w.cell(i).cell(cell).endRow()
      expected += `${i},${copyCell(cell)}\n`
    }
    expect(Buffer.byteLength(expected)).toBeGreaterThan(1 << 16)
    expect(asText(w)).toBe(expected)
  })

  it('is a COPY payload copyCsvInto hands to the driver', async () => {
    const queries: CompiledQuery[] = []
    const db = { executeQuery: async (q: CompiledQuery) => queries.push(q) } as unknown as Kysely<any>
    const w = new CopyWriter().cell('1').cell('a@b.c').endRow()
    await copyCsvInto(db, 'users', ['id', 'email'], w.bytes())
    expect(isCopyFrom(queries[0])).toBe(true)
  })
})

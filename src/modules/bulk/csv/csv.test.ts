import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { isBlankRow } from '../bulk.plan.ts'
import {
  type CsvErrorRecord,
  CsvParser,
  type CsvParserOptions,
  type CsvRecord,
  isCsvError,
  parseCsv,
} from './csv-parser.ts'
import { csvLine, neutralizeCell } from './csv-writer.ts'
import { CsvRecordCounter } from './record-counter.ts'

const enc = (s: string) => Buffer.from(s, 'utf8')

function parseChunks(chunks: readonly (Buffer | string)[], opts?: CsvParserOptions): CsvRecord[] {
  const parser = new CsvParser(opts)
  const out: CsvRecord[] = []
  for (const chunk of chunks) out.push(...parser.push(chunk))
  out.push(...parser.end())
  return out
}

const parse = (input: string | Buffer, opts?: CsvParserOptions) =>
  parseChunks([typeof input === 'string' ? enc(input) : input], opts)

/** Compact view: cells for rows, the error code for error records. */
const view = (records: CsvRecord[]) =>
  records.map((r) =>
    isCsvError(r) ? { line: r.line, error: r.error.code } : { line: r.line, cells: r.cells },
  )

const bytewise = (buf: Buffer) => Array.from({ length: buf.length }, (_, i) => buf.subarray(i, i + 1))

function rng(seed: number) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function randomSplit(buf: Buffer, rand: () => number): Buffer[] {
  const chunks: Buffer[] = []
  let i = 0
  while (i < buf.length) {
    const size = 1 + Math.floor(rand() * 12)
    chunks.push(buf.subarray(i, i + size))
    i += size
  }
  return chunks
}

/** Parses whole, split at every byte offset, byte by byte and randomly; all must agree. */
function expectChunkInvariant(input: string | Buffer, opts?: CsvParserOptions): CsvRecord[] {
  const buf = typeof input === 'string' ? enc(input) : input
  const whole = parse(buf, opts)
  for (let k = 0; k <= buf.length; k++) {
    expect(parseChunks([buf.subarray(0, k), buf.subarray(k)], opts), `split at byte ${k}`).toEqual(whole)
  }
  expect(parseChunks(bytewise(buf), opts), 'byte by byte').toEqual(whole)
  const rand = rng(buf.length)
  for (let t = 0; t < 20; t++)
    expect(parseChunks(randomSplit(buf, rand), opts), 'random split').toEqual(whole)
  return whole
}

function count(input: string | Buffer, chunkSize = Number.POSITIVE_INFINITY): number {
  const buf = typeof input === 'string' ? enc(input) : input
  const counter = new CsvRecordCounter()
  const size = Math.min(chunkSize, Math.max(buf.length, 1))
  for (let i = 0; i < buf.length; i += size) counter.push(buf.subarray(i, i + size))
  return counter.end()
}

/**
 * Data records a job numbers (bulk.file-rows.ts): rows plus error records after the header, less
 * the rows whose cells are all blank.
 */
const parserDataCount = (records: CsvRecord[]) =>
  records.slice(1).filter((r) => isCsvError(r) || !isBlankRow(r.cells)).length

describe('CsvParser basics', () => {
  it('parses a header and rows with 1-based line numbers', () => {
    expect(parse('email,name\na@x.io,Ann\nb@x.io,Bob\n')).toEqual([
      { line: 1, cells: ['email', 'name'] },
      { line: 2, cells: ['a@x.io', 'Ann'] },
      { line: 3, cells: ['b@x.io', 'Bob'] },
    ])
  })

  it('handles a missing trailing newline and a trailing comma', () => {
    expect(view(parse('a,b\n1,2'))).toEqual([
      { line: 1, cells: ['a', 'b'] },
      { line: 2, cells: ['1', '2'] },
    ])
    expect(view(parse('a,b\n1,'))).toEqual([
      { line: 1, cells: ['a', 'b'] },
      { line: 2, cells: ['1', ''] },
    ])
  })

  it('returns nothing for empty input or only line breaks', () => {
    expect(parse('')).toEqual([])
    expect(parse('\n\r\n\r')).toEqual([])
    expect(parse('\uFEFF')).toEqual([])
  })

  it('strips a UTF-8 BOM at the very start only', () => {
    const withBom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), enc('email\nx\n')])
    expect(view(parse(withBom))).toEqual([
      { line: 1, cells: ['email'] },
      { line: 2, cells: ['x'] },
    ])
    expect(view(parse('a\n\uFEFFb\n'))).toEqual([
      { line: 1, cells: ['a'] },
      { line: 2, cells: ['\uFEFFb'] },
    ])
    expect(parseChunks(bytewise(withBom))).toEqual(parse(withBom))
  })

  it('accepts LF, CRLF, lone CR and mixed line endings', () => {
    const expected = [
      { line: 1, cells: ['a', 'b'] },
      { line: 2, cells: ['1', '2'] },
      { line: 3, cells: ['3', '4'] },
    ]
    expect(parse('a,b\n1,2\n3,4\n')).toEqual(expected)
    expect(parse('a,b\r\n1,2\r\n3,4\r\n')).toEqual(expected)
    expect(parse('a,b\r1,2\r3,4\r')).toEqual(expected)
    expect(parse('a,b\r\n1,2\r3,4\n')).toEqual(expected)
  })

  it('skips empty lines but counts them', () => {
    expect(view(parse('h\n\n1\r\n\r\n\r2\n\n'))).toEqual([
      { line: 1, cells: ['h'] },
      { line: 3, cells: ['1'] },
      { line: 6, cells: ['2'] },
    ])
  })

  it('treats a line of only commas as empty cells, and whitespace as content', () => {
    expect(view(parse('a,b,c\n,,\n \n'))).toEqual([
      { line: 1, cells: ['a', 'b', 'c'] },
      { line: 2, cells: ['', '', ''] },
      { line: 3, cells: [' '] },
    ])
  })

  it('parses quoted fields with commas, doubled quotes and empty strings', () => {
    expect(view(parse('"a,b","say ""hi""","",x\n""\n'))).toEqual([
      { line: 1, cells: ['a,b', 'say "hi"', '', 'x'] },
      { line: 2, cells: [''] },
    ])
  })

  it('keeps line breaks inside quotes and still counts those physical lines', () => {
    const records = parse('h1,h2\n"line1\nline2",x\n"a\r\nb\rc",y\n"z"\n')
    expect(view(records)).toEqual([
      { line: 1, cells: ['h1', 'h2'] },
      { line: 2, cells: ['line1\nline2', 'x'] },
      { line: 4, cells: ['a\r\nb\rc', 'y'] },
      { line: 7, cells: ['z'] },
    ])
  })

  it('decodes multibyte UTF-8', () => {
    expect(view(parse('name\nZoë,€5,😀\n'))).toEqual([
      { line: 1, cells: ['name'] },
      { line: 2, cells: ['Zoë', '€5', '😀'] },
    ])
  })

  it('accepts string chunks', () => {
    expect(parseChunks(['a,"b', '""c"\n1', ',2'])).toEqual([
      { line: 1, cells: ['a', 'b"c'] },
      { line: 2, cells: ['1', '2'] },
    ])
  })

  it('returns records as soon as they are complete', () => {
    const parser = new CsvParser()
    expect(parser.push('a,b\n1,')).toEqual([{ line: 1, cells: ['a', 'b'] }])
    expect(parser.push('2')).toEqual([])
    expect(parser.push('\r')).toEqual([{ line: 2, cells: ['1', '2'] }])
    expect(parser.push('\n')).toEqual([])
    expect(parser.end()).toEqual([])
  })
})

describe('CsvParser chunk boundaries', () => {
  it('gives identical output for any split of a tricky input', () => {
    const input = Buffer.concat([
      Buffer.from([0xef, 0xbb, 0xbf]),
      enc('email,name,note\r\n'),
      enc('a@x.io,"Zoë, Jr.","multi\r\nline ""quoted"""\r\n'),
      enc('\r\n\n'),
      enc('b@x.io,€😀,\r'),
      enc(',,\n'),
      enc('"bad"x,1\n'),
      enc('c@x.io,ok,"a\rb"\n'),
      enc('d"e,2\r\n'),
      enc('"q""",z'),
    ])
    const records = expectChunkInvariant(input)
    expect(view(records)).toEqual([
      { line: 1, cells: ['email', 'name', 'note'] },
      { line: 2, cells: ['a@x.io', 'Zoë, Jr.', 'multi\r\nline "quoted"'] },
      { line: 6, cells: ['b@x.io', '€😀', ''] },
      { line: 7, cells: ['', '', ''] },
      { line: 8, error: 'malformed_quoting' },
      { line: 9, cells: ['c@x.io', 'ok', 'a\rb'] },
      { line: 11, error: 'malformed_quoting' },
      { line: 12, cells: ['q"', 'z'] },
    ])
  })

  it('reassembles multibyte characters split across chunks', () => {
    const buf = enc('x\n€,😀,é\n')
    // Split inside the 3-byte € and inside the 4-byte emoji.
    expect(
      parseChunks([buf.subarray(0, 3), buf.subarray(3, 4), buf.subarray(4, 8), buf.subarray(8)]),
    ).toEqual([
      { line: 1, cells: ['x'] },
      { line: 2, cells: ['€', '😀', 'é'] },
    ])
    expectChunkInvariant(buf)
  })

  it('fails a row holding bytes that are not UTF-8 (a Windows-1252 "é"), and only that row', () => {
    const buf = Buffer.concat([enc('email,name\nann@x.io,Jos'), Buffer.from([0xe9]), enc('\nbob@x.io,Bob\n')])
    const records = parseChunks([buf.subarray(0, 20), buf.subarray(20)])
    expect(records.map((r) => ('error' in r ? { line: r.line, error: r.error.code } : r))).toEqual([
      { line: 1, cells: ['email', 'name'] },
      { line: 2, error: 'invalid_encoding' },
      { line: 3, cells: ['bob@x.io', 'Bob'] },
    ])
    expect((records[1] as CsvErrorRecord).error.message).toMatch(/^Line 2 is not UTF-8 text .*CSV UTF-8/)
    // A file cut short inside a multi-byte character fails its last row the same way.
    const cut = enc('x\né')
    expect(
      parseChunks([cut.subarray(0, cut.length - 1)]).map((r) => ('error' in r ? r.error.code : r.cells)),
    ).toEqual([['x'], 'invalid_encoding'])
  })

  it('counts a CRLF split across chunks once', () => {
    expect(parseChunks(['a\r', '\nb\r', '\n\r', '\nc'])).toEqual([
      { line: 1, cells: ['a'] },
      { line: 2, cells: ['b'] },
      { line: 4, cells: ['c'] },
    ])
    expect(parseChunks(['"a\r', '\nb"\r', '\nc'])).toEqual([
      { line: 1, cells: ['a\r\nb'] },
      { line: 3, cells: ['c'] },
    ])
  })

  it('handles a doubled quote split across chunks', () => {
    expect(parseChunks(['"a"', '"b"', ',c'])).toEqual([{ line: 1, cells: ['a"b', 'c'] }])
    expect(parseChunks(['"a"', ',c'])).toEqual([{ line: 1, cells: ['a', 'c'] }])
    expect(parseChunks(['"a"', 'x,c\nok'])).toEqual([
      expect.objectContaining({ line: 1, error: expect.objectContaining({ code: 'malformed_quoting' }) }),
      { line: 2, cells: ['ok'] },
    ])
  })
})

describe('CsvParser malformed quoting', () => {
  it('fails only the record with text after a closing quote', () => {
    const records = parse('h1,h2\nok,1\n"abc"x,1\nnext,2\n')
    expect(records[2]).toEqual({
      line: 3,
      error: { code: 'malformed_quoting', message: expect.stringMatching(/after a closing quote.*line 3/) },
      raw: '"abc"x,1',
    })
    expect(view(records)).toEqual([
      { line: 1, cells: ['h1', 'h2'] },
      { line: 2, cells: ['ok', '1'] },
      { line: 3, error: 'malformed_quoting' },
      { line: 4, cells: ['next', '2'] },
    ])
  })

  it('fails only the record with a bare quote in an unquoted field', () => {
    const records = parse('h\nab"c,1\r\nx,2\r\n')
    expect(records[1]).toEqual({
      line: 2,
      error: { code: 'malformed_quoting', message: expect.stringMatching(/quote inside an unquoted field/) },
      raw: 'ab"c,1',
    })
    expect(records[2]).toEqual({ line: 3, cells: ['x', '2'] })
    expect(records).toHaveLength(3)
  })

  it('resumes after the physical line where a multi-line record went bad', () => {
    const records = parse('h\n"one\ntwo"x,1\nthree\n\nfour\n')
    expect(view(records)).toEqual([
      { line: 1, cells: ['h'] },
      { line: 2, error: 'malformed_quoting' },
      { line: 4, cells: ['three'] },
      { line: 6, cells: ['four'] },
    ])
    expect((records[1] as { raw: string }).raw).toBe('"one\ntwo"x,1')
  })

  it('reports an unterminated quote at end of input as an error for that record', () => {
    const records = expectChunkInvariant('h\nok\n"never closed,1\nmore\n')
    expect(records).toEqual([
      { line: 1, cells: ['h'] },
      { line: 2, cells: ['ok'] },
      {
        line: 3,
        error: { code: 'malformed_quoting', message: expect.stringMatching(/Unterminated/) },
        raw: '"never closed,1\nmore\n',
      },
    ])
  })

  it('truncates raw to 1000 characters', () => {
    const bad = `"x"${'y'.repeat(5000)}`
    const [record] = parse(`${bad}\nok\n`)
    expect(record).toMatchObject({ line: 1, error: { code: 'malformed_quoting' } })
    expect((record as { raw: string }).raw).toBe(bad.slice(0, 1000))
  })
})

describe('CsvParser: the message of a row that cannot be split', () => {
  const WHOLE =
    /\. In the failed-rows CSV this whole original line is in the first column, as one cell: fix it there and split it back into its columns before uploading again$/
  const CUT =
    /\. In the failed-rows CSV only the first 1000 characters of this line are in the first column: fix the row in your original file$/
  const messageOf = (r: CsvRecord) => (r as CsvErrorRecord).error.message

  it('says the whole original line is in the first column and must be fixed and re-split', () => {
    const records = expectChunkInvariant('h1,h2\n"abc"x,1\nab"c,2\nok,3\n"never closed,4\nmore\n')
    expect(view(records)).toEqual([
      { line: 1, cells: ['h1', 'h2'] },
      { line: 2, error: 'malformed_quoting' },
      { line: 3, error: 'malformed_quoting' },
      { line: 4, cells: ['ok', '3'] },
      { line: 5, error: 'malformed_quoting' },
    ])
    for (const r of [records[1], records[2], records[4]]) expect(messageOf(r)).toMatch(WHOLE)
    expect(messageOf(records[1])).toMatch(/^Unexpected character "x" after a closing quote on line 2\. /)
    expect(messageOf(records[4])).toMatch(
      /^Unterminated quoted field in the record starting on line 5: the quote never closes, so the rest of the file was read into this row\. /,
    )
  })

  it('says only the first 1000 characters are there when the line is longer', () => {
    const line = (length: number) => `"x"${'y'.repeat(length - 3)}`
    const atLimit = expectChunkInvariant(`h\n${line(1000)}\n`)
    expect((atLimit[1] as CsvErrorRecord).raw).toBe(line(1000))
    expect(messageOf(atLimit[1])).toMatch(WHOLE)
    const over = expectChunkInvariant(`h\n${line(1001)}\nok\n`)
    expect((over[1] as CsvErrorRecord).raw).toBe(line(1001).slice(0, 1000))
    expect(messageOf(over[1])).toMatch(CUT)
    const unterminated = expectChunkInvariant(`h\n"${'z'.repeat(600)}\n${'z'.repeat(600)}\n`)
    expect(messageOf(unterminated[1])).toMatch(CUT)
  })

  it('says the same of an oversized row: whole under 1000 characters, else cut', () => {
    const small = expectChunkInvariant(`h\n${'x'.repeat(30)}\nok\n`, { maxRecordBytes: 20 })
    expect(messageOf(small[1])).toMatch(
      /^Record starting on line 2 exceeds 20 bytes; skipped to the next line\. /,
    )
    expect(messageOf(small[1])).toMatch(WHOLE)
    const big = parse(`h\n${'x'.repeat(2000)}\nok\n`, { maxRecordBytes: 1500 })
    expect(messageOf(big[1])).toMatch(CUT)
  })

  it("keeps the header's own message plain: a bad header fails the job, no failed-rows CSV holds it", () => {
    const [header] = parse('"email"x,name\nann@x.io,Ann\n')
    expect(messageOf(header)).toBe('Unexpected character "x" after a closing quote on line 1')
  })

  it('leaves a row that is not UTF-8 alone: its fix is saving the file again, not re-splitting', () => {
    const buf = Buffer.concat([enc('email,name\nann@x.io,Jos'), Buffer.from([0xe9]), enc('\n')])
    expect(messageOf(parse(buf)[1])).toBe(
      'Line 2 is not UTF-8 text (another encoding, such as Windows-1252?): save the file as "CSV UTF-8" and upload it again',
    )
  })
})

describe('CsvParser record size limit', () => {
  it('rejects an oversized record and resyncs at the next line', () => {
    const records = expectChunkInvariant(`h\n${'x'.repeat(30)}\nok,1\n`, { maxRecordBytes: 20 })
    expect(records).toEqual([
      { line: 1, cells: ['h'] },
      {
        line: 2,
        error: { code: 'record_too_large', message: expect.stringMatching(/exceeds 20 bytes/) },
        raw: 'x'.repeat(30),
      },
      { line: 3, cells: ['ok', '1'] },
    ])
  })

  it('accepts a record of exactly maxRecordBytes (the line break is not counted)', () => {
    expect(parse('0123456789\r\n', { maxRecordBytes: 10 })).toEqual([{ line: 1, cells: ['0123456789'] }])
    expect(view(parse('0123456789a\r\n', { maxRecordBytes: 10 }))).toEqual([
      { line: 1, error: 'record_too_large' },
    ])
  })

  it('measures UTF-8 bytes, not characters', () => {
    expect(view(parse('ééééé\nééééé,\n😀😀\n😀😀😀\n', { maxRecordBytes: 10 }))).toEqual([
      { line: 1, cells: ['ééééé'] }, // 10 bytes
      { line: 2, error: 'record_too_large' }, // 11 bytes
      { line: 3, cells: ['😀😀'] }, // 8 bytes
      { line: 4, error: 'record_too_large' }, // 12 bytes
    ])
  })

  it('prefers record_too_large when an oversized record is also malformed, for any chunking', () => {
    const records = expectChunkInvariant('h\n"abcdefghijklmno"x,1\nok\n', { maxRecordBytes: 10 })
    expect(view(records)).toEqual([
      { line: 1, cells: ['h'] },
      { line: 2, error: 'record_too_large' },
      { line: 3, cells: ['ok'] },
    ])
    expect((records[1] as { raw: string }).raw).toBe('"abcdefghijklmno"x,1')
  })

  it('stops an unterminated quote from swallowing the rest of the file', () => {
    // The quote never closes; without the cap every following line would be one field.
    const input = `h\n"${'abc\n'.repeat(10)}`
    const records = expectChunkInvariant(input, { maxRecordBytes: 9 })
    expect(view(records)).toEqual([
      { line: 1, cells: ['h'] },
      // `"abc\nabc\n` is 9 bytes; the next char crosses the cap, on line 4, so parsing resumes on line 5.
      { line: 2, error: 'record_too_large' },
      ...Array.from({ length: 7 }, (_, k) => ({ line: 5 + k, cells: ['abc'] })),
    ])
    expect((records[1] as { raw: string }).raw).toBe('"abc\nabc\nabc')
  })

  it('reports an oversized record while streaming, with bounded buffering (default 1 MiB)', () => {
    const parser = new CsvParser()
    expect(parser.push('h\n"')).toEqual([{ line: 1, cells: ['h'] }])
    const block = `${'z'.repeat(1023)}\n`
    const seen: CsvRecord[] = []
    for (let k = 0; k < 1100 && seen.length === 0; k++) seen.push(...parser.push(block))
    expect(seen).toHaveLength(1)
    expect(seen[0]).toMatchObject({ line: 2, error: { code: 'record_too_large' } })
    expect((seen[0] as { raw: string }).raw).toHaveLength(1000)
    // Parsing continues normally afterwards.
    expect(parser.push('\nnext,1\n')).toEqual([{ line: 1027, cells: ['next', '1'] }])
  })
})

describe('parseCsv', () => {
  it('parses an async stream of buffers', async () => {
    const source = Readable.from([enc('a,b\n1,"x'), enc('\ny"\n'), enc('2,3')])
    const records: CsvRecord[] = []
    for await (const r of parseCsv(source)) records.push(r)
    expect(records).toEqual([
      { line: 1, cells: ['a', 'b'] },
      { line: 2, cells: ['1', 'x\ny'] },
      { line: 4, cells: ['2', '3'] },
    ])
  })

  it('passes options through', async () => {
    const records: CsvRecord[] = []
    for await (const r of parseCsv(Readable.from([enc('h\n12345\nok\n')]), { maxRecordBytes: 4 }))
      records.push(r)
    expect(view(records)).toEqual([
      { line: 1, cells: ['h'] },
      { line: 2, error: 'record_too_large' },
      { line: 3, cells: ['ok'] },
    ])
  })
})

describe('CsvRecordCounter', () => {
  it('counts data records, excluding the header and empty lines', () => {
    expect(count('')).toBe(0)
    expect(count('email')).toBe(0)
    expect(count('email\n')).toBe(0)
    expect(count('email\na\nb\n')).toBe(2)
    expect(count('email\na\nb')).toBe(2)
    expect(count('\n\nemail\n\n\na\r\n\r\nb\r\r')).toBe(2)
    expect(count('h\n,,\n')).toBe(0) // a blank row: the job skips it too
    expect(count(',,\nx\n')).toBe(1) // a blank first record is still the header
  })

  it('rowsSoFar is a lower bound while bytes arrive, never shrinking, and the final count at the end', () => {
    const input = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), enc('h\r\n"a\nb",1\r\n\r\nc,2\nd')])
    const counter = new CsvRecordCounter()
    let last = 0
    for (const byte of input) {
      counter.push(Buffer.from([byte]))
      const now = counter.rowsSoFar()
      expect(now).toBeGreaterThanOrEqual(last)
      expect(now).toBeLessThanOrEqual(3)
      last = now
    }
    expect(counter.end()).toBe(3)
    expect(counter.rowsSoFar()).toBe(3)
  })

  it('ignores line breaks inside quotes and handles doubled quotes', () => {
    expect(count('h\n"a\nb\r\nc",1\n"x""\n""y"\n')).toBe(2)
    expect(count('h\n""\n')).toBe(0)
    expect(count('h\n""""\n')).toBe(1) // one quote character
  })

  it('handles CRLF, CR and a BOM split across chunks', () => {
    const input = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), enc('h\r\n1\r2\r\n')])
    for (const size of [1, 2, 3, 4, 100]) expect(count(input, size)).toBe(2)
    expect(count(Buffer.from([0xef, 0xbb, 0xbf]))).toBe(0)
    expect(count(Buffer.from([0xef, 0xbb, 0xbf, 0x0a, 0x0a]))).toBe(0)
  })

  it('treats an incomplete BOM prefix as content, like the parser', () => {
    const input = Buffer.from([0xef, 0xbb, 0x0a, 0x41, 0x0a]) // U+FFFD line, then "A"
    expect(parserDataCount(parse(input))).toBe(1)
    for (const size of [1, 2, 100]) expect(count(input, size)).toBe(1)
    expect(count(Buffer.from([0xef]))).toBe(0) // a lone (header) record
  })

  it('agrees with the parser on a generated corpus, for any chunking', () => {
    const rand = rng(42)
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T
    const long = 'a long piece of text, '.repeat(3) // exercises the native indexOf paths
    const pieces = [
      'a',
      'Bob',
      'x@y.io',
      '42',
      ' ',
      'é',
      '€',
      '😀',
      ',',
      '"',
      '\n',
      '\r\n',
      '\r',
      'Zoë',
      long,
    ]
    for (let file = 0; file < 150; file++) {
      const eol = pick(['\n', '\r\n', '\r'])
      const rows: string[][] = []
      let text = rand() < 0.3 ? '\uFEFF' : ''
      const expectedLines: number[] = []
      const nRows = Math.floor(rand() * 12)
      for (let r = 0; r < nRows; r++) {
        while (rand() < 0.15) text += eol // empty lines
        const cells = Array.from({ length: 1 + Math.floor(rand() * 4) }, () =>
          Array.from({ length: Math.floor(rand() * 4) }, () => pick(pieces)).join(''),
        )
        rows.push(cells)
        expectedLines.push(1 + (text.match(/\r\n|\r|\n/g) ?? []).length)
        const encoded = cells.map((c) =>
          /[",\r\n]/.test(c) || cells.length === 1 || rand() < 0.2 ? `"${c.replaceAll('"', '""')}"` : c,
        )
        text += encoded.join(',')
        if (r < nRows - 1 || rand() < 0.5) text += eol
      }
      const buf = enc(text)
      const records = parse(buf)
      expect(records).toEqual(rows.map((cells, k) => ({ line: expectedLines[k], cells })))
      expect(count(buf)).toBe(parserDataCount(records))
      for (let t = 0; t < 5; t++) {
        const counter = new CsvRecordCounter()
        const chunks = randomSplit(buf, rand)
        for (const c of chunks) counter.push(c)
        expect(counter.end()).toBe(parserDataCount(records))
        expect(parseChunks(chunks)).toEqual(records)
      }
    }
  })
})

describe('CsvParser: NUL characters (U+0000, which PostgreSQL text and jsonb cannot hold)', () => {
  const NUL_ROW =
    /^The column "name" on line 3 holds a NUL character \(U\+0000\), which cannot be stored: remove it\. /

  it('fails the row that holds one, naming its column, for any chunking; the other rows stay', () => {
    const records = expectChunkInvariant('email,name\nann@x.io,Ann\nbob@x.io,"Bo\u0000b, Jr"\ncat@x.io,Cat\n')
    expect(view(records)).toEqual([
      { line: 1, cells: ['email', 'name'] },
      { line: 2, cells: ['ann@x.io', 'Ann'] },
      { line: 3, error: 'nul_character' },
      { line: 4, cells: ['cat@x.io', 'Cat'] },
    ])
    const bad = records[2] as CsvErrorRecord
    expect(bad.error.message).toMatch(NUL_ROW)
    // The raw line, as stored with the row's outcome and written to the failed-rows CSV: U+FFFD for NUL.
    expect(bad.raw).toBe('bob@x.io,"Bo\uFFFDb, Jr"')
  })

  it('names a column past the header by its position, and the last row of a file without a final line break', () => {
    const records = expectChunkInvariant('email,name\nann@x.io,Ann,\u0000\nbob@x.io,\u0000')
    expect(view(records).slice(1)).toEqual([
      { line: 2, error: 'nul_character' },
      { line: 3, error: 'nul_character' },
    ])
    expect((records[1] as CsvErrorRecord).error.message).toMatch(/^The column 3 on line 2 holds a NUL/)
    expect((records[2] as CsvErrorRecord).raw).toBe('bob@x.io,\uFFFD')
  })

  it('makes a header holding one an error record (the job fails as malformed_header)', () => {
    const records = expectChunkInvariant('email,na\u0000me\nann@x.io,Ann\n')
    expect(view(records)).toEqual([
      { line: 1, error: 'nul_character' },
      { line: 2, cells: ['ann@x.io', 'Ann'] },
    ])
    expect((records[0] as CsvErrorRecord).error.message).toBe(
      'Column 2 of the header holds a NUL character (U+0000), which cannot be stored: remove it and upload the file again',
    )
  })

  it('never gives a NUL in any record: not in the raw text of a row that cannot be read either', () => {
    const records = expectChunkInvariant('h1,h2\n"a"\u0000,1\nx\u0000"y,2\n"\u0000')
    expect(view(records).slice(1)).toEqual([
      { line: 2, error: 'malformed_quoting' },
      { line: 3, error: 'malformed_quoting' },
      { line: 4, error: 'malformed_quoting' },
    ])
    for (const r of records) {
      const texts = isCsvError(r) ? [r.raw, r.error.message] : r.cells
      for (const text of texts) expect(text).not.toContain('\u0000')
    }
    expect((records[1] as CsvErrorRecord).error.message).toMatch(
      /^Unexpected character "\\u0000" after a closing quote/,
    )
  })
})

describe('CsvRecordCounter: blank rows', () => {
  /** The counter against the job's numbering, whole, split at every byte and byte by byte. */
  function expectCountAsJob(input: string | Buffer, opts?: CsvParserOptions) {
    const buf = typeof input === 'string' ? enc(input) : input
    const expected = parserDataCount(parse(buf, opts))
    const counted = (chunks: Buffer[]) => {
      const counter = new CsvRecordCounter(opts)
      let last = 0
      for (const c of chunks) {
        counter.push(c)
        const now = counter.rowsSoFar()
        expect(now).toBeGreaterThanOrEqual(last)
        expect(now).toBeLessThanOrEqual(expected)
        last = now
      }
      return counter.end()
    }
    expect(counted([buf]), JSON.stringify(buf.toString())).toBe(expected)
    for (let k = 0; k <= buf.length; k++)
      expect(counted([buf.subarray(0, k), buf.subarray(k)])).toBe(expected)
    expect(counted(bytewise(buf))).toBe(expected)
    return expected
  }

  it("skips a spreadsheet's padding rows, as the job does: the total, the row limit and the API log agree", () => {
    expect(expectCountAsJob('email,first_name\na@x.io,A\nb@x.io,B\n,,,\n,,,\n,,,\n,,,\n,,,\n,,,\n')).toBe(2)
    expect(
      expectCountAsJob('email,first_name\r\n,,,\r\na@x.io,A\r\n,,,\r\n , ,\t,\r\n"",""," "\r\n,,,'),
    ).toBe(1)
  })

  it('takes as blank what String.prototype.trim removes, inside quotes line breaks too', () => {
    for (const cell of [
      ' ',
      '\t',
      '\v',
      '\f',
      '\u00a0',
      '\u1680',
      '\u2000',
      '\u200a',
      '\u2028',
      '\u2029',
      '\u202f',
      '\u205f',
      '\u3000',
      '\ufeff',
    ]) {
      expect(cell.trim()).toBe('')
      expect(expectCountAsJob(`h\n${cell},${cell}\n"${cell}"\n`)).toBe(0)
    }
    expect(expectCountAsJob('h\n"\n",""\n"\r\n \r"\n')).toBe(0)
  })

  it('counts a row with any value, or one that cannot be read, however it starts', () => {
    for (const row of [
      ',,x',
      ' a',
      '""""', // a quote character
      '"" x', // malformed: text after a closing quote
      ' ""', // malformed: a quote inside an unquoted cell
      ',"', // an unterminated quote
      ',\u0000',
      ',\u200b', // zero width space: not whitespace to trim
      ',\u0085',
      ',\u00a1',
      ',\u2030',
      ',\ufffd',
    ]) {
      expect(expectCountAsJob(`h\n${row}\n`), JSON.stringify(row)).toBe(1)
    }
  })

  it('counts blank rows with bytes that are not UTF-8, or a character cut off at the end', () => {
    for (const bytes of [
      [0xc2],
      [0xc2, 0x20],
      [0xe2, 0x80],
      [0xe2, 0x80, 0x2c],
      [0xa0],
      [0xff],
      [0xc0, 0xa0],
      [0xe0, 0x80, 0xa0],
    ]) {
      const buf = Buffer.concat([enc('h\n, '), Buffer.from(bytes)])
      expect(expectCountAsJob(buf), bytes.join(' ')).toBe(1)
      expect(expectCountAsJob(Buffer.concat([buf, enc('\nx\n')]))).toBe(2)
    }
  })

  it('counts a blank row over the size limit, which the parser makes an error record', () => {
    const opts = { maxRecordBytes: 8 }
    expect(expectCountAsJob(`h\n${','.repeat(8)}\n${','.repeat(9)}\n"${' '.repeat(7)}"\n`, opts)).toBe(2)
  })

  it('agrees with the job on a generated corpus of blank-looking rows, for any chunking', () => {
    const rand = rng(7)
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T
    const pieces = [
      '',
      ' ',
      ' ',
      '\t',
      '\u00a0',
      '\u3000',
      '\ufeff',
      '\u2009',
      '\u200b',
      'x',
      '\u0000',
      '\n',
      '\r\n',
      '"',
      'é',
    ]
    for (let file = 0; file < 300; file++) {
      let text = 'h'
      const nRows = Math.floor(rand() * 6)
      for (let r = 0; r < nRows; r++) {
        text += pick(['\n', '\r\n', '\r'])
        while (rand() < 0.15) text += '\n' // empty lines
        const cells = Array.from({ length: 1 + Math.floor(rand() * 4) }, () =>
          Array.from({ length: Math.floor(rand() * 3) }, () => pick(pieces)).join(''),
        )
        // Well-formed CSV: a cell with a quote, comma or line break is quoted, others sometimes.
        text += cells
          .map((c) => (/[",\r\n]/.test(c) || rand() < 0.3 ? `"${c.replaceAll('"', '""')}"` : c))
          .join(',')
      }
      const buf = enc(text)
      const expected = parserDataCount(parse(buf))
      expect(count(buf), JSON.stringify(text)).toBe(expected)
      for (let t = 0; t < 3; t++) {
        const counter = new CsvRecordCounter()
        for (const c of randomSplit(buf, rand)) counter.push(c)
        expect(counter.end(), JSON.stringify(text)).toBe(expected)
      }
      const counter = new CsvRecordCounter()
      for (const c of bytewise(buf)) counter.push(c)
      expect(counter.end(), JSON.stringify(text)).toBe(expected)
    }
  })
})

describe('neutralizeCell', () => {
  it('prefixes a quote to cells that spreadsheets would treat as formulas', () => {
    expect(neutralizeCell('=SUM(A1:A9)')).toBe("'=SUM(A1:A9)")
    expect(neutralizeCell('+1')).toBe("'+1")
    expect(neutralizeCell('-2+3')).toBe("'-2+3")
    expect(neutralizeCell('@cmd')).toBe("'@cmd")
    expect(neutralizeCell('\tx')).toBe("'\tx")
    expect(neutralizeCell('\rx')).toBe("'\rx")
  })

  it('leaves other cells unchanged', () => {
    for (const v of ['', 'Ann', 'a=b', ' =1', "'=1", '1-2', 'x@y.io', '\nx'])
      expect(neutralizeCell(v)).toBe(v)
  })
})

describe('csvLine', () => {
  it('joins cells with commas and ends with CRLF', () => {
    expect(csvLine(['a', 'b', 'c'])).toBe('a,b,c\r\n')
    expect(csvLine([])).toBe('\r\n')
  })

  it('quotes cells containing commas, quotes, CR or LF and doubles quotes', () => {
    expect(csvLine(['a,b', 'say "hi"', 'l1\nl2', 'x\ry'])).toBe('"a,b","say ""hi""","l1\nl2","x\ry"\r\n')
  })

  it('neutralises formula strings, quoting when needed', () => {
    expect(csvLine(['=1+1', '-x', '=HYPERLINK("http://e.vil","x")', '\r'])).toBe(
      `'=1+1,'-x,"'=HYPERLINK(""http://e.vil"",""x"")","'\r"\r\n`,
    )
  })

  it('writes numbers and booleans as-is and null/undefined as empty', () => {
    expect(csvLine([-5, 3.5, 0, true, false, null, undefined, '-5'])).toBe("-5,3.5,0,true,false,,,'-5\r\n")
  })

  it('round-trips through the parser', () => {
    const cells = ['Zoë, Jr.', 'a "b"', 'multi\r\nline', '', '=cmd', '@x', 'plain']
    const [record] = parse(csvLine(cells))
    expect(record).toEqual({ line: 1, cells: cells.map(neutralizeCell) })
  })
})

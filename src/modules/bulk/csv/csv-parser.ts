import { StringDecoder } from 'node:string_decoder'

/**
 * Streaming RFC 4180 CSV parser for bulk imports.
 *
 * It never throws on bad input: a record with broken quoting (or one larger than
 * `maxRecordBytes`, or one holding bytes that are not UTF-8 or a NUL character) becomes an error
 * record and parsing resumes at the next line. No record it gives holds U+0000, which PostgreSQL
 * text and jsonb cannot store: a row with one fails, and an error record's raw text has U+FFFD
 * in its place.
 * Output is identical however the input is split into chunks.
 */

export type CsvErrorCode = 'malformed_quoting' | 'record_too_large' | 'invalid_encoding' | 'nul_character'
export type CsvRow = { line: number; cells: string[] }
export type CsvErrorRecord = { line: number; error: { code: CsvErrorCode; message: string }; raw: string }
/** `line` is the 1-based physical line on which the record starts (the header is line 1). */
export type CsvRecord = CsvRow | CsvErrorRecord

export interface CsvParserOptions {
  /** Largest allowed record, in UTF-8 bytes excluding its line break. Default 1 MiB. */
  maxRecordBytes?: number
}

const COMMA = 0x2c
const QUOTE = 0x22
const LF = 0x0a
const CR = 0x0d
const RAW_LIMIT = 1000
const REPLACEMENT = '\uFFFD'
const NUL = '\u0000'
export const DEFAULT_MAX_RECORD_BYTES = 1024 * 1024

// Parser states.
const REC_START = 0 // between records (line breaks here are empty lines or terminators)
const FIELD_START = 1 // a field begins at the scan position
const UNQUOTED = 2 // inside an unquoted field
const QUOTED = 3 // inside a quoted field
const QUOTE_SEEN = 4 // the previous chunk ended on a quote inside a quoted field: closing, or half of ""
const SKIP = 5 // discarding the rest of a bad record up to the next line break
type State = 0 | 1 | 2 | 3 | 4 | 5

export class CsvParser {
  private readonly decoder = new StringDecoder('utf8')
  private readonly maxBytes: number
  private out: CsvRecord[] = []
  private started = false // BOM check done
  private ended = false
  private state: State = REC_START
  private line = 1 // physical line at the scan position
  private lastCR = false // previous chunk ended with CR, so a leading LF completes a CRLF

  // The record in progress.
  private recLine = 1
  private cells: string[] = []
  private partial = '' // field content carried over from earlier chunks
  private recBytes = 0 // UTF-8 size of the record's text in earlier chunks
  private rawPrefix = '' // first RAW_LIMIT chars of the record's text in earlier chunks
  private rawCut = false // the record's text is longer than RAW_LIMIT: its raw is a prefix
  private headerEmitted = false // the first record is the header: the ones after it are data rows
  private pendingError: { code: CsvErrorCode; message: string } | null = null
  // Whether the decoded text so far held U+FFFD: the decoder's stand-in for bytes that are not UTF-8.
  private replaced = false
  // Whether the decoded text so far held U+0000, and the header's cells (to name a column).
  private nul = false
  private header: string[] | null = null

  // The chunk being scanned, where the record's text starts in it, and that position's line.
  private s = ''
  private seg = 0
  private segLine = 1
  // Cached next positions of special chars in `s` (see nextSpecial).
  private nComma = -1
  private nLF = -1
  private nCR = -1
  private nQuote = -1

  constructor(opts: CsvParserOptions = {}) {
    this.maxBytes = opts.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES
  }

  /** Feeds a chunk; returns the records completed by it. */
  push(chunk: Buffer | string): CsvRecord[] {
    if (!this.ended) this.run(typeof chunk === 'string' ? chunk : this.decoder.write(chunk))
    return this.flush()
  }

  /** Signals end of input; returns the final records. */
  end(): CsvRecord[] {
    if (this.ended) return this.flush()
    this.ended = true
    this.run(this.decoder.end())
    switch (this.state) {
      case FIELD_START: // input ended right after a comma
        this.cells.push('')
        this.emitRow()
        break
      case UNQUOTED:
      case QUOTE_SEEN:
        this.cells.push(this.take(''))
        this.emitRow()
        break
      case QUOTED:
        this.emitError(
          'malformed_quoting',
          `Unterminated quoted field in the record starting on line ${this.recLine}: the quote never closes, so the rest of the file was read into this row`,
          this.rawPrefix,
        )
        break
      case SKIP:
        if (this.pendingError)
          this.emitError(this.pendingError.code, this.pendingError.message, this.rawPrefix)
        break
    }
    this.state = REC_START
    return this.flush()
  }

  private flush(): CsvRecord[] {
    const out = this.out
    this.out = []
    return out
  }

  private run(text: string): void {
    let s = text
    if (!this.started) {
      if (s.length === 0) return
      this.started = true
      if (s.charCodeAt(0) === 0xfeff) s = s.slice(1)
    }
    const n = s.length
    if (n === 0) return
    if (!this.replaced && s.includes(REPLACEMENT)) this.replaced = true
    if (!this.nul && s.includes(NUL)) this.nul = true
    this.s = s
    this.seg = 0
    this.nComma = this.nLF = this.nCR = this.nQuote = -1
    this.segLine = this.line
    let i = 0
    for (;;) {
      this.scan(i)
      const state = this.state
      if (state === REC_START) break
      if (state === SKIP) {
        if (this.pendingError) this.rawPrefix = this.rawOf(n)
        break
      }
      // A record continues into the next chunk: enforce the size cap now so memory stays bounded.
      const bytes = this.recBytes + utf8Len(s, this.seg, n)
      if (bytes > this.maxBytes) {
        i = this.overflow(n) // always < n: scanning resumes in SKIP state
        continue
      }
      this.recBytes = bytes
      this.rawPrefix = this.rawOf(n)
      break
    }
    this.lastCR = s.charCodeAt(n - 1) === CR
  }

  /** Runs the state machine over the rest of the current chunk. */
  private scan(start: number): void {
    const s = this.s
    const n = s.length
    let i = start
    while (i < n) {
      switch (this.state) {
        case REC_START: {
          const c = s.charCodeAt(i)
          if (c === LF) {
            // LF right after CR is the second half of a CRLF, already counted.
            if (!(i > 0 ? s.charCodeAt(i - 1) === CR : this.lastCR)) this.line++
            i++
          } else if (c === CR) {
            this.line++
            i++
          } else {
            this.seg = i
            this.segLine = this.recLine = this.line
            this.recBytes = 0
            this.rawPrefix = ''
            this.rawCut = false
            this.cells = []
            this.state = FIELD_START
          }
          break
        }
        case FIELD_START:
          if (s.charCodeAt(i) === QUOTE) {
            this.state = QUOTED
            i++
            break
          }
          this.state = UNQUOTED
          break
        case UNQUOTED: {
          // Hot path: consume this and any following unquoted fields without leaving the loop.
          const cells = this.cells
          for (;;) {
            const j = this.nextSpecial(i)
            if (j === n) {
              this.partial += s.slice(i)
              i = n
              break
            }
            const c = s.charCodeAt(j)
            if (c === QUOTE) {
              i = this.malformed(j, `Unexpected quote inside an unquoted field on line ${this.line}`)
              break
            }
            cells.push(this.partial === '' ? s.slice(i, j) : this.take(s.slice(i, j)))
            if (c !== COMMA) {
              i = this.endRecord(j)
              break
            }
            i = j + 1
            if (i === n || s.charCodeAt(i) === QUOTE) {
              this.state = FIELD_START
              break
            }
          }
          break
        }
        case QUOTED: {
          let q = this.nQuote
          if (q < i) q = this.nQuote = indexOrEnd(s, '"', i)
          if (q === n) {
            this.countBreaks(i, n)
            this.partial += s.slice(i)
            i = n
            break
          }
          this.countBreaks(i, q)
          if (q + 1 === n) {
            this.partial += s.slice(i, q)
            this.state = QUOTE_SEEN
            i = n
          } else if (s.charCodeAt(q + 1) === QUOTE) {
            this.partial += s.slice(i, q + 1) // "" keeps one quote
            i = q + 2
          } else {
            i = this.afterClosingQuote(q + 1, s.slice(i, q))
          }
          break
        }
        case QUOTE_SEEN:
          if (s.charCodeAt(i) === QUOTE) {
            this.partial += '"'
            this.state = QUOTED
            i++
          } else i = this.afterClosingQuote(i, '')
          break
        case SKIP: {
          let j = i
          while (j < n) {
            const c = s.charCodeAt(j)
            if (c === LF || c === CR) break
            j++
          }
          if (j < n) {
            if (this.pendingError)
              this.emitError(this.pendingError.code, this.pendingError.message, this.rawOf(j))
            this.pendingError = null
            this.state = REC_START // which counts the line break at j
          }
          i = j
          break
        }
      }
    }
  }

  /**
   * First comma, quote, CR or LF at or after i (n if none). Native indexOf is far faster than a
   * per-char loop; each result is cached until the scan passes it, so every byte is searched
   * at most once per kind.
   */
  private nextSpecial(i: number): number {
    const s = this.s
    let j = this.nComma
    if (j < i) j = this.nComma = indexOrEnd(s, ',', i)
    let k = this.nLF
    if (k < i) k = this.nLF = indexOrEnd(s, '\n', i)
    if (k < j) j = k
    k = this.nCR
    if (k < i) k = this.nCR = indexOrEnd(s, '\r', i)
    if (k < j) j = k
    k = this.nQuote
    if (k < i) k = this.nQuote = indexOrEnd(s, '"', i)
    return Math.min(j, k)
  }

  /** `p` is just past a closing quote; `tail` is the field's content in this chunk. */
  private afterClosingQuote(p: number, tail: string): number {
    const c = this.s.charCodeAt(p)
    if (c === COMMA) {
      this.cells.push(this.take(tail))
      this.state = FIELD_START
      return p + 1
    }
    if (c === LF || c === CR) {
      this.cells.push(this.take(tail))
      return this.endRecord(p)
    }
    return this.malformed(
      p,
      `Unexpected character ${JSON.stringify(this.s[p])} after a closing quote on line ${this.line}`,
    )
  }

  /** Completes the field: earlier chunks' content plus `tail`. */
  private take(tail: string): string {
    if (this.partial === '') return tail
    const v = this.partial + tail
    this.partial = ''
    return v
  }

  /** The record's text ends at `e` (a line break). Returns where scanning continues. */
  private endRecord(e: number): number {
    if (this.tooBig(e)) return this.overflow(e)
    this.emitRow(e)
    this.state = REC_START
    return e
  }

  private malformed(p: number, message: string): number {
    // Size is checked first so the outcome doesn't depend on where chunks were split.
    if (this.tooBig(p)) return this.overflow(p)
    this.pendingError = { code: 'malformed_quoting', message }
    this.cells = []
    this.partial = ''
    this.state = SKIP
    return p
  }

  /** Is the record's text up to `end` (exclusive) over the cap? Cheap unless it's near the cap. */
  private tooBig(end: number): boolean {
    const chars = end - this.seg
    return (
      this.recBytes + chars * 3 > this.maxBytes &&
      this.recBytes + utf8Len(this.s, this.seg, end) > this.maxBytes
    )
  }

  /**
   * The record's text up to `end` exceeds the cap. Finds the exact character where it crossed
   * (so the outcome is the same for any chunking) and skips from there to the next line break,
   * ignoring quotes; the error is reported when that break is reached.
   */
  private overflow(end: number): number {
    const s = this.s
    let bytes = this.recBytes
    let c = this.seg
    while (c < end - 1) {
      bytes += unitBytes(s.charCodeAt(c))
      if (bytes > this.maxBytes) break
      c++
    }
    // Quoted line breaks past the crossing point were already counted; recount up to it.
    const prevCR = this.seg > 0 ? s.charCodeAt(this.seg - 1) === CR : this.lastCR
    this.line = this.segLine + countBreaks(s, this.seg, c, prevCR)
    this.pendingError = {
      code: 'record_too_large',
      message: `Record starting on line ${this.recLine} exceeds ${this.maxBytes} bytes; skipped to the next line`,
    }
    this.cells = []
    this.partial = ''
    this.state = SKIP
    return c
  }

  private countBreaks(from: number, to: number): void {
    const prevCR = from > 0 ? this.s.charCodeAt(from - 1) === CR : this.lastCR
    this.line += countBreaks(this.s, from, to, prevCR)
  }

  /** The record's raw text up to `end`, capped at RAW_LIMIT chars. */
  private rawOf(end: number): string {
    const room = RAW_LIMIT - this.rawPrefix.length
    if (end - this.seg > room) this.rawCut = true
    if (room <= 0) return this.rawPrefix
    return this.rawPrefix + this.s.slice(this.seg, Math.min(end, this.seg + room))
  }

  /** `end`: where the record's text ends in the current chunk (none: it ended with the input). */
  private emitRow(end?: number): void {
    // A file saved in another encoding (Excel's "CSV (Comma delimited)" is Windows-1252) would
    // otherwise store "Jos\uFFFD" for "José" without a word: the row fails, saying why.
    if (this.replaced && this.cells.some((c) => c.includes(REPLACEMENT))) {
      this.emitError(
        'invalid_encoding',
        `Line ${this.recLine} is not UTF-8 text (another encoding, such as Windows-1252?): save the file as "CSV UTF-8" and upload it again`,
        this.cells.join(',').slice(0, RAW_LIMIT),
      )
    } else if (this.nul && this.cells.some((c) => c.includes(NUL))) {
      // PostgreSQL cannot store U+0000 in text or jsonb: stored, the row would fail its whole job.
      this.emitError('nul_character', this.nulMessage(), end === undefined ? this.rawPrefix : this.rawOf(end))
    } else {
      if (!this.headerEmitted) this.header = this.cells
      this.out.push({ line: this.recLine, cells: this.cells })
      this.headerEmitted = true
    }
    this.cells = []
  }

  /** Names the first cell of the record holding U+0000: its column, or its position in the header. */
  private nulMessage(): string {
    const k = this.cells.findIndex((c) => c.includes(NUL))
    const what = 'a NUL character (U+0000), which cannot be stored'
    if (!this.headerEmitted)
      return `Column ${k + 1} of the header holds ${what}: remove it and upload the file again`
    const name = this.header?.[k]?.trim()
    const column = name ? `column "${name}"` : `column ${k + 1}`
    return `The ${column} on line ${this.recLine} holds ${what}: remove it`
  }

  private emitError(code: CsvErrorCode, message: string, raw: string): void {
    // A bad header fails the job, and a row that is not UTF-8 is mended by saving the file again:
    // neither is fixed in the failed-rows CSV.
    const fixedThere = this.headerEmitted && code !== 'invalid_encoding'
    const text = fixedThere ? `${message}. ${whereTheLineIs(this.rawCut)}` : message
    // The raw text is stored with the row's outcome: never with a NUL in it.
    const stored = this.nul ? raw.replaceAll(NUL, REPLACEMENT) : raw
    this.out.push({ line: this.recLine, error: { code, message: text }, raw: stored })
    this.headerEmitted = true
  }
}

/** Parses an async stream of chunks (e.g. a file or upload stream). */
export async function* parseCsv(
  source: AsyncIterable<Buffer | string>,
  opts?: CsvParserOptions,
): AsyncGenerator<CsvRecord> {
  const parser = new CsvParser(opts)
  for await (const chunk of source) yield* parser.push(chunk)
  yield* parser.end()
}

export function isCsvError(record: CsvRecord): record is CsvErrorRecord {
  return 'error' in record
}

/**
 * A data row that cannot be split into cells reaches the failed-rows CSV as its raw text, put whole
 * in the first column (bulk.runner.ts): its message says so, and how to fix it.
 */
function whereTheLineIs(cut: boolean): string {
  return cut
    ? `In the failed-rows CSV only the first ${RAW_LIMIT} characters of this line are in the first column: fix the row in your original file`
    : 'In the failed-rows CSV this whole original line is in the first column, as one cell: fix it there and split it back into its columns before uploading again'
}

function indexOrEnd(s: string, ch: string, from: number): number {
  const k = s.indexOf(ch, from)
  return k < 0 ? s.length : k
}

/** Line breaks in s[from, to): every CR, and every LF not preceded by CR. */
function countBreaks(s: string, from: number, to: number, prevCR: boolean): number {
  let k = 0
  let cr = prevCR
  for (let j = from; j < to; j++) {
    const c = s.charCodeAt(j)
    if (c === CR) {
      k++
      cr = true
    } else {
      if (c === LF && !cr) k++
      cr = false
    }
  }
  return k
}

/** UTF-8 size of one UTF-16 unit (a surrogate pair is 4 bytes, 2 per half). */
function unitBytes(c: number): number {
  return c < 0x80 ? 1 : c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 2 : 3
}

function utf8Len(s: string, from: number, to: number): number {
  let b = 0
  for (let j = from; j < to; j++) b += unitBytes(s.charCodeAt(j))
  return b
}

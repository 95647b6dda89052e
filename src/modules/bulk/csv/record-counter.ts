/**
 * Counts CSV data records (header, empty lines and blank rows excluded) straight from bytes, without
 * decoding. On well-formed input it agrees with CsvParser and with how a job numbers rows
 * (bulk.file-rows.ts): quote, CR and LF are ASCII and never occur inside a UTF-8 multibyte
 * sequence, so a byte-level quote toggle sees the same records; and a data record whose cells are
 * all empty or whitespace (",,," below a spreadsheet's data) is skipped as the job skips it, so the
 * count, the row limit and the job's total agree from the upload on.
 */

import { DEFAULT_MAX_RECORD_BYTES } from './csv-parser.ts'

const QUOTE = 0x22
const COMMA = 0x2c
const LF = 0x0a
const CR = 0x0d
const BOM = [0xef, 0xbb, 0xbf]
const NEAR = 16 // bytes scanned by hand before falling back to indexOf

/**
 * The UTF-8 of the characters besides ASCII that String.prototype.trim removes (the job's test of a
 * blank cell): U+00A0, U+1680, U+2000-200A, U+2028, U+2029, U+202F, U+205F, U+3000, U+FEFF.
 */
const WIDE_SPACES = new Set([
  0xc2a0,
  0xe19a80,
  0xe280a8,
  0xe280a9,
  0xe280af,
  0xe2819f,
  0xe38080,
  0xefbbbf,
  ...Array.from({ length: 11 }, (_, k) => 0xe28080 + k),
])

/** Tab, VT, FF and space: blank in a cell; CR and LF too, inside quotes. */
const isAsciiSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0b || c === 0x0c

export interface CsvRecordCounterOptions {
  /** As CsvParser's: a longer record is an error record, which counts even if it is blank. */
  maxRecordBytes?: number
}

export class CsvRecordCounter {
  private readonly maxBytes: number
  private records = 0 // records counted, header included
  private inQuotes = false
  private lineEmpty = true // nothing but line breaks since the last record ended
  private bomMatched = 0 // BOM bytes matched so far at the very start
  private bomDone = false

  // A data record in progress whose cells are all blank so far: not counted (yet).
  private blank = false
  private fieldStart = false // a cell begins at the next byte
  private afterClose = false // the previous byte closed a quoted cell
  private blankBytes = 0 // the record's bytes so far (for the size limit)
  private wide = 0 // a multibyte character's bytes so far
  private wideLeft = 0 // its bytes still to come

  constructor(opts: CsvRecordCounterOptions = {}) {
    this.maxBytes = opts.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES
  }

  push(chunk: Buffer): void {
    const n = chunk.length
    let i = 0
    if (!this.bomDone) {
      while (i < n && this.bomMatched < 3 && chunk[i] === BOM[this.bomMatched]) {
        this.bomMatched++
        i++
      }
      if (i === n && this.bomMatched < 3) return // may still turn out to be a BOM
      this.bomDone = true
      if (this.bomMatched < 3) this.bomPrefixWasContent()
    }

    let records = this.records
    let inQuotes = this.inQuotes
    let empty = this.lineEmpty
    // Next position of each special byte, found with native indexOf and cached until passed
    // (n = none left in this chunk). When specials have been close together (dense quoting like
    // `"a","b"`) a few bytes are first checked by hand: cheaper than a native call.
    let nextQuote = -1
    let nextLF = -1
    let nextCR = -1
    let dense = false
    while (i < n) {
      if (empty) {
        // Between records: line breaks are empty lines; anything else begins a record.
        const c = chunk[i]
        if (c === LF || c === CR) {
          i++
          continue
        }
        empty = false
        if (records === 0)
          records++ // the header, whatever it holds
        else this.beginBlank()
      }
      if (this.blank) {
        // Rare: only a record that begins with a blank cell is looked at byte by byte.
        this.records = records
        this.inQuotes = inQuotes
        this.lineEmpty = false
        i = this.scanBlank(chunk, i)
        records = this.records
        inQuotes = this.inQuotes
        empty = this.lineEmpty
        continue
      }
      let p = i
      if (dense) {
        const lim = Math.min(n, i + NEAR)
        if (inQuotes) while (p < lim && chunk[p] !== QUOTE) p++
        else
          while (p < lim) {
            const c = chunk[p]
            if (c === QUOTE || c === LF || c === CR) break
            p++
          }
        if (p === lim) dense = false
      }
      if (!dense) {
        if (nextQuote < p) nextQuote = indexOrEnd(chunk, QUOTE, p)
        if (inQuotes) p = nextQuote
        else {
          if (nextLF < p) nextLF = indexOrEnd(chunk, LF, p)
          if (nextCR < p) nextCR = indexOrEnd(chunk, CR, p)
          p = Math.min(nextQuote, nextLF, nextCR)
        }
        dense = p - i < NEAR
      }
      if (p === n) break
      i = p + 1
      if (inQuotes)
        inQuotes = false // toggling on every quote handles "" too
      else if (chunk[p] === QUOTE) inQuotes = true
      else empty = true // a line break outside quotes ends the record
    }
    this.records = records
    this.inQuotes = inQuotes
    this.lineEmpty = empty
  }

  /**
   * Data records begun so far (header excluded), a blank one once it holds a value: a lower bound
   * of the final count, which only grows, so a row limit can be enforced while the file still arrives.
   */
  rowsSoFar(): number {
    return Math.max(0, this.records - 1)
  }

  /** Returns the number of data records (header excluded). */
  end(): number {
    if (!this.bomDone) {
      this.bomDone = true
      this.bomPrefixWasContent()
    }
    // A quote never closed is an error record (malformed_quoting), and a character cut off at the
    // end is not UTF-8 (invalid_encoding): either counts, blank or not.
    if (this.blank && (this.inQuotes || this.wideLeft > 0)) this.countBlank()
    this.blank = false
    return Math.max(0, this.records - 1)
  }

  /** A partial BOM that didn't complete was ordinary content on the first line. */
  private bomPrefixWasContent(): void {
    if (this.bomMatched > 0 && this.lineEmpty) {
      this.records++
      this.lineEmpty = false
    }
  }

  private beginBlank(): void {
    this.blank = true
    this.fieldStart = true
    this.afterClose = false
    this.blankBytes = 0
    this.wide = 0
    this.wideLeft = 0
  }

  /** The blank record in progress holds a value after all (or cannot be read): it counts. */
  private countBlank(): void {
    this.blank = false
    this.records++
  }

  /**
   * Follows a record that is blank so far, as the parser would split it, from `i`. Returns where
   * the fast scan resumes: the end of the chunk (still blank), the line break that ends the record
   * (blank: not counted, `lineEmpty` set), or the first byte of a value (counted; that byte is
   * left to the fast scan, whose quote toggle then stays in step).
   */
  private scanBlank(chunk: Buffer, start: number): number {
    const n = chunk.length
    for (let i = start; i < n; i++) {
      const c = chunk[i]
      const outside = !this.inQuotes
      if (outside && this.wideLeft === 0 && (c === LF || c === CR)) {
        this.blank = false
        this.lineEmpty = true
        return i
      }
      if (++this.blankBytes > this.maxBytes) {
        this.countBlank() // too large: an error record
        return i
      }
      if (this.wideLeft > 0) {
        // A multibyte character: blank only if it is one of the wide spaces.
        if ((c & 0xc0) !== 0x80) {
          this.countBlank()
          return i
        }
        this.wide = (this.wide << 8) | c
        if (--this.wideLeft === 0 && !WIDE_SPACES.has(this.wide)) {
          this.countBlank()
          return i
        }
        continue
      }
      if (c === QUOTE) {
        if (outside && !this.fieldStart) {
          // "" inside a quoted cell (a quote character), or a stray quote (malformed_quoting).
          this.countBlank()
          return i
        }
        this.inQuotes = outside
        this.afterClose = !outside
        this.fieldStart = false
        continue
      }
      if (outside) {
        if (c === COMMA) {
          this.fieldStart = true
          this.afterClose = false
          continue
        }
        if (this.afterClose) {
          // Anything but a comma or a line break after a closing quote: malformed_quoting.
          this.countBlank()
          return i
        }
        this.fieldStart = false
      }
      if (isAsciiSpace(c) || c === LF || c === CR) continue
      if (c === 0xc2) {
        this.wide = c
        this.wideLeft = 1
      } else if (c === 0xe1 || c === 0xe2 || c === 0xe3 || c === 0xef) {
        this.wide = c
        this.wideLeft = 2
      } else {
        this.countBlank()
        return i
      }
    }
    return n
  }
}

function indexOrEnd(chunk: Buffer, byte: number, from: number): number {
  const k = chunk.indexOf(byte, from)
  return k < 0 ? chunk.length : k
}

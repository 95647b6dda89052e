/**
 * Counts CSV data records (header and empty lines excluded) straight from bytes, without
 * decoding. On well-formed input it agrees with CsvParser: quote, CR and LF are ASCII and never
 * occur inside a UTF-8 multibyte sequence, so a byte-level quote toggle sees the same records.
 */

const QUOTE = 0x22
const LF = 0x0a
const CR = 0x0d
const BOM = [0xef, 0xbb, 0xbf]

export class CsvRecordCounter {
  private records = 0 // records seen, header included
  private inQuotes = false
  private lineEmpty = true // nothing but line breaks since the last record ended
  private bomMatched = 0 // BOM bytes matched so far at the very start
  private bomDone = false

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
    // Next positions of each special byte outside quotes, found with native indexOf and cached;
    // n means "none left in this chunk".
    let nextQuote = -1
    let nextLF = -1
    let nextCR = -1
    while (i < n) {
      if (inQuotes) {
        // Toggling on every quote handles "" too: it closes and immediately reopens.
        if (nextQuote < i) nextQuote = indexOrEnd(chunk, QUOTE, i)
        if (nextQuote === n) break
        inQuotes = false
        i = nextQuote + 1
        continue
      }
      if (nextQuote < i) nextQuote = indexOrEnd(chunk, QUOTE, i)
      if (nextLF < i) nextLF = indexOrEnd(chunk, LF, i)
      if (nextCR < i) nextCR = indexOrEnd(chunk, CR, i)
      const p = Math.min(nextQuote, nextLF, nextCR)
      if (empty && p > i) {
        records++ // ordinary bytes start a record
        empty = false
      }
      if (p === n) break
      if (p === nextQuote) {
        if (empty) {
          records++
          empty = false
        }
        inQuotes = true
      } else empty = true // a line break outside quotes ends the record (or is an empty line)
      i = p + 1
    }
    this.records = records
    this.inQuotes = inQuotes
    this.lineEmpty = empty
  }

  /** Returns the number of data records (header excluded). */
  end(): number {
    if (!this.bomDone) {
      this.bomDone = true
      this.bomPrefixWasContent()
    }
    return Math.max(0, this.records - 1)
  }

  /** A partial BOM that didn't complete was ordinary content on the first line. */
  private bomPrefixWasContent(): void {
    if (this.bomMatched > 0 && this.lineEmpty) {
      this.records++
      this.lineEmpty = false
    }
  }
}

function indexOrEnd(chunk: Buffer, byte: number, from: number): number {
  const k = chunk.indexOf(byte, from)
  return k < 0 ? chunk.length : k
}

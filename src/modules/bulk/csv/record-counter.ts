/**
 * Counts CSV data records (header and empty lines excluded) straight from bytes, without
 * decoding. On well-formed input it agrees with CsvParser: quote, CR and LF are ASCII and never
 * occur inside a UTF-8 multibyte sequence, so a byte-level quote toggle sees the same records.
 */

const QUOTE = 0x22
const LF = 0x0a
const CR = 0x0d
const BOM = [0xef, 0xbb, 0xbf]
const NEAR = 16 // bytes scanned by hand before falling back to indexOf

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
    // Next position of each special byte, found with native indexOf and cached until passed
    // (n = none left in this chunk). When specials have been close together (dense quoting like
    // `"a","b"`) a few bytes are first checked by hand: cheaper than a native call.
    let nextQuote = -1
    let nextLF = -1
    let nextCR = -1
    let dense = false
    while (i < n) {
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
      if (!inQuotes && empty && p > i) {
        records++ // ordinary bytes start a record
        empty = false
      }
      if (p === n) break
      i = p + 1
      if (inQuotes)
        inQuotes = false // toggling on every quote handles "" too
      else if (chunk[p] === QUOTE) {
        if (empty) {
          records++
          empty = false
        }
        inQuotes = true
      } else empty = true // a line break outside quotes ends the record (or is an empty line)
    }
    this.records = records
    this.inQuotes = inQuotes
    this.lineEmpty = empty
  }

  /**
   * Data records begun so far (header excluded): a lower bound of the final count, which only grows,
   * so a row limit can be enforced while the file still arrives.
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

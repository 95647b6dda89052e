/** CSV output for exports and import error reports, safe to open in spreadsheet software. */

export type CsvCell = string | number | boolean | null | undefined

/**
 * Defuses spreadsheet formula injection (OWASP "CSV Injection"): a cell starting with
 * = + - @ tab or CR gets a leading single quote so it is shown as text, not evaluated.
 */
export function neutralizeCell(value: string): string {
  if (value.length === 0) return value
  const c = value.charCodeAt(0)
  // = + - @ \t \r
  if (c === 0x3d || c === 0x2b || c === 0x2d || c === 0x40 || c === 0x09 || c === 0x0d) return `'${value}`
  return value
}

/** One CSV line ending in CRLF. Strings are neutralised; numbers are not (so -5 stays -5). */
export function csvLine(cells: readonly CsvCell[]): string {
  let line = ''
  for (let i = 0; i < cells.length; i++) {
    if (i > 0) line += ','
    const cell = cells[i]
    if (cell === null || cell === undefined) continue
    line += typeof cell === 'string' ? quoteIfNeeded(neutralizeCell(cell)) : String(cell)
  }
  return `${line}\r\n`
}

const NEEDS_QUOTES = /[",\r\n]/

function quoteIfNeeded(value: string): string {
  return NEEDS_QUOTES.test(value) ? `"${value.replaceAll('"', '""')}"` : value
}

import { csvLine } from './csv/csv-writer.ts'

/**
 * The failed-rows CSV (`GET …/details?format=csv`): the file's own columns, then two that Hearth
 * adds, the row's line in the uploaded file and its error. They are called `line` and `error`,
 * unless the file's own columns already use the name (in any case): then it takes `hearth_` before
 * it, as often as it takes to be free (`hearth_error`, `hearth_hearth_error`, …), and the file's
 * column keeps its place and its cells.
 */
export function addedColumns(own: readonly string[]): [line: string, error: string] {
  const taken = new Set(own.map((c) => c.toLowerCase()))
  const free = (name: string): string => (taken.has(name) ? free(`hearth_${name}`) : name)
  return [free('line'), free('error')]
}

/**
 * How many of a header's columns are the file's own. A header that ends with the two columns
 * Hearth adds, named as it names them for the columns before them, is a failed-rows CSV uploaded
 * again: those last two are Hearth's (ignored by the upload, replaced in its failed-rows CSV).
 */
export function ownColumnCount(columns: readonly string[]): number {
  const own = columns.length - 2
  if (own < 1) return columns.length
  const [line, error] = addedColumns(columns.slice(0, own))
  return columns[own] === line && columns[own + 1] === error ? own : columns.length
}

type FailedRowsItem =
  | { columns: string[] }
  | { row: { line: number; code: string; message: string; cells: string[] } }

/** The failed rows as CSV: the job's own columns, then line and error (see addedColumns); every cell neutralised. */
export async function* failedRowsCsv(source: AsyncIterable<FailedRowsItem>) {
  let own = 0 // the file's own columns, written back
  let width = 0 // the header's cells
  for await (const item of source) {
    if ('columns' in item) {
      width = item.columns.length
      own = ownColumnCount(item.columns)
      const columns = item.columns.slice(0, own)
      yield csvLine([...columns, ...addedColumns(columns)])
      continue
    }
    const { cells, line, code, message } = item.row
    if (cells.length > width) {
      // Cut to the header's width it would read as a sound row: whole, in the first column, it cannot.
      const whole = csvLine(cells).replace(/\r\n$/, '')
      const rest = Array.from({ length: Math.max(own - 1, 0) }, () => '')
      yield csvLine([whole, ...rest, line, `${code}: ${message}. ${ROW_IN_FIRST_COLUMN}`])
    } else
      yield csvLine([...Array.from({ length: own }, (_, i) => cells[i] ?? ''), line, `${code}: ${message}`])
  }
}

const ROW_IN_FIRST_COLUMN =
  "All the row's cells are in the first column, joined by commas: split them into the header's columns"

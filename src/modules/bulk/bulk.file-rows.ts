import type { Tx } from '../../lib/db/database.ts'
import { readUpload } from './bulk.files.ts'
import { dropPadding, isBlankRow, namedColumns } from './bulk.plan.ts'
import { CsvParser, type CsvRecord, isCsvError } from './csv/csv-parser.ts'

export type NumberedRow = { rowNo: number; record: CsvRecord }

/**
 * A stored upload read as a job reads it: first its header record, then each data row with its
 * number. Blank rows (",,," included) are skipped and not numbered; cells past the header's named
 * columns are dropped when blank (a spreadsheet's padding). The job runner and the failed-rows CSV
 * both number rows through here, so a row number means the same row to both.
 */
export async function* numberedRecords(
  db: Tx,
  uploadId: string,
  pieces: number,
): AsyncGenerator<{ header: CsvRecord } | NumberedRow> {
  const parser = new CsvParser()
  let named: number | null = null
  let rowNo = 0
  const records = async function* () {
    for await (const piece of readUpload(db, uploadId, pieces)) yield* parser.push(piece)
    yield* parser.end()
  }
  for await (const record of records()) {
    if (named === null) {
      named = isCsvError(record) ? 0 : namedColumns(record.cells)
      yield { header: record }
      continue
    }
    if (!isCsvError(record)) {
      if (isBlankRow(record.cells)) continue
      record.cells = dropPadding(record.cells, named)
    }
    rowNo++
    yield { rowNo, record }
  }
}

/** Rows [first, last] of a chunk an earlier attempt committed. */
export type RowRange = { first: number; last: number }

/**
 * Whether a row lies in one of these ranges (the committed chunks of a job), for row numbers asked
 * in ascending order, as a file is read: one pass over the ranges in all.
 */
export function inRanges(ranges: RowRange[]): (rowNo: number) => boolean {
  const sorted = [...ranges].sort((a, b) => a.first - b.first)
  let i = 0
  return (rowNo) => {
    while (i < sorted.length && sorted[i].last < rowNo) i++
    return i < sorted.length && sorted[i].first <= rowNo
  }
}

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

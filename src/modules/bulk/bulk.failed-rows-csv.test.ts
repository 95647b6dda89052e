import { describe, expect, it } from 'vitest'
import { addedColumns, ownColumnCount } from './bulk.failed-rows-csv.ts'

describe("the failed-rows CSV's added columns", () => {
  it.each([
    [
      ['email', 'xp'],
      ['line', 'error'],
    ],
    [
      ['email', 'Error'],
      ['line', 'hearth_error'],
    ],
    [
      ['LINE', 'email'],
      ['hearth_line', 'error'],
    ],
    [
      ['email', 'line', 'Hearth_Line', 'error'],
      ['hearth_hearth_line', 'hearth_error'],
    ],
  ])('for the columns %j are %j', (own, added) => {
    expect(addedColumns(own)).toEqual(added)
  })

  it.each([
    [['email', 'xp'], 2],
    [['email', 'xp', 'line', 'error'], 2],
    [['email', 'error', 'line', 'hearth_error'], 2],
    // Named for the columns before them, else they are the file's own.
    [['email', 'error', 'line', 'error'], 4],
    [['email', 'line', 'xp', 'error'], 4],
    [['email', 'Error', 'xp'], 3],
    [['line', 'error'], 2],
  ])('a header %j has %i columns of its own', (columns, own) => {
    expect(ownColumnCount(columns)).toBe(own)
  })
})

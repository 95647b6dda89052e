import { describe, expect, it } from 'vitest'
import { isDataError, isTransientError } from './sql-errors.ts'

describe('SQLSTATE classes', () => {
  it('data, constraint and program-limit errors are the rows’ fault; races and the rest are not', () => {
    for (const code of ['22P02', '22003', '23505', '23514', '54000'])
      expect(isDataError({ code }), code).toBe(true)
    for (const code of ['40P01', '40001', '55P03', '53100', '57P01', '08006', 'ECONNRESET', undefined])
      expect(isDataError({ code }), String(code)).toBe(false)
    expect(isDataError(new Error('no code'))).toBe(false)
    expect(isDataError(null)).toBe(false)
  })

  it('a deadlock, a serialization failure and a lock not available are worth trying again', () => {
    for (const code of ['40P01', '40001', '55P03']) expect(isTransientError({ code }), code).toBe(true)
    for (const code of ['23505', '53100', '57P01', undefined])
      expect(isTransientError({ code }), String(code)).toBe(false)
  })
})

import { describe, expect, it } from 'vitest'
import { AppError } from '../../../lib/errors.ts'
import { decodeCursor, encodeCursor } from './cursor.ts'

const id = '61100af5c548eb5c7ebc7819'
const raw = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')

describe('cursor', () => {
  it('round-trips a position with microseconds', () => {
    const c = { createdAt: '2025-08-28T10:11:12.123456Z', id }
    expect(decodeCursor(encodeCursor(c))).toEqual(c)
  })

  it.each([
    ['not base64 json', 'abc'],
    ['wrong shape', raw({ createdAt: '2025-08-28T10:11:12.123456Z', id })],
    ['millisecond time', raw(['2025-08-28T10:11:12.123Z', id])],
    ['impossible date', raw(['2025-02-30T10:11:12.123456Z', id])],
    ['impossible hour', raw(['2025-02-10T25:11:12.123456Z', id])],
    ['bad id', raw(['2025-08-28T10:11:12.123456Z', "x' OR 1=1 --"])],
    ['numbers', raw([1, 2])],
  ])('refuses %s with 400 invalid_cursor', (_name, value) => {
    expect(() => decodeCursor(value)).toThrow(AppError)
    try {
      decodeCursor(value)
    } catch (e) {
      expect(e).toMatchObject({ status: 400, code: 'invalid_cursor', field: 'cursor' })
    }
  })
})

import { describe, expect, it } from 'vitest'
import { AppError } from '../../lib/errors.ts'
import { decodeCursor, encodeCursor } from './cursor.ts'

describe('log cursor', () => {
  const position = { createdAt: '2021-01-01T00:00:00.000003Z', id: '6b09ecb5c88f29f51d6809ca' }

  it('round-trips a position with microsecond precision', () => {
    const text = encodeCursor(position)
    expect(text).toMatch(/^[A-Za-z0-9_-]+$/)
    expect(decodeCursor(text)).toEqual(position)
  })

  it.each([
    ['not base64 JSON', 'not-a-cursor'],
    ['an object', Buffer.from('{"createdAt":"x"}').toString('base64url')],
    [
      'a millisecond time',
      Buffer.from('["2021-01-01T00:00:00.000Z","6b09ecb5c88f29f51d6809ca"]').toString('base64url'),
    ],
    [
      'an impossible date',
      Buffer.from('["2021-13-45T00:00:00.000000Z","6b09ecb5c88f29f51d6809ca"]').toString('base64url'),
    ],
    [
      'a bad id',
      Buffer.from('["2021-01-01T00:00:00.000000Z","x\'; DROP TABLE api_log"]').toString('base64url'),
    ],
    [
      'extra items',
      Buffer.from('["2021-01-01T00:00:00.000000Z","6b09ecb5c88f29f51d6809ca",1]').toString('base64url'),
    ],
  ])('rejects %s with 400 invalid_cursor', (_name, text) => {
    let caught: unknown
    try {
      decodeCursor(text)
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(AppError)
    expect(caught).toMatchObject({ status: 400, code: 'invalid_cursor', field: 'cursor' })
  })
})

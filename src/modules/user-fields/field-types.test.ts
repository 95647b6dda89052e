import { describe, expect, it } from 'vitest'
import { checkFieldKey, deriveFieldKey, isReservedKey } from './field-keys.ts'
import { coerceFieldValue, FIELD_TYPES, kindOf, normalizeFieldKey, parseIsoDate } from './field-types.ts'

const def = (type: string, options?: string[]) => ({ id: null, field: 'f', type, options })

describe('field types', () => {
  describe('kindOf', () => {
    it('folds the documented type names into five kinds', () => {
      expect(FIELD_TYPES.map((t) => [t, kindOf(t)])).toEqual([
        ['text', 'text'],
        ['single-line-text', 'text'],
        ['multi-line-text', 'text'],
        ['number', 'number'],
        ['numerical', 'number'],
        ['boolean', 'boolean'],
        ['date', 'date'],
        ['select', 'select'],
      ])
    })
  })

  describe('coerceFieldValue', () => {
    it('passes null and undefined through as null', () => {
      expect(coerceFieldValue(def('number'), null)).toEqual({ ok: true, value: null })
      expect(coerceFieldValue(def('number'), undefined)).toEqual({ ok: true, value: null })
    })

    it('reads numbers from JSON and from text, and refuses the rest', () => {
      expect(coerceFieldValue(def('numerical'), 5)).toEqual({ ok: true, value: 5 })
      expect(coerceFieldValue(def('number'), ' 7.5 ')).toEqual({ ok: true, value: 7.5 })
      expect(coerceFieldValue(def('number'), '')).toMatchObject({ ok: false, code: 'invalid_value' })
      expect(coerceFieldValue(def('number'), 'ten')).toMatchObject({ ok: false, code: 'invalid_value' })
      expect(coerceFieldValue(def('number'), true)).toMatchObject({ ok: false })
    })

    it('reads booleans from the usual words, case-insensitively', () => {
      expect(coerceFieldValue(def('boolean'), 'Yes')).toEqual({ ok: true, value: true })
      expect(coerceFieldValue(def('boolean'), '0')).toEqual({ ok: true, value: false })
      expect(coerceFieldValue(def('boolean'), false)).toEqual({ ok: true, value: false })
      expect(coerceFieldValue(def('boolean'), 'maybe')).toMatchObject({ ok: false })
    })

    it('reads YYYY-MM-DD as midnight UTC and refuses days that do not exist', () => {
      expect(parseIsoDate('2024-02-29')?.toISOString()).toBe('2024-02-29T00:00:00.000Z')
      expect(parseIsoDate('0025-01-31')?.toISOString()).toBe('0025-01-31T00:00:00.000Z')
      for (const bad of ['2025-02-29', '2025-04-31', '2025-13-01', '2025-00-10', '2025-1-01']) {
        expect(parseIsoDate(bad), bad).toBeNull()
      }
    })

    it('keeps a YYYY-MM-DD date and normalises an ISO instant to UTC', () => {
      expect(coerceFieldValue(def('date'), '2025-06-22')).toEqual({ ok: true, value: '2025-06-22' })
      expect(coerceFieldValue(def('date'), '2025-06-22T13:28:50+02:00')).toEqual({
        ok: true,
        value: '2025-06-22T11:28:50.000Z',
      })
      expect(coerceFieldValue(def('date'), 'not a date')).toMatchObject({ ok: false })
      expect(coerceFieldValue(def('date'), '2025-06-22 10:00')).toEqual({
        ok: true,
        value: '2025-06-22T10:00:00.000Z',
      })
      // Date's own parser would take these (or roll 02-30 over to March); a field does not.
      for (const loose of ['12', 'maybe 1', 'Jun 22 2025', '2025-13-01', '2025-02-30', 5]) {
        expect(coerceFieldValue(def('date'), loose), String(loose)).toMatchObject({ ok: false })
      }
    })

    it('allows only the options of a select field', () => {
      const level = def('select', ['Beginner', 'Advanced'])
      expect(coerceFieldValue(level, 'Advanced')).toEqual({ ok: true, value: 'Advanced' })
      expect(coerceFieldValue(level, 'advanced')).toMatchObject({
        ok: false,
        message: expect.stringContaining('Beginner, Advanced'),
      })
    })

    it('refuses lists and objects whatever the type', () => {
      for (const type of FIELD_TYPES) {
        expect(coerceFieldValue(def(type, ['1']), ['1']), type).toMatchObject({
          ok: false,
          code: 'invalid_value',
        })
        expect(coerceFieldValue(def(type, ['1']), { v: 1 }), type).toMatchObject({ ok: false })
      }
    })

    it('takes scalars as text and refuses objects and over-long text', () => {
      expect(coerceFieldValue(def('text'), 12)).toEqual({ ok: true, value: '12' })
      expect(coerceFieldValue(def('multi-line-text'), 'a\nb')).toEqual({ ok: true, value: 'a\nb' })
      expect(coerceFieldValue(def('text'), { a: 1 })).toMatchObject({ ok: false })
      expect(coerceFieldValue(def('text'), 'x'.repeat(10_001))).toMatchObject({ ok: false })
    })
  })

  describe('field keys', () => {
    it('turns spaces into hyphens as the latest docs say', () => {
      expect(normalizeFieldKey(' deposit amount ')).toBe('deposit-amount')
      expect(checkFieldKey('deposit  amount')).toEqual({ ok: true, key: 'deposit-amount' })
      expect(checkFieldKey('userLevel')).toEqual({ ok: true, key: 'userLevel' })
    })

    it('refuses punctuation, over-long keys and the bulk `_op` suffix', () => {
      expect(checkFieldKey('a,b')).toMatchObject({ ok: false })
      expect(checkFieldKey('-lead')).toMatchObject({ ok: false })
      expect(checkFieldKey('x'.repeat(51))).toMatchObject({ ok: false })
      expect(checkFieldKey('amount_op')).toMatchObject({ ok: false })
      expect(checkFieldKey('等级')).toEqual({ ok: true, key: '等级' })
    })

    it('derives a key from a name: lower case, hyphens, punctuation dropped', () => {
      expect(deriveFieldKey('Department')).toEqual({ ok: true, key: 'department' })
      expect(deriveFieldKey('Deposit Amount (USD)')).toEqual({ ok: true, key: 'deposit-amount-usd' })
      expect(deriveFieldKey('  -- Risk -- level --')).toEqual({ ok: true, key: 'risk-level' })
      expect(deriveFieldKey('!!!')).toMatchObject({ ok: false })
      const long = deriveFieldKey(`${'a'.repeat(49)} b`)
      expect(long).toEqual({ ok: true, key: 'a'.repeat(49) })
    })

    it('reserves the default fields in both spellings and the identity keys', () => {
      for (const k of ['email', 'Email', 'first_name', 'firstName', 'xp', 'externalId', '_id'])
        expect(isReservedKey(k)).toBe(true)
      expect(isReservedKey('userLevel')).toBe(false)
    })
  })
})

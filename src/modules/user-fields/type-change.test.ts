import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../../../test/support/database.ts'
import { coerceFieldValue, type FieldKind } from './field-types.ts'
import { converted, fits } from './type-change.ts'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

const VALUES: unknown[] = [
  '12',
  ' 7.5 ',
  '+3',
  '1e3',
  '.5',
  'abc',
  '',
  5,
  1,
  0,
  2,
  2.5,
  true,
  false,
  'Yes',
  'n',
  'maybe',
  '2025-06-22',
  '2025-06-22T10:00:00Z',
  '2025-06-22 10:00',
  '2025-13-01',
  'Advanced',
  null,
  { a: 1 },
  [1],
]
const OPTIONS = ['Advanced', '12', 'true']
const KINDS: FieldKind[] = ['text', 'number', 'boolean', 'date', 'select']

async function inSql(kind: FieldKind, value: unknown) {
  const v = sql<unknown>`${JSON.stringify(value)}::jsonb`
  const res = await sql<{ fits: boolean; value: unknown }>`
    SELECT ${fits(v, kind, OPTIONS)} AS fits, CASE WHEN ${fits(v, kind, OPTIONS)} THEN ${converted(v, kind)} END AS value`.execute(
    t.database.db,
  )
  return res.rows[0]
}

describe('type change SQL', () => {
  it('accepts in SQL exactly what coerceFieldValue accepts, and stores the same value', async () => {
    for (const kind of KINDS) {
      for (const value of VALUES) {
        const js = coerceFieldValue({ id: null, field: 'f', type: kind, options: OPTIONS }, value)
        const db = await inSql(kind, value)
        // Dates: SQL takes text only (JS would read the number 5 as the year 2005) and keeps the text as sent.
        if (kind === 'date' && typeof value !== 'string' && value !== null) {
          expect(db.fits, `${kind} ${JSON.stringify(value)}`).toBe(false)
          continue
        }
        expect(db.fits, `${kind} ${JSON.stringify(value)}`).toBe(js.ok)
        if (js.ok && kind !== 'date') expect(db.value, `${kind} ${JSON.stringify(value)}`).toEqual(js.value)
      }
    }
  })

  it('keeps a fitting date as its trimmed text', async () => {
    expect(await inSql('date', ' 2025-06-22 ')).toEqual({ fits: true, value: '2025-06-22' })
    expect(await inSql('date', '2025-06-22T10:00:00Z')).toEqual({ fits: true, value: '2025-06-22T10:00:00Z' })
  })
})

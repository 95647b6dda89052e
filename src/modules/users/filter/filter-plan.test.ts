import { describe, expect, it } from 'vitest'
import type { FieldDef } from '../../user-fields/field-types.ts'
import { DEFAULT_FIELDS } from '../default-fields.ts'
import { planFilter } from './filter-plan.ts'

const defs: FieldDef[] = [
  { id: 'f1', field: 'deposit', type: 'numerical' },
  { id: 'f2', field: 'kyc', type: 'date' },
  { id: 'f3', field: 'desk', type: 'select', options: ['London'] },
  { id: 'f4', field: 'email', type: 'text' }, // shadows a default column: unreachable
]

describe('planFilter', () => {
  it('defaults to every default column and every reachable custom field', () => {
    const plan = planFilter({}, defs)
    expect(plan.columns).toEqual(DEFAULT_FIELDS)
    expect(plan.customFields.map((d) => d.field)).toEqual(['deposit', 'kyc', 'desk'])
    expect(plan.conditions).toEqual([])
  })

  it('keeps requested fields once, default columns before custom ones', () => {
    const plan = planFilter({ fields: ['desk', 'email', 'desk', 'xp'] }, defs)
    expect(plan.columns.map((c) => c.column)).toEqual(['email', 'xp'])
    expect(plan.customFields.map((d) => d.field)).toEqual(['desk'])
  })

  it('turns a date-only exact value into that UTC day and a date-only lte into the end of it', () => {
    const { conditions } = planFilter(
      { filter: { join_date: '2025-01-31', kyc: { lte: '2025-12-31', gte: '2025-01-01' } } },
      defs,
    )
    expect(conditions).toEqual([
      {
        target: { source: 'column', name: 'join_date', kind: 'date' },
        op: 'gte',
        value: '2025-01-31T00:00:00.000Z',
      },
      {
        target: { source: 'column', name: 'join_date', kind: 'date' },
        op: 'lt',
        value: '2025-02-01T00:00:00.000Z',
      },
      { target: { source: 'custom', name: 'kyc', kind: 'date' }, op: 'gte', value: '2025-01-01' },
      {
        target: { source: 'custom', name: 'kyc', kind: 'date' },
        op: 'lt',
        value: '2026-01-01T00:00:00.000Z',
      },
    ])
  })

  it('coerces values by type, lower-cases emails, maps null to is_null and ignores select options', () => {
    const { conditions } = planFilter(
      { filter: { deposit: '10.5', email: 'A@B.C', desk: 'Paris', phone: null } },
      defs,
    )
    expect(conditions.map((c) => ('value' in c ? [c.op, c.value] : [c.op]))).toEqual([
      ['eq', 10.5],
      ['eq', 'a@b.c'],
      ['eq', 'Paris'],
      ['is_null'],
    ])
  })

  it.each([
    [{ fields: ['email', 'ghost'] }, 'unknown_field', 'fields.1'],
    [{ filter: { ghost: 1 } }, 'unknown_field', 'filter.ghost'],
    [{ filter: { desk: { gte: 'a' } } }, 'range_not_supported', 'filter.desk'],
    [{ filter: { deposit: {} } }, 'empty_range', 'filter.deposit'],
    [{ filter: { deposit: { lte: null } } }, 'invalid_filter_value', 'filter.deposit.lte'],
    [{ filter: { xp: 'lots' } }, 'invalid_filter_value', 'filter.xp'],
    [{ filter: { kyc: { gte: 'soon' } } }, 'invalid_filter_value', 'filter.kyc.gte'],
  ])('refuses %j with %s', (input, code, field) => {
    expect(() => planFilter(input, defs)).toThrow(expect.objectContaining({ status: 400, code, field }))
  })
})

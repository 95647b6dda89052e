import { describe, expect, it } from 'vitest'
import { findFieldDef, resolveCustomFields } from './custom-field-input.ts'
import type { FieldDefRow } from './users.repo.ts'

const defs: FieldDefRow[] = [
  { id: '6857de260f3c24d98fd7ca85', field: 'customerId', name: 'Customer ID', type: 'text', options: null },
  {
    id: '6857de260f3c24d98fd7ca86',
    field: 'deposit-amount',
    name: 'Deposit',
    type: 'numerical',
    options: null,
  },
  { id: '6857de260f3c24d98fd7ca87', field: 'a', name: 'Same', type: 'text', options: null },
  { id: '6857de260f3c24d98fd7ca88', field: 'b', name: 'same', type: 'text', options: null },
]

describe('findFieldDef', () => {
  it.each([
    ['6857DE260F3C24D98FD7CA85', 'customerId'],
    ['customerId', 'customerId'],
    ['customerid', 'customerId'],
    ['deposit amount', 'deposit-amount'],
    ['customer id', 'customerId'],
  ])('finds %s', (ref, field) => {
    expect(findFieldDef(defs, ref)?.field).toBe(field)
  })

  it('finds nothing for an unknown or shared display name', () => {
    expect(findFieldDef(defs, 'nope')).toBeNull()
    expect(findFieldDef(defs, 'Same')).toBeNull()
  })
})

describe('resolveCustomFields', () => {
  it('coerces values to the field type', () => {
    const out = resolveCustomFields(defs, [
      { fieldIdorName: 'customerid', value: 12 },
      { fieldIdorName: 'deposit amount', value: '250.5' },
    ])
    expect(out.map((r) => [r.def.field, r.value])).toEqual([
      ['customerId', '12'],
      ['deposit-amount', 250.5],
    ])
  })

  it('names the entry at fault', () => {
    expect(() => resolveCustomFields(defs, [{ fieldIdorName: 'x', value: 1 }])).toThrow(
      expect.objectContaining({ code: 'unknown_custom_field', field: 'customFields.0.fieldIdorName' }),
    )
    expect(() => resolveCustomFields(defs, [{ fieldIdorName: 'deposit-amount', value: 'lots' }])).toThrow(
      expect.objectContaining({ code: 'invalid_custom_field_value', field: 'customFields.0.value' }),
    )
    expect(() =>
      resolveCustomFields(defs, [
        { fieldIdorName: 'customerId', value: 'a' },
        { fieldIdorName: '6857de260f3c24d98fd7ca85', value: 'b' },
      ]),
    ).toThrow(
      expect.objectContaining({ code: 'duplicate_custom_field', field: 'customFields.1.fieldIdorName' }),
    )
  })
})

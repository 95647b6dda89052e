import { describe, expect, it } from 'vitest'
import type { CustomFieldDef } from './bulk.plan.ts'
import { planColumns } from './bulk.plan.ts'
import { describePlanChange } from './bulk.plan-guard.ts'

const level: CustomFieldDef = {
  id: 'f1',
  field: 'level',
  type: 'select',
  options: ['bronze', 'silver', 'gold'],
}
const note: CustomFieldDef = { id: 'f2', field: 'note', type: 'text', options: null }

function planOf(header: string[], identifierField: string | null = null) {
  const r = planColumns(header, { type: 'import', identifierField, customFields: [level, note] })
  if (!r.ok) throw new Error(r.message)
  return r.plan
}

describe('describePlanChange', () => {
  const plan = planOf(['email', 'level', 'note'])

  it('is null while the planned fields are as they were', () => {
    expect(describePlanChange(plan, { identifierField: null, fields: [level, note] })).toBeNull()
  })

  it('ignores what cannot change a row: the order of options, another type of the same kind', () => {
    const reordered = { ...level, options: ['gold', 'bronze', 'silver'] }
    const longText = { ...note, type: 'multi-line-text' }
    expect(describePlanChange(plan, { identifierField: null, fields: [reordered, longText] })).toBeNull()
  })

  it('names the field deleted, the kind changed, the options changed', () => {
    expect(describePlanChange(plan, { identifierField: null, fields: [level] })).toMatch(
      /^The custom field "note" was deleted while this job ran\. The job stopped: the rows it had processed stay applied/,
    )
    expect(
      describePlanChange(plan, { identifierField: null, fields: [level, { ...note, type: 'number' }] }),
    ).toMatch(/^The custom field "note" changed type \(text to number\)/)
    expect(
      describePlanChange(plan, {
        identifierField: null,
        fields: [{ ...level, options: ['bronze', 'gold'] }, note],
      }),
    ).toMatch(/^The options of the custom field "level" changed/)
  })

  it('a field the plan does not write may change', () => {
    const onlyLevel = planOf(['email', 'level'])
    expect(describePlanChange(onlyLevel, { identifierField: null, fields: [level] })).toBeNull()
  })

  it("names the community's identifier field before and after", () => {
    expect(describePlanChange(plan, { identifierField: 'note', fields: [level, note] })).toMatch(
      /^The community's identifier field changed from none to "note"/,
    )
  })
})

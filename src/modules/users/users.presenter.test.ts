import { describe, expect, it } from 'vitest'
import { includedFields, pickCustomFields } from './users.presenter.ts'
import { GET_USER_FLAGS } from './users.schema.ts'

describe('includedFields', () => {
  it('includes everything when no flag is given', () => {
    expect([...includedFields({})]).toEqual([...GET_USER_FLAGS])
  })
  it('includes only the flags set to true', () => {
    expect([...includedFields({ email: 'true', id: 'true', avatar: 'false' })]).toEqual(['id', 'email'])
  })
  it('leaves out the flags set to false when none is true', () => {
    expect(includedFields({ email: 'false' }).has('email')).toBe(false)
    expect(includedFields({ email: 'false' }).size).toBe(GET_USER_FLAGS.length - 1)
  })
})

describe('pickCustomFields', () => {
  it('keeps only the listed keys the user has, as scalars', () => {
    expect(pickCustomFields({ a: 1, b: { x: 1 }, c: null, hidden: 'x' }, ['a', 'b', 'c', 'missing'])).toEqual(
      { a: 1, b: '{"x":1}', c: null },
    )
  })
})

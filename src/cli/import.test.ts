import { describe, expect, it } from 'vitest'
import type { JobView } from '../modules/bulk/bulk.presenter.ts'
import { pace } from './import.ts'

const job = (over: Partial<JobView>) =>
  ({ status: 'processing', rowsPerSecond: 12_345, secondsLeft: 170, ...over }) as JobView

describe('hearth import progress', () => {
  it('gives the pace and time left while the job processes', () => {
    expect(pace(job({}))).toBe(', 12345 rows/s, ~3 min left')
    expect(pace(job({ secondsLeft: 0 }))).toBe(', 12345 rows/s, ~1 s left')
    expect(pace(job({ secondsLeft: null }))).toBe(', 12345 rows/s')
  })

  it('says nothing before the first chunk and once the job has ended', () => {
    expect(pace(job({ rowsPerSecond: null, secondsLeft: null }))).toBe('')
    expect(pace(job({ status: 'completed', secondsLeft: null }))).toBe('')
  })
})

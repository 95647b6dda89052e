import { describe, expect, it } from 'vitest'
import type { JobView } from '../modules/bulk/bulk.presenter.ts'
import { pace, summary } from './import.ts'

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

describe('hearth import summary', () => {
  const done = (over: Partial<JobView>) =>
    ({
      jobId: 'j1',
      status: 'completed',
      dryRun: false,
      total: 3,
      processed: 3,
      created: 0,
      updated: 0,
      skipped: 0,
      failed: 0,
      error: null,
      ...over,
    }) as JobView

  it('counts what a finished job did, leaving out kinds that did not happen; failures always show', () => {
    expect(summary(done({ created: 2, skipped: 1 }))).toBe(
      'import j1 completed: 3 of 3 rows, 2 created, 1 unchanged, 0 failed',
    )
    expect(summary(done({ status: 'completed_with_errors', updated: 2, failed: 1 }))).toBe(
      'import j1 completed_with_errors: 3 of 3 rows, 2 updated, 1 failed',
    )
  })

  it('says what a dry run would do, and that it wrote nothing', () => {
    expect(
      summary(done({ status: 'completed_with_errors', dryRun: true, created: 1, updated: 1, failed: 1 })),
    ).toBe(
      'import j1 dry run completed_with_errors: 3 of 3 rows, 1 would be created, 1 would be updated, 1 would fail (nothing was written)',
    )
  })

  it('says why a job stopped, and what stays of the rows applied before', () => {
    const duplicate = { code: 'duplicate_column', message: 'The column "email" appears twice' }
    expect(summary(done({ status: 'failed', processed: 0, error: duplicate }))).toBe(
      'import j1 failed: duplicate_column: The column "email" appears twice; no row was applied',
    )
    expect(summary(done({ status: 'cancelled', processed: 0 }))).toBe(
      'import j1 cancelled on request; no row was applied',
    )
    expect(summary(done({ status: 'cancelled', total: 10, processed: 4, created: 3, failed: 1 }))).toBe(
      'import j1 cancelled on request after 4 of 10 rows; the rows applied before stay (3 created, 1 failed)',
    )
    expect(summary(done({ status: 'cancelled', dryRun: true, total: 10, processed: 4, created: 4 }))).toBe(
      'import j1 cancelled on request after 4 of 10 rows; a dry run: nothing was written',
    )
    const attempts = { code: 'too_many_attempts', message: 'The job failed repeatedly' }
    expect(summary(done({ status: 'failed', total: 10, processed: 5, updated: 5, error: attempts }))).toBe(
      'import j1 failed after 5 of 10 rows: too_many_attempts: The job failed repeatedly; the rows applied before stay (5 updated, 0 failed)',
    )
  })
})

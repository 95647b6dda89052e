import { describe, expect, it } from 'vitest'
import { pace, percentage } from './bulk.presenter.ts'

describe('percentage', () => {
  it('rounds to one decimal and never passes 100', () => {
    expect(percentage({ processed: 1, total: 3, status: 'processing' })).toBe(33.3)
    expect(percentage({ processed: 2, total: 3, status: 'processing' })).toBe(66.7)
    expect(percentage({ processed: 50, total: 200, status: 'processing' })).toBe(25)
    expect(percentage({ processed: 3, total: 3, status: 'completed' })).toBe(100)
    expect(percentage({ processed: 4, total: 3, status: 'processing' })).toBe(100)
  })

  it('is 100 for a finished empty job and 0 while it waits', () => {
    expect(percentage({ processed: 0, total: 0, status: 'completed' })).toBe(100)
    expect(percentage({ processed: 0, total: 0, status: 'queued' })).toBe(0)
  })
})

describe('pace', () => {
  const started = new Date('2026-01-01T00:00:00Z')
  const at = (seconds: number) => started.getTime() + seconds * 1000

  it('gives rows per second so far and the seconds left at that pace while processing', () => {
    const job = {
      status: 'processing' as const,
      total: 100_000,
      processed: 25_000,
      started_at: started,
      finished_at: null,
    }
    expect(pace(job, at(10))).toEqual({ rowsPerSecond: 2_500, secondsLeft: 30 })
  })

  it('measures a finished job up to its end and predicts nothing', () => {
    const job = {
      status: 'completed' as const,
      total: 100_000,
      processed: 100_000,
      started_at: started,
      finished_at: new Date(at(20)),
    }
    expect(pace(job, at(3_600))).toEqual({ rowsPerSecond: 5_000, secondsLeft: null })
  })

  it('says nothing before the first chunk commits or before the job starts', () => {
    const waiting = {
      status: 'queued' as const,
      total: 10,
      processed: 0,
      started_at: null,
      finished_at: null,
    }
    expect(pace(waiting, at(5))).toEqual({ rowsPerSecond: null, secondsLeft: null })
    expect(pace({ ...waiting, status: 'processing', started_at: started }, at(5))).toEqual({
      rowsPerSecond: null,
      secondsLeft: null,
    })
  })
})

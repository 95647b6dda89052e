import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from './config.ts'

describe('loadConfig', () => {
  it('gives defaults that run on the embedded database', () => {
    const c = loadConfig({})
    expect(c.databaseUrl).toBeUndefined()
    expect(c.port).toBe(3000)
    expect(c.dataDir.endsWith('.data')).toBe(true)
    expect(c.bulk.maxActiveJobs).toBe(3)
    expect(Object.isFrozen(c)).toBe(true)
  })

  it('lists every bad variable in one error', () => {
    let error: unknown
    try {
      loadConfig({ PORT: 'eighty', DATABASE_URL: 'not a url', BULK_MAX_ROWS: '-1', LOG_LEVEL: 'loud' })
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(ConfigError)
    const message = (error as Error).message
    for (const name of ['PORT', 'DATABASE_URL', 'BULK_MAX_ROWS', 'LOG_LEVEL']) expect(message).toContain(name)
  })

  it('treats empty variables as unset', () => {
    expect(loadConfig({ DATABASE_URL: '', PORT: '' }).databaseUrl).toBeUndefined()
  })
})

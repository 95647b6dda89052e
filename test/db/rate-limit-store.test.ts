import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresRateLimitStore } from '../../src/lib/http/rate-limit-store.ts'
import { createTestDatabase, type TestDatabase } from '../support/database.ts'

/** The rate-limit counters API processes share on PostgreSQL (run here on both databases). */

let testDb: TestDatabase
beforeAll(async () => {
  testDb = await createTestDatabase()
})
afterAll(() => testDb.drop())

type Store = InstanceType<ReturnType<typeof postgresRateLimitStore>>
const call = (store: Store, method: 'incr' | 'read', key: string, windowMs = 60_000) =>
  new Promise<{ current: number; ttl: number }>((resolve, reject) =>
    store[method](key, (err, res) => (err ? reject(err) : resolve(res!)), windowMs),
  )

describe('rate-limit store in the database', () => {
  it('two processes (two stores on one database) count one limit together, per key', async () => {
    const Store = postgresRateLimitStore(testDb.database.db)
    const [a, b] = [new Store(), new Store()]
    expect((await call(a, 'incr', 'k:one')).current).toBe(1)
    expect((await call(b, 'incr', 'k:one')).current).toBe(2)
    expect((await call(a, 'incr', 'k:one')).current).toBe(3)
    expect((await call(b, 'incr', 'k:two')).current).toBe(1)
    // Reading does not count.
    expect((await call(b, 'read', 'k:one')).current).toBe(3)
    expect((await call(a, 'read', 'k:none')).current).toBe(0)
    const { ttl } = await call(a, 'incr', 'k:one')
    expect(ttl).toBeGreaterThan(0)
    expect(ttl).toBeLessThanOrEqual(60_000)
  })

  it('starts a fresh count in the next window', async () => {
    const store = new (postgresRateLimitStore(testDb.database.db))()
    // A 1 s window: wait until the next one starts.
    const first = await call(store, 'incr', 'k:short', 1000)
    expect(first.current).toBe(1)
    await new Promise((r) => setTimeout(r, first.ttl + 50))
    expect((await call(store, 'incr', 'k:short', 1000)).current).toBe(1)
  })
})

import type { Kysely } from 'kysely'
import type { DB } from './schema.ts'
import { isTransientError } from './sql-errors.ts'

const TRIES = 5

/**
 * Runs `attempt` again, backing off, when it lost a race with another transaction (a deadlock, a
 * serialization failure: isTransientError), up to five times. Only for work whose transaction
 * rolled back whole, so that running it again applies it once.
 */
export async function retryingTransient<T>(attempt: () => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt()
    } catch (err) {
      if (!isTransientError(err) || n >= TRIES) throw err
      await new Promise((r) => setTimeout(r, 20 * 2 ** n * (1 + Math.random())))
    }
  }
}

/**
 * One transaction, tried again whole when it lost a race (see retryingTransient). A write that
 * changes many users (a field's values rewritten or removed) can deadlock with a bulk job's chunk
 * changing some of them in another order; the loser answered 500 before.
 */
export function transact<T>(db: Kysely<DB>, work: (tx: Kysely<DB>) => Promise<T>): Promise<T> {
  return retryingTransient(() => db.transaction().execute(work))
}

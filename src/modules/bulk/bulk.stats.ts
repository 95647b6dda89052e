import { sql } from 'kysely'
import type { AppDeps } from '../../lib/deps.ts'

/**
 * Keeps the planner's statistics of `users` in step with a job that grows the table.
 *
 * Every chunk looks its users up by key. With statistics taken when the community was small (or
 * never, on PGlite, which has no autovacuum), the planner can take the index on (community_id,
 * created_at) for that lookup and filter on the key: one scan of the community per row. Measured:
 * a 100k-row import spent 63 s in one such chunk instead of 0.05 s. So the job ANALYZEs users
 * when it starts and each time its own creations have doubled since the last time (10k, 20k,
 * 40k … rows: seven times for a million, ~0.2 s each), before it dispatches the next chunk.
 */
export class UsersStatistics {
  private created = 0
  private createdAtLastRefresh = 0

  constructor(private readonly deps: AppDeps) {}

  /**
   * After a committed chunk that created `n` users, before the next chunk is dispatched: a chunk
   * planned on statistics of an empty community is exactly the one that scans it per row.
   */
  async afterChunk(n: number) {
    this.created += n
    if (this.created === 0 || this.created < 2 * this.createdAtLastRefresh) return
    this.createdAtLastRefresh = this.created
    await this.refresh()
  }

  /**
   * ANALYZE users. If autovacuum holds the table for more than a few seconds, the job goes on
   * without: that autovacuum is refreshing the statistics anyway.
   */
  async refresh() {
    await this.deps.database.db
      .transaction()
      .execute(async (tx) => {
        await sql`SET LOCAL lock_timeout = '5s'`.execute(tx)
        await sql`ANALYZE users`.execute(tx)
      })
      .catch(() => {})
  }
}

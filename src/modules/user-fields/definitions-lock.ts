import { sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'

/**
 * One lock per community over its custom field definitions and its identifier field, held until the
 * transaction ends. A bulk chunk shares it while it writes users (bulk.plan-guard.ts); a change that
 * would alter what the chunk writes (a field's type, options or deletion, the identifier field)
 * takes it alone. An advisory lock rather than row locks because PostgreSQL queues its waiters
 * fairly: a change waits only for the chunks in flight and the next chunks wait for it, whereas
 * overlapping chunks sharing a row lock could hold a change off until the whole job had ended.
 */
const lockKey = (communityId: string) => sql`hashtext(${`user-field-definitions:${communityId}`})`

export async function shareFieldDefinitions(tx: Tx, communityId: string): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock_shared(${lockKey(communityId)})`.execute(tx)
}

export async function lockFieldDefinitions(tx: Tx, communityId: string): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(${lockKey(communityId)})`.execute(tx)
}

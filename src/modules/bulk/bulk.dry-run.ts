import { type RawBuilder, sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'
import { isDataError } from '../../lib/db/sql-errors.ts'
import { timed } from '../../lib/phase-timer.ts'
import { emailsMayMove, givesUsernames, type Plan } from './bulk.plan.ts'
import { type RowOutcome, usernameName, WRITTEN } from './bulk.users-shape.ts'

/**
 * A dry run applies each chunk under a savepoint, reads the outcomes, and rolls it back. So that
 * later chunks see what earlier ones would have done, the users a chunk changed are kept, as the
 * chunk left them, in bulk_dry_run_users; a later chunk replays those its rows name (by key, email,
 * id) under its own savepoint before applying. Kept rows are committed with the chunk's outcomes,
 * so a resumed dry run sees the same world, and dropped when the job ends.
 */

/** Columns a bulk job can change on an existing user: all a replay restores. */
const CHANGED_BY_BULK = [...WRITTEN, 'premium', 'custom_fields', 'updated_at'] as const
/**
 * What is kept of a user: those, and what a user the dry run created needs besides. Its other
 * columns (role, counters, …) take their defaults, as in the bulk insert; secrets are never kept.
 */
const KEPT = [
  'id',
  'community_id',
  'seq',
  'external_id',
  'deleted_at',
  'created_at',
  ...CHANGED_BY_BULK,
] as const
const columnList = (alias?: string) => sql.join(KEPT.map((c) => sql.ref(alias ? `${alias}.${c}` : c)))

/**
 * What a dry-run chunk replays: the names its rows give users (keys, emails, ids), and the ledger
 * keys its premium rows carry (a key an earlier chunk would have written makes a re-sent row a skip).
 */
export interface DryRunChunk {
  jobId: string
  communityId: string
  names: string[]
  /** The usernames the chunk's rows give, as written: they name users as lower(username) does. */
  usernames: string[]
  /** Which names of a kept user this job's rows can use: only those are kept (see nameKindsFor). */
  nameKinds: readonly NameKind[]
  ledgerKeys: string[]
}

/** A user's names: its id, numeric id, email (as the dry run left it), external id, real email. */
export type NameKind = 'id' | 'seq' | 'email' | 'external_id' | 'real_email' | 'username' | 'real_username'

/**
 * The names rows keyed this way can designate a user by. A kept name costs an index entry per user
 * and chunk (a dry run of a 100k-row import keeps 100k users), so a job keeps only its own kinds:
 * rows keyed by email name users by email; by external id, by that, and by the email cells
 * that may move (a user is then also found by the email it really holds); by userId, by either id.
 */
export function nameKindsFor(plan: Plan): readonly NameKind[] {
  if (plan.keyKind === 'user_id') return ['id', 'seq'] as const
  const kinds: NameKind[] = plan.keyKind === 'email' ? ['email'] : ['external_id']
  if (emailsMayMove(plan)) kinds.push('email', 'real_email')
  // A row giving a username meets the user holding it in the dry run's world, and not the one
  // that really holds it but that the dry run moved off it.
  if (givesUsernames(plan)) kinds.push('username', 'real_username')
  return kinds
}

export async function applyAsDryRun(
  tx: Tx,
  chunk: DryRunChunk,
  apply: () => Promise<RowOutcome[]>,
): Promise<RowOutcome[]> {
  await sql`SAVEPOINT dry_run`.execute(tx)
  const usernames = chunk.usernames.map((u) => usernameName(u.toLowerCase()))
  await timed('dry.replay', () => replay(tx, chunk.jobId, [...chunk.names, ...usernames]))
  await replayLedgerKeys(tx, chunk)
  const outcomes = await apply()
  const changed = [...new Set(outcomes.flatMap((o) => (o.userId ? [o.userId] : [])))]
  const states = changed.length > 0 ? await timed('dry.states', () => statesOf(tx, changed)) : []
  const written = await ledgerKeysWritten(tx, chunk)
  await timed('dry.rollback', () => sql`ROLLBACK TO SAVEPOINT dry_run`.execute(tx))
  if (states.length > 0) await timed('dry.keep', () => keep(tx, chunk, states))
  if (written.length > 0) await keepLedgerKeys(tx, chunk.jobId, written)
  return outcomes
}

const LEDGER = 'ledger:'

/** The chunk's ledger keys present once it is applied: written by it, or by anyone before. */
async function ledgerKeysWritten(tx: Tx, chunk: DryRunChunk) {
  if (chunk.ledgerKeys.length === 0) return []
  const res = await sql<{
    key: string
    user_id: string
  }>`SELECT idempotency_key AS key, user_id FROM currency_ledger
    WHERE community_id = ${chunk.communityId} AND idempotency_key = ANY(${chunk.ledgerKeys}::text[])`.execute(
    tx,
  )
  return res.rows
}

async function keepLedgerKeys(tx: Tx, jobId: string, keys: { key: string; user_id: string }[]) {
  await sql`INSERT INTO bulk_dry_run_names (job_id, name, user_id)
    SELECT ${jobId}, ${LEDGER} || k.key, k.user_id
    FROM unnest(${keys.map((k) => k.key)}::text[], ${keys.map((k) => k.user_id)}::text[]) AS k(key, user_id)
    ON CONFLICT DO NOTHING`.execute(tx)
}

/** Stand-ins (amount 0) for the ledger rows earlier chunks would have written with these keys. */
async function replayLedgerKeys(tx: Tx, chunk: DryRunChunk) {
  if (chunk.ledgerKeys.length === 0) return
  await sql`INSERT INTO currency_ledger (community_id, user_id, currency, amount, balance_after, source, idempotency_key)
    SELECT ${chunk.communityId}, n.user_id, 'premium', 0, 0, 'bulk_dry_run', substr(n.name, ${LEDGER.length + 1})
    FROM bulk_dry_run_names n
    WHERE n.job_id = ${chunk.jobId} AND n.name = ANY(${chunk.ledgerKeys.map((k) => LEDGER + k)}::text[])
    ON CONFLICT DO NOTHING`.execute(tx)
}

export async function forgetDryRun(tx: Tx, jobId: string) {
  await tx.deleteFrom('bulk_dry_run_names').where('job_id', '=', jobId).execute()
  await tx.deleteFrom('bulk_dry_run_users').where('job_id', '=', jobId).execute()
}

/** Puts the users these names designate back in the state the dry run left them in. */
async function replay(tx: Tx, jobId: string, names: string[]) {
  if (names.length === 0) return
  const kept = sql`(SELECT (jsonb_populate_record(NULL::users, k.state)).* FROM bulk_dry_run_users k
    WHERE k.job_id = ${jobId} AND k.user_id IN (SELECT n.user_id FROM bulk_dry_run_names n
      WHERE n.job_id = ${jobId} AND n.name = ANY(${names}::text[])))`
  // Under a savepoint of its own: if the real table moved meanwhile so that a kept state no longer
  // fits (another user took its email), the chunk is judged against the real table instead.
  await sql`SAVEPOINT dry_run_replay`.execute(tx)
  try {
    const setList = sql.join(CHANGED_BY_BULK.map((c) => sql`${sql.ref(c)} = r.${sql.ref(c)}`))
    await sql`UPDATE users u SET ${setList} FROM ${kept} r WHERE u.id = r.id`.execute(tx)
    // Users only the dry run created. A user that meanwhile really got the same email wins.
    await sql`INSERT INTO users (${columnList()}) OVERRIDING SYSTEM VALUE SELECT ${columnList('r')} FROM ${kept} r
      WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = r.id) ON CONFLICT DO NOTHING`.execute(tx)
    await sql`RELEASE SAVEPOINT dry_run_replay`.execute(tx)
  } catch (err) {
    if (!isDataError(err)) throw err
    await sql`ROLLBACK TO SAVEPOINT dry_run_replay`.execute(tx)
  }
}

const KEEP_SLICE = 1000

/**
 * The users' states as JSON arrays of up to KEEP_SLICE users each. They stay text end to end: Node
 * holds a few strings per chunk, never an object per user, and passes them back after the rollback.
 */
async function statesOf(tx: Tx, userIds: string[]): Promise<string[]> {
  const slices: string[] = []
  for (let i = 0; i < userIds.length; i += KEEP_SLICE) {
    const res = await sql<{ states: string }>`SELECT json_agg(k)::text AS states
      FROM (SELECT ${columnList('u')} FROM users u WHERE u.id = ANY(${userIds.slice(i, i + KEEP_SLICE)}::text[])) k`.execute(
      tx,
    )
    if (res.rows[0]?.states) slices.push(res.rows[0].states)
  }
  return slices
}

/** SQL for each kind of name, over `x.s` (a kept state). */
const NAME_OF: Record<NameKind, RawBuilder<unknown>> = {
  id: sql`x.s ->> 'id'`,
  seq: sql`x.s ->> 'seq'`,
  email: sql`x.s ->> 'email'`,
  external_id: sql`x.s ->> 'external_id'`,
  // The dry run may have moved the user's email: the one it really holds names it too.
  real_email: sql`(SELECT u.email FROM users u WHERE u.id = x.s ->> 'id')`,
  username: sql`${usernameName('')} || lower(x.s ->> 'username')`,
  real_username: sql`(SELECT ${usernameName('')} || lower(u.username) FROM users u WHERE u.id = x.s ->> 'id')`,
}

/** Runs after the rollback: keeps each state, and the names (of the chunk's kinds) that find it. */
async function keep(tx: Tx, chunk: DryRunChunk, slices: string[]) {
  const names = sql.join(chunk.nameKinds.map((k) => sql`(${NAME_OF[k]})`))
  for (const slice of slices) {
    await sql`WITH x AS (SELECT s FROM jsonb_array_elements(${slice}::jsonb) AS s),
      kept AS (INSERT INTO bulk_dry_run_users (job_id, user_id, state) SELECT ${chunk.jobId}, s ->> 'id', s FROM x
        ON CONFLICT (job_id, user_id) DO UPDATE SET state = excluded.state)
      INSERT INTO bulk_dry_run_names (job_id, name, user_id)
      SELECT DISTINCT ${chunk.jobId}, n.name, x.s ->> 'id' FROM x CROSS JOIN LATERAL (VALUES ${names}) AS n(name)
      WHERE n.name IS NOT NULL
      ON CONFLICT DO NOTHING`.execute(tx)
  }
}

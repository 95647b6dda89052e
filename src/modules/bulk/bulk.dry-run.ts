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
 * id, username), and the kept users those need to fit (see replayedUsers), under its own savepoint
 * before applying. Kept rows are committed with the chunk's outcomes, so a resumed dry run sees the
 * same world, and dropped when the job ends.
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
  await timed('dry.replay', () => replay(tx, chunk))
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

/**
 * Puts the kept users the chunk's names designate back in the state the dry run left them in, with
 * those they need (replayedUsers). In phases, so that no intermediate state meets the unique
 * indexes (users passing names round across chunks have no order one UPDATE could take): those
 * whose username or email the dry run changed first let go of theirs (username NULL, an email no
 * address can be), then all take their kept states, then the users only the dry run created are
 * inserted.
 */
async function replay(tx: Tx, chunk: DryRunChunk) {
  if (chunk.names.length === 0 && chunk.usernames.length === 0) return
  const set = await replayedUsers(tx, chunk)
  // The real table moved since the dry run kept these states (a user outside the job took a name
  // one of them holds): they no longer fit, and the chunk is judged against the real table.
  if (set.ids === null || set.moved) return
  const kept = sql`(SELECT (jsonb_populate_record(NULL::users, k.state)).* FROM bulk_dry_run_users k
    WHERE k.job_id = ${chunk.jobId} AND k.user_id = ANY(string_to_array(${set.ids}, ',')))`
  await sql`SAVEPOINT dry_run_replay`.execute(tx)
  try {
    if (set.movers !== null) {
      await sql`UPDATE users SET username = NULL, email = ${PLACEHOLDER} || id
        WHERE id = ANY(string_to_array(${set.movers}, ','))`.execute(tx)
    }
    const setList = sql.join(CHANGED_BY_BULK.map((c) => sql`${sql.ref(c)} = r.${sql.ref(c)}`))
    await sql`UPDATE users u SET ${setList} FROM ${kept} r WHERE u.id = r.id`.execute(tx)
    await sql`INSERT INTO users (${columnList()}) OVERRIDING SYSTEM VALUE SELECT ${columnList('r')} FROM ${kept} r
      WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = r.id)`.execute(tx)
    await sql`RELEASE SAVEPOINT dry_run_replay`.execute(tx)
  } catch (err) {
    if (!isDataError(err)) throw err
    await sql`ROLLBACK TO SAVEPOINT dry_run_replay`.execute(tx)
    // Only a change another transaction committed since replayedUsers looked can refuse a kept
    // state. Anything else is the dry run's own mistake, which must not pass for a prediction.
    const now = await replayedUsers(tx, chunk)
    if (!now.moved && now.ids === set.ids && now.movers === set.movers) throw err
  }
}

/** An email no address can be (it has no @), one per user: what a replayed user holds meanwhile. */
const PLACEHOLDER = 'dry-run-replay:'

/** Comma-separated user ids (ids hold no commas), or null for none. */
type IdList = string | null

/**
 * The kept users a chunk replays (ids), those of them whose username or email the table has
 * otherwise than their kept state (movers), and whether the real table moved under them.
 *
 * Starting from the kept users the chunk's names designate (its usernames lowered by the database,
 * as kept names are), it adds, until none is left, every kept user that really holds a username
 * (in any case) or an email that a replayed user holds in the dry run's world: replayed without it,
 * the one would meet the other, which let go of it in the dry run's world. Only a kept user can be
 * in that place: one the dry run never changed holds the same names in both worlds. So if such a
 * user holds one (or the external id of a user the dry run created), the table moved meanwhile.
 * Each replayed user costs index probes: its kept state, and the holders of its names.
 */
async function replayedUsers(
  tx: Tx,
  chunk: DryRunChunk,
): Promise<{ ids: IdList; movers: IdList; moved: boolean }> {
  const { jobId, communityId } = chunk
  const res = await sql<{
    ids: IdList
    movers: IdList
    moved: boolean | null
  }>`WITH RECURSIVE r(id, kept) AS (
      SELECT n.user_id, true FROM bulk_dry_run_names n
      WHERE n.job_id = ${jobId} AND n.name = ANY(${chunk.names}::text[]
        || ARRAY(SELECT ${usernameName('')} || lower(x) FROM unnest(${chunk.usernames}::text[]) x))
        AND EXISTS (SELECT 1 FROM bulk_dry_run_users k WHERE k.job_id = ${jobId} AND k.user_id = n.user_id)
      UNION
      SELECT h.id, h.name AND EXISTS (SELECT 1 FROM bulk_dry_run_users o WHERE o.job_id = ${jobId} AND o.user_id = h.id)
      FROM r JOIN bulk_dry_run_users k ON k.job_id = ${jobId} AND k.user_id = r.id
      CROSS JOIN LATERAL (
        SELECT u.id, true AS name FROM users u
          WHERE u.community_id = ${communityId} AND lower(u.username) = lower(k.state ->> 'username')
        UNION ALL SELECT u.id, true FROM users u
          WHERE u.community_id = ${communityId} AND u.email = k.state ->> 'email'
        UNION ALL SELECT u.id, false FROM users u
          WHERE u.community_id = ${communityId} AND u.external_id = k.state ->> 'external_id'
      ) h
      WHERE r.kept AND h.id <> r.id
    )
    SELECT string_agg(r.id, ',' ORDER BY r.id) FILTER (WHERE r.kept) AS ids,
      string_agg(r.id, ',' ORDER BY r.id) FILTER (WHERE u.id IS NOT NULL AND (u.email <> k.state ->> 'email'
        OR lower(u.username) IS DISTINCT FROM lower(k.state ->> 'username'))) AS movers,
      bool_or(NOT r.kept) AS moved
    FROM r LEFT JOIN bulk_dry_run_users k ON r.kept AND k.job_id = ${jobId} AND k.user_id = r.id
    LEFT JOIN users u ON r.kept AND u.id = r.id`.execute(tx)
  const row = res.rows[0]
  return { ids: row?.ids ?? null, movers: row?.movers ?? null, moved: row?.moved === true }
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

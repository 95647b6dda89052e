import { sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'
import { retryingTransient } from '../../lib/db/transact.ts'
import type { AppDeps } from '../../lib/deps.ts'
import { timed } from '../../lib/phase-timer.ts'
import { applyPremiumChunk } from './bulk.apply-premium.ts'
import { applyUsersChunk } from './bulk.apply-users.ts'
import { applyAsDryRun, nameKindsFor } from './bulk.dry-run.ts'
import type { ImportPlan, Plan } from './bulk.plan.ts'
import { checkPlanHolds } from './bulk.plan-guard.ts'
import { ledgerKey } from './bulk.premium-play.ts'
import * as repo from './bulk.repo.ts'
import { givenUsernames, type ImportRow, type PremiumRow, type RowError } from './bulk.rows.ts'
import { keyColumn, type RowOutcome, usernameName } from './bulk.users-shape.ts'

/**
 * One chunk of a bulk job, committed in one transaction: its rows applied (or, for a dry run,
 * applied and rolled back), their outcomes and errors recorded, and the job's counters moved,
 * all only while this worker still holds the job's lease.
 */
export class LeaseLost extends Error {}
export class CancelRequested extends Error {}

export type Checked = {
  rowNo: number
  line: number
  key: string | null
  cells: string[] | null
  ok: ImportRow | PremiumRow | null
  error: RowError | null
}

/** A chunk's rows checked in JS, and those of them that passed (what the database is given). */
export type Prepared = { checked: Checked[]; valid: (ImportRow | PremiumRow)[] }

/**
 * The keys and emails rows name their users by: the claims of a chunk (chunks in flight at once
 * must not share any) and, lower-cased keys added, the names a dry-run chunk replays by. Usernames
 * compare as the database's lower() does, which JS cannot reproduce exactly: the database turns
 * them into claims (usernameClaims) and dry-run names.
 */
export function userNamesOf(rows: (ImportRow | PremiumRow)[]): Set<string> {
  const names = new Set<string>()
  for (const r of rows) {
    names.add(r.key)
    if ('email' in r && r.email) names.add(r.email)
  }
  return names
}

/**
 * A chunk's username claims, as lower(username) compares names: those its rows give, and those
 * its users hold now and a row may take away from them (for another chunk's row to give). Read
 * once no chunk in flight names these users, so only this chunk can change them until it commits.
 * ASCII names are lowered here (the database does the same to them); others by the database,
 * whose lower() JS cannot reproduce ('İ' is 'i' to it).
 */
export async function usernameClaims(db: Tx, communityId: string, plan: ImportPlan, rows: ImportRow[]) {
  const giving = rows.filter((r) => r.username !== null)
  if (giving.length === 0) return []
  const claims = new Set<string>()
  const other: string[] = []
  for (const name of givenUsernames(giving)) {
    if (ASCII.test(name)) claims.add(usernameName(name.toLowerCase()))
    else other.push(name)
  }
  // One sorted index scan over the keys (an ANY array), cheaper than a probe per key. A name the
  // user keeps is among the given ones already: the set holds it once.
  const keys = [...new Set(giving.map((r) => r.key))]
  const held = await sql<{ name: string }>`SELECT lower(username) AS name FROM users
    WHERE community_id = ${communityId} AND ${sql.ref(keyColumn(plan))} = ANY(${keys}::text[])
      AND username IS NOT NULL`.execute(db)
  for (const h of held.rows) claims.add(usernameName(h.name))
  if (other.length > 0) {
    const res = await sql<{
      name: string
    }>`SELECT lower(x) AS name FROM unnest(${other}::text[]) AS x`.execute(db)
    for (const r of res.rows) claims.add(usernameName(r.name))
  }
  return [...claims]
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: the whole ASCII range, on purpose
const ASCII = /^[\x00-\x7f]*$/

async function applyRows(
  tx: Tx,
  job: repo.JobRow,
  plan: Plan,
  rows: (ImportRow | PremiumRow)[],
): Promise<RowOutcome[]> {
  if (plan.type === 'premium_currency') {
    return applyPremiumChunk(tx, { plan, communityId: job.community_id, jobId: job.id }, rows as PremiumRow[])
  }
  const source = job.type === 'import' ? 'bulk_import' : 'bulk_update'
  return applyUsersChunk(
    tx,
    { plan, communityId: job.community_id, jobId: job.id, source },
    rows as ImportRow[],
  )
}

/** Email keys are matched lower-cased (premium rows), so their lower-cased form names the user too. */
const dryRunNames = (rows: (ImportRow | PremiumRow)[]) => [
  ...new Set([...userNamesOf(rows), ...rows.map((r) => r.key.toLowerCase())]),
]

/**
 * The ledger keys of premium rows that carry their own idempotency key: another row (in a chunk in
 * flight at once, or in a later chunk of a dry run) may send the same key again.
 */
export const sentLedgerKeys = (job: repo.JobRow, rows: (ImportRow | PremiumRow)[]) =>
  rows.flatMap((r) =>
    'idempotencyKey' in r && r.idempotencyKey !== null
      ? [ledgerKey({ communityId: job.community_id, jobId: job.id }, r)]
      : [],
  )

/**
 * commitChunk, tried again (backing off) when it lost a race with another transaction: a deadlock
 * with an API call or another job changing the same users. The chunk's transaction rolled back
 * whole, so trying again applies its rows once.
 */
export function commitChunkRetrying(...args: Parameters<typeof commitChunk>): Promise<number> {
  return retryingTransient(() => commitChunk(...args))
}

/** Commits one chunk; returns the users it created (none for a dry run), which UsersStatistics counts. */
export async function commitChunk(
  deps: AppDeps,
  job: repo.JobRow,
  plan: Plan,
  prepared: Prepared,
  chunkNo: number,
): Promise<number> {
  const { checked, valid } = prepared // checked outside the transaction: PGlite's lock is held only for SQL
  return deps.database.db.transaction().execute(async (tx) => {
    // A cheap early look; the guarded UPDATE of the job at the end is what decides.
    const cur = await tx
      .selectFrom('bulk_jobs')
      .select(['lease_owner', 'cancel_requested'])
      .where('id', '=', job.id)
      .executeTakeFirstOrThrow()
    if (cur.lease_owner !== deps.instanceId) throw new LeaseLost()
    if (cur.cancel_requested) throw new CancelRequested()
    await checkPlanHolds(tx, job.community_id, plan)
    // JIT compiles each big statement anew (tens to hundreds of ms) and buys nothing for index probes.
    if (deps.database.kind === 'postgres') await sql`SET LOCAL jit = off`.execute(tx)
    // The data an import touches is cached, so an index probe costs about a sequential read: with
    // the default (4) the planner prefers hashing the whole users table to probing it per row.
    await sql`SET LOCAL random_page_cost = 1.1`.execute(tx)
    // A chunk's CTEs hold its rows a few times over; the default 4MB spills them to temp files.
    await sql`SET LOCAL work_mem = '32MB'`.execute(tx)

    const outcomes = job.dry_run
      ? await applyAsDryRun(
          tx,
          {
            jobId: job.id,
            communityId: job.community_id,
            names: dryRunNames(valid),
            usernames: givenUsernames(valid),
            nameKinds: nameKindsFor(plan),
            ledgerKeys: sentLedgerKeys(job, valid),
          },
          () => applyRows(tx, job, plan, valid),
        )
      : await applyRows(tx, job, plan, valid)

    const byRow = new Map(outcomes.map((o) => [o.rowNo, o]))
    const errors: RowError[] = []
    let actions = ''
    const counts = { created: 0, updated: 0, skipped: 0, failed: 0 }
    for (const c of checked) {
      const o = byRow.get(c.rowNo)
      const action = c.error ? 'f' : (o?.action ?? 'f')
      actions += action
      if (action === 'c') counts.created++
      else if (action === 'u') counts.updated++
      else if (action === 's') counts.skipped++
      else {
        counts.failed++
        errors.push(
          c.error ?? {
            rowNo: c.rowNo,
            line: c.line,
            key: c.key,
            code: o?.code ?? 'row_rejected',
            field: o?.field ?? null,
            message: o?.message ?? 'The row was not applied',
            cells: c.cells,
          },
        )
      }
    }
    await timed('book', () =>
      repo.insertChunk(tx, {
        communityId: job.community_id,
        jobId: job.id,
        chunkNo,
        firstRow: checked[0].rowNo,
        lines: checked.map((c) => c.line),
        keys: checked.map((c) => c.key ?? ''),
        actions,
      }),
    )
    await repo.insertErrors(tx, job.community_id, job.id, errors)
    // Last statement of the chunk: it locks the job row only for the moment before COMMIT, so
    // chunks in flight at once do not wait on each other, and it commits nothing unless this
    // worker still holds the lease and no cancel came in (checked on the row's latest version).
    const res = await tx
      .updateTable('bulk_jobs')
      .set({
        processed: sql`processed + ${checked.length}`,
        created: sql`created + ${counts.created}`,
        updated: sql`updated + ${counts.updated}`,
        skipped: sql`skipped + ${counts.skipped}`,
        failed: sql`failed + ${counts.failed}`,
        total: sql`greatest(total, processed + ${checked.length})`,
        lease_until: sql`now() + make_interval(secs => ${deps.config.bulk.leaseSeconds})`,
        // This attempt got somewhere: only attempts in a row that commit nothing count towards
        // too_many_attempts, so a long job that breaks off now and then still finishes.
        attempts: 0,
        updated_at: sql`now()`,
      })
      .where('id', '=', job.id)
      .where('lease_owner', '=', deps.instanceId)
      .returning(['cancel_requested'])
      .executeTakeFirst()
    if (!res) throw new LeaseLost()
    if (res.cancel_requested) throw new CancelRequested()
    return job.dry_run ? 0 : counts.created
  })
}

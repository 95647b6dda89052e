import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  outcomeKinds,
  premiumScenario,
  renderFile,
  runScenario,
  type Scenario,
  type Snapshot,
  usersScenario,
} from '../support/bulk-fuzz.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * Differential fuzzing of bulk jobs: seeded random files (test/support/bulk-fuzz.ts) run on apps
 * whose chunks are small (several chunks and waves per file, played or set-based, two or three in
 * flight on PostgreSQL) and on one whose chunks hold a single row each (BULK_CHUNK_ROWS=1): the
 * one-by-one reference. Both must end alike: each row's outcome, the job counts, the users, their
 * field histories and the ledger.
 *
 * BULK_FUZZ_SEEDS=n runs n seeds per kind (default 50 on PostgreSQL, 20 on PGlite) from
 * BULK_FUZZ_FIRST_SEED (default 1); BULK_FUZZ_SEED=s runs seed s alone (each kind), and with
 * BULK_FUZZ_MINIMISE=1 also shrinks it to a smallest file that still diverges.
 *
 * BULK_FUZZ_KNOWN=1 also generates what trips over the defects this test found, not fixed yet:
 * - a premium balance past 2^53 is played inexactly (bulk.premium-play.ts reads `premium` as a
 *   double): a played chunk books 9007199254740993 + 1 as 9007199254740993, one by one ...994;
 * - a premium file keyed by userId fails whole chunks with "invalid input syntax for type bigint"
 *   once the planner looks users up through the seq index (`s.key::bigint` is then evaluated for a
 *   24-hex id or any other non-numeric key): the job stalls a lease at a time, too_many_attempts;
 * - a join_date in year 0 (0000-01-01, or 0001-01-01T00:30:00+01:00) passes the row check but not
 *   PostgreSQL's timestamptz: the chunk fails whole, and so does the job (too_many_attempts);
 * - a deleted user holding a value a number field's _op cannot read (true, "abc"): one by one its
 *   row fails invalid_value (the SQL computes the new value first), played user_deleted.
 * Not gated, as it needs no unusual value: a row keyed by external id giving an email whose holder
 * an earlier row of the same wave fails to move away, and a username someone holds, fails
 * username_taken in a wave where one by one says email_taken (seed 5019 on PGlite).
 */
const only = process.env.BULK_FUZZ_SEED ? Number(process.env.BULK_FUZZ_SEED) : null
const postgres = process.env.DATABASE_URL !== undefined
/** PGlite, one thread for every app, affords fewer seeds in the same time than PostgreSQL. */
const count = Number(process.env.BULK_FUZZ_SEEDS ?? (postgres ? 50 : 20))
const first = Number(process.env.BULK_FUZZ_FIRST_SEED ?? 1)
const known = process.env.BULK_FUZZ_KNOWN === '1'
const seeds = only !== null ? [only] : Array.from({ length: count }, (_, i) => first + i)
/** Scenarios run at once in each app (their jobs run side by side, up to WORKER_CONCURRENCY). */
const AT_ONCE = 4

/**
 * Fast apps, as rows per chunk and chunks in flight (PostgreSQL): seeds alternate between chunks of
 * 7 rows, two in flight, and chunks of 4, three; BULK_FUZZ_FAST="3:2,11:4" sets others.
 */
const FAST = (process.env.BULK_FUZZ_FAST ?? '7:2,4:3').split(',').map((a) => a.split(':'))
let fast: TestApp[]
let oneByOne: TestApp
beforeAll(async () => {
  const worker = { WORKER_CONCURRENCY: String(AT_ONCE) }
  const apps = await Promise.all([
    startTestApp({ worker: true, env: { ...worker, BULK_CHUNK_ROWS: '1' } }),
    ...FAST.map(([rows, lanes]) =>
      startTestApp({ worker: true, env: { ...worker, BULK_CHUNK_ROWS: rows, BULK_PARALLEL_CHUNKS: lanes } }),
    ),
  ])
  oneByOne = apps[0]
  fast = apps.slice(1)
})
afterAll(() => Promise.all([oneByOne, ...(fast ?? [])].map((t) => t?.close())))

const fastFor = (seed: number) => fast[Math.floor(seed / 2) % fast.length]

function describeScenario(s: Scenario): string {
  const ids = s.users.map((u) => ({ id: `<${u.label}.id>`, seq: -1 }))
  const where = `seed ${s.seed} (${s.kind}${s.identifierField ? `, identifier field ${s.identifierField}` : ''}, chunks of ${fastFor(s.seed).deps.config.bulk.chunkRows}; rerun: BULK_FUZZ_SEED=${s.seed})`
  return `${where}, the file:\n${renderFile(s.files.at(-1)!, ids)}`
}

/** Up to five entries where two lists differ, each as both apps have it. */
function differences(got: unknown[], want: unknown[]): string[] {
  const out: string[] = []
  for (let i = 0; i < Math.max(got.length, want.length) && out.length < 5; i++) {
    const [g, w] = [JSON.stringify(got[i]), JSON.stringify(want[i])]
    if (g !== w) out.push(`  [${i}] fast:       ${g}\n  [${i}] one by one: ${w}`)
  }
  if (got.length !== want.length) out.push(`  fast has ${got.length} entries, one by one ${want.length}`)
  return out
}

/** Fast jobs whose chunks ran at once: one began before another had booked its rows. */
let overlapping = 0

async function overlapped(t: TestApp, jobIds: string[]): Promise<boolean> {
  const chunks = await t.deps.database.db
    .selectFrom('bulk_job_chunks')
    .select(['job_id', 'started_at', 'booked_at'])
    .where('job_id', 'in', jobIds)
    .execute()
  return chunks.some((a) =>
    chunks.some(
      (b) =>
        a !== b &&
        a.job_id === b.job_id &&
        +b.started_at! < +a.booked_at! &&
        +a.started_at! <= +b.started_at!,
    ),
  )
}

/** Runs a scenario on both apps; a divergence names its seed, what differs, and shows the file. */
async function compare(s: Scenario): Promise<Snapshot> {
  const app = fastFor(s.seed)
  const [got, want] = await Promise.all([runScenario(app, s), runScenario(oneByOne, s)])
  if (await overlapped(app, got.jobIds)) overlapping++
  const parts = (['rows', 'jobs', 'users', 'histories', 'ledger'] as const).flatMap((k) => {
    const d = differences(got[k], want[k])
    return d.length > 0 ? [`${k}:\n${d.join('\n')}`] : []
  })
  if (parts.length > 0) throw new Error(`${parts.join('\n')}\n${describeScenario(s)}`)
  return want
}

/** Whether a scenario diverges (a divergence a minimised scenario must keep showing). */
const diverges = (s: Scenario) =>
  compare(s).then(
    () => false,
    () => true,
  )

/** The scenario with its last file's rows (or, `column` given, its columns) passed through `keep`. */
function narrowed(s: Scenario, keep: (i: number) => boolean, column = false): Scenario {
  const files = [...s.files]
  const f = files[files.length - 1]
  files[files.length - 1] = column
    ? {
        ...f,
        header: f.header.filter((_, i) => keep(i)),
        rows: f.rows.map((r) => (typeof r === 'string' ? r : r.filter((_, i) => keep(i)))),
      }
    : { ...f, rows: f.rows.filter((_, i) => keep(i)) }
  return { ...s, files }
}

/**
 * BULK_FUZZ_MINIMISE=1 with BULK_FUZZ_SEED: shrinks a diverging scenario (earlier files, then runs
 * of rows of halving length, then columns) to one that still diverges, and prints it.
 */
async function minimise(start: Scenario): Promise<Scenario> {
  let s = start
  if (s.files.length > 1 && (await diverges({ ...s, files: s.files.slice(-1) })))
    s = { ...s, files: s.files.slice(-1) }
  for (let size = Math.ceil(s.files.at(-1)!.rows.length / 2); size >= 1; size = Math.floor(size / 2)) {
    for (let at = 0; at < s.files.at(-1)!.rows.length; ) {
      const candidate = narrowed(s, (i) => i < at || i >= at + size)
      if (await diverges(candidate)) s = candidate
      else at += size
    }
  }
  for (let at = s.files.at(-1)!.header.length - 1; at >= 0; at--) {
    const candidate = narrowed(s, (i) => i !== at, true)
    if (await diverges(candidate)) s = candidate
  }
  return s
}

/** Runs every scenario, AT_ONCE at a time; fails with every seed that diverged, not only the first. */
async function fuzz(make: (seed: number) => Scenario): Promise<Map<string, number>> {
  const failures: string[] = []
  const kinds = new Map<string, number>()
  const queue = [...seeds]
  await Promise.all(
    Array.from({ length: AT_ONCE }, async () => {
      for (let seed = queue.shift(); seed !== undefined; seed = queue.shift()) {
        try {
          const ref = await compare(make(seed))
          for (const k of outcomeKinds(ref)) kinds.set(k, (kinds.get(k) ?? 0) + 1)
        } catch (err) {
          failures.push(`seed ${seed}: ${err instanceof Error ? err.message : String(err)}`)
          if (process.env.BULK_FUZZ_MINIMISE === '1' && only !== null) {
            const small = await minimise(make(seed))
            const { files: _, ...setup } = small
            const message = await compare(small).catch((e: Error) => e.message)
            failures.push(`minimised, with ${JSON.stringify(setup)}:\n${message}`)
          }
        }
      }
    }),
  )
  if (failures.length > 0) throw new Error(`${failures.length} seed(s) diverged:\n\n${failures.join('\n\n')}`)
  return kinds
}

const timeout = 30_000 + seeds.length * 8_000
/** Enough seeds that every outcome below must occur among them. */
const covering = only === null && count >= 20

describe('random bulk files end exactly as their rows applied one by one', () => {
  it(
    'imports and updates',
    async () => {
      overlapping = 0
      const kinds = await fuzz((seed) => usersScenario(seed, seed % 2 === 0 ? 'import' : 'update', known))
      if (!covering) return
      expect([...kinds.keys()]).toEqual(
        expect.arrayContaining([
          'created',
          'updated',
          'skipped',
          'user_not_found',
          'user_deleted',
          'negative_balance',
          'invalid_value',
          'invalid_number',
          'invalid_op',
          'invalid_date',
          'missing_key',
          'missing_email',
          'username_taken',
          'value_too_long',
          'column_count_mismatch',
        ]),
      )
      // On PostgreSQL some fast jobs did run chunks at once (PGlite applies one at a time).
      expect(overlapping > 0).toBe(oneByOne.deps.database.kind === 'postgres')
    },
    timeout,
  )

  it(
    'premium currency',
    async () => {
      overlapping = 0
      const kinds = await fuzz((seed) => premiumScenario(seed, known))
      if (!covering) return
      expect([...kinds.keys()]).toEqual(
        expect.arrayContaining([
          'updated',
          'skipped',
          'user_not_found',
          'user_deleted',
          'insufficient_balance',
          'missing_amount',
          'missing_key',
          'invalid_number',
          'invalid_op',
          'number_out_of_range',
          'value_too_long',
        ]),
      )
      expect(overlapping > 0).toBe(oneByOne.deps.database.kind === 'postgres')
    },
    timeout,
  )
})

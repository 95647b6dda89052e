import { sql } from 'kysely'
import { CopyWriter, copyCsvInto } from '../../lib/db/copy.ts'
import type { Tx } from '../../lib/db/database.ts'
import { timed } from '../../lib/phase-timer.ts'

/**
 * The per-transaction staging table a chunk is COPYed into before set-based SQL applies it.
 * ON COMMIT DROP: it never outlives the chunk's transaction, on PostgreSQL or PGlite.
 */
export interface StageColumn {
  name: string
  type: 'text' | 'integer' | 'bigint' | 'timestamptz' | 'jsonb'
}

export async function createStage(tx: Tx, columns: StageColumn[]) {
  const ddl = columns.map((c) => `${c.name} ${c.type}`).join(', ')
  await sql.raw(`CREATE TEMP TABLE bulk_stage (${ddl}) ON COMMIT DROP`).execute(tx)
}

/** COPYs rows (arrays in `columns` order) into the stage, then ANALYZEs it so joins plan on real counts. */
export async function fillStage(tx: Tx, columns: StageColumn[], rows: readonly (readonly unknown[])[]) {
  const csv = new CopyWriter()
  for (const r of rows) {
    for (let i = 0; i < r.length; i++) {
      const v = r[i]
      csv.cell(
        v === undefined || v === null
          ? null
          : columns[i].type === 'jsonb'
            ? JSON.stringify(v)
            : (v as string | number),
      )
    }
    csv.endRow()
  }
  await timed('fill.copy', () =>
    copyCsvInto(
      tx,
      'bulk_stage',
      columns.map((c) => c.name),
      csv.bytes(),
    ),
  )
  // Row count and the wave column are all the planner needs here; full statistics cost more.
  await timed('fill.analyze', () => sql`ANALYZE bulk_stage (wave)`.execute(tx))
}

/**
 * For a chunk of several waves: each wave's statements find their rows through an index instead
 * of scanning the whole stage, which made a chunk of n rows over few users cost n × waves. Fresh
 * statistics, or the planner still believes every row is in wave 0.
 */
export async function indexWaves(tx: Tx) {
  await sql`CREATE INDEX ON bulk_stage (wave)`.execute(tx)
  await sql`ANALYZE bulk_stage (wave)`.execute(tx)
}

/** Occurrence number of each row's key within the chunk: rows of wave n touch distinct users. */
export function assignWaves(keys: readonly string[]): { waves: number[]; count: number } {
  const seen = new Map<string, number>()
  let count = 0
  const waves = keys.map((k) => {
    const w = seen.get(k) ?? 0
    seen.set(k, w + 1)
    if (w + 1 > count) count = w + 1
    return w
  })
  return { waves, count }
}

/**
 * Waves of consecutive rows, each as long as no user comes back in it: applied one after the other,
 * every row of a wave comes after every row of the wave before, in the file too.
 */
export function consecutiveWaves(keys: readonly string[]): { waves: number[]; count: number } {
  let wave = 0
  let seen = new Set<string>()
  const waves = keys.map((k) => {
    if (seen.has(k)) {
      wave++
      seen = new Set()
    }
    seen.add(k)
    return wave
  })
  return { waves, count: keys.length === 0 ? 0 : wave + 1 }
}

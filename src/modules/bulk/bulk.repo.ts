import { sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'
import type { BulkJobStatus, BulkJobType } from '../../lib/db/schema.ts'
import { identifierFieldOf } from '../user-fields/user-fields.repo.ts'
import type { CustomFieldDef } from './bulk.plan.ts'
import type { RowError } from './bulk.rows.ts'

export const ACTIVE_STATES: BulkJobStatus[] = ['queued', 'validating', 'processing']

export function findJob(db: Tx, communityId: string, jobId: string) {
  return db
    .selectFrom('bulk_jobs')
    .selectAll()
    .where('community_id', '=', communityId)
    .where('id', '=', jobId)
    .executeTakeFirst()
}
export type JobRow = NonNullable<Awaited<ReturnType<typeof findJob>>>

export async function countActiveJobs(db: Tx, communityId: string): Promise<number> {
  const r = await db
    .selectFrom('bulk_jobs')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('community_id', '=', communityId)
    .where('status', 'in', ACTIVE_STATES)
    .executeTakeFirstOrThrow()
  return Number(r.n)
}

/** Whether a worker is applying a bulk job (of any community) right now: one holds a live lease. */
export async function bulkJobRunning(db: Tx): Promise<boolean> {
  const r = await db
    .selectFrom('bulk_jobs')
    .select('id')
    .where('status', 'in', ['validating', 'processing'])
    .where('lease_until', '>', sql<Date>`now()`)
    .limit(1)
    .executeTakeFirst()
  return r !== undefined
}

export interface JobFilter {
  type?: BulkJobType
  status?: BulkJobStatus
  page: number
  limit: number
}

export async function listJobs(db: Tx, communityId: string, f: JobFilter) {
  let q = db.selectFrom('bulk_jobs').where('community_id', '=', communityId)
  if (f.type) q = q.where('type', '=', f.type)
  if (f.status) q = q.where('status', '=', f.status)
  const [rows, total] = await Promise.all([
    q
      .selectAll()
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(f.limit)
      .offset((f.page - 1) * f.limit)
      .execute(),
    q.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
  ])
  return { rows, total: Number(total.n) }
}

/** Takes the job for this worker unless another live worker holds it; starts it if it was queued. */
export function claimJob(db: Tx, jobId: string, owner: string, leaseSeconds: number) {
  return db
    .updateTable('bulk_jobs')
    .set({
      lease_owner: owner,
      lease_until: sql`now() + make_interval(secs => ${leaseSeconds})`,
      attempts: sql`attempts + 1`,
      status: sql`CASE WHEN status = 'queued' THEN 'validating' ELSE status END`,
      started_at: sql`coalesce(started_at, now())`,
      updated_at: sql`now()`,
    })
    .where('id', '=', jobId)
    .where('status', 'in', ACTIVE_STATES)
    .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', sql<Date>`now()`)]))
    .returningAll()
    .executeTakeFirst()
}

/** Custom fields and the identifier field of a community, as a job's column plan needs them. */
export async function loadPlanContext(db: Tx, communityId: string): Promise<StoredPlanContext> {
  const [identifierField, fields] = await Promise.all([
    identifierFieldOf(db, communityId),
    db
      .selectFrom('user_fields')
      .select(['id', 'field', 'type', 'options'])
      .where('community_id', '=', communityId)
      .execute(),
  ])
  return { identifierField, customFields: fields.map(toFieldDef) }
}

export interface StoredPlanContext {
  identifierField: string | null
  customFields: CustomFieldDef[]
}

/** The definitions of these fields as they are now (a deleted one is missing). */
export async function currentFieldDefs(
  tx: Tx,
  communityId: string,
  ids: string[],
): Promise<CustomFieldDef[]> {
  if (ids.length === 0) return []
  const rows = await tx
    .selectFrom('user_fields')
    .select(['id', 'field', 'type', 'options'])
    .where('community_id', '=', communityId)
    .where('id', 'in', ids)
    .execute()
  return rows.map(toFieldDef)
}

const toFieldDef = (f: { id: string; field: string; type: string; options: unknown }): CustomFieldDef => ({
  id: f.id,
  field: f.field,
  type: f.type,
  options: Array.isArray(f.options) ? (f.options as string[]) : null,
})

export async function insertChunk(
  db: Tx,
  c: {
    communityId: string
    jobId: string
    chunkNo: number
    firstRow: number
    lines: number[]
    keys: string[]
    actions: string
  },
) {
  await db
    .insertInto('bulk_job_chunks')
    .values({
      community_id: c.communityId,
      job_id: c.jobId,
      chunk_no: c.chunkNo,
      first_row: c.firstRow,
      lines: c.lines,
      keys: c.keys,
      actions: c.actions,
    })
    .execute()
}

export async function insertErrors(db: Tx, communityId: string, jobId: string, errors: RowError[]) {
  for (let i = 0; i < errors.length; i += 1000) {
    await db
      .insertInto('bulk_job_errors')
      .values(
        errors.slice(i, i + 1000).map((e) => ({
          community_id: communityId,
          job_id: jobId,
          row_no: e.rowNo,
          line: e.line,
          key: e.key,
          code: e.code,
          field: e.field,
          message: e.message,
          cells: e.cells ? JSON.stringify(e.cells) : null,
        })),
      )
      .execute()
  }
}

/** Whether the pieces of this upload are still stored. */
export async function hasUpload(db: Tx, communityId: string, uploadId: string): Promise<boolean> {
  const piece = await db
    .selectFrom('bulk_files')
    .select('seq')
    .where('community_id', '=', communityId)
    .where('upload_id', '=', uploadId)
    .limit(1)
    .executeTakeFirst()
  return piece !== undefined
}

/** Row ranges of the chunks of a job already committed (by this or an earlier attempt). */
export async function committedChunks(db: Tx, communityId: string, jobId: string) {
  const rows = await db
    .selectFrom('bulk_job_chunks')
    .select(['chunk_no', 'first_row', sql<number>`cardinality(lines)`.as('n')])
    .where('community_id', '=', communityId)
    .where('job_id', '=', jobId)
    .execute()
  return rows.map((r) => ({ chunkNo: r.chunk_no, first: r.first_row, last: r.first_row + Number(r.n) - 1 }))
}

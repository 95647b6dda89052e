import { sql } from 'kysely'
import type { Tx } from '../../lib/db/database.ts'
import type { LogCursor } from './cursor.ts'

export interface LogFilters {
  kind?: 'request' | 'bulk_job'
  method?: string
  status?: number
  /** Inclusive lower and exclusive upper bound, for a status class. */
  statusRange?: readonly [number, number]
  apiKeyId?: string
  pathPrefix?: string
  from?: string
  to?: string
}

// created_at as UTC text with microseconds: the cursor needs the exact stored value.
const createdAtText = sql<string>`to_char(api_log.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`

/** The log entry joined (on community and id) with its bulk job, so a listing shows live progress. */
function baseQuery(db: Tx, communityId: string) {
  return db
    .selectFrom('api_log')
    .leftJoin('bulk_jobs', (j) =>
      j
        .onRef('bulk_jobs.id', '=', 'api_log.bulk_job_id')
        .onRef('bulk_jobs.community_id', '=', 'api_log.community_id'),
    )
    .select([
      'api_log.id',
      'api_log.kind',
      'api_log.method',
      'api_log.path',
      'api_log.status',
      'api_log.duration_ms',
      'api_log.request_id',
      'api_log.api_key_id',
      'api_log.summary',
      'api_log.created_at',
      createdAtText.as('created_at_text'),
      'bulk_jobs.id as job_id',
      'bulk_jobs.type as job_type',
      'bulk_jobs.dry_run as job_dry_run',
      'bulk_jobs.status as job_status',
      'bulk_jobs.total as job_total',
      'bulk_jobs.processed as job_processed',
      'bulk_jobs.created as job_created',
      'bulk_jobs.updated as job_updated',
      'bulk_jobs.skipped as job_skipped',
      'bulk_jobs.failed as job_failed',
      'bulk_jobs.started_at as job_started_at',
      'bulk_jobs.finished_at as job_finished_at',
      'bulk_jobs.error_code as job_error_code',
      'bulk_jobs.error_message as job_error_message',
      sql<boolean | null>`bulk_jobs.plan_context IS NOT NULL`.as('job_planned'),
    ])
    .where('api_log.community_id', '=', communityId)
}

type Base = ReturnType<typeof baseQuery>
export type LogRow = Awaited<ReturnType<Base['executeTakeFirstOrThrow']>>

function applyFilters(q: Base, f: LogFilters): Base {
  let out = q
  if (f.kind) out = out.where('api_log.kind', '=', f.kind)
  if (f.method) out = out.where('api_log.method', '=', f.method)
  if (f.status !== undefined) out = out.where('api_log.status', '=', f.status)
  if (f.statusRange) {
    out = out.where('api_log.status', '>=', f.statusRange[0]).where('api_log.status', '<', f.statusRange[1])
  }
  if (f.apiKeyId) out = out.where('api_log.api_key_id', '=', f.apiKeyId)
  // starts_with, not LIKE: a prefix holding % or _ must match literally.
  if (f.pathPrefix) out = out.where(sql<boolean>`starts_with(api_log.path, ${f.pathPrefix})`)
  if (f.from) out = out.where('api_log.created_at', '>=', new Date(f.from))
  if (f.to) out = out.where('api_log.created_at', '<=', new Date(f.to))
  return out
}

/** One page, newest first, strictly after `after`; fetches limit + 1 rows so the caller knows if more follow. */
export function listLogs(db: Tx, communityId: string, filters: LogFilters, limit: number, after?: LogCursor) {
  let q = applyFilters(baseQuery(db, communityId), filters)
  if (after) {
    q = q.where(
      sql<boolean>`(api_log.created_at, api_log.id) < (${after.createdAt}::timestamptz, ${after.id})`,
    )
  }
  return q
    .orderBy('api_log.created_at', 'desc')
    .orderBy('api_log.id', 'desc')
    .limit(limit + 1)
    .execute()
}

export function findLog(db: Tx, communityId: string, id: string) {
  return baseQuery(db, communityId).where('api_log.id', '=', id).executeTakeFirst()
}

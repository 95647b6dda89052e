import type { Database } from '../../lib/db/database.ts'
import { badRequest, notFound } from '../../lib/errors.ts'
import * as repo from './api-log.repo.ts'
import type { ListLogsQuery } from './api-log.schema.ts'
import { decodeCursor, encodeCursor } from './cursor.ts'

/** Reads the API log of one community: every request made with a key, and every bulk job. */
export function createApiLogService(deps: { database: Database }) {
  const { db } = deps.database
  return {
    async list(communityId: string, q: ListLogsQuery) {
      if (q.status !== undefined && q.statusClass !== undefined) {
        throw badRequest('invalid_field', 'Use either status or statusClass, not both', 'statusClass')
      }
      if (q.from && q.to && Date.parse(q.from) > Date.parse(q.to)) {
        throw badRequest('invalid_field', '"to" must not be before "from"', 'to')
      }
      const after = q.cursor ? decodeCursor(q.cursor) : undefined
      const classStart = q.statusClass ? Number(q.statusClass[0]) * 100 : undefined
      const rows = await repo.listLogs(
        db,
        communityId,
        {
          kind: q.kind,
          method: q.method,
          status: q.status,
          statusRange: classStart !== undefined ? [classStart, classStart + 100] : undefined,
          apiKeyId: q.apiKeyId,
          pathPrefix: q.path,
          from: q.from,
          to: q.to,
        },
        q.limit,
        after,
      )
      const page = rows.slice(0, q.limit)
      const last = page[page.length - 1]
      const nextCursor =
        rows.length > q.limit && last ? encodeCursor({ createdAt: last.created_at_text, id: last.id }) : null
      return { rows: page, nextCursor }
    },

    async get(communityId: string, logId: string) {
      const row = await repo.findLog(db, communityId, logId)
      if (!row) throw notFound('api_log', 'logId')
      return row
    },
  }
}

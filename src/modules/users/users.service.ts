import type { Database } from '../../lib/db/database.ts'
import { badRequest, forbidden, notFound } from '../../lib/errors.ts'
import type { AuthContext } from '../../lib/http/auth.ts'
import { decodeCursor, encodeCursor } from './filter/cursor.ts'
import { presentFilteredUser } from './filter/filter.presenter.ts'
import { countUsers, FILTER_PAGE_SIZE, findUsersAfter, findUsersPage } from './filter/filter.repo.ts'
import { planFilter } from './filter/filter-plan.ts'
import * as repo from './users.repo.ts'
import type { FilterUsersBody, ManageUserBody } from './users.schema.ts'

const startOfUtcDay = (now: Date) =>
  new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()))

/** Reading and managing the users of one community; every query is scoped by the caller's community. */
export function createUsersService(deps: { database: Database }) {
  const { db } = deps.database
  return {
    /**
     * Get user: a community key reads any user of its community; a session of an owner or admin
     * too; a member's session or a user API key only its own record (checked before any lookup,
     * so the answer says nothing about other ids).
     */
    async get(auth: AuthContext, userId: string) {
      const own = auth.credential === 'userKey' || (auth.credential === 'session' && auth.role === 'member')
      if (own && auth.userId !== userId)
        throw forbidden('You may read only your own user record', 'own_record_only')
      const user = await repo.findUserById(db, auth.communityId, userId)
      if (!user) throw notFound('user', 'userId')
      return user
    },

    /** Get Users with Filters: cursor mode by default, page mode when `page` is given. */
    async filter(communityId: string, body: FilterUsersBody) {
      if (body.cursor !== undefined && body.page !== undefined) {
        throw badRequest('pagination_conflict', 'Use either cursor or page, not both', 'page')
      }
      const after = body.cursor !== undefined ? decodeCursor(body.cursor) : null
      const plan = planFilter(body, await repo.listFieldDefs(db, communityId))
      if (body.page !== undefined) {
        const [rows, total] = await Promise.all([
          findUsersPage(db, communityId, plan, body.page),
          countUsers(db, communityId, plan),
        ])
        return {
          users: rows.map((r) => presentFilteredUser(r, plan)),
          total_pages: Math.ceil(total / FILTER_PAGE_SIZE),
          current_page: body.page,
        }
      }
      const rows = await findUsersAfter(db, communityId, plan, after)
      const page = rows.slice(0, FILTER_PAGE_SIZE)
      const last = page[page.length - 1]
      return {
        users: page.map((r) => presentFilteredUser(r, plan)),
        next_cursor:
          rows.length > FILTER_PAGE_SIZE ? encodeCursor({ createdAt: last.cursor_at, id: last.id }) : null,
      }
    },

    /** Get User Data by numeric id, _id, email or external id (in that priority). */
    async info(communityId: string, idOrEmail: string) {
      const user = await repo.findUserByReference(
        db,
        communityId,
        idOrEmail,
        ['id', 'seq', 'email', 'externalId'],
        {
          includeDeleted: false,
          field: 'idOrEmail',
        },
      )
      if (!user) throw notFound('user', 'idOrEmail')
      const [earnedToday, defs] = await Promise.all([
        repo.earnedSince(db, communityId, user.id, startOfUtcDay(new Date())),
        repo.listFieldDefs(db, communityId),
      ])
      return { user, earnedToday, fieldKeys: defs.map((d) => d.field) }
    },

    /**
     * Manage User Account: delete is a soft delete (the row and its data stay, the user vanishes
     * from reads); restore clears it. Repeating either is a no-op with the same answer.
     */
    async manage(communityId: string, body: ManageUserBody) {
      const user = await repo.findUserByReference(
        db,
        communityId,
        body.user,
        ['id', 'seq', 'email', 'username'],
        {
          includeDeleted: true,
          field: 'user',
        },
      )
      if (!user) throw notFound('user', 'user')
      if (body.action === 'delete' && user.role === 'owner') {
        throw forbidden('The owner of the community cannot be deleted', 'owner_protected')
      }
      await repo.setDeletedAt(db, communityId, user.id, body.action === 'delete' ? new Date() : null)
      return user
    },
  }
}
export type UsersService = ReturnType<typeof createUsersService>

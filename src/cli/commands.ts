import { constants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import { basename } from 'node:path'
import { hashPassword } from '../lib/auth/secrets.ts'
import type { BulkJobType } from '../lib/db/schema.ts'
import type { AppDeps } from '../lib/deps.ts'
import { AppError, badRequest, conflict } from '../lib/errors.ts'
import { newId } from '../lib/ids.ts'
import { createApiKeyService } from '../modules/api-keys/api-keys.service.ts'
import { presentJob } from '../modules/bulk/bulk.presenter.ts'
import { createBulkService } from '../modules/bulk/bulk.service.ts'
import { createCommunityService } from '../modules/communities/communities.service.ts'
import { usernameTaken } from '../modules/users/users.repo.ts'

/**
 * Operator commands shared by the local CLI and the running server's control socket: the same
 * code runs whichever process holds the database.
 */
export type CommandArgs = Record<string, string | boolean | undefined>

export const str = (a: CommandArgs, k: string, required = true): string => {
  const v = a[k]
  if (typeof v === 'string' && v.length > 0) return v
  if (required) throw badRequest('missing_option', `--${k} is required`, k)
  return ''
}

export const commands: Record<string, (deps: AppDeps, args: CommandArgs) => Promise<unknown>> = {
  async 'community create'(deps, args) {
    const { community, systemKey } = await createCommunityService(deps).create({ name: str(args, 'name') })
    return { id: community.id, name: community.name, systemKey }
  },

  async 'keys create'(deps, args) {
    const communityId = str(args, 'community')
    await requireCommunityExists(deps, communityId)
    const requested = str(args, 'permissions', false) || 'all'
    const name = str(args, 'name', false) || 'CLI key'
    const { row, key } = await createApiKeyService(deps).create(
      { communityId, kind: 'community' },
      { name, permissions: requested.split(',').map((p) => p.trim()), expirePeriod: 0 },
      'cli',
    )
    return { id: row.id, name: row.name, key, permissions: row.permissions, communityId }
  },

  async 'admin create'(deps, args) {
    const communityId = str(args, 'community')
    await requireCommunityExists(deps, communityId)
    const email = str(args, 'email').toLowerCase()
    const password = str(args, 'password')
    if (password.length < 8)
      throw badRequest('weak_password', 'The password needs at least 8 characters', 'password')
    const { db } = deps.database
    const taken = await db
      .selectFrom('users')
      .select('id')
      .where('community_id', '=', communityId)
      .where('email', '=', email)
      .executeTakeFirst()
    if (taken) throw conflict('email_taken', `${email} already has an account in this community`, 'email')
    const id = newId()
    // The email's local part as username, unless a user of the community holds it (in any case).
    const local = email.split('@')[0]
    const username = (await usernameTaken(db, communityId, local)) ? null : local
    await db.transaction().execute(async (tx) => {
      await tx
        .insertInto('users')
        .values({
          id,
          community_id: communityId,
          email,
          username,
          role: 'owner',
          password_hash: await hashPassword(password),
          email_verified_at: new Date(),
        })
        .execute()
      await tx
        .updateTable('communities')
        .set({ owner_user_id: id })
        .where('id', '=', communityId)
        .where('owner_user_id', 'is', null)
        .execute()
    })
    return { id, email, username, role: 'owner', communityId }
  },

  async 'import status'(deps, args) {
    return presentJob(await createBulkService(deps).get(str(args, 'community'), str(args, 'job')))
  },

  async 'import cancel'(deps, args) {
    return presentJob(await createBulkService(deps).cancel(str(args, 'community'), str(args, 'job')))
  },
}

/** The kind of job `hearth import` starts; --update and --premium-currency are two kinds, never both. */
export function importType(args: CommandArgs): BulkJobType {
  if (args.update && args['premium-currency'])
    throw badRequest(
      'conflicting_options',
      '--update and --premium-currency cannot be combined: a file updates users or premium balances, not both',
      'premium-currency',
    )
  return args['premium-currency'] ? 'premium_currency' : args.update ? 'update' : 'import'
}

/** The bytes `hearth import` uploads, under the name the job shows for them. */
export interface ImportUpload {
  fileName: string
  /** Called once the options, the community and its job limit have been checked: nothing is read before. */
  open: () => AsyncIterable<Buffer | Uint8Array | string>
}

/**
 * Starts the job of `hearth import`: the same path as the HTTP upload. The file's bytes come from
 * `upload`, opened by the CLI itself (which streams them through the control socket to a running
 * server): a server never opens a path it is given, whose reader (a pipe's) would outlive the CLI.
 */
export async function startImport(deps: AppDeps, args: CommandArgs, upload: ImportUpload) {
  const communityId = str(args, 'community')
  const type = importType(args)
  await requireCommunityExists(deps, communityId)
  const job = await createBulkService(deps).submit({
    communityId,
    type,
    dryRun: Boolean(args['dry-run']),
    fileName: basename(upload.fileName) || 'upload.csv',
    // Opened as the upload starts to be stored, once the community's job limit has been checked too.
    source: { [Symbol.asyncIterator]: () => upload.open()[Symbol.asyncIterator]() },
    apiKeyId: null,
    createdBy: 'cli',
  })
  return presentJob(job)
}

/** The name a job shows for its file: a pipe's descriptor number says nothing, so it is named for what it is. */
export function jobFileName(file: string): string {
  if (file === '/dev/stdin' || /^\/(proc\/\d+|dev)\/fd\/0$/.test(file)) return 'stdin.csv'
  if (/^\/(proc\/\d+|dev)\/fd\/\d+$/.test(file)) return 'pipe.csv'
  return basename(file)
}

/** Refuses, in one line, a path that names no file this process can read; tells a pipe from a file. */
export async function requireReadableFile(path: string): Promise<{ pipe: boolean }> {
  try {
    // A named pipe streams like a file: `hearth import <(gunzip -c users.csv.gz) --community ID`.
    const kind = await stat(path)
    if (!kind.isFile() && !kind.isFIFO()) throw badRequest('not_a_file', `${path} is not a file`, 'file')
    await access(path, constants.R_OK)
    return { pipe: kind.isFIFO() }
  } catch (err) {
    if (err instanceof AppError) throw err
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') throw badRequest('file_not_found', `No file ${path}`, 'file')
    if (code === 'EACCES' || code === 'EPERM')
      throw badRequest('file_not_readable', `${path} cannot be read (permission denied)`, 'file')
    throw err
  }
}

async function requireCommunityExists(deps: AppDeps, id: string) {
  const c = await deps.database.db
    .selectFrom('communities')
    .select('id')
    .where('id', '=', id)
    .executeTakeFirst()
  if (!c) throw new AppError(404, 'community_not_found', `No community has the id ${id}`, 'community')
}

export function describeError(err: unknown): string {
  if (err instanceof AppError) return `${err.code}: ${err.message}`
  return err instanceof Error ? err.message : String(err)
}

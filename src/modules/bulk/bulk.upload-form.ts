import type { FastifyRequest } from 'fastify'
import { validatorCompiler } from 'fastify-type-provider-zod'
import type { Database } from '../../lib/db/database.ts'
import { AppError, badRequest, forbidden } from '../../lib/errors.ts'
import type { AuthContext } from '../../lib/http/auth.ts'
import { isObjectId } from '../../lib/ids.ts'
import type { StoredUpload } from './bulk.files.ts'
import type { BulkService } from './bulk.service.ts'

/**
 * Multipart upload routes stream the `data` part straight to storage, so the body is not parsed
 * into memory or validated by schema (it is documented by the schema for OpenAPI only).
 */
export const streamBodyValidator: typeof validatorCompiler = (route) =>
  route.httpPart === 'body' ? () => ({ value: undefined }) : validatorCompiler(route)

export interface UploadForm {
  stored: StoredUpload
  fileName: string
  communityId: string
  dryRun: boolean
}

/** Reads the form: stores the file as it arrives, then settles which community it is for. */
export async function readUploadForm(
  req: FastifyRequest,
  service: BulkService,
  database: Database,
  opts: { allowPublic: boolean },
): Promise<UploadForm> {
  if (!req.isMultipart())
    throw badRequest(
      'multipart_expected',
      'Send multipart/form-data with the CSV in the "data" field',
      'data',
    )
  const auth = req.auth
  const fields: Record<string, string> = {}
  let stored: StoredUpload | null = null
  let fileName = 'upload.csv'
  try {
    for await (const part of req.parts()) {
      if (part.type === 'file') {
        if (part.fieldname !== 'data' || stored) {
          part.file.resume()
          throw badRequest(
            'unexpected_file',
            `Send exactly one file, in the "data" field (got "${part.fieldname}")`,
            part.fieldname,
          )
        }
        fileName = part.filename || fileName
        const hint = auth?.communityId ?? (isObjectId(fields.communityId ?? '') ? fields.communityId : null)
        stored = await service.upload(part.file, hint, {
          refuseEarlyWhenFull: !req.headers['idempotency-key'],
        })
      } else fields[part.fieldname] = String(part.value)
    }
    if (!stored)
      throw badRequest('missing_file', 'The CSV file is missing: send it in the "data" field', 'data')
    const communityId = await settleCommunity(auth, fields.communityId, database, opts.allowPublic)
    const dry = fields.dryRun ?? 'false'
    if (dry !== 'true' && dry !== 'false')
      throw badRequest('invalid_field', 'dryRun must be true or false', 'dryRun')
    return { stored, fileName, communityId, dryRun: dry === 'true' }
  } catch (err) {
    if (stored) await service.discard(stored)
    throw err
  }
}

async function settleCommunity(
  auth: AuthContext | null,
  given: string | undefined,
  database: Database,
  allowPublic: boolean,
): Promise<string> {
  if (given !== undefined && !isObjectId(given))
    throw badRequest('invalid_field', 'communityId must be a 24-hex id', 'communityId')
  if (auth) {
    if (given && given !== auth.communityId)
      throw forbidden('This credential cannot reach that community', 'community_forbidden')
    return auth.communityId
  }
  if (!allowPublic) throw new AppError(401, 'unauthorized', 'Authentication required')
  if (!given) throw badRequest('missing_field', 'communityId is required', 'communityId')
  const c = await database.db
    .selectFrom('communities')
    .select(['id', 'allow_public_bulk_import'])
    .where('id', '=', given)
    .executeTakeFirst()
  // An unknown community and one that keeps the switch off answer alike: no probing which ids exist.
  if (!c?.allow_public_bulk_import) {
    throw new AppError(
      401,
      'bulk_import_requires_key',
      'This community requires an API key with the bulkUpdateUser permission for bulk imports',
    )
  }
  return c!.id
}

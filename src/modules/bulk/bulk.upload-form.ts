import type { Readable } from 'node:stream'
import { finished } from 'node:stream/promises'
import type { FastifyRequest } from 'fastify'
import { validatorCompiler } from 'fastify-type-provider-zod'
import type { Database } from '../../lib/db/database.ts'
import { AppError, badRequest, forbidden } from '../../lib/errors.ts'
import type { AuthContext } from '../../lib/http/auth.ts'
import { isObjectId } from '../../lib/ids.ts'
import type { StoredUpload } from './bulk.files.ts'
import type { BulkService } from './bulk.service.ts'
import { type SpooledFile, spoolFile } from './bulk.spool.ts'

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

interface FormState {
  fields: Record<string, string>
  fileName: string
  sawFile: boolean
  stored: StoredUpload | null
  /** Why the file was not stored (it was read to its end unstored). */
  refusal: unknown
}

/**
 * Reads the form and stores the file as it arrives, once the fields before it settled the
 * community. An anonymous file sent before `communityId` waits on local disk (bulk.spool.ts) until
 * the form names a community that takes anonymous imports; nothing reaches the database otherwise.
 * A file that may not be stored is read to its end unstored, so that the client hears the refusal.
 */
export async function readUploadForm(
  req: FastifyRequest,
  service: BulkService,
  database: Database,
  opts: { allowPublic: boolean; maxFileBytes: number },
): Promise<UploadForm> {
  if (!req.isMultipart())
    throw badRequest(
      'multipart_expected',
      'Send multipart/form-data with the CSV in the "data" field',
      'data',
    )
  const form: FormState = { fields: {}, fileName: 'upload.csv', sawFile: false, stored: null, refusal: null }
  const store = { refuseEarlyWhenFull: !req.headers['idempotency-key'] }
  // Set inside the parts callback, hence an object (a plain `let` reads as never-assigned to TS).
  const spool: { file: SpooledFile | null } = { file: null }
  try {
    await readParts(req, form, async (file, given) => {
      if (!req.auth && opts.allowPublic && given === undefined) {
        // Anonymous, and the community is not known yet (the documented order puts it after the file).
        spool.file = await spoolFile(file, opts.maxFileBytes)
        return
      }
      const communityId = await settleCommunity(req.auth, given, database, opts.allowPublic)
      form.stored = await service.upload(file, communityId, store)
    })
    if (!form.sawFile)
      throw badRequest('missing_file', 'The CSV file is missing: send it in the "data" field', 'data')
    // The whole form's answer comes first: a community that refuses does so whatever the order of the parts.
    const communityId = await settleCommunity(req.auth, form.fields.communityId, database, opts.allowPublic)
    if (spool.file && !form.refusal) form.stored = await service.upload(spool.file.read(), communityId, store)
    const stored = form.stored
    if (!stored) throw form.refusal
    const dry = form.fields.dryRun ?? 'false'
    if (dry !== 'true' && dry !== 'false')
      throw badRequest('invalid_field', 'dryRun must be true or false', 'dryRun')
    return { stored, fileName: form.fileName, communityId, dryRun: dry === 'true' }
  } catch (err) {
    if (form.stored) await service.discard(form.stored)
    throw err
  } finally {
    await spool.file?.remove()
  }
}

/** Reads every part; `store` gets the file with the communityId given before it. */
async function readParts(
  req: FastifyRequest,
  form: FormState,
  store: (file: Readable, communityId: string | undefined) => Promise<void>,
) {
  try {
    for await (const part of req.parts()) {
      if (part.type === 'field') {
        form.fields[part.fieldname] = String(part.value)
        continue
      }
      if (part.fieldname !== 'data' || form.sawFile) {
        part.file.resume()
        throw badRequest(
          'unexpected_file',
          `Send exactly one file, in the "data" field (got "${part.fieldname}")`,
          part.fieldname,
        )
      }
      form.sawFile = true
      // Only a label, stored with the job: a NUL (which PostgreSQL text cannot hold) becomes U+FFFD.
      form.fileName = (part.filename || form.fileName).replaceAll('\u0000', '\uFFFD')
      try {
        await store(part.file, form.fields.communityId)
      } catch (err) {
        form.refusal = err
        // A stream that broke tells the iterator, which ends the loop with its error.
        await finished(part.file.resume()).catch(() => {})
      }
    }
  } catch (err) {
    // Whatever broke while a refused file was read (its size, say), the refusal is the answer.
    throw form.refusal ?? err
  }
}

async function settleCommunity(
  auth: AuthContext | null,
  spelled: string | undefined,
  database: Database,
  allowPublic: boolean,
): Promise<string> {
  const given = spelled?.toLowerCase() // ids are hexadecimal: any case names the same community
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

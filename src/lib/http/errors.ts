import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod'
import { isTransientError } from '../db/sql-errors.ts'
import { AppError } from '../errors.ts'
import { errorEnvelope, type Family, familyOfUrl } from './envelope.ts'
import { refuseNulCharacters } from './nul-guard.ts'

export function familyOf(req: FastifyRequest): Family {
  return (req.routeOptions?.config as { family?: Family } | undefined)?.family ?? familyOfUrl(req.url)
}

interface Issue {
  keyword?: string
  instancePath?: string
  message?: string
  params?: { keys?: string[] }
}

const pathOf = (i: Issue) => (i.instancePath ?? '').split('/').filter(Boolean)

/** Turns a schema validation failure into a 400 naming the first field at fault. */
function validationError(err: FastifyError): AppError {
  const issues = (err.validation ?? []) as Issue[]
  const first = issues[0]
  const where = err.validationContext ?? 'body'
  const unknown = first?.keyword === 'unrecognized_keys' || first?.keyword === 'additionalProperties'
  const path = first ? pathOf(first) : []
  if (unknown && first?.params?.keys?.length) path.push(first.params.keys[0])
  const field = path.length ? path.join('.') : where
  const code = unknown ? 'unknown_field' : 'invalid_field'
  const message = unknown
    ? `Unknown field "${field}" in ${where}`
    : `Invalid ${where} field "${field}": ${first?.message ?? err.message}`
  const details =
    issues.length > 1
      ? { issues: issues.map((i) => ({ field: pathOf(i).join('.'), message: i.message })) }
      : undefined
  return new AppError(400, code, message, field, details)
}

const FASTIFY_CODES: Record<string, { status: number; code: string; message: string }> = {
  FST_ERR_CTP_INVALID_JSON_BODY: {
    status: 400,
    code: 'malformed_json',
    message: 'The body is not valid JSON',
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'empty_body', message: 'The JSON body is empty' },
  FST_ERR_CTP_BODY_TOO_LARGE: {
    status: 413,
    code: 'body_too_large',
    message: 'The request body is too large',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: {
    status: 400,
    code: 'invalid_content_length',
    message: 'Bad Content-Length',
  },
  FST_REQ_FILE_TOO_LARGE: { status: 413, code: 'file_too_large', message: 'The uploaded file is too large' },
  FST_INVALID_MULTIPART_CONTENT_TYPE: {
    status: 400,
    code: 'multipart_expected',
    message: 'The request must be multipart/form-data',
  },
  FST_PARTS_LIMIT: { status: 413, code: 'too_many_parts', message: 'Too many multipart parts' },
  FST_FILES_LIMIT: { status: 413, code: 'too_many_files', message: 'Too many files' },
  FST_FIELDS_LIMIT: { status: 413, code: 'too_many_fields', message: 'Too many form fields' },
}

/**
 * The multipart parser (busboy) raises plain Errors, told apart by their message only: a body cut
 * short or not split by its boundary, a header without one or with one too long to search for.
 */
const MULTIPART_FAULTS: [RegExp, string, string | undefined][] = [
  [/boundary not found/i, 'multipart/form-data needs a boundary parameter', 'Content-Type'],
  [/needle cannot/i, 'The multipart boundary is empty or too long', 'Content-Type'],
  [
    /unexpected end of (multipart data|form|file)|terminated early|malformed part header/i,
    'The multipart/form-data body is malformed or cut short',
    undefined,
  ],
]

function malformedMultipart(req: FastifyRequest, err: FastifyError): AppError | null {
  if (err.code || !req.isMultipart?.()) return null
  const fault = MULTIPART_FAULTS.find(([pattern]) => pattern.test(err.message))
  return fault ? new AppError(400, 'malformed_multipart', fault[1], fault[2]) : null
}

/** Names the type the route takes, since a client that sent another may not know it. */
function unsupportedMediaType(req: FastifyRequest): AppError {
  const sent = req.headers['content-type']
  const consumes = (req.routeOptions?.schema as { consumes?: string[] } | undefined)?.consumes
  const wanted = consumes?.join(' or ') ?? 'application/json'
  return new AppError(
    415,
    'unsupported_media_type',
    `Unsupported Content-Type ${sent ? `"${sent.split(';')[0].slice(0, 100)}"` : '(none)'}: send ${wanted}`,
    'Content-Type',
  )
}

/** The AppError an error answers as; unknown errors become a generic 500 (logged) with the request id. */
function toAppError(err: FastifyError, req: FastifyRequest): AppError {
  if (err instanceof AppError) return err
  if (hasZodFastifySchemaValidationErrors(err) || err.validation) return validationError(err)
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return unsupportedMediaType(req)
  const known = err.code ? FASTIFY_CODES[err.code] : undefined
  if (known) return new AppError(known.status, known.code, known.message)
  const multipart = malformedMultipart(req, err)
  if (multipart) return multipart
  if (err.statusCode === 429) return new AppError(429, 'rate_limited', 'Too many requests: slow down')
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
    return new AppError(err.statusCode, 'bad_request', err.message)
  }
  if (isTransientError(err)) {
    // Still losing a race after transact()'s tries: the client's request was sound, and it rolled back whole.
    req.log.warn({ code: (err as { code?: string }).code }, 'a transaction kept losing races with others')
    return new AppError(
      503,
      'database_busy',
      'Other changes to the same data kept this one from applying: try again',
    )
  }
  if (req.raw.destroyed) {
    // The client went away mid-request (an upload broken off): no one hears the answer, and it is no server fault.
    req.log.info({ code: err.code }, 'the client closed the connection before its request ended')
    return new AppError(400, 'request_aborted', 'The request was broken off before it ended')
  }
  req.log.error({ err, serialization: isResponseSerializationError(err) }, 'unhandled error')
  return new AppError(
    500,
    'internal_error',
    'Something went wrong on our side; quote the request id if you report it',
  )
}

/**
 * Maps every error to the family's envelope, and refuses before validation what no route can take
 * (a string holding U+0000, which the database cannot store) with a 400 in that envelope.
 */
export function installErrorHandling(app: FastifyInstance) {
  app.addHook('preValidation', refuseNulCharacters)
  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const e = toAppError(err, req)
    if (e.status >= 500 && err instanceof AppError) req.log.error({ err }, 'server error')
    if (e.code === 'database_busy') reply.header('retry-after', '1')
    // Answered before the body was read (an upload broken off by an error): close the connection,
    // rather than keep a socket the client goes on filling with a body no one reads.
    if (!req.raw.complete) reply.header('connection', 'close')
    reply
      .code(e.status)
      .type('application/json; charset=utf-8')
      .send(errorEnvelope(familyOf(req), e.status, e, req.id))
  })
  app.setNotFoundHandler((req, reply) => {
    reply
      .code(404)
      .send(
        errorEnvelope(
          familyOfUrl(req.url),
          404,
          { code: 'route_not_found', message: `No route ${req.method} ${req.url.split('?')[0]}` },
          req.id,
        ),
      )
  })
}

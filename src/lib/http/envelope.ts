import { z } from 'zod'

/**
 * The API families share one port but answer in different envelopes (design.md, api-reference 0.4).
 * A route names its family in `config.family`; success and error bodies both follow it.
 */
export type Family = 'integration' | 'application' | 'system' | 'partner' | 'plain' | 'secureAuth'

export interface ErrorBody {
  code: string
  message: string
  field?: string
  details?: unknown
}

export function errorEnvelope(family: Family, status: number, err: ErrorBody, requestId: string) {
  const error = { code: err.code, field: err.field ?? null, ...(err.details ? { details: err.details } : {}) }
  switch (family) {
    case 'integration':
      return { status: 'error', message: err.message, error, requestId }
    case 'application':
    case 'partner':
      return { meta: { status: 'error', statusCode: status }, message: err.message, error, requestId }
    case 'system':
      return {
        meta: { success: false, message: err.message, devMessage: err.code },
        body: null,
        error,
        requestId,
      }
    case 'secureAuth':
      // Secure Auth answers `{error, ...}` at the top level (api-reference section 1).
      return { error: true, message: err.message, code: err.code, field: err.field ?? null, requestId }
    default:
      return { error: { ...error, message: err.message }, requestId }
  }
}

/** Picks the family of a URL that matched no route (404) or failed before routing. */
export function familyOfUrl(url: string): Family {
  // Every route under /apis/v1/communities/ is in the Application API (user fields, histories, keys, log).
  if (/^\/apis\/v1\/communities(\/|\?|$)/.test(url)) return 'application'
  if (url.startsWith('/apis/')) return 'integration'
  if (url.startsWith('/api/')) return 'system'
  if (url.startsWith('/v1/')) return 'partner'
  return 'plain'
}

const errorDetail = z.object({
  code: z.string().describe('Stable snake_case error code'),
  field: z.string().nullable().describe('The request field at fault, when one is'),
  details: z.unknown().optional(),
})

export const errorSchemas: Record<Family, z.ZodType> = {
  integration: z.object({
    status: z.literal('error'),
    message: z.string(),
    error: errorDetail,
    requestId: z.string(),
  }),
  application: z.object({
    meta: z.object({ status: z.literal('error'), statusCode: z.number() }),
    message: z.string(),
    error: errorDetail,
    requestId: z.string(),
  }),
  partner: z.object({
    meta: z.object({ status: z.literal('error'), statusCode: z.number() }),
    message: z.string(),
    error: errorDetail,
    requestId: z.string(),
  }),
  system: z.object({
    meta: z.object({ success: z.literal(false), message: z.string(), devMessage: z.string() }),
    body: z.null(),
    error: errorDetail,
    requestId: z.string(),
  }),
  plain: z.object({ error: errorDetail.extend({ message: z.string() }), requestId: z.string() }),
  secureAuth: z.object({
    error: z.literal(true),
    message: z.string(),
    code: z.string(),
    field: z.string().nullable(),
    requestId: z.string(),
  }),
}

/** `{status, message, data}` of the Integration API. */
export const integrationOk = <T extends z.ZodType>(data: T) =>
  z.object({ status: z.literal('success'), message: z.string().optional(), data })
export const integration = <T>(data: T, message?: string) => ({
  status: 'success' as const,
  ...(message !== undefined ? { message } : {}),
  data,
})

/** `{meta:{status,statusCode}, message, data}` of the Application and Partner APIs. */
export const applicationOk = <T extends z.ZodType>(data: T, extraMeta: z.ZodRawShape = {}) =>
  z.object({
    meta: z.object({ status: z.literal('success'), statusCode: z.number(), ...extraMeta }),
    message: z.string(),
    data,
  })
export const application = <T>(data: T, message: string, statusCode = 200, extraMeta: object = {}) => ({
  meta: { status: 'success' as const, statusCode, ...extraMeta },
  message,
  data,
})

/** `{meta:{success,message,devMessage}, body}` of the legacy System API. */
export const systemOk = <T extends z.ZodType>(body: T) =>
  z.object({
    meta: z.object({ success: z.literal(true), message: z.string(), devMessage: z.string() }),
    body,
  })
export const system = <T>(body: T, message: string) => ({
  meta: { success: true as const, message, devMessage: message },
  body,
})

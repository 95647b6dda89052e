import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Database } from '../db/database.ts'
import { newId } from '../ids.ts'

const SECRET_KEYS = /pass(word)?|secret|token|key|authorization|otp|aes/i
const MAX_SUMMARY_CHARS = 2000

/** A short, secret-free picture of a request for the API log. */
export function summarise(req: FastifyRequest): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const query = req.query as Record<string, unknown> | undefined
  if (query && Object.keys(query).length) out.query = redact(query, 0)
  const body = req.body
  if (body && typeof body === 'object' && !Buffer.isBuffer(body) && !req.isMultipart())
    out.body = redact(body, 0)
  if (req.isMultipart()) out.body = '(multipart upload)'
  const text = JSON.stringify(out)
  if (text.length <= MAX_SUMMARY_CHARS) return out
  return { truncated: true, preview: text.slice(0, MAX_SUMMARY_CHARS) }
}

function redact(value: unknown, depth: number): unknown {
  if (depth > 4) return '…'
  if (Array.isArray(value)) return value.slice(0, 20).map((v) => redact(v, depth + 1))
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [
        storable(k),
        SECRET_KEYS.test(k) ? '[redacted]' : redact(v, depth + 1),
      ]),
    )
  }
  if (typeof value === 'string') return storable(value.length > 200 ? `${value.slice(0, 200)}…` : value)
  return value
}

/** jsonb refuses U+0000: a refused request that carried one is still logged, with U+FFFD in its place. */
const storable = (s: string) => (s.includes('\u0000') ? s.replaceAll('\u0000', '\uFFFD') : s)

/** Records every request made with an API key (community, user or system key) once it has been answered. */
export function installApiLog(app: FastifyInstance, database: Database) {
  app.addHook('onResponse', async (req, reply) => {
    const auth = req.auth
    if (!auth?.apiKeyId || reply.loggedInApiLog) return
    try {
      await database.db
        .insertInto('api_log')
        .values({
          id: newId(),
          community_id: auth.communityId,
          api_key_id: auth.apiKeyId,
          method: req.method,
          path: req.url.split('?')[0].slice(0, 500),
          status: reply.statusCode,
          duration_ms: Math.round(reply.elapsedTime),
          request_id: req.id,
          summary: JSON.stringify(summarise(req)),
        })
        .execute()
    } catch (err) {
      req.log.warn({ err }, 'could not write the API log')
    }
  })
}

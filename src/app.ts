import fastifyMultipart from '@fastify/multipart'
import fastifyRateLimit from '@fastify/rate-limit'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify'
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod'
import { sql } from 'kysely'
import { hashToken } from './lib/auth/secrets.ts'
import type { AppDeps } from './lib/deps.ts'
import { installApiLog } from './lib/http/api-log.ts'
import { authorize, resolveCredential } from './lib/http/auth.ts'
import { errorSchemas, type Family } from './lib/http/envelope.ts'
import { installErrorHandling } from './lib/http/errors.ts'
import { postgresRateLimitStore } from './lib/http/rate-limit-store.ts'
import './lib/http/types.ts'
import { newId } from './lib/ids.ts'
import { modules } from './modules/index.ts'

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>

export interface BuildOptions {
  logger?: boolean | object
}

/** Composes the HTTP app: shared plugins and hooks, then every feature module. */
export async function buildApp(deps: AppDeps, opts: BuildOptions = {}): Promise<App> {
  const app = Fastify({
    logger: opts.logger ?? false,
    genReqId: () => newId(),
    requestIdHeader: false,
    bodyLimit: 1024 * 1024,
    trustProxy: true,
    ajv: { customOptions: { removeAdditional: false } },
  }).withTypeProvider<ZodTypeProvider>()
  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)
  installErrorHandling(app)
  app.decorateRequest('auth', null)

  // Every route answers errors in its family's envelope; declare that for validation and OpenAPI.
  app.addHook('onRoute', (route) => {
    const family: Family = route.config?.family ?? 'plain'
    const schema = route.schema as { response?: Record<string, unknown> } | undefined
    if (schema?.response && !schema.response['4xx']) {
      schema.response['4xx'] = errorSchemas[family]
      schema.response['5xx'] = errorSchemas[family]
    }
  })

  await app.register(fastifySwagger, {
    openapi: {
      info: {
        title: 'Hearth API',
        version: '1.0.0',
        description:
          'Community engagement and gamification, compatible with the Returning.AI public API. ' +
          'Integration API envelope {status,message,data}; Application API {meta,message,data}; ' +
          'System API {meta:{success,message,devMessage},body}.',
      },
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'Community API key, user API key or session JWT',
          },
          systemKey: {
            type: 'apiKey',
            in: 'header',
            name: 'x-api-key',
            description: "The community's system key",
          },
        },
      },
    },
    transform: jsonSchemaTransform,
    // Emits the schemas named with .meta({ id }) under components; without it every $ref dangles.
    transformObject: jsonSchemaTransformObject,
  })
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' })
  await app.register(fastifyMultipart, {
    limits: { fileSize: deps.config.bulk.maxFileBytes, files: 1, fields: 20, parts: 25 },
  })
  await app.register(fastifyRateLimit, {
    max: deps.config.rateLimitPerMinute,
    timeWindow: '1 minute',
    // On PostgreSQL every API process counts in one table: the limit holds across machines.
    ...(deps.database.kind === 'postgres' ? { store: postgresRateLimitStore(deps.database.db) } : {}),
    // A counter the database cannot give does not turn a request away; the request itself reports the outage.
    skipOnError: true,
    keyGenerator: (req) => {
      const header = req.headers['x-api-key'] ?? req.headers.authorization ?? req.headers.apikey
      return typeof header === 'string' ? `k:${hashToken(header)}` : `ip:${req.ip}`
    },
  })

  // Authentication runs before validation so a bad key gets 401 whatever the body.
  app.addHook('onRequest', async (req) => {
    const spec = req.routeOptions.config?.auth
    if (!spec) return
    req.auth = await resolveCredential(req, deps.database, deps.jwt)
    authorize(spec, req.auth)
  })
  installApiLog(app, deps.database)

  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }))
  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    try {
      await sql`SELECT 1 FROM hearth_migrations LIMIT 1`.execute(deps.database.db)
      return { status: 'ready', database: deps.database.kind }
    } catch {
      return reply.code(503).send({ status: 'unavailable', database: deps.database.kind })
    }
  })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  for (const register of modules) await register(app, deps)
  return app
}

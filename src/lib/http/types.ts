import type { AuthContext, AuthSpec } from './auth.ts'
import type { Family } from './envelope.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Which API family's envelope this route answers in. */
    family?: Family
    /** Which credentials the route accepts; routes without it are public. */
    auth?: AuthSpec
  }
  interface FastifyRequest {
    auth: AuthContext | null
  }
  interface FastifyReply {
    /** Set by bulk routes so the API log row links to the job. */
    bulkJobId?: string
  }
}

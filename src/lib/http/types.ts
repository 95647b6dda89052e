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
    /** Set by a route whose request the API log already holds (a bulk upload is logged with the job it queued). */
    loggedInApiLog?: boolean
  }
}

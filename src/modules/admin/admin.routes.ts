import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { App } from '../../app.ts'

/** The static pages, scripts and stylesheet of the admin console. */
// The same path from src/ and from the compiled dist/ (assets are served from the sources).
export const ADMIN_ROOT = fileURLToPath(new URL('../../../src/modules/admin/public/', import.meta.url))

/**
 * Strict for pages that load only their own module and stylesheet and talk only to this origin.
 * Downloads are saved from blob: URLs through an <a download>, which needs no CSP allowance.
 */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ')

/**
 * The admin console at /admin: static HTML, one vanilla JS module per page and one stylesheet,
 * no build step. Every page calls the public API with the session JWT it keeps in sessionStorage.
 * Hidden from the OpenAPI document.
 */
export async function registerAdmin(app: App) {
  await app.register(fastifyStatic, {
    root: ADMIN_ROOT,
    prefix: '/admin/',
    decorateReply: false,
    schemaHide: true,
    index: ['login.html'],
    serveDotFiles: false,
    setHeaders(reply) {
      reply.header('content-security-policy', CSP)
      reply.header('x-content-type-options', 'nosniff')
      reply.header('referrer-policy', 'no-referrer')
      reply.header('cache-control', 'no-cache')
    },
  })
  app.get('/admin', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/admin/', 302))
}

import { z } from 'zod'
import { OBJECT_ID } from '../../lib/ids.ts'
import { authUserSchema } from './auth.presenter.ts'

const accessLevel = z.string().regex(/^\d{1,3}$/, 'must be a number from 0 to 999')

export const secureAuthQuery = z
  .object({
    userId: z
      .string()
      .trim()
      .min(1)
      .max(254)
      .describe("The user: the community's external id, username, email or 24-hex id"),
    accessLevel: accessLevel.optional().describe("Access level for the session (default: the user's own)"),
    action: z
      .string()
      .trim()
      .min(1)
      .max(50)
      .optional()
      .describe('What the login is for, e.g. "login" (the default)'),
  })
  .strict()

/** Header names arrive lower-cased; other headers pass through untouched. */
export const secureAuthHeaders = z.object({
  apikey: z.string().optional().describe('A community API key (raw); required'),
  hostname: z
    .string()
    .regex(
      /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::\d{1,5})?$/,
      'must be a host name such as cname.yourdomain.com',
    )
    .optional()
    .describe('Host of the login URL, e.g. cname.yourdomain.com (default: this server)'),
})

export const secureAuthResponse = z
  .object({
    error: z.literal(false),
    loginUrl: z
      .string()
      .describe('https://{hostname}/v2/app/loginApi/{keyId}/{accessLevel}?token={one-time token}'),
    sessionId: z.string().describe('Identifies this login; the exchange answers it too'),
  })
  .meta({ id: 'SecureAuthLogin' })

export const loginApiParams = z
  .object({
    keyId: z.string().regex(OBJECT_ID, 'must be a 24-hex id').describe('The API key id from the login URL'),
    accessLevel,
  })
  .strict()

export const loginApiQuery = z
  .object({ token: z.string().min(1).max(200).describe('The one-time token') })
  .strict()

export const loginApiResponse = z
  .object({
    error: z.literal(false),
    token: z.string().describe('Session JWT'),
    expiresIn: z.number().int().describe('Seconds until the session expires'),
    sessionId: z.string(),
    user: authUserSchema,
  })
  .meta({ id: 'SecureAuthSession' })

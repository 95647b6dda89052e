import { z } from 'zod'
import { OBJECT_ID } from '../../lib/ids.ts'

const communityId = z.string().regex(OBJECT_ID, 'must be a 24-hex id').describe('Community id, 24 hex')
const email = z.string().trim().max(254).pipe(z.email()).describe('Email; compared lower-cased')
const name = (what: string) => z.string().trim().min(1).max(100).optional().describe(what)
const token = z.string().min(1).max(200).describe('The token from the verification mail')

/** Password policy: at least 8 characters; the cap keeps scrypt's input bounded. */
export const password = z
  .string()
  .min(8, 'must be at least 8 characters')
  .max(200)
  .describe('At least 8 characters')

export const registerBody = z
  .object({
    communityId,
    email,
    password,
    confirmPassword: z.string().max(200).describe('Must equal password'),
    username: z
      .string()
      .trim()
      .regex(/^[A-Za-z0-9_.-]{2,50}$/, 'must be 2-50 letters, digits, "_", "." or "-"')
      .optional(),
    firstname: name('First name'),
    lastname: name('Last name'),
    displayname: name('Display name'),
  })
  .strict()

export const verifyEmailBody = z.object({ token }).strict()
export const resendVerificationBody = z.object({ communityId, email }).strict()
export const verifyEmailQuery = z.object({ token }).strict()

export const loginBody = z
  .object({
    email,
    password: z.string().min(1).max(200),
    communityId: communityId
      .optional()
      .describe('Required when the email has accounts in several communities'),
  })
  .strict()

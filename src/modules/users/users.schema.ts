import { z } from 'zod'
import { OBJECT_ID } from '../../lib/ids.ts'

/** Request schemas of the Users module (api-reference section 2). */

export const userIdParams = z
  .object({ userId: z.string().regex(OBJECT_ID, 'must be a 24-hex id').describe('User _id (24 hex)') })
  .strict()

const includeFlag = z.enum(['true', 'false']).optional()

/** "Include X in response" flags of Get user: none given → every field; some true → only those. */
export const GET_USER_FLAGS = [
  '_id',
  'id',
  'avatar',
  'displayName',
  'username',
  'firstName',
  'lastName',
  'email',
  'isOnline',
  'lastLogin',
] as const
export type GetUserFlag = (typeof GET_USER_FLAGS)[number]

export const getUserQuery = z
  .object(
    Object.fromEntries(
      GET_USER_FLAGS.map((f) => [f, includeFlag.describe(`Include ${f} in the response`)]),
    ) as Record<GetUserFlag, typeof includeFlag>,
  )
  .strict()

const filterScalar = z.union([z.string().max(1000), z.number(), z.boolean(), z.null()])

export const filterUsersBody = z
  .object({
    fields: z
      .array(z.string().min(1).max(100))
      .max(200)
      .optional()
      .describe(
        'Field names to return (default fields by database name, custom fields by key); default: all',
      ),
    filter: z
      .record(
        z.string().min(1).max(100),
        z.union([
          filterScalar,
          z
            .object({ gte: filterScalar.optional(), lte: filterScalar.optional() })
            .strict()
            .describe('Range; only on number and date fields'),
        ]),
      )
      .optional()
      .describe(
        'Exact value, or {gte, lte} on number and date fields. A date-only value covers that whole UTC day',
      ),
    cursor: z.string().min(1).max(500).optional().describe('next_cursor of the previous page (cursor mode)'),
    page: z.number().int().min(1).max(1_000_000).optional().describe('Page number from 1 (page mode)'),
  })
  .strict()
export type FilterUsersBody = z.infer<typeof filterUsersBody>

const customFieldEntry = z
  .object({
    fieldIdorName: z.string().trim().min(1).max(100).describe('Custom field id, key or name'),
    value: z.union([z.string().max(10_000), z.number(), z.boolean(), z.null()]),
  })
  .strict()

export const createUserBody = z
  .object({
    firstname: z.string().trim().max(100).optional(),
    lastname: z.string().trim().max(100).optional(),
    username: z.string().trim().min(1).max(50).optional(),
    displayname: z.string().trim().max(100).optional(),
    email: z.email().max(320),
    password: z.string().min(8).max(200).optional().describe('Omit in the SSO/broker flow'),
    confirmPassword: z.string().max(200).optional().describe('Must equal password'),
    accessLevel: z.number().int().min(0).max(1000).optional(),
    joinServer: z
      .boolean()
      .optional()
      .describe('Accepted for compatibility; a created user is always a member'),
    sendEmail: z.boolean().optional().describe('Send a welcome mail (it never contains the password)'),
    emailPassword: z
      .boolean()
      .optional()
      .describe('Accepted for compatibility; Hearth never mails passwords'),
    emailTemplate: z
      .union([z.string().max(100), z.number()])
      .optional()
      .describe('Accepted for compatibility'),
    customFields: z.array(customFieldEntry).max(200).optional(),
    externalId: z
      .string()
      .trim()
      .min(1)
      .max(200)
      .optional()
      .describe("Value of the community's identifier field; needs one configured"),
    referral: z
      .string()
      .trim()
      .min(1)
      .max(200)
      .optional()
      .describe("The referrer's identifier-field value (external id)"),
    communityId: z
      .string()
      .regex(OBJECT_ID, 'must be a 24-hex id')
      .optional()
      .describe("Must be the key's community"),
  })
  .strict()
export type CreateUserBody = z.infer<typeof createUserBody>

export const userInfoBody = z
  .object({
    idOrEmail: z
      .string()
      .trim()
      .min(1)
      .max(320)
      .describe('Numeric id, _id, email or external id, tried in that order'),
  })
  .strict()

export const manageUserBody = z
  .object({
    action: z.enum(['delete', 'restore']),
    user: z.string().trim().min(1).max(320).describe('Username, email, _id or numeric id'),
  })
  .strict()
export type ManageUserBody = z.infer<typeof manageUserBody>

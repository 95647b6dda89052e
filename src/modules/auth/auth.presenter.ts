import { z } from 'zod'
import type { AuthUserRow } from './auth.repo.ts'

export const authUserSchema = z
  .object({
    _id: z.string().describe('User id, 24 hex'),
    id: z.number().int().describe('Numeric user id'),
    email: z.string(),
    username: z.string().nullable(),
    role: z.enum(['member', 'admin', 'owner']),
    communityId: z.string(),
  })
  .meta({ id: 'AuthUser' })

export const sessionSchema = z
  .object({
    token: z.string().describe('Session JWT: send as "Authorization: Bearer <token>"'),
    expiresIn: z.number().int().describe('Seconds until the token expires'),
    user: authUserSchema,
  })
  .meta({ id: 'Session' })

export function presentAuthUser(u: AuthUserRow): z.infer<typeof authUserSchema> {
  return {
    _id: u.id,
    id: Number(u.seq),
    email: u.email,
    username: u.username,
    role: u.role,
    communityId: u.community_id,
  }
}

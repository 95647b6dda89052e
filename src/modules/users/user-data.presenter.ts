import { z } from 'zod'
import { pickCustomFields, scalarSchema } from './users.presenter.ts'
import type { UserRow } from './users.repo.ts'

/** Get User Data (api-reference 2.4): the documented keys, plus premium, _id and email. */
export const userDataSchema = z
  .object({
    userId: z.string().describe('Numeric id, as a string'),
    username: z.string().nullable(),
    xp: z.number(),
    coins: z.number(),
    premium: z.number().describe('Premium currency balance'),
    roles: z.array(z.string()),
    highestRole: z.string(),
    firstName: z.string().nullable(),
    lastName: z.string().nullable(),
    xpEarnedToday: z.number(),
    coinsEarnedToday: z.number(),
    language: z.string(),
    totalMessages: z.number(),
    totalReactions: z.number(),
    visitCount: z.number(),
    replySent: z.number(),
    timeSpent: z.number(),
    loginStreak: z.number(),
    customFields: z
      .record(z.string(), scalarSchema)
      .describe('Values of the defined custom fields the user has'),
    _id: z.string(),
    email: z.string(),
  })
  .meta({ id: 'UserData' })

export interface UserDataInput {
  user: UserRow
  earnedToday: { xp: number; coins: number }
  /** Keys of the community's current custom field definitions: the allowlist of customFields. */
  fieldKeys: string[]
}

export function presentUserData({
  user: u,
  earnedToday,
  fieldKeys,
}: UserDataInput): z.infer<typeof userDataSchema> {
  return {
    userId: String(u.seq),
    username: u.username,
    xp: Number(u.xp),
    coins: Number(u.coins),
    premium: Number(u.premium),
    // Roles belong to the roles module; until a user has any, everyone is in @all.
    roles: ['@all'],
    highestRole: '@all',
    firstName: u.first_name,
    lastName: u.last_name,
    xpEarnedToday: earnedToday.xp,
    coinsEarnedToday: earnedToday.coins,
    language: u.language,
    totalMessages: u.total_messages,
    totalReactions: u.total_reactions,
    visitCount: u.visit_count,
    replySent: u.reply_sent,
    timeSpent: u.time_spent,
    loginStreak: u.login_streak,
    customFields: pickCustomFields(u.custom_fields, fieldKeys),
    _id: u.id,
    email: u.email,
  }
}

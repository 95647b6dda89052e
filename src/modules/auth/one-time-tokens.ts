import { hashToken, randomToken } from '../../lib/auth/secrets.ts'
import type { Tx } from '../../lib/db/database.ts'
import { badRequest } from '../../lib/errors.ts'

export type TokenPurpose = 'verify_email' | 'secure_auth'

export interface IssueToken {
  purpose: TokenPurpose
  communityId: string
  userId: string
  ttlSeconds: number
  data?: Record<string, unknown>
}

/** Stores a one-time token by its SHA-256 and returns the raw token (for a link; never for a response body). */
export async function issueToken(db: Tx, t: IssueToken): Promise<string> {
  const raw = randomToken(32)
  await db
    .insertInto('auth_tokens')
    .values({
      token_hash: hashToken(raw),
      community_id: t.communityId,
      user_id: t.userId,
      purpose: t.purpose,
      data: JSON.stringify(t.data ?? {}),
      expires_at: new Date(Date.now() + t.ttlSeconds * 1000),
    })
    .execute()
  return raw
}

/**
 * Marks a token used and returns it, in one UPDATE so two concurrent uses cannot both succeed.
 * Unknown or already used → 400 invalid_token; past its expiry → 400 token_expired.
 */
export async function consumeToken(db: Tx, purpose: TokenPurpose, raw: string) {
  const hash = hashToken(raw)
  const now = new Date()
  const used = await db
    .updateTable('auth_tokens')
    .set({ used_at: now })
    .where('token_hash', '=', hash)
    .where('purpose', '=', purpose)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .returning(['community_id', 'user_id', 'data'])
    .executeTakeFirst()
  if (used?.user_id)
    return {
      communityId: used.community_id,
      userId: used.user_id,
      data: used.data as Record<string, unknown>,
    }
  const seen = await db
    .selectFrom('auth_tokens')
    .select(['expires_at', 'used_at'])
    .where('token_hash', '=', hash)
    .where('purpose', '=', purpose)
    .executeTakeFirst()
  if (seen && !seen.used_at)
    throw badRequest('token_expired', 'This token has expired; ask for a new one', 'token')
  throw badRequest('invalid_token', 'This token is invalid or was already used', 'token')
}

/** When the newest token of this purpose was issued to the user (null: never). */
export async function lastIssuedAt(db: Tx, purpose: TokenPurpose, communityId: string, userId: string) {
  const row = await db
    .selectFrom('auth_tokens')
    .select('created_at')
    .where('community_id', '=', communityId)
    .where('purpose', '=', purpose)
    .where('user_id', '=', userId)
    .orderBy('created_at', 'desc')
    .limit(1)
    .executeTakeFirst()
  return row ? new Date(row.created_at) : null
}

/** Retires the user's unused tokens of this purpose (they then answer invalid_token). */
export async function retireTokens(db: Tx, purpose: TokenPurpose, communityId: string, userId: string) {
  await db
    .updateTable('auth_tokens')
    .set({ used_at: new Date() })
    .where('community_id', '=', communityId)
    .where('purpose', '=', purpose)
    .where('user_id', '=', userId)
    .where('used_at', 'is', null)
    .execute()
}

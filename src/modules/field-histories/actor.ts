import type { AuthContext } from '../../lib/http/auth.ts'
import type { HistorySource } from './field-histories.writer.ts'

/** Who acts on user data, as history rows record it. */
export interface Actor {
  source: Extract<HistorySource, 'api' | 'admin'>
  /** The API key id (source api) or the admin's user id (source admin). */
  changedBy: string | null
  /** The acting user, for sessions only (creator of a field). */
  userId: string | null
}

/** A community API key acts as `api`; an owner's or admin's session as `admin`. */
export function actorOf(auth: AuthContext): Actor {
  if (auth.credential === 'session') return { source: 'admin', changedBy: auth.userId, userId: auth.userId }
  return { source: 'api', changedBy: auth.apiKeyId, userId: null }
}

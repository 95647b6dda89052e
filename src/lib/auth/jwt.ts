import { jwtVerify, SignJWT } from 'jose'

export interface SessionClaims {
  /** user id (24 hex) */
  _id: string
  /** numeric legacy user id */
  id: number
  communityId: string
  role: 'member' | 'admin' | 'owner'
}

/** Session tokens: HS256 JWTs whose payload carries `_id` and `id`, as in the public docs' examples. */
export function createJwt(secret: string) {
  const key = new TextEncoder().encode(secret)
  return {
    async sign(claims: SessionClaims, ttlSeconds = 7 * 24 * 3600, extra: Record<string, unknown> = {}) {
      return new SignJWT({ ...claims, ...extra })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setIssuedAt()
        .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
        .sign(key)
    },
    async verify(token: string): Promise<(SessionClaims & Record<string, unknown>) | null> {
      try {
        const { payload } = await jwtVerify(token, key, { algorithms: ['HS256'] })
        if (typeof payload._id !== 'string' || typeof payload.communityId !== 'string') return null
        return payload as unknown as SessionClaims & Record<string, unknown>
      } catch {
        return null
      }
    },
  }
}
export type Jwt = ReturnType<typeof createJwt>

/**
 * Short-lived bearer tokens for interactive sessions: JWTs (HS256) bound to a server-side session row.
 * The signature proves the token was issued here; the session row (checked on every request) makes
 * logout, password change and user disable take effect at once. Verification pins the algorithm,
 * issuer and audience, so `alg: none`, algorithm confusion, foreign audiences, tampered, expired and
 * not-yet-valid tokens are all refused. The HMAC key lives in the data directory with mode 0600.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, jwtVerify } from 'jose';
import { UnauthenticatedError } from '../../api/errors.js';

export const TOKEN_ISSUER = 'rampart';
export const TOKEN_AUDIENCE = 'rampart-api';
const KEY_BYTES = 32;

export interface SessionClaims {
  userId: string;
  sessionId: string;
}

/** Loads the signing key from `<dataDir>/secrets/session-hs256.key`, creating it (0600) on first start. */
export function loadSessionKey(dataDir: string): Uint8Array {
  const dir = join(dataDir, 'secrets');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, 'session-hs256.key');
  if (!existsSync(file)) writeFileSync(file, randomBytes(KEY_BYTES), { mode: 0o600, flag: 'wx' });
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077)
    throw new Error(`${file} must not be readable by group or others (mode ${mode.toString(8)})`);
  const key = readFileSync(file);
  if (key.length !== KEY_BYTES) throw new Error(`${file} must hold exactly ${KEY_BYTES} bytes`);
  return new Uint8Array(key);
}

/** Tokens whose signature was verified, with their expiry (a verified token is not re-verified). */
const VERIFIED_CACHE_SIZE = 10_000;

export class SessionTokenSigner {
  private readonly verified = new Map<
    string,
    { claims: SessionClaims; expiresAtMs: number; notBeforeMs: number }
  >();

  constructor(private readonly key: Uint8Array) {}

  async issue(
    claims: SessionClaims,
    ttlSeconds: number,
    now = Date.now(),
  ): Promise<{ token: string; expiresAt: Date }> {
    const issuedAt = Math.floor(now / 1000);
    const expiresAt = new Date((issuedAt + ttlSeconds) * 1000);
    const token = await new SignJWT({ sid: claims.sessionId })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(TOKEN_ISSUER)
      .setAudience(TOKEN_AUDIENCE)
      .setSubject(claims.userId)
      .setIssuedAt(issuedAt)
      .setNotBefore(issuedAt)
      .setExpirationTime(issuedAt + ttlSeconds)
      .sign(this.key);
    return { token, expiresAt };
  }

  /** The claims of a valid token; UnauthenticatedError (one message for every reason) otherwise. */
  async verify(token: string): Promise<SessionClaims> {
    // The same bytes verify the same way: only the time checks are repeated for a cached token.
    const cached = this.verified.get(token);
    if (cached) {
      const now = Date.now();
      if (now < cached.expiresAtMs && now >= cached.notBeforeMs) return cached.claims;
      this.verified.delete(token);
      throw new UnauthenticatedError('invalid or expired token');
    }
    try {
      const { payload } = await jwtVerify(token, this.key, {
        algorithms: ['HS256'],
        issuer: TOKEN_ISSUER,
        audience: TOKEN_AUDIENCE,
        requiredClaims: ['sub', 'sid', 'exp', 'nbf', 'iat'],
      });
      if (typeof payload.sid !== 'string' || typeof payload.sub !== 'string') throw new Error('claims');
      const claims = { userId: payload.sub, sessionId: payload.sid };
      if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(token, {
        claims,
        expiresAtMs: (payload.exp ?? 0) * 1000,
        notBeforeMs: (payload.nbf ?? 0) * 1000,
      });
      return claims;
    } catch {
      throw new UnauthenticatedError('invalid or expired token');
    }
  }
}

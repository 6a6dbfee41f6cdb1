/**
 * TOTP second factor (RFC 6238) with the parameters every authenticator app supports: HMAC-SHA1,
 * 6 digits, 30-second steps, a 160-bit secret (RFC 4226's recommendation) shown as base32.
 *
 * A code is accepted for the current step and one step either side (clock skew, slow typing). Each
 * code works once: the caller stores the step that was accepted and passes it back as `lastUsedStep`,
 * and any step at or before it is rejected as a replay, so a code seen over a shoulder or in a proxy
 * log cannot be reused, not even within its own 90-second window.
 *
 * Secrets and codes never appear in errors.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { HOTP, Secret, TOTP } from 'otpauth';

export const TOTP_ISSUER = 'Rampart';
const ALGORITHM = 'SHA1';
const DIGITS = 6;
const PERIOD_SECONDS = 30;
const SECRET_BYTES = 20;
/** Steps accepted either side of the current one. */
const WINDOW = 1;
const CODE_PATTERN = /^[0-9]{6}$/;

export type TotpVerification = { ok: true; step: number } | { ok: false; reason: 'invalid' | 'replayed' };

export function newTotpSecret(): string {
  // Copied into an ArrayBuffer of its own: a Buffer may be a view into a larger shared pool.
  return new Secret({ buffer: new Uint8Array(randomBytes(SECRET_BYTES)).buffer }).base32;
}

function parseSecret(secret: string): Secret {
  try {
    return Secret.fromBase32(secret);
  } catch {
    // otpauth's message quotes the offending character of the secret.
    throw new Error('stored TOTP secret is not valid base32');
  }
}

/** The time step `nowMs` falls in. */
export function totpStep(nowMs: number): number {
  return Math.floor(nowMs / 1000 / PERIOD_SECONDS);
}

function codeAt(secret: Secret, step: number): string {
  return HOTP.generate({ secret, algorithm: ALGORITHM, digits: DIGITS, counter: step });
}

/** The key URI authenticator apps import (usually as a QR code). It contains the secret. */
export function totpUri(secret: string, username: string): string {
  return new TOTP({
    issuer: TOTP_ISSUER,
    label: username,
    secret: parseSecret(secret),
    algorithm: ALGORITHM,
    digits: DIGITS,
    period: PERIOD_SECONDS,
  }).toString();
}

/** The code an authenticator shows at `nowMs` (tests, and clients that compute codes themselves). */
export function currentTotp(secret: string, nowMs: number = Date.now()): string {
  return codeAt(parseSecret(secret), totpStep(nowMs));
}

/**
 * Checks `code` against the steps around `nowMs`. On success the caller must store the returned step
 * as the new `lastUsedStep` (0 when no code was ever used).
 */
export function verifyTotp(
  secret: string,
  code: string,
  lastUsedStep: number,
  nowMs: number = Date.now(),
): TotpVerification {
  const key = parseSecret(secret);
  const token = code.replace(/\s+/g, '');
  if (!CODE_PATTERN.test(token)) return { ok: false, reason: 'invalid' };
  const given = Buffer.from(token);
  const current = totpStep(nowMs);
  let fresh: number | null = null;
  let replayed = false;
  // Every candidate is computed and compared, so timing does not tell which step matched.
  for (let step = current - WINDOW; step <= current + WINDOW; step++) {
    if (!timingSafeEqual(given, Buffer.from(codeAt(key, step)))) continue;
    if (step <= lastUsedStep) replayed = true;
    else fresh ??= step; // the earliest fresh step: leaves the later ones usable
  }
  if (fresh !== null) return { ok: true, step: fresh };
  return { ok: false, reason: replayed ? 'replayed' : 'invalid' };
}

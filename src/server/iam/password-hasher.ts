/**
 * Password hashing: argon2id with the OWASP minimum parameters (19 MiB, 2 passes, 1 lane), a fresh
 * 16-byte salt per hash, stored as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) so the
 * parameters travel with each hash and can be raised later (`passwordNeedsRehash`).
 *
 * Passwords are NFKC-normalized first (NIST SP 800-63B), so the same password typed on two keyboards
 * that compose accents differently still matches.
 *
 * `burnVerification` exists for the login path: a login for an unknown user must cost the same as
 * one for a known user with a wrong password, or response times tell an attacker which usernames exist.
 * The work runs on the libuv thread pool, not on the event loop.
 */
import { hash, parseOptions, verify, type Algorithm, type Options } from '@node-rs/argon2';

/** `Algorithm` is an ambient const enum (its runtime object is empty): the literal is type-checked. */
const ARGON2ID: Algorithm.Argon2id = 2;

export const PASSWORD_HASH_OPTIONS = {
  algorithm: ARGON2ID,
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
} as const satisfies Options;

/**
 * The hash of a random password nobody knows, with exactly PASSWORD_HASH_OPTIONS (a unit test keeps
 * the two in step). Verifying against it costs what verifying a real hash costs.
 */
export const DUMMY_PASSWORD_HASH =
  '$argon2id$v=19$m=19456,t=2,p=1$ttS+9tVe+8DzrKoQ/zFVeg$eu40QPU4iask9GyWluuqC4Kg7TRyqxoqXCtD1KogOtM';

function normalize(password: string): string {
  return password.normalize('NFKC');
}

export function hashPassword(password: string): Promise<string> {
  return hash(normalize(password), PASSWORD_HASH_OPTIONS);
}

/** True when `password` matches `passwordHash`; false (never an exception) for a malformed hash. */
export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  try {
    return await verify(passwordHash, normalize(password));
  } catch {
    return false;
  }
}

/** Spends the time of one verification and discards the result: for logins of unknown users. */
export async function burnVerification(password: string): Promise<void> {
  await verifyPassword(DUMMY_PASSWORD_HASH, password);
}

/** True when `passwordHash` was made with other parameters than today's (rehash it after a login). */
export function passwordNeedsRehash(passwordHash: string): boolean {
  try {
    const options = parseOptions(passwordHash);
    return (
      options.algorithm !== PASSWORD_HASH_OPTIONS.algorithm ||
      options.memoryCost !== PASSWORD_HASH_OPTIONS.memoryCost ||
      options.timeCost !== PASSWORD_HASH_OPTIONS.timeCost ||
      options.parallelism !== PASSWORD_HASH_OPTIONS.parallelism
    );
  } catch {
    return true;
  }
}

/**
 * Recovery codes: single-use second factors for a user who lost their authenticator. Each is 12
 * characters of lowercase base32 (60 random bits) shown as `xxxx-xxxx-xxxx`.
 *
 * Only a SHA-256 of the normalized code is stored. A fast hash is enough here, unlike for passwords:
 * the codes are machine-generated with 60 bits of entropy, so there is no dictionary to try, and a
 * hash lookup lets the login path find the matching row without a per-row argon2 run.
 */
import { createHash, randomInt } from 'node:crypto';

/** RFC 4648 base32, lowercased: no 0/1/8/9, so no o/0 or l/1 confusion. */
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const GROUPS = 3;
const GROUP_LENGTH = 4;
const CODE_LENGTH = GROUPS * GROUP_LENGTH;
export const RECOVERY_CODE_COUNT = 10;

function format(chars: string): string {
  const groups: string[] = [];
  for (let i = 0; i < CODE_LENGTH; i += GROUP_LENGTH) groups.push(chars.slice(i, i + GROUP_LENGTH));
  return groups.join('-');
}

/** `n` fresh, distinct codes formatted `xxxx-xxxx-xxxx`. */
export function generateRecoveryCodes(n: number = RECOVERY_CODE_COUNT): string[] {
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new RangeError('recovery code count must be 1..100');
  const codes = new Set<string>();
  while (codes.size < n) {
    let chars = '';
    for (let i = 0; i < CODE_LENGTH; i++) chars += ALPHABET[randomInt(ALPHABET.length)];
    codes.add(format(chars));
  }
  return [...codes];
}

/**
 * The canonical form of a typed code: whitespace removed, lowercased, and the dashes put back when
 * the user typed the 12 characters without them.
 */
export function normalizeRecoveryCode(code: string): string {
  const compact = code.replace(/\s+/g, '').toLowerCase();
  if (compact.length === CODE_LENGTH && /^[a-z2-7]+$/.test(compact)) return format(compact);
  return compact;
}

/** SHA-256 (hex) of the normalized code: what is stored and looked up. */
export function hashRecoveryCode(code: string): string {
  return createHash('sha256').update(normalizeRecoveryCode(code), 'utf8').digest('hex');
}

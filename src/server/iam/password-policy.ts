/**
 * The password policy, after NIST SP 800-63B: length is what makes a password strong, so the only
 * composition rules are "long enough", "not absurdly long" and "not a password everybody tries first"
 * (the ~49k most common passwords, a name-derived password, one key held down). No character-class
 * rules: they push people towards `Password1!`, which the common-password list already catches.
 *
 * Passwords are compared after NFKC normalization (as the hasher does), so "12 characters" means
 * 12 Unicode code points however the client composed them. Errors name the rule that failed and never
 * echo the password.
 */
import { randomInt } from 'node:crypto';
import { createRequire } from 'node:module';
import { InvalidInputError } from '../../api/errors.js';

export const PASSWORD_MIN_LENGTH = 12;
export const PASSWORD_MAX_LENGTH = 256;
/** Usernames shorter than this are too likely to occur by chance to be forbidden inside a password. */
const USERNAME_CHECK_MIN_LENGTH = 3;

export type PasswordRule =
  'min-length' | 'max-length' | 'repeated-character' | 'contains-username' | 'common';

/** No 0/O, 1/l/I: one-time passwords are read off a screen and typed by hand. */
const GENERATED_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
const GENERATED_LENGTH = 24;

let commonPasswords: ReadonlySet<string> | null = null;

/** The common-password list, loaded on first use (it is ~400 kB of JavaScript) and kept. */
function common(): ReadonlySet<string> {
  if (commonPasswords === null) {
    const require = createRequire(import.meta.url);
    const { dictionary } =
      require('@zxcvbn-ts/language-common') as typeof import('@zxcvbn-ts/language-common');
    commonPasswords = new Set(dictionary['passwords-common'].map((p) => p.toLowerCase()));
  }
  return commonPasswords;
}

function reject(rule: PasswordRule, message: string): never {
  throw new InvalidInputError(message, { rule });
}

/** Throws InvalidInputError (details.rule names the rule) unless `password` is acceptable for `username`. */
export function checkPasswordPolicy(password: string, username: string): void {
  const normalized = password.normalize('NFKC');
  const codePoints = [...normalized];
  if (codePoints.length < PASSWORD_MIN_LENGTH)
    reject('min-length', `password must be at least ${PASSWORD_MIN_LENGTH} characters long`);
  if (codePoints.length > PASSWORD_MAX_LENGTH)
    reject('max-length', `password must be at most ${PASSWORD_MAX_LENGTH} characters long`);
  if (codePoints.every((c) => c === codePoints[0]))
    reject('repeated-character', 'password must not be a single repeated character');
  const lower = normalized.toLowerCase();
  const user = username.normalize('NFKC').toLowerCase();
  if ([...user].length >= USERNAME_CHECK_MIN_LENGTH && lower.includes(user))
    reject('contains-username', 'password must not contain the username');
  if (common().has(lower))
    reject('common', 'password is too common: it appears in lists of leaked passwords');
}

/**
 * A random one-time password (24 characters from a 56-letter unambiguous alphabet, ~139 bits) that
 * passes the policy, for `username` too when given.
 */
export function generatePassword(username = ''): string {
  for (;;) {
    let password = '';
    for (let i = 0; i < GENERATED_LENGTH; i++)
      password += GENERATED_ALPHABET[randomInt(GENERATED_ALPHABET.length)];
    try {
      checkPasswordPolicy(password, username);
      return password;
    } catch (error) {
      if (!(error instanceof InvalidInputError)) throw error;
      // Astronomically rare (e.g. the username occurs by chance): draw again.
    }
  }
}

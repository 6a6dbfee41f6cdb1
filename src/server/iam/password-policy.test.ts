/**
 * The password policy: each rule rejects with InvalidInputError naming the rule (and never echoing the
 * password), lengths count code points, and generated one-time passwords pass the policy.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidInputError } from '../../api/errors.js';
import { checkPasswordPolicy, generatePassword, type PasswordRule } from './password-policy.js';

function rejectedBy(password: string, username: string, rule: PasswordRule): void {
  assert.throws(
    () => checkPasswordPolicy(password, username),
    (error: unknown) => {
      assert.ok(error instanceof InvalidInputError);
      assert.equal(error.code, 'RAMPART_INVALID_INPUT');
      assert.deepEqual(error.details, { rule });
      assert.ok(!error.message.includes(password), 'the message must not echo the password');
      return true;
    },
  );
}

describe('checkPasswordPolicy', () => {
  test('accepts a long, uncommon password', () => {
    checkPasswordPolicy('correct horse battery staple', 'alice');
    checkPasswordPolicy('xk2-Pq9z-Lm4w', 'bob');
  });

  test('length: at least 12 and at most 256 code points', () => {
    rejectedBy('Xk2pQ9zLm4w', 'alice', 'min-length');
    checkPasswordPolicy('Xk2pQ9zLm4wR', 'alice');
    checkPasswordPolicy(`a${'Xk2pQ9zLm4wR'.repeat(21)}abc`, 'alice'); // 256
    rejectedBy(`a${'Xk2pQ9zLm4wR'.repeat(21)}abcd`, 'alice', 'max-length'); // 257
    assert.throws(() => checkPasswordPolicy('', 'alice'), /at least 12 characters/);
    assert.throws(() => checkPasswordPolicy('x'.repeat(300), 'alice'), /at most 256 characters/);
  });

  test('length counts code points, not UTF-16 units', () => {
    // 6 emoji are 12 UTF-16 units but only 6 characters.
    rejectedBy('🔐🗝️🔑🛡️🚪🧱'.replace(/\uFE0F/g, ''), 'alice', 'min-length');
    checkPasswordPolicy('🔐🔑🛡🚪🧱🗝🔐🔑🛡🚪🧱🗝', 'alice');
    // 256 astral characters are 512 UTF-16 units and still allowed.
    checkPasswordPolicy('🔐🔑🛡🚪'.repeat(64), 'alice');
  });

  test('a single repeated character is rejected', () => {
    rejectedBy('aaaaaaaaaaaaaaaa', 'alice', 'repeated-character');
    rejectedBy('🔑'.repeat(20), 'alice', 'repeated-character');
    checkPasswordPolicy('aaaaaaaaaaaaaaab', 'alice');
  });

  test('must not contain the username, case-insensitively', () => {
    rejectedBy('my-AliceWonder-2024', 'alice', 'contains-username');
    rejectedBy('xyzzy-bob-plugh-42', 'BOB', 'contains-username');
    checkPasswordPolicy('my-AliceWonder-2024', 'carol');
    // Usernames shorter than 3 characters are not checked (they occur by chance).
    checkPasswordPolicy('hello-ab-world-9', 'ab');
  });

  test('common passwords are rejected, case-insensitively', () => {
    for (const common of ['qwerty123456', '1qaz2wsx3edc', 'LeaveMeAlone', 'ADMINISTRATOR']) {
      // Only common passwords long enough to reach this rule.
      rejectedBy(common, 'alice', 'common');
    }
    assert.throws(() => checkPasswordPolicy('unbelievable', 'alice'), /too common/);
  });

  test('the list is loaded once and stays fast', () => {
    checkPasswordPolicy('warm-up-the-list', 'alice');
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) checkPasswordPolicy(`unlikely-password-${i}`, 'alice');
    assert.ok(performance.now() - t0 < 500);
  });
});

describe('generatePassword', () => {
  test('24 characters of the unambiguous alphabet, passing the policy, all distinct', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const password = generatePassword();
      assert.match(password, /^[A-HJ-NP-Za-km-z2-9]{24}$/);
      checkPasswordPolicy(password, 'alice');
      seen.add(password);
    }
    assert.equal(seen.size, 200);
  });

  test('passes the policy for the given username', () => {
    const password = generatePassword('abc');
    checkPasswordPolicy(password, 'abc');
  });
});

/**
 * Recovery codes: format, randomness, normalization of what users type, and the stored hash.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { generateRecoveryCodes, hashRecoveryCode, normalizeRecoveryCode } from './recovery-codes.js';

describe('recovery codes', () => {
  test('ten distinct codes formatted xxxx-xxxx-xxxx by default', () => {
    const codes = generateRecoveryCodes();
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10);
    for (const code of codes) assert.match(code, /^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/);
    // Inside the API's RecoveryCode schema.
    for (const code of codes) assert.match(code, /^[a-z0-9-]{8,32}$/);
  });

  test('honours the count and rejects absurd ones', () => {
    assert.equal(generateRecoveryCodes(3).length, 3);
    assert.throws(() => generateRecoveryCodes(0), RangeError);
    assert.throws(() => generateRecoveryCodes(1.5), RangeError);
    assert.throws(() => generateRecoveryCodes(1000), RangeError);
  });

  test('uses the whole alphabet (crypto random, not a fixed pattern)', () => {
    const chars = new Set(generateRecoveryCodes(100).join('').replace(/-/g, ''));
    assert.equal(chars.size, 32);
  });

  test('normalization: case, whitespace and missing dashes', () => {
    assert.equal(normalizeRecoveryCode('abcd-efgh-2345'), 'abcd-efgh-2345');
    assert.equal(normalizeRecoveryCode(' ABCD-efgh-2345\n'), 'abcd-efgh-2345');
    assert.equal(normalizeRecoveryCode('abcd efgh 2345'), 'abcd-efgh-2345');
    assert.equal(normalizeRecoveryCode('ABCDEFGH2345'), 'abcd-efgh-2345');
    assert.equal(normalizeRecoveryCode('abcd - efgh - 2345'), 'abcd-efgh-2345');
    // Not a code shape: only lowercased and compacted, so it will simply not match.
    assert.equal(normalizeRecoveryCode('Hello World'), 'helloworld');
  });

  test('the hash is sha256 hex of the normalized code', () => {
    const expected = createHash('sha256').update('abcd-efgh-2345').digest('hex');
    assert.equal(hashRecoveryCode('abcd-efgh-2345'), expected);
    assert.equal(hashRecoveryCode('ABCD EFGH 2345'), expected);
    assert.equal(hashRecoveryCode('abcdefgh2345'), expected);
    assert.notEqual(hashRecoveryCode('abcd-efgh-2346'), expected);
    assert.match(expected, /^[0-9a-f]{64}$/);
  });
});

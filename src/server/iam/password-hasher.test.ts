/**
 * argon2id hashing on this Node version: the PHC string carries the OWASP parameters, verification
 * accepts the right password only and never throws, the dummy hash used for unknown users matches
 * today's parameters (so it costs the same), and NFKC normalization makes composed and decomposed
 * input equal.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';
import { parseOptions } from '@node-rs/argon2';
import {
  burnVerification,
  DUMMY_PASSWORD_HASH,
  hashPassword,
  PASSWORD_HASH_OPTIONS,
  passwordNeedsRehash,
  verifyPassword,
} from './password-hasher.js';

describe('password hasher', () => {
  test('hashes with argon2id and the OWASP parameters, salted', async () => {
    const a = await hashPassword('correct horse battery staple');
    const b = await hashPassword('correct horse battery staple');
    assert.match(a, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    assert.notEqual(a, b, 'every hash has its own salt');
    assert.ok(!a.includes('correct'));
  });

  test('verifies the right password only', async () => {
    const stored = await hashPassword('correct horse battery staple');
    assert.equal(await verifyPassword(stored, 'correct horse battery staple'), true);
    assert.equal(await verifyPassword(stored, 'correct horse battery stapl'), false);
    assert.equal(await verifyPassword(stored, 'Correct horse battery staple'), false);
    assert.equal(await verifyPassword(stored, ''), false);
  });

  test('a malformed hash is a mismatch, not an exception', async () => {
    for (const bad of [
      '',
      'garbage',
      '$argon2id$v=19$m=19456,t=2,p=1$AAAA$BBBB',
      '$2b$10$abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ01234',
    ]) {
      assert.equal(await verifyPassword(bad, 'whatever-password'), false, bad);
    }
  });

  test('composed and decomposed accents are the same password (NFKC)', async () => {
    const composed = 'caf\u00e9-au-lait-chaud';
    const decomposed = 'cafe\u0301-au-lait-chaud';
    assert.notEqual(composed, decomposed);
    assert.equal(await verifyPassword(await hashPassword(composed), decomposed), true);
  });

  test('the dummy hash has exactly the current parameters', () => {
    const options = parseOptions(DUMMY_PASSWORD_HASH);
    assert.equal(options.algorithm, PASSWORD_HASH_OPTIONS.algorithm);
    assert.equal(options.memoryCost, PASSWORD_HASH_OPTIONS.memoryCost);
    assert.equal(options.timeCost, PASSWORD_HASH_OPTIONS.timeCost);
    assert.equal(options.parallelism, PASSWORD_HASH_OPTIONS.parallelism);
    assert.equal(passwordNeedsRehash(DUMMY_PASSWORD_HASH), false);
  });

  test('burnVerification costs about what a real verification costs', async () => {
    const stored = await hashPassword('correct horse battery staple');
    const time = async (fn: () => Promise<unknown>): Promise<number> => {
      const samples: number[] = [];
      for (let i = 0; i < 7; i++) {
        const t0 = performance.now();
        await fn();
        samples.push(performance.now() - t0);
      }
      return samples.sort((x, y) => x - y)[3]!;
    };
    await burnVerification('warm-up');
    const real = await time(() => verifyPassword(stored, 'wrong password here'));
    const burned = await time(() => burnVerification('wrong password here'));
    assert.ok(burned > real * 0.25 && burned < real * 4, `real ${real} ms, burned ${burned} ms`);
  });

  test('passwordNeedsRehash flags other parameters and garbage', () => {
    assert.equal(
      passwordNeedsRehash(
        '$argon2id$v=19$m=4096,t=3,p=1$ttS+9tVe+8DzrKoQ/zFVeg$eu40QPU4iask9GyWluuqC4Kg7TRyqxoqXCtD1KogOtM',
      ),
      true,
    );
    assert.equal(passwordNeedsRehash('garbage'), true);
  });
});

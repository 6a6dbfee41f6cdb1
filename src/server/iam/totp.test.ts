/**
 * TOTP: RFC 6238 test vector (SHA1), secret format, the key URI, the ±1 step window, and replay
 * rejection through the caller-stored last step.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { currentTotp, newTotpSecret, totpStep, totpUri, verifyTotp } from './totp.js';

/** RFC 6238 appendix B: the SHA1 seed "12345678901234567890" in base32. */
const RFC_SECRET = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
const T = 1_111_111_109_000; // RFC vector: 07081804 (8 digits), so 081804 with 6 digits

describe('totp', () => {
  test('matches the RFC 6238 SHA1 test vectors (6 digits)', () => {
    assert.equal(currentTotp(RFC_SECRET, 59_000), '287082');
    assert.equal(currentTotp(RFC_SECRET, T), '081804');
    assert.equal(currentTotp(RFC_SECRET, 1_234_567_890_000), '005924');
    assert.equal(currentTotp(RFC_SECRET, 20_000_000_000_000), '353130');
  });

  test('new secrets are 160-bit base32 and distinct', () => {
    const a = newTotpSecret();
    assert.match(a, /^[A-Z2-7]{32}$/);
    assert.notEqual(a, newTotpSecret());
  });

  test('the key URI names issuer, account and parameters', () => {
    const uri = new URL(totpUri(RFC_SECRET, 'alice@example.com'));
    assert.equal(uri.protocol, 'otpauth:');
    assert.equal(uri.host, 'totp');
    assert.equal(decodeURIComponent(uri.pathname), '/Rampart:alice@example.com');
    assert.equal(uri.searchParams.get('issuer'), 'Rampart');
    assert.equal(uri.searchParams.get('secret'), RFC_SECRET);
    assert.equal(uri.searchParams.get('algorithm'), 'SHA1');
    assert.equal(uri.searchParams.get('digits'), '6');
    assert.equal(uri.searchParams.get('period'), '30');
  });

  test('accepts the current step and one either side, returning the matched step', () => {
    const now = T;
    const step = totpStep(now);
    assert.deepEqual(verifyTotp(RFC_SECRET, currentTotp(RFC_SECRET, now), 0, now), { ok: true, step });
    assert.deepEqual(verifyTotp(RFC_SECRET, currentTotp(RFC_SECRET, now - 30_000), 0, now), {
      ok: true,
      step: step - 1,
    });
    assert.deepEqual(verifyTotp(RFC_SECRET, currentTotp(RFC_SECRET, now + 30_000), 0, now), {
      ok: true,
      step: step + 1,
    });
    for (const offset of [-60_000, 60_000, -3_600_000]) {
      assert.deepEqual(verifyTotp(RFC_SECRET, currentTotp(RFC_SECRET, now + offset), 0, now), {
        ok: false,
        reason: 'invalid',
      });
    }
  });

  test('rejects malformed and wrong codes as invalid', () => {
    const code = currentTotp(RFC_SECRET, T);
    const wrong = String((Number(code) + 1) % 1_000_000).padStart(6, '0');
    for (const bad of [wrong, '', '12345', '1234567', 'abcdef', `${code}0`, '08180４']) {
      assert.deepEqual(verifyTotp(RFC_SECRET, bad, 0, T), { ok: false, reason: 'invalid' }, bad);
    }
    // Spaces some apps show in the middle are tolerated.
    assert.equal(verifyTotp(RFC_SECRET, '081 804', 0, T).ok, true);
  });

  test('a code is accepted once: its step and earlier ones are replays', () => {
    const code = currentTotp(RFC_SECRET, T);
    const first = verifyTotp(RFC_SECRET, code, 0, T);
    assert.equal(first.ok, true);
    const lastUsed = first.ok ? first.step : 0;
    assert.deepEqual(verifyTotp(RFC_SECRET, code, lastUsed, T), { ok: false, reason: 'replayed' });
    assert.deepEqual(verifyTotp(RFC_SECRET, code, lastUsed, T + 20_000), { ok: false, reason: 'replayed' });
    // The previous step's code, still inside the window, is a replay too once a later step was used.
    assert.deepEqual(verifyTotp(RFC_SECRET, currentTotp(RFC_SECRET, T - 30_000), lastUsed, T), {
      ok: false,
      reason: 'replayed',
    });
    // The next step's code is fresh.
    const next = verifyTotp(RFC_SECRET, currentTotp(RFC_SECRET, T + 30_000), lastUsed, T + 30_000);
    assert.deepEqual(next, { ok: true, step: lastUsed + 1 });
  });

  test('works with a freshly generated secret and the real clock', () => {
    const secret = newTotpSecret();
    const result = verifyTotp(secret, currentTotp(secret), 0);
    assert.equal(result.ok, true);
  });

  test('a corrupt stored secret fails without quoting it', () => {
    assert.throws(
      () => verifyTotp('NOT*BASE32!', '123456', 0, T),
      (error: Error) =>
        !error.message.includes('*') && !error.message.includes('!') && /base32/.test(error.message),
    );
  });
});

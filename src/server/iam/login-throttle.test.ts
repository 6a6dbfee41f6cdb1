/**
 * Login throttling with an injected clock: thresholds, bounded exponential back-off, forgetting,
 * resets on success, the known-source exemption from the account lock, case-insensitive accounts,
 * and the memory bound; logins through another replica applied from its security events.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SecurityEvent } from '../../api/security.js';
import { applyLoginEvent, LoginThrottle, type LoginThrottleOptions } from './login-throttle.js';

function setup(options: LoginThrottleOptions = {}) {
  const clock = { now: 1_000_000 };
  const throttle = new LoginThrottle({ now: () => clock.now, ...options });
  const fail = (account: string, source: string, times = 1): void => {
    for (let i = 0; i < times; i++) throttle.recordFailure(account, source);
  };
  return { clock, throttle, fail };
}

describe('LoginThrottle', () => {
  test('allows until the account threshold, then blocks for the base delay', () => {
    const { clock, throttle, fail } = setup();
    fail('alice', '10.0.0.1', 4);
    assert.deepEqual(throttle.check('alice', '10.0.0.1'), { allowed: true });
    fail('alice', '10.0.0.1');
    assert.deepEqual(throttle.check('alice', '10.0.0.1'), {
      allowed: false,
      retryAfterMs: 1000,
      scope: 'account',
    });
    // Another source is blocked for this account too: it has never logged in.
    assert.equal(throttle.check('alice', '10.0.0.2').allowed, false);
    // Other accounts are not affected.
    assert.deepEqual(throttle.check('bob', '10.0.0.1'), { allowed: true });
    clock.now += 999;
    assert.deepEqual(throttle.check('alice', '10.0.0.1'), {
      allowed: false,
      retryAfterMs: 1,
      scope: 'account',
    });
    clock.now += 1;
    assert.deepEqual(throttle.check('alice', '10.0.0.1'), { allowed: true });
  });

  test('the delay doubles per further failure, measured from the last failure, capped', () => {
    const { clock, throttle, fail } = setup({ sourceThreshold: 1000 });
    fail('alice', 'a', 5);
    const expected = [1000, 2000, 4000, 8000];
    for (const [i, delay] of expected.entries()) {
      if (i > 0) fail('alice', 'a');
      assert.deepEqual(throttle.check('alice', 'a'), {
        allowed: false,
        retryAfterMs: delay,
        scope: 'account',
      });
    }
    clock.now += 3000;
    assert.deepEqual(throttle.check('alice', 'a'), { allowed: false, retryAfterMs: 5000, scope: 'account' });
    fail('alice', 'a', 30);
    assert.deepEqual(throttle.check('alice', 'a'), {
      allowed: false,
      retryAfterMs: 900_000,
      scope: 'account',
    });
    // Bounded: after the maximum delay the next attempt is allowed, however many failures came before.
    clock.now += 900_000;
    assert.deepEqual(throttle.check('alice', 'a'), { allowed: true });
  });

  test('a huge failure count still yields the maximum delay (no overflow)', () => {
    const { throttle, fail } = setup({ sourceThreshold: 1_000_000 });
    fail('alice', 'a', 5000);
    assert.deepEqual(throttle.check('alice', 'a'), {
      allowed: false,
      retryAfterMs: 900_000,
      scope: 'account',
    });
  });

  test('failures are forgotten forgetAfterMs after the last one', () => {
    const { clock, throttle, fail } = setup();
    fail('alice', 'a', 4);
    clock.now += 3_600_000;
    fail('alice', 'a'); // counts as the first failure again
    assert.deepEqual(throttle.check('alice', 'a'), { allowed: true });
    fail('alice', 'a', 3);
    assert.deepEqual(throttle.check('alice', 'a'), { allowed: true });
    fail('alice', 'a');
    assert.equal(throttle.check('alice', 'a').allowed, false);
    clock.now += 3_600_000;
    assert.deepEqual(throttle.check('alice', 'a'), { allowed: true });
    assert.equal(throttle.trackedKeys, 0, 'forgotten entries are dropped');
  });

  test('per-source limit across many accounts', () => {
    const { clock, throttle } = setup();
    for (let i = 0; i < 19; i++) throttle.recordFailure(`user${i}`, '203.0.113.9');
    assert.deepEqual(throttle.check('user99', '203.0.113.9'), { allowed: true });
    throttle.recordFailure('user19', '203.0.113.9');
    assert.deepEqual(throttle.check('user99', '203.0.113.9'), {
      allowed: false,
      retryAfterMs: 1000,
      scope: 'source',
    });
    // Other sources are fine.
    assert.deepEqual(throttle.check('user99', '203.0.113.10'), { allowed: true });
    clock.now += 1000;
    assert.deepEqual(throttle.check('user99', '203.0.113.9'), { allowed: true });
  });

  test('when both scopes block, the longer wait is reported', () => {
    const { throttle, fail } = setup({ sourceThreshold: 5 });
    fail('alice', 'a', 7); // account and source both at 7 failures: 4000 ms each
    fail('bob', 'a', 1); // source at 8: 8000 ms
    assert.deepEqual(throttle.check('alice', 'a'), { allowed: false, retryAfterMs: 8000, scope: 'source' });
    fail('alice', 'b', 2); // account at 9: 16000 ms
    assert.deepEqual(throttle.check('alice', 'a'), { allowed: false, retryAfterMs: 16000, scope: 'account' });
  });

  test('success resets the account counter and that source counter', () => {
    const { throttle, fail } = setup();
    fail('alice', 'a', 3);
    fail('alice', 'b', 1);
    fail('carol', 'b', 18);
    throttle.recordSuccess('alice', 'b');
    fail('alice', 'c', 4);
    assert.deepEqual(throttle.check('alice', 'c'), { allowed: true }, 'account counter restarted');
    fail('carol', 'b', 19);
    assert.deepEqual(throttle.check('dave', 'b'), { allowed: true }, 'source b counter restarted');
    fail('carol', 'b');
    assert.equal(throttle.check('dave', 'b').allowed, false);
  });

  test('a known source is exempt from the account lock, but not from its own limit', () => {
    const { clock, throttle, fail } = setup();
    throttle.recordSuccess('admin', '192.0.2.1');
    // An attacker elsewhere hammers the admin account.
    fail('admin', '198.51.100.7', 12);
    assert.equal(throttle.check('admin', '198.51.100.7').allowed, false);
    assert.equal(throttle.check('admin', '198.51.100.8').allowed, false, 'unknown sources are locked');
    assert.deepEqual(throttle.check('admin', '192.0.2.1'), { allowed: true }, 'the admin is not locked out');
    // The admin's own typos still count against the admin's source.
    fail('admin', '192.0.2.1', 20);
    assert.deepEqual(throttle.check('admin', '192.0.2.1'), {
      allowed: false,
      retryAfterMs: 1000,
      scope: 'source',
    });
    // The exemption lasts forgetAfterMs * 24 after the last success.
    clock.now += 1000;
    throttle.recordSuccess('admin', '192.0.2.1');
    fail('admin', '198.51.100.7', 5);
    clock.now += 24 * 3_600_000 - 1;
    fail('admin', '198.51.100.7', 5);
    assert.deepEqual(throttle.check('admin', '192.0.2.1'), { allowed: true });
    clock.now += 1;
    assert.equal(throttle.check('admin', '192.0.2.1').allowed, false);
  });

  test('the exemption is per account', () => {
    const { throttle, fail } = setup();
    throttle.recordSuccess('alice', 'a');
    fail('bob', 'x', 5);
    assert.equal(throttle.check('bob', 'a').allowed, false);
    assert.deepEqual(throttle.check('alice', 'a'), { allowed: true });
  });

  test('account names are compared lowercased; sources exactly', () => {
    const { throttle, fail } = setup();
    fail('Alice', 'a', 2);
    fail('ALICE', 'b', 2);
    fail('alice', 'c', 1);
    assert.equal(throttle.check('aLiCe', 'd').allowed, false);
    throttle.recordSuccess('ALICE', 'e');
    fail('alice', 'f', 5);
    assert.deepEqual(throttle.check('Alice', 'e'), { allowed: true });
  });

  test('memory is bounded: the least recently touched entries go first', () => {
    const { throttle, fail } = setup({ maxKeys: 100, sourceThreshold: 1_000_000 });
    fail('victim', 's', 5);
    assert.equal(throttle.check('victim', 's').allowed, false);
    for (let i = 0; i < 150; i++) throttle.recordFailure(`user${i}`, 's');
    assert.ok(throttle.trackedKeys <= 200);
    assert.deepEqual(throttle.check('victim', 's'), { allowed: true }, 'evicted');
    for (let i = 0; i < 500; i++) throttle.recordSuccess(`user${i}`, `src${i}`);
    assert.ok(throttle.trackedKeys <= 300);
  });

  test('rejects nonsense options; reconciles odd but valid ones', () => {
    assert.throws(() => new LoginThrottle({ accountThreshold: 0 }), RangeError);
    assert.throws(() => new LoginThrottle({ baseDelayMs: 1.5 }), RangeError);
    assert.throws(() => new LoginThrottle({ maxKeys: -1 }), RangeError);
    // A base delay above the maximum is capped by the maximum.
    const capped = setup({ baseDelayMs: 60_000, maxDelayMs: 1000 });
    capped.fail('alice', 'a', 5);
    assert.deepEqual(capped.throttle.check('alice', 'a'), {
      allowed: false,
      retryAfterMs: 1000,
      scope: 'account',
    });
    // A maximum delay longer than forgetAfterMs stretches the memory: the block runs its course.
    const long = setup({ maxDelayMs: 86_400_000, baseDelayMs: 86_400_000 });
    long.fail('alice', 'a', 5);
    long.clock.now += 3_600_000;
    assert.deepEqual(long.throttle.check('alice', 'a'), {
      allowed: false,
      retryAfterMs: 82_800_000,
      scope: 'account',
    });
    long.clock.now += 82_800_000;
    assert.deepEqual(long.throttle.check('alice', 'a'), { allowed: true });
  });
});

function loginEvent(kind: string, detail: Record<string, unknown>): SecurityEvent {
  return {
    id: '00000000-0000-4000-8000-000000000000',
    seq: 1,
    occurredAt: new Date().toISOString(),
    kind,
    severity: 'low',
    tenantId: null,
    subjectType: 'user',
    subjectId: null,
    summary: 'a login',
    detail,
  };
}

describe('applyLoginEvent (logins through another replica)', () => {
  test('failed credential checks count, throttled attempts and other events do not; a success resets', () => {
    const { throttle } = setup();
    const failed = (reason: string) =>
      loginEvent('auth.login_failed', { username: 'Alice', sourceIp: '10.0.0.1', reason });
    for (const reason of ['bad-password', 'unknown-user', 'disabled', 'bad-otp'])
      applyLoginEvent(throttle, failed(reason));
    // Neither a throttled attempt, another kind, nor an event without username or source counts.
    applyLoginEvent(throttle, failed('throttled'));
    applyLoginEvent(throttle, loginEvent('api.denied', { username: 'alice', sourceIp: '10.0.0.1' }));
    applyLoginEvent(
      throttle,
      loginEvent('auth.login_failed', { sourceIp: '10.0.0.1', reason: 'bad-password' }),
    );
    assert.deepEqual(throttle.check('alice', '10.0.0.1'), { allowed: true });
    applyLoginEvent(throttle, failed('bad-password'));
    assert.equal(throttle.check('alice', '10.0.0.9').allowed, false, 'the fifth guess locks the account');
    applyLoginEvent(
      throttle,
      loginEvent('auth.login_succeeded', {
        username: 'alice',
        sourceIp: '10.0.0.1',
        userId: 'u',
        mfa: false,
      }),
    );
    assert.deepEqual(throttle.check('alice', '10.0.0.9'), { allowed: true });
  });
});

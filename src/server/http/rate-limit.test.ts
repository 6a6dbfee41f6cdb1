/**
 * Rate limiting with an injected clock: burst then refill, Retry-After from the bucket, refusals that
 * take nothing, independent keys and scopes, disabled limits, the memory bound (least recently used
 * dropped), audit suppression per key and window, source keys (IPv4-mapped, IPv6 /64), and the
 * configuration format (rate strings, trusted proxies) with its errors.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { InvalidInputError } from '../../api/errors.js';
import { loadServerConfig } from '../config.js';
import {
  DEFAULT_RATE_LIMITS,
  NO_LIMIT,
  RateLimiter,
  TokenBuckets,
  parseRateLimit,
  sourceKey,
  type RateLimit,
  type TokenBucketsOptions,
} from './rate-limit.js';
import { parseTrustedProxies, parseTrustedProxiesList } from './trusted-proxies.js';

function setup(limit: RateLimit, options: TokenBucketsOptions = {}) {
  const clock = { now: 5_000_000 };
  const buckets = new TokenBuckets('principal', limit, { now: () => clock.now, ...options });
  const takeAll = (key: string, times: number): number => {
    let allowed = 0;
    for (let i = 0; i < times; i++) if (buckets.take(key).allowed) allowed++;
    return allowed;
  };
  return { clock, buckets, takeAll };
}

void describe('TokenBuckets', () => {
  void test('a full bucket allows the burst, then refuses with the wait for the next token', () => {
    const { clock, buckets, takeAll } = setup({ ratePerSecond: 2, burst: 5 });
    assert.equal(takeAll('alice', 5), 5);
    const refused = buckets.take('alice');
    assert.equal(refused.allowed, false);
    assert.equal(!refused.allowed && refused.retryAfterSeconds, 1, '0.5 s rounds up to 1');
    clock.now += 499;
    assert.equal(buckets.take('alice').allowed, false);
    clock.now += 1;
    assert.equal(buckets.take('alice').allowed, true, 'one token after 1/rate');
    assert.equal(buckets.take('alice').allowed, false);
    // The refill is capped at the burst.
    clock.now += 3_600_000;
    assert.equal(takeAll('alice', 10), 5);
  });

  void test('Retry-After is whole seconds, from the bucket, at least 1', () => {
    const { clock, buckets, takeAll } = setup({ ratePerSecond: 1 / 60, burst: 1 }); // 1/min
    assert.equal(takeAll('k', 1), 1);
    const first = buckets.take('k');
    assert.ok(!first.allowed && first.retryAfterSeconds === 60, JSON.stringify(first));
    clock.now += 30_500;
    const later = buckets.take('k');
    assert.ok(!later.allowed && later.retryAfterSeconds === 30, JSON.stringify(later));
    clock.now += 29_500;
    assert.equal(buckets.take('k').allowed, true);
  });

  void test('a refused request takes nothing: waiting as told always gets through', () => {
    const { clock, buckets, takeAll } = setup({ ratePerSecond: 1, burst: 2 });
    assert.equal(takeAll('k', 2), 2);
    for (let i = 0; i < 100; i++) assert.equal(buckets.take('k').allowed, false);
    clock.now += 1000;
    assert.equal(buckets.take('k').allowed, true);
  });

  void test('keys are independent', () => {
    const { buckets, takeAll } = setup({ ratePerSecond: 1, burst: 3 });
    assert.equal(takeAll('alice', 10), 3);
    assert.equal(takeAll('bob', 10), 3);
    assert.equal(buckets.take('alice').allowed, false);
  });

  void test('a clock stepping backwards neither refills nor drains', () => {
    const { clock, buckets, takeAll } = setup({ ratePerSecond: 1, burst: 2 });
    assert.equal(takeAll('k', 2), 2);
    clock.now -= 60_000;
    assert.equal(buckets.take('k').allowed, false);
    clock.now += 1000;
    assert.equal(buckets.take('k').allowed, true);
  });

  void test('a disabled limit allows everything and keeps nothing', () => {
    const { buckets, takeAll } = setup(NO_LIMIT);
    assert.equal(buckets.enabled, false);
    assert.equal(takeAll('k', 10_000), 10_000);
    assert.equal(buckets.size, 0);
  });

  void test('memory is bounded: the least recently used bucket is dropped (and comes back full)', () => {
    const { buckets, takeAll } = setup({ ratePerSecond: 1, burst: 1 }, { maxKeys: 3 });
    for (const key of ['a', 'b', 'c']) assert.equal(takeAll(key, 1), 1);
    assert.equal(buckets.take('a').allowed, false, 'a is now the most recently used');
    assert.equal(takeAll('d', 1), 1);
    assert.equal(buckets.size, 3);
    assert.equal(buckets.take('a').allowed, false, 'a was kept');
    assert.equal(buckets.take('b').allowed, true, 'b was dropped and starts full');
    for (let i = 0; i < 1000; i++) buckets.take(`k${i}`);
    assert.equal(buckets.size, 3);
  });

  void test('audit: the first refusal of a key is recorded, then one per window with the count', () => {
    const { clock, buckets, takeAll } = setup({ ratePerSecond: 1, burst: 1 }, { auditWindowMs: 60_000 });
    assert.equal(takeAll('alice', 1), 1);
    const details: (string | null)[] = [];
    const refuse = (key = 'alice') => {
      const decision = buckets.take(key);
      assert.equal(decision.allowed, false);
      if (!decision.allowed) details.push(decision.auditDetail);
    };
    refuse();
    assert.deepEqual(details, ['rate limited (principal)']);
    for (let i = 0; i < 134; i++) refuse();
    assert.equal(details.filter((d) => d !== null).length, 1, 'refusals inside the window: no record');
    // Another key has its own window.
    assert.equal(takeAll('bob', 1), 1);
    refuse('bob');
    assert.equal(details.at(-1), 'rate limited (principal)');
    // After the window, the next refusal is recorded and counts those not recorded.
    clock.now += 60_000;
    assert.equal(takeAll('alice', 1), 1, 'refilled');
    details.length = 0;
    refuse();
    refuse();
    assert.deepEqual(details, ['rate limited (principal): 134 more refused since last record', null]);
  });

  void test('audit: a quiet key starts over with a plain record', () => {
    const { clock, buckets, takeAll } = setup({ ratePerSecond: 1, burst: 1 }, { auditWindowMs: 1000 });
    takeAll('k', 1);
    const first = buckets.take('k');
    assert.ok(!first.allowed && first.auditDetail === 'rate limited (principal)');
    clock.now += 5000;
    takeAll('k', 1);
    const again = buckets.take('k');
    assert.ok(!again.allowed && again.auditDetail === 'rate limited (principal)', JSON.stringify(again));
  });

  void test('refuses invalid limits and bounds', () => {
    assert.throws(() => new TokenBuckets('tenant', { ratePerSecond: 1, burst: 0 }), RangeError);
    assert.throws(() => new TokenBuckets('tenant', { ratePerSecond: NaN, burst: 1 }), RangeError);
    assert.throws(
      () => new TokenBuckets('tenant', { ratePerSecond: 1, burst: 1 }, { maxKeys: 0 }),
      RangeError,
    );
  });
});

void describe('RateLimiter', () => {
  void test('principal, tenant and source tables are separate, each with its own limit', () => {
    const clock = { now: 0 };
    const limiter = new RateLimiter(
      {
        principal: { ratePerSecond: 1, burst: 2 },
        tenant: { ratePerSecond: 1, burst: 3 },
        anonymous: NO_LIMIT,
        auditWindowSeconds: 60,
      },
      { now: () => clock.now },
    );
    const allowed = (scope: 'principal' | 'tenant' | 'source', key: string, n: number) =>
      Array.from({ length: n }, () => limiter.take(scope, key).allowed).filter(Boolean).length;
    assert.equal(allowed('principal', 'same-key', 10), 2);
    assert.equal(allowed('tenant', 'same-key', 10), 3);
    assert.equal(allowed('source', '10.0.0.1', 1000), 1000, 'disabled');
    const fresh = new RateLimiter(DEFAULT_RATE_LIMITS, { now: () => clock.now });
    for (let i = 0; i < 300; i++) fresh.take('tenant', 't');
    const refused = fresh.take('tenant', 't');
    assert.ok(!refused.allowed && refused.auditDetail === 'rate limited (tenant)', JSON.stringify(refused));
  });

  void test('the defaults', () => {
    assert.deepEqual(DEFAULT_RATE_LIMITS, {
      principal: { ratePerSecond: 20, burst: 60 },
      tenant: { ratePerSecond: 100, burst: 300 },
      anonymous: { ratePerSecond: 10, burst: 100 },
      auditWindowSeconds: 60,
    });
  });
});

void describe('sourceKey', () => {
  void test('IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 by its /64', () => {
    assert.equal(sourceKey('10.1.2.3'), '10.1.2.3');
    assert.equal(sourceKey('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(sourceKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64');
    assert.equal(sourceKey('2001:0db8:0001:0002::1'), '2001:db8:1:2::/64');
    assert.equal(sourceKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(sourceKey('2001:db8::'), sourceKey('2001:db8:0:0:ffff::1'));
    assert.equal(sourceKey('::1'), '0:0:0:0::/64');
    assert.equal(sourceKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(sourceKey('64:ff9b::192.0.2.1'), '64:ff9b:0:0::/64');
    assert.equal(sourceKey('not-an-address'), 'not-an-address');
  });
});

void describe('parseRateLimit', () => {
  void test('n per second, minute or hour, the burst defaulting to n', () => {
    assert.deepEqual(parseRateLimit('20/s burst 60'), { ratePerSecond: 20, burst: 60 });
    assert.deepEqual(parseRateLimit('20/s'), { ratePerSecond: 20, burst: 20 });
    assert.deepEqual(parseRateLimit(' 600 / min  burst 50 '), { ratePerSecond: 10, burst: 50 });
    assert.deepEqual(parseRateLimit('3600/h'), { ratePerSecond: 1, burst: 3600 });
    assert.deepEqual(parseRateLimit('10/S BURST 30'), { ratePerSecond: 10, burst: 30 });
  });

  void test('0 and off disable the limit', () => {
    assert.deepEqual(parseRateLimit('0'), NO_LIMIT);
    assert.deepEqual(parseRateLimit('off'), NO_LIMIT);
  });

  void test('anything else is refused with the expected format', () => {
    for (const bad of [
      '',
      '20',
      '20/d',
      '0/s',
      '20/s burst 0',
      '-1/s',
      '1.5/s',
      '20/s burst',
      '20/s 60',
      '9999999/s',
    ])
      assert.throws(
        () => parseRateLimit(bad),
        /expected "<n>\/s", "<n>\/min" or "<n>\/h".*e\.g\. "20\/s burst 60"/,
        bad,
      );
  });
});

void describe('parseTrustedProxies', () => {
  void test('IP addresses and CIDR blocks', () => {
    assert.deepEqual(parseTrustedProxies(['10.0.0.1', '10.1.0.0/16', 'fd00::/8', '::1']), [
      '10.0.0.1',
      '10.1.0.0/16',
      'fd00::/8',
      '::1',
    ]);
    assert.deepEqual(parseTrustedProxiesList(' 10.0.0.1 , 10.1.0.0/16,'), ['10.0.0.1', '10.1.0.0/16']);
    assert.deepEqual(parseTrustedProxiesList(''), []);
  });

  void test('refuses names, bad prefixes and trusting everyone', () => {
    for (const bad of [
      'proxy.example',
      'loopback',
      '10.0.0.1/33',
      '10.0.0.1/x',
      '::1/129',
      '1.2.3.4/8/8',
      '10.0.0.256',
    ])
      assert.throws(() => parseTrustedProxies([bad]), /is not an IP address or CIDR block/, bad);
    for (const everyone of ['0.0.0.0/0', '::/0'])
      assert.throws(() => parseTrustedProxies([everyone]), /would trust every address/);
  });
});

void describe('configuration', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-rate-limit-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (text: string) => {
    const path = join(dir, `${Math.random().toString(36).slice(2)}.toml`);
    writeFileSync(path, text);
    return path;
  };

  void test('defaults: the built-in limits and no trusted proxy', () => {
    const config = loadServerConfig({}, {});
    assert.deepEqual(config.rateLimit, DEFAULT_RATE_LIMITS);
    assert.deepEqual(config.trustedProxies, []);
  });

  void test('the TOML file, overridden by the environment', () => {
    const path = file(
      'trusted_proxies = ["10.0.0.1", "10.1.0.0/16"]\n[rate_limit]\nprincipal = "5/s burst 10"\ntenant = 0\nanonymous = "off"\naudit_window_seconds = 5\n',
    );
    const fromFile = loadServerConfig({ config: path }, {});
    assert.deepEqual(fromFile.rateLimit, {
      principal: { ratePerSecond: 5, burst: 10 },
      tenant: NO_LIMIT,
      anonymous: NO_LIMIT,
      auditWindowSeconds: 5,
    });
    assert.deepEqual(fromFile.trustedProxies, ['10.0.0.1', '10.1.0.0/16']);
    const fromEnv = loadServerConfig(
      { config: path },
      {
        RAMPART_RATE_LIMIT_PRINCIPAL: '1/s',
        RAMPART_RATE_LIMIT_TENANT: '120/min burst 7',
        RAMPART_RATE_LIMIT_AUDIT_SECONDS: '2',
        RAMPART_TRUSTED_PROXIES: '',
      },
    );
    assert.deepEqual(fromEnv.rateLimit.principal, { ratePerSecond: 1, burst: 1 });
    assert.deepEqual(fromEnv.rateLimit.tenant, { ratePerSecond: 2, burst: 7 });
    assert.equal(fromEnv.rateLimit.auditWindowSeconds, 2);
    assert.deepEqual(fromEnv.trustedProxies, []);
  });

  void test('clear errors naming the setting', () => {
    const invalid = (pattern: RegExp) => (error: unknown) =>
      error instanceof InvalidInputError && pattern.test(error.message);
    assert.throws(
      () => loadServerConfig({}, { RAMPART_RATE_LIMIT_TENANT: 'lots' }),
      invalid(/^RAMPART_RATE_LIMIT_TENANT: expected .* got "lots"$/),
    );
    assert.throws(
      () => loadServerConfig({ config: file('[rate_limit]\nprincipal = "fast"\n') }, {}),
      invalid(/^config rate_limit\.principal: expected/),
    );
    assert.throws(
      () => loadServerConfig({ config: file('[rate_limit]\nburst = 3\n') }, {}),
      invalid(/config file .*rate_limit/),
    );
    assert.throws(
      () => loadServerConfig({}, { RAMPART_TRUSTED_PROXIES: '10.0.0.1,proxy.local' }),
      invalid(/^RAMPART_TRUSTED_PROXIES: trusted proxy "proxy\.local" is not an IP address/),
    );
    assert.throws(
      () => loadServerConfig({ config: file('trusted_proxies = ["0.0.0.0/0"]\n') }, {}),
      invalid(/^config trusted_proxies: .*would trust every address/),
    );
    assert.throws(
      () => loadServerConfig({}, { RAMPART_RATE_LIMIT_AUDIT_SECONDS: '0' }),
      invalid(/RAMPART_RATE_LIMIT_AUDIT_SECONDS must be an integer from 1 to 86400/),
    );
  });
});

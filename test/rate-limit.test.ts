/**
 * API rate limits against the real server, with small limits: a principal that hammers gets 429 with
 * Retry-After and gets through again after waiting as told; another principal is not affected; two
 * principals of one tenant share its bucket; requests without a principal are limited per socket peer
 * whatever X-Forwarded-For they forge; a flood of 429s leaves a few audit records that count the
 * others. A second server that trusts 127.0.0.1 as a proxy believes X-Forwarded-For (audit source,
 * anonymous rate-limit key).
 *
 * Each test makes its own tenants and users, so it starts with full buckets; the admin's own requests
 * (setup, audit queries) are limited too and go through `admin()`, which waits as told on 429.
 * Assertions are about behaviour (who is refused, what is recorded), not about timings.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RampartHarness, type ApiResponse } from './helpers/rampart-harness.js';

const PASSWORD = 'Rate-limit-Passw0rd-tests';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ErrorBody {
  error: { code: string; message: string };
}

interface AuditRecord {
  actor: string;
  status: number;
  source: string;
  requestId: string;
  detail: string | null;
}

/** A request as the harness admin that waits as told while the admin itself is rate limited. */
async function admin<T = unknown>(
  harness: RampartHarness,
  method: string,
  path: string,
  body?: unknown,
): Promise<ApiResponse<T>> {
  for (let attempt = 0; ; attempt++) {
    const response = await harness.api<T>(method, path, body);
    if (response.status !== 429 || attempt >= 60) return response;
    await sleep(Number(response.headers.get('retry-after') ?? '1') * 1000);
  }
}

function retryAfter(response: ApiResponse): number {
  const value = Number(response.headers.get('retry-after'));
  assert.ok(Number.isInteger(value) && value >= 1, `Retry-After ${response.headers.get('retry-after')}`);
  return value;
}

function isRateLimited(response: ApiResponse, scope: string): boolean {
  if (response.status !== 429) return false;
  const error = (response.body as ErrorBody).error;
  assert.equal(error.code, 'RAMPART_RATE_LIMITED');
  assert.match(error.message, new RegExp(`\\(${scope} rate limit\\)`));
  retryAfter(response);
  return true;
}

void describe('rate limits (no trusted proxy)', () => {
  let harness: RampartHarness;
  let counter = 0;

  before(async () => {
    harness = await RampartHarness.start({
      env: {
        RAMPART_RATE_LIMIT_PRINCIPAL: '3/s burst 10',
        // Refills so slowly that a test's counts are exact.
        RAMPART_RATE_LIMIT_TENANT: '1/min burst 15',
        RAMPART_RATE_LIMIT_ANONYMOUS: '1/s burst 20',
        RAMPART_RATE_LIMIT_AUDIT_SECONDS: '2',
      },
    });
  });

  after(async () => {
    await harness?.cleanup();
  });

  async function tenant(): Promise<string> {
    const name = `rl-tenant-${++counter}`;
    const created = await admin(harness, 'POST', '/v1/tenants', { name });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return name;
  }

  /** A new member of `tenantName`, logged in: a principal with a full bucket. */
  async function user(tenantName: string): Promise<{ name: string; token: string }> {
    const name = `rl-user-${++counter}`;
    const created = await admin(harness, 'POST', '/v1/users', {
      username: name,
      password: PASSWORD,
      mustChangePassword: false,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const bound = await admin(harness, 'POST', `/v1/tenants/${tenantName}/members`, {
      user: name,
      role: 'member',
    });
    assert.equal(bound.status, 201, JSON.stringify(bound.body));
    return { name, token: await harness.login(name, PASSWORD) };
  }

  const as = (token: string, method: string, path: string, headers: Record<string, string> = {}) =>
    harness.api(method, path, undefined, { authorization: `Bearer ${token}`, ...headers });

  async function auditRecords(query: string): Promise<AuditRecord[]> {
    const response = await admin<{ items: AuditRecord[] }>(
      harness,
      'GET',
      `/v1/platform/audit?${query}&limit=1000`,
    );
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body.items;
  }

  void test('a principal that hammers gets 429 with Retry-After, then gets through after waiting', async () => {
    const a = await user(await tenant());
    let refused: ApiResponse | null = null;
    let allowed = 0;
    for (let i = 0; i < 40 && !refused; i++) {
      const response = await as(a.token, 'GET', '/v1/auth/whoami');
      if (isRateLimited(response, 'principal')) refused = response;
      else {
        assert.equal(response.status, 200);
        allowed++;
      }
    }
    assert.ok(refused, 'refused within 40 requests');
    assert.ok(allowed >= 10, `the burst of 10 was allowed (${allowed})`);
    await sleep(retryAfter(refused) * 1000 + 100);
    assert.equal((await as(a.token, 'GET', '/v1/auth/whoami')).status, 200, 'through again after waiting');
  });

  void test("another principal in another tenant is not affected by one principal's bucket", async () => {
    const a = await user(await tenant());
    const otherTenant = await tenant();
    const c = await user(otherTenant);
    let refused = false;
    for (let i = 0; i < 40 && !refused; i++)
      refused = isRateLimited(await as(a.token, 'GET', '/v1/auth/whoami'), 'principal');
    assert.ok(refused);
    for (let i = 0; i < 5; i++)
      assert.equal((await as(c.token, 'GET', `/v1/vms?tenant=${otherTenant}`)).status, 200);
  });

  void test('two principals of one tenant share the tenant bucket', async () => {
    // 15 tokens; binding the two members took 2 (the admin acted in the tenant), 13 are left.
    const shared = await tenant();
    const a = await user(shared);
    const b = await user(shared);
    for (let i = 0; i < 8; i++)
      assert.equal((await as(a.token, 'GET', `/v1/vms?tenant=${shared}`)).status, 200, `a #${i}`);
    // b's own bucket holds 10, but only 5 are left in the tenant's.
    let allowed = 0;
    let refused = false;
    for (let i = 0; i < 10 && !refused; i++) {
      const response = await as(b.token, 'GET', `/v1/vms?tenant=${shared}`);
      if (isRateLimited(response, 'tenant')) refused = true;
      else {
        assert.equal(response.status, 200);
        allowed++;
      }
    }
    assert.ok(refused, 'b was refused by the tenant limit');
    assert.equal(allowed, 5);
    assert.ok(isRateLimited(await as(a.token, 'GET', `/v1/vms?tenant=${shared}`), 'tenant'), 'a too');
    // The principal is still free outside the tenant.
    assert.equal((await as(a.token, 'GET', '/v1/auth/whoami')).status, 200);
  });

  void test('a flood of 429s leaves a few audit records that count the others', async () => {
    const s = await user(await tenant());
    let refusals = 0;
    for (let i = 0; i < 80; i++)
      if (isRateLimited(await as(s.token, 'GET', '/v1/auth/whoami'), 'principal')) refusals++;
    assert.ok(refusals >= 40, `flooded (${refusals} refused)`);
    // After the audit window (2 s here) the next refusal is recorded again, with the count.
    await sleep(2_200);
    let last = false;
    for (let i = 0; i < 40 && !last; i++) {
      last = isRateLimited(await as(s.token, 'GET', '/v1/auth/whoami'), 'principal');
      if (last) refusals++;
    }
    assert.ok(last);
    const records = (await auditRecords(`actor=${s.name}&outcome=denied`)).filter((r) => r.status === 429);
    assert.ok(
      records.length >= 2 && records.length <= 6,
      `${records.length} records for ${refusals} refusals`,
    );
    let represented = 0;
    const counted: number[] = [];
    for (const record of records) {
      const match = /^rate limited \(principal\)(?:: (\d+) more refused since last record)?$/.exec(
        record.detail ?? '',
      );
      assert.ok(match, `detail ${record.detail}`);
      if (match[1]) counted.push(Number(match[1]));
      represented += 1 + Number(match[1] ?? 0);
    }
    assert.ok(counted.length >= 1, 'a record carries the suppressed count');
    assert.equal(represented, refusals, 'every refusal is a record or counted in one');
  });

  void test('requests without a principal are limited per socket peer, whatever X-Forwarded-For says', async () => {
    let refused = 0;
    let requestId: string | null = null;
    for (let i = 0; i < 50; i++) {
      // Half without a token, half with a bad one; each claims to come from a new address.
      const headers: Record<string, string> = {
        'x-forwarded-for': `203.0.113.${i}`,
        authorization: i % 2 === 0 ? '' : `Bearer not-a-token-${i}`,
      };
      const response = await harness.api('GET', '/v1/auth/whoami', undefined, headers);
      if (isRateLimited(response, 'source')) refused++;
      else {
        assert.equal(response.status, 401);
        requestId ??= response.headers.get('x-request-id');
      }
    }
    assert.ok(refused >= 20, `${refused} of 50 refused`);
    // The forged header changed nothing: the audit source is the socket peer.
    const records = await auditRecords('actor=anonymous&outcome=denied');
    const record = records.find((r) => r.requestId === requestId);
    assert.ok(record, 'the 401 was audited');
    assert.equal(record.source, '127.0.0.1');
    // Health is never limited, even now.
    for (let i = 0; i < 5; i++)
      assert.equal((await harness.api('GET', '/v1/health', undefined, { authorization: '' })).status, 200);
  });
});

void describe('rate limits behind a trusted proxy (RAMPART_TRUSTED_PROXIES=127.0.0.1)', () => {
  let harness: RampartHarness;

  before(async () => {
    harness = await RampartHarness.start({
      env: { RAMPART_TRUSTED_PROXIES: '127.0.0.1', RAMPART_RATE_LIMIT_ANONYMOUS: '1/min burst 3' },
    });
  });

  after(async () => {
    await harness?.cleanup();
  });

  const anonymous = (forwardedFor: string) =>
    harness.api('GET', '/v1/auth/whoami', undefined, { authorization: '', 'x-forwarded-for': forwardedFor });

  void test('X-Forwarded-For from the trusted proxy is the client address: audit source', async () => {
    const response = await anonymous('198.51.100.23');
    assert.equal(response.status, 401);
    const records = await admin<{ items: AuditRecord[] }>(
      harness,
      'GET',
      '/v1/platform/audit?actor=anonymous&outcome=denied&limit=1000',
    );
    const record = records.body.items.find((r) => r.requestId === response.headers.get('x-request-id'));
    assert.ok(record, 'the 401 was audited');
    assert.equal(record.source, '198.51.100.23');
  });

  void test('... and the anonymous rate-limit key', async () => {
    // Each forwarded address has its own bucket of 3.
    for (let i = 0; i < 10; i++) assert.equal((await anonymous(`192.0.2.${i}`)).status, 401, `#${i}`);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await anonymous('192.0.2.200')).status);
    assert.deepEqual(statuses, [401, 401, 401, 429, 429, 429]);
  });
});

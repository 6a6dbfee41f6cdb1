import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { QUOTA_RESOURCES, type Quota } from '../../api/quota.js';
import { run } from '../program.js';
import { UsageError } from '../errors.js';
import { apiError, startFakeApi, testIo, whoamiFixture, type FakeApi, type Handler } from '../testing.js';
import { parseQuotaAssignments } from './quota.js';

function quotaFixture(overrides: Partial<Quota['resources']> = {}): Quota {
  const entry = (limit: number, usage = 0, overridden = false) => ({ limit, usage, overridden });
  return {
    tenant: { id: 'dddddddd-2222-4333-8444-555555555555', name: 'acme' },
    resources: {
      vms: entry(3, 3, true),
      vcpus: entry(40, 5),
      memoryMiB: entry(-1, 1280, true),
      diskGiB: entry(1000, 12),
      images: entry(20),
      imageStorageGiB: entry(200),
      networks: entry(10),
      securityGroups: entry(20),
      securityGroupRules: entry(200),
      snapshots: entry(50),
      apiTokens: entry(2, 4, true),
      volumes: entry(20),
      volumeGiB: entry(1000),
      backups: entry(20),
      ...overrides,
    },
  };
}

const TABLE = [
  'RESOURCE             LIMIT       USED   SOURCE',
  'vms                  3           3      override',
  'vcpus                40          5      default',
  'memoryMiB            unlimited   1280   override',
  'diskGiB              1000        12     default',
  'images               20          0      default',
  'imageStorageGiB      200         0      default',
  'networks             10          0      default',
  'securityGroups       20          0      default',
  'securityGroupRules   200         0      default',
  'snapshots            50          0      default',
  'apiTokens            2           4      override',
  'volumes              20          0      default',
  'volumeGiB            1000        0      default',
  'backups              20          0      default',
  '',
].join('\n');

void describe('quota assignments', () => {
  const parse = (...args: string[]) => parseQuotaAssignments(args, QUOTA_RESOURCES, 1_000_000_000);

  void it('takes integers, unlimited and default', () => {
    assert.deepEqual(parse('vms=3', 'vcpus=unlimited', 'memoryMiB=-1', 'diskGiB=default', 'apiTokens=0'), {
      vms: 3,
      vcpus: -1,
      memoryMiB: -1,
      diskGiB: null,
      apiTokens: 0,
    });
  });

  void it('matches resource names case-insensitively and spells them as the API does', () => {
    assert.deepEqual(parse('memorymib=2048', 'VMS=Unlimited', 'diskgib=DEFAULT'), {
      memoryMiB: 2048,
      vms: -1,
      diskGiB: null,
    });
  });

  void it('refuses what the API would refuse, as usage errors naming the problem', () => {
    const cases: [string[], RegExp][] = [
      [['cpus=4'], /unknown quota resource "cpus" \(known: vms, vcpus, memoryMiB, /],
      [['vms'], /expected <resource>=<value>/],
      [['=3'], /expected <resource>=<value>/],
      [['vms=3', 'VMS=4'], /vms is given more than once/],
      [['vms=-2'], /vms: expected an integer from 0 to 1000000000, -1 or unlimited, or default/],
      [['vms=1.5'], /vms: expected an integer/],
      [['vms='], /vms: expected an integer/],
      [['vms=1000000001'], /vms: expected an integer/],
      [['vms=0x10'], /vms: expected an integer/],
      [[], /at least one/],
    ];
    for (const [args, message] of cases) {
      assert.throws(
        () => parse(...args),
        (err: unknown) => err instanceof UsageError && message.test(err.message),
        args.join(' '),
      );
    }
  });
});

void describe('quota commands', () => {
  let api: FakeApi;
  let handler: Handler = () => undefined;
  before(async () => {
    api = await startFakeApi((req) => handler(req));
  });
  after(() => api.close());
  beforeEach(() => {
    api.requests.length = 0;
  });
  const env = (extra: Record<string, string> = {}) => ({
    RAMPART_URL: api.url,
    RAMPART_TOKEN: 'admin-token',
    ...extra,
  });
  const calls = () => api.requests.map((r) => `${r.method} ${r.url}`);

  void it('shows a tenant quota as a table: unlimited for -1, overrides marked', async () => {
    handler = (req) => (req.url === '/v1/tenants/acme/quota' ? { body: quotaFixture() } : undefined);
    const io = testIo(env());
    assert.equal(await run(['quota', 'show', 'acme'], io), 0, io.stderr.text);
    assert.equal(io.stdout.text, TABLE);
    assert.deepEqual(calls(), ['GET /v1/tenants/acme/quota']);
  });

  void it('prints the API answer with -o json', async () => {
    handler = (req) => (req.url === '/v1/tenants/acme/quota' ? { body: quotaFixture() } : undefined);
    const io = testIo(env());
    assert.equal(await run(['quota', 'show', 'acme', '-o', 'json'], io), 0);
    assert.deepEqual(JSON.parse(io.stdout.text), quotaFixture());
  });

  void it('defaults to --tenant, then to the caller tenant from whoami', async () => {
    handler = (req) => {
      if (req.url === '/v1/auth/whoami') return { body: whoamiFixture() };
      if (req.url.endsWith('/quota')) return { body: quotaFixture() };
      return undefined;
    };
    assert.equal(await run(['quota', 'show'], testIo(env())), 0);
    assert.deepEqual(calls(), ['GET /v1/auth/whoami', 'GET /v1/tenants/acme/quota']);
    api.requests.length = 0;
    assert.equal(await run(['quota', 'show', '--tenant', 'beta'], testIo(env())), 0);
    assert.equal(await run(['quota', 'show'], testIo(env({ RAMPART_TENANT: 'gamma' }))), 0);
    // The tenant is in the path: no ?tenant= on top.
    assert.deepEqual(calls(), ['GET /v1/tenants/beta/quota', 'GET /v1/tenants/gamma/quota']);
  });

  void it('asks for a tenant when the caller has none to default to', async () => {
    handler = (req) =>
      req.url === '/v1/auth/whoami' ? { body: whoamiFixture({ tenant: null, tenants: [] }) } : undefined;
    const io = testIo(env());
    assert.equal(await run(['quota', 'show'], io), 2);
    assert.match(io.stderr.text, /choose one with --tenant <name>/);
  });

  void it('colours usage at and over the limit on a terminal', async () => {
    handler = () => ({ body: quotaFixture() });
    const io = testIo(env());
    io.stdout.isTTY = true;
    assert.equal(await run(['quota', 'show', 'acme'], io), 0);
    assert.ok(io.stdout.text.includes('\u001b[33m3\u001b[0m'), 'vms 3 of 3: yellow');
    assert.ok(io.stdout.text.includes('\u001b[31m4\u001b[0m'), 'apiTokens 4 of 2: red');
    assert.ok(!io.stdout.text.includes('\u001b[31m1280'), 'unlimited is never over');
  });

  void it('sets limits with PUT and prints what they are now', async () => {
    handler = (req) =>
      req.method === 'PUT'
        ? {
            body: quotaFixture({
              vms: { limit: 10, usage: 3, overridden: true },
              vcpus: { limit: 40, usage: 5, overridden: false },
              memoryMiB: { limit: -1, usage: 1280, overridden: true },
            }),
          }
        : undefined;
    const io = testIo(env({ RAMPART_TENANT: 'other' }));
    assert.equal(
      await run(['quota', 'set', 'acme', 'vms=10', 'vcpus=default', 'memoryMiB=unlimited'], io),
      0,
      io.stderr.text,
    );
    assert.deepEqual(calls(), ['PUT /v1/tenants/acme/quota']);
    assert.equal(api.requests[0]?.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(api.requests[0]?.body ?? ''), { vms: 10, vcpus: null, memoryMiB: -1 });
    assert.equal(
      io.stdout.text,
      'quota of tenant acme updated: vms=10, vcpus=40 (default), memoryMiB=unlimited\n',
    );
  });

  void it('sends ?force=true with --force and prints JSON with -o json', async () => {
    handler = (req) => (req.method === 'PUT' ? { body: quotaFixture() } : undefined);
    const io = testIo(env());
    assert.equal(await run(['quota', 'set', 'acme', 'vms=3', '--force', '-o', 'json'], io), 0);
    assert.deepEqual(calls(), ['PUT /v1/tenants/acme/quota?force=true']);
    assert.deepEqual(JSON.parse(io.stdout.text), quotaFixture());
  });

  void it('points at --force when a limit below usage is refused (exit 4)', async () => {
    handler = () =>
      apiError(
        409,
        'RAMPART_CONFLICT',
        'a limit would be below current usage: vms (3 used > 1); add ?force=true to set it anyway',
        'req-7',
      );
    const io = testIo(env());
    assert.equal(await run(['quota', 'set', 'acme', 'vms=1'], io), 4);
    assert.equal(
      io.stderr.text,
      'rampart: a limit would be below current usage: vms (3 used > 1); add --force to set it anyway ' +
        '(RAMPART_CONFLICT, request req-7)\n',
    );
  });

  void it('reports forbidden (not a platform admin) with exit 5', async () => {
    handler = () => apiError(403, 'RAMPART_FORBIDDEN', 'platform:quota:update required');
    assert.equal(await run(['quota', 'set', 'acme', 'vms=1'], testIo(env())), 5);
  });

  void it('sends nothing for invalid arguments (exit 2)', async () => {
    handler = () => ({ body: quotaFixture() });
    for (const argv of [
      ['quota', 'set', 'acme', 'cpus=4'],
      ['quota', 'set', 'acme', 'vms=lots'],
      ['quota', 'set', 'acme'],
      ['quota', 'set', 'Acme!', 'vms=1'],
      ['quota', 'show', 'Not_A_Tenant'],
      ['quota', 'set', 'acme', 'vms=1', '--bogus'],
    ]) {
      const io = testIo(env());
      assert.equal(await run(argv, io), 2, argv.join(' '));
      assert.match(io.stderr.text, /^rampart: /, argv.join(' '));
      assert.equal(io.stdout.text, '');
    }
    assert.deepEqual(calls(), []);
  });
});

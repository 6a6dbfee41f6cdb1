/**
 * Two server replicas on one PostgreSQL database (RAMPART_TEST_POSTGRES_URL; skipped without it): each
 * `rampart server --database <the same URL>` with its own data directory and local agent, and the
 * secrets replicas must share (session, audit, platform signing and master keys) copied from the
 * first. The quota race from test/quotas.test.ts with BOTH replicas taking the creates: with a quota of N VMs, 10N concurrent creates spread over the two admit exactly
 * N; the usage both report equals the VM table; a VM created through one is seen through the other;
 * both verify the one audit chain they wrote; one of them holds the leader lease. A VM on A's host is
 * run, used through its live console and stopped, all through B. Password guesses spread over both
 * replicas are counted by the throttle of each and by the leader's detection engine, which sees every
 * replica's security events. A third replica with secrets of its own (not copied) refuses to start.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { Host } from '../src/api/host.js';
import type { Quota } from '../src/api/quota.js';
import type { SecurityAlert } from '../src/api/security.js';
import type { Vm } from '../src/api/vm.js';
import { GuestConsole } from './helpers/guest-console.js';
import { POSTGRES_SKIP, createTestPostgres, type TestPostgres } from './helpers/postgres.js';
import { RampartHarness } from './helpers/rampart-harness.js';

describe('two server replicas on one PostgreSQL database', { skip: POSTGRES_SKIP }, () => {
  let target: TestPostgres;
  let a: RampartHarness;
  let b: RampartHarness;
  let client: pg.Client;

  before(async () => {
    target = await createTestPostgres();
    const env = {
      RAMPART_RATE_LIMIT_PRINCIPAL: 'off',
      RAMPART_RATE_LIMIT_TENANT: 'off',
      RAMPART_CPU_OVERCOMMIT: '16',
      RAMPART_MEMORY_OVERCOMMIT: '4',
      // A locked account stays locked for the whole of the guessing test below.
      RAMPART_LOGIN_BASE_DELAY_MS: '60000',
    };
    a = await RampartHarness.start({ serverArgs: ['--database', target.url], env });
    b = await RampartHarness.start({
      serverArgs: ['--database', target.url],
      env,
      adminPassword: a.adminPassword,
      secretsFrom: a.dataDir,
      // A's host stays online while B starts (it is linked to A); B's own comes online too.
      onlineHosts: 2,
    });
    client = new pg.Client({ connectionString: target.url });
    await client.connect();
  });

  after(async () => {
    await client?.end();
    await b?.cleanup();
    await a?.cleanup();
    await target?.drop();
  });

  test('both replicas serve the same state', async () => {
    assert.equal((await a.api('POST', '/v1/tenants', { name: 'shared' })).status, 201);
    const seen = await b.api<{ items: { name: string }[] }>('GET', '/v1/tenants');
    assert.ok(seen.body.items.some((t) => t.name === 'shared'));
  });

  test('a third replica with secrets of its own refuses to start, naming them; the others go on', async () => {
    await assert.rejects(
      RampartHarness.start({
        serverArgs: ['--database', target.url],
        localAgent: false,
        adminPassword: a.adminPassword,
      }),
      (error: unknown) => {
        const message = (error as Error).message;
        assert.match(message, /server exited with \d+/);
        assert.match(
          message,
          /holds a different audit signing key, platform image signing key, session signing key than the other servers on this database/,
        );
        return true;
      },
    );
    for (const replica of [a, b]) assert.equal((await replica.api('GET', '/v1/tenants')).status, 200);
  });

  test('10N concurrent creates over both replicas with a quota of N VMs: exactly N succeed', async () => {
    const n = 4;
    assert.equal((await a.api('POST', '/v1/tenants', { name: 'race' })).status, 201);
    assert.equal((await b.api('PUT', '/v1/tenants/race/quota', { vms: n })).status, 200);
    const responses = await Promise.all(
      Array.from({ length: 10 * n }, (_, i) =>
        (i % 2 === 0 ? a : b).api<Vm | { error: { code: string } }>('POST', '/v1/vms?tenant=race', {
          name: `r-${i}`,
          image: 'tiny',
          flavor: 'tiny',
          start: false,
        }),
      ),
    );
    const created = responses.filter((r) => r.status === 201).length;
    const refused = responses.filter(
      (r) =>
        r.status === 403 && (r.body as { error: { code: string } }).error.code === 'RAMPART_QUOTA_EXCEEDED',
    );
    assert.equal(created, n, JSON.stringify(responses.filter((r) => r.status !== 201 && r.status !== 403)));
    assert.equal(
      refused.length,
      9 * n,
      JSON.stringify(responses.filter((r) => r.status !== 201 && !refused.includes(r)).slice(0, 3)),
    );
    const rows = await client.query<{ n: string }>(
      `SELECT COUNT(*) AS n FROM vms JOIN tenants ON tenants.id = vms.tenant_id WHERE tenants.name = 'race'`,
    );
    assert.equal(Number(rows.rows[0]!.n), n);
    for (const replica of [a, b]) {
      const quota = await replica.api<Quota>('GET', '/v1/tenants/race/quota');
      assert.equal(quota.body.resources.vms.usage, n);
    }
    const list = await b.api<{ items: Vm[] }>('GET', '/v1/vms?tenant=race');
    assert.equal(list.body.items.length, n);
  });

  test("a VM on A's host is run and stopped through B: B forwards to the replica the host is linked to", async () => {
    // Both hosts online: B's start left A's host (linked to A) alone.
    const hosts = (await b.api<{ items: Host[] }>('GET', '/v1/hosts')).body.items;
    assert.deepEqual(
      hosts.map((h) => h.state),
      ['online', 'online'],
    );
    // A's own host (its local agent), from A's log.
    const aHost = /"hostId":"([0-9a-f-]{36})"[^\n]*agent connected/.exec(a.serverOutput)?.[1];
    assert.ok(aHost, 'A logged its agent');
    const keep = hosts.find((h) => h.id !== aHost)!;
    assert.equal((await b.api('PATCH', `/v1/hosts/${keep.id}`, { maintenance: true })).status, 200);
    let vm: Vm;
    try {
      const created = await b.api<Vm>('POST', '/v1/vms', { name: 'via-b', image: 'tiny', flavor: 'tiny' });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      vm = created.body;
    } finally {
      assert.equal((await b.api('PATCH', `/v1/hosts/${keep.id}`, { maintenance: false })).status, 200);
    }
    assert.equal(vm.hostId, aHost);
    await b.waitForState(vm.id, 'running', 180_000);
    // A QEMU of the VM runs under A's agent (its data directory), none under B's.
    assert.equal(a.qemuPids().length, 1);
    assert.equal(b.qemuPids().length, 0);
    // Its live console through B: typed input forwarded to A's agent, output relayed back (NOTIFY).
    const shell = await GuestConsole.open(b, vm.id);
    try {
      assert.equal((await shell.run('echo relay-$((6*7))')).output, 'relay-42');
    } finally {
      shell.close();
    }
    const stopped = await b.api('POST', `/v1/vms/${vm.id}/stop`);
    assert.ok(stopped.status < 300, JSON.stringify(stopped.body));
    await b.waitForState(vm.id, 'stopped', 60_000);
    assert.ok((await b.api('DELETE', `/v1/vms/${vm.id}`)).status < 300);
    await b.waitFor(async () => (await b.api('GET', `/v1/vms/${vm.id}`)).status === 404, 30_000, 'VM gone');
  });

  test('a role granted or removed through one replica holds at once on the other (LISTEN/NOTIFY)', async () => {
    const password = 'Replica-Passw0rd-77';
    await a.createMember('rep-bob', password, 'shared', 'member');
    const token = await b.login('rep-bob', password);
    const asBob = { authorization: `Bearer ${token}` };
    let allowed = 0;
    await b.waitFor(
      async () => (allowed = (await b.api('GET', '/v1/vms?tenant=shared', undefined, asBob)).status) === 200,
      5000,
      'the binding made through A to hold on B',
    );
    assert.equal(allowed, 200);
    const removed = await a.api('DELETE', '/v1/tenants/shared/members/rep-bob');
    assert.ok(removed.status < 300, JSON.stringify(removed.body));
    await b.waitFor(
      async () => (await b.api('GET', '/v1/vms?tenant=shared', undefined, asBob)).status !== 200,
      5000,
      'the removal made through A to hold on B',
    );
  });

  test('guesses spread over both replicas: the throttle and the detection engine count them all', async () => {
    const guess = (replica: RampartHarness) =>
      replica.api(
        'POST',
        '/v1/auth/login',
        { username: 'spread-guess', password: 'Not-the-Passw0rd-1' },
        {
          authorization: '',
        },
      );
    // Five wrong passwords (the account threshold), three through A and two through B.
    for (const replica of [a, b, a, b, a]) assert.equal((await guess(replica)).status, 401);
    // B heard A's three from the event stream (NOTIFY; at most a second's poll): locked there too.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal((await guess(b)).status, 429, 'B counts the guesses made through A');
    assert.equal((await guess(a)).status, 429);
    // Ten failed logins for one account in all, five through each replica: only the whole stream
    // reaches the shipped rule's threshold of ten. The leader's engine raises one alert.
    for (const replica of [a, b, a, b]) assert.equal((await guess(replica)).status, 429);
    const raised = async (replica: RampartHarness) =>
      (
        await replica.api<{ items: SecurityAlert[] }>('GET', '/v1/platform/security/alerts?limit=200')
      ).body.items.filter((alert) => alert.ruleId === 'auth-brute-force-account');
    await a.waitFor(async () => (await raised(a)).length > 0, 15_000, 'the brute-force alert');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    for (const replica of [a, b]) assert.equal((await raised(replica)).length, 1, 'one alert, seen on both');
  });

  test('one audit chain: both replicas verify all records; one replica holds the leader lease', async () => {
    const records = await client.query<{ n: string }>('SELECT COUNT(*) AS n FROM audit_records');
    for (const replica of [a, b]) {
      const verify = await replica.api<{ ok: boolean; records: number }>('GET', '/v1/audit/verify');
      assert.equal(verify.body.ok, true, JSON.stringify(verify.body));
      assert.ok(verify.body.records >= Number(records.rows[0]!.n));
    }
    const leaders = [a, b].filter((r) => r.serverOutput.includes('leader lease acquired'));
    assert.equal(leaders.length, 1);
  });
});

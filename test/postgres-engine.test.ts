/**
 * The server on PostgreSQL (RAMPART_TEST_POSTGRES_URL; skipped without it): `rampart server --database
 * postgres://...` on a fresh database, then through the API: tenants, users and members, a real VM
 * (the tiny guest) created, started, stopped and deleted, a name race decided by the unique index (one
 * 201, one 409), volumes listed, the audit chain verified, and a restart that keeps everything. The
 * password in the URL never appears in the server's output.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { AuditVerification } from '../src/api/audit.js';
import type { Vm } from '../src/api/vm.js';
import { POSTGRES_SKIP, createTestPostgres, type TestPostgres } from './helpers/postgres.js';
import { RampartHarness } from './helpers/rampart-harness.js';

describe('the server on PostgreSQL', { skip: POSTGRES_SKIP }, () => {
  let harness: RampartHarness;
  let target: TestPostgres;
  let client: pg.Client;

  async function count(table: string): Promise<number> {
    const result = await client.query<{ n: string }>(`SELECT COUNT(*) AS n FROM ${table}`);
    return Number(result.rows[0]!.n);
  }

  before(async () => {
    target = await createTestPostgres();
    harness = await RampartHarness.start({ serverArgs: ['--database', target.url] });
    client = new pg.Client({ connectionString: target.url });
    await client.connect();
  });

  after(async () => {
    await client?.end();
    await harness?.cleanup();
    await target?.drop();
  });

  test('the server runs on the PostgreSQL database and never prints its password', async () => {
    assert.match(harness.serverOutput, /"engine":"postgres"/);
    // The only replica holds the leader lease of the singleton loops.
    assert.match(harness.serverOutput, /leader lease acquired/);
    const password = decodeURIComponent(new URL(target.url).password);
    assert.ok(password.length > 0);
    assert.ok(!harness.serverOutput.includes(`:${password}@`), 'the URL with its password was logged');
    assert.ok((await count('tenants')) >= 1);
    assert.ok((await count('users')) >= 1);
  });

  test('tenants, users and members', async () => {
    assert.equal((await harness.api('POST', '/v1/tenants', { name: 'pg-team' })).status, 201);
    const token = await harness.createMember('pg-alice', 'Pg-Engine-Passw0rd-42', 'pg-team', 'member');
    const tenants = await harness.api<{ items: { name: string }[] }>('GET', '/v1/tenants');
    assert.equal(tenants.status, 200);
    assert.ok(tenants.body.items.some((t) => t.name === 'pg-team'));
    const members = await harness.api<{ items: { user: { username: string } }[] }>(
      'GET',
      '/v1/tenants/pg-team/members',
    );
    assert.equal(members.status, 200, JSON.stringify(members.body));
    assert.ok(members.body.items.some((m) => m.user.username === 'pg-alice'));
    const asAlice = await harness.api<{ items: unknown[] }>('GET', '/v1/vms?tenant=pg-team', undefined, {
      authorization: `Bearer ${token}`,
    });
    assert.equal(asAlice.status, 200, JSON.stringify(asAlice.body));
    const row = await client.query<{ name: string }>(
      `SELECT u.username AS name FROM users u JOIN role_bindings b ON b.user_id = u.id
       JOIN tenants t ON t.id = b.scope WHERE t.name = 'pg-team'`,
    );
    assert.deepEqual(
      row.rows.map((r) => r.name),
      ['pg-alice'],
    );
  });

  test('a VM with the tiny guest: create, run, stop, start, stop, delete', async () => {
    const created = await harness.api<Vm>('POST', '/v1/vms', {
      name: 'pg-web',
      image: 'tiny',
      flavor: 'tiny',
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const running = await harness.waitForState('pg-web', 'running', 120_000);
    assert.ok(running.bootMs !== null && running.bootMs > 0);
    const stop = await harness.api('POST', '/v1/vms/pg-web/stop', {});
    assert.ok(stop.status >= 200 && stop.status < 300, JSON.stringify(stop.body));
    await harness.waitForState('pg-web', 'stopped', 60_000);
    const start = await harness.api('POST', '/v1/vms/pg-web/start', {});
    assert.ok(start.status >= 200 && start.status < 300, JSON.stringify(start.body));
    await harness.waitForState('pg-web', 'running', 120_000);
    const again = await harness.api('POST', '/v1/vms/pg-web/stop', {});
    assert.ok(again.status >= 200 && again.status < 300, JSON.stringify(again.body));
    await harness.waitForState('pg-web', 'stopped', 60_000);
    const state = await client.query<{ state: string; boot_id: string }>(
      `SELECT state, boot_id FROM vms WHERE name = 'pg-web'`,
    );
    assert.equal(state.rows[0]!.state, 'stopped');
    assert.ok(Number(state.rows[0]!.boot_id) >= 2);
    const deleted = await harness.api('DELETE', '/v1/vms/pg-web');
    assert.ok(deleted.status >= 200 && deleted.status < 300, JSON.stringify(deleted.body));
    await harness.waitFor(async () => (await count('vms')) === 0, 60_000, 'the VM row to go');
  });

  test('two creates with one name at once: the unique index lets one through (201, 409)', async () => {
    const [a, b] = await Promise.all(
      [1, 2].map(() =>
        harness.api('POST', '/v1/vms', { name: 'pg-twin', image: 'tiny', flavor: 'tiny', start: false }),
      ),
    );
    assert.deepEqual([a!.status, b!.status].sort(), [201, 409], JSON.stringify([a!.body, b!.body]));
    assert.equal((await harness.api('DELETE', '/v1/vms/pg-twin')).status < 300, true);
  });

  test('names raced on other tables: one create wins, the others get 409 (never 500)', async () => {
    const responses = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        harness.api('POST', '/v1/networks', { name: 'pg-race', cidr: `10.${60 + i}.0.0/24` }),
      ),
    );
    const statuses = responses.map((r) => r.status).sort();
    assert.deepEqual(statuses, [201, 409, 409, 409, 409, 409], JSON.stringify(responses.map((r) => r.body)));
  });

  test('concurrent creates on one network get distinct addresses (IPAM under concurrency)', async () => {
    assert.equal(
      (await harness.api('POST', '/v1/networks', { name: 'pg-ipam', cidr: '10.77.0.0/24' })).status,
      201,
    );
    const created = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        harness.api('POST', '/v1/vms', {
          name: `pg-ip-${i}`,
          image: 'tiny',
          flavor: 'tiny',
          network: 'pg-ipam',
          start: false,
        }),
      ),
    );
    assert.deepEqual(
      created.map((r) => r.status),
      Array<number>(8).fill(201),
      JSON.stringify(created.filter((r) => r.status !== 201).map((r) => r.body)),
    );
    const rows = await client.query<{ ipv4: string }>(
      `SELECT p.ipv4 FROM ports p JOIN networks n ON n.id = p.network_id WHERE n.name = 'pg-ipam'`,
    );
    assert.equal(new Set(rows.rows.map((r) => r.ipv4)).size, 8);
    for (let i = 0; i < 8; i++) await harness.api('DELETE', `/v1/vms/pg-ip-${i}`);
  });

  test('volumes list, and the audit chain verifies (also after a restart)', async () => {
    const volumes = await harness.api<{ items: unknown[] }>('GET', '/v1/volumes');
    assert.equal(volumes.status, 200, JSON.stringify(volumes.body));
    assert.ok(Array.isArray(volumes.body.items));
    const verify = await harness.api<AuditVerification>('GET', '/v1/audit/verify');
    assert.equal(verify.status, 200, JSON.stringify(verify.body));
    assert.equal(verify.body.ok, true, JSON.stringify(verify.body));
    assert.ok(verify.body.records >= 5);
    assert.equal(verify.body.records, await count('audit_records'));
    // Restart: the same database, the chain continues.
    await harness.killServer('SIGTERM');
    await harness.startServer();
    harness.token = await harness.login('admin', harness.adminPassword);
    assert.equal((await harness.api('POST', '/v1/tenants', { name: 'pg-after' })).status, 201);
    const after = await harness.api<AuditVerification>('GET', '/v1/audit/verify');
    assert.equal(after.body.ok, true, JSON.stringify(after.body));
    assert.ok(after.body.records > verify.body.records);
    assert.ok(after.body.checkpoints >= 1);
    const records = await harness.api('GET', '/v1/audit/export/records');
    assert.equal(records.status, 200);
  });
});

/**
 * Maintenance mode: a host in maintenance gets no new VM (the refusal names the constraint), running
 * VMs stay where they are, and taking it out of maintenance admits VMs again.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Host } from '../src/api/host.js';
import { spawnSync } from 'node:child_process';
import { RampartHarness } from './helpers/rampart-harness.js';
import { CLI_MAIN } from './helpers/repo.js';

let harness: RampartHarness;

before(async () => {
  harness = await RampartHarness.start();
});

after(async () => {
  await harness?.cleanup();
});

test('a host in maintenance gets no new VM; out of maintenance it does again', async () => {
  const hosts = await harness.api<{ items: Host[] }>('GET', '/v1/hosts');
  const host = hosts.body.items[0]!;
  assert.equal(host.maintenance, false);
  const existing = await harness.api('POST', '/v1/vms', {
    name: 'before',
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(existing.status, 201);

  const on = await harness.api<Host>('PATCH', `/v1/hosts/${host.id}`, { maintenance: true });
  assert.equal(on.status, 200, JSON.stringify(on.body));
  assert.equal(on.body.maintenance, true);
  const refused = await harness.api<{ error: { code: string; message: string } }>('POST', '/v1/vms', {
    name: 'during',
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(refused.status, 503);
  assert.equal(refused.body.error.code, 'RAMPART_NO_CAPACITY');
  assert.match(refused.body.error.message, /every online host is in maintenance/);
  assert.equal((await harness.api('GET', '/v1/vms/before')).status, 200, 'existing VMs stay');
  const audit = await harness.api<{ items: { action: string; detail: string | null }[] }>(
    'GET',
    '/v1/platform/audit?action=platform:host:update&limit=5',
  );
  assert.ok(audit.body.items.some((r) => r.detail === 'maintenance on'));

  const off = await harness.api<Host>('PATCH', `/v1/hosts/${host.id}`, { maintenance: false });
  assert.equal(off.body.maintenance, false);
  assert.equal(
    (await harness.api('POST', '/v1/vms', { name: 'after', image: 'tiny', flavor: 'tiny', start: false }))
      .status,
    201,
  );
  assert.equal((await harness.api('PATCH', `/v1/hosts/${host.id}`, { maintenance: 'yes' })).status, 400);
  for (const vm of ['before', 'after']) await harness.api('DELETE', `/v1/vms/${vm}`);
});

test('dedicated hosts: a dedicated tenant never shares a host; only platform admins decide it', async () => {
  assert.equal((await harness.api('POST', '/v1/tenants', { name: 'solo' })).status, 201);
  const shared = await harness.api('POST', '/v1/vms', {
    name: 'shared',
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(shared.status, 201);
  const set = await harness.api<{ dedicatedHosts: boolean }>('PATCH', '/v1/tenants/solo', {
    dedicatedHosts: true,
  });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  assert.equal(set.body.dedicatedHosts, true);
  const soloAdmin = await harness.createMember(
    'soloadmin',
    'a long enough password 2',
    'solo',
    'tenant-admin',
  );
  const refused = await harness.api(
    'PATCH',
    '/v1/tenants/solo',
    { dedicatedHosts: false },
    {
      authorization: `Bearer ${soloAdmin}`,
    },
  );
  assert.equal(refused.status, 403, 'a tenant admin cannot change it');

  // The only host runs another tenant's VM: the dedicated tenant gets none, and is told why.
  const blocked = await harness.api<{ error: { message: string } }>('POST', '/v1/vms?tenant=solo', {
    name: 'mine',
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(blocked.status, 503);
  assert.match(blocked.body.error.message, /requires dedicated hosts/);
  // Once the host is free, the dedicated tenant takes it, and then nobody else gets in.
  assert.equal((await harness.api('DELETE', '/v1/vms/shared')).status, 202);
  await harness.waitFor(
    async () => (await harness.api('GET', '/v1/vms/shared')).status === 404,
    30_000,
    'deleted',
  );
  const mine = await harness.api('POST', '/v1/vms?tenant=solo', {
    name: 'mine',
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(mine.status, 201, JSON.stringify(mine.body));
  const other = await harness.api<{ error: { message: string } }>('POST', '/v1/vms', {
    name: 'intruder',
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(other.status, 503);
  assert.match(other.body.error.message, /dedicated to another tenant/);
  await harness.api('DELETE', '/v1/vms/mine?tenant=solo');
  await harness.waitFor(
    async () => (await harness.api('GET', '/v1/vms/mine?tenant=solo')).status === 404,
    30_000,
    'solo VM deleted',
  );
});

test('placement groups: anti-affinity refuses a second VM on the only host, naming the group; affinity packs', async () => {
  const anti = await harness.api('POST', '/v1/placement-groups', { name: 'spread', policy: 'anti-affinity' });
  assert.equal(anti.status, 201, JSON.stringify(anti.body));
  const create = (name: string, placementGroup: string) =>
    harness.api<{ error?: { message: string } }>('POST', '/v1/vms', {
      name,
      image: 'tiny',
      flavor: 'tiny',
      start: false,
      placementGroup,
    });
  assert.equal((await create('s1', 'spread')).status, 201);
  const second = await create('s2', 'spread');
  assert.equal(second.status, 503);
  assert.match(
    second.body.error!.message,
    /anti-affinity group spread already has a member on every open host/,
  );
  assert.equal(
    (await harness.api('POST', '/v1/placement-groups', { name: 'pack', policy: 'affinity' })).status,
    201,
  );
  assert.equal((await create('p1', 'pack')).status, 201);
  assert.equal((await create('p2', 'pack')).status, 201);
  const pack = await harness.api<{ members: { name: string; hostId: string | null }[] }>(
    'GET',
    '/v1/placement-groups/pack',
  );
  assert.deepEqual(
    pack.body.members.map((m) => m.name),
    ['p1', 'p2'],
  );
  assert.equal(new Set(pack.body.members.map((m) => m.hostId)).size, 1, 'one host');
  assert.equal((await create('x', 'absent')).status, 400);
  assert.equal(
    (await harness.api('GET', '/v1/placement-groups/pack?tenant=solo')).status,
    404,
    'tenant-scoped',
  );
  assert.equal((await harness.api('DELETE', '/v1/placement-groups/pack')).status, 409, 'has members');
  for (const vm of ['s1', 'p1', 'p2']) await harness.api('DELETE', `/v1/vms/${vm}`);
  await harness.waitFor(
    async () => (await harness.api<{ items: unknown[] }>('GET', '/v1/vms')).body.items.length === 0,
    30_000,
    'VMs deleted',
  );
  assert.equal((await harness.api('DELETE', '/v1/placement-groups/pack')).status, 204);
});

test('rampart placement-group create, list, show and delete', () => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [CLI_MAIN, ...args], {
      env: { PATH: process.env.PATH, RAMPART_URL: harness.url, RAMPART_TOKEN: harness.token },
      encoding: 'utf8',
    });
  const created = cli('placement-group', 'create', 'web-spread', '--policy', 'anti-affinity');
  assert.equal(created.status, 0, created.stderr);
  assert.match(created.stdout, /web-spread \(anti-affinity\) created/);
  assert.match(cli('placement-group', 'list').stdout, /web-spread\s+anti-affinity\s+0/);
  assert.match(cli('placement-group', 'show', 'web-spread').stdout, /Policy: +anti-affinity/);
  assert.equal(cli('placement-group', 'create', 'bad', '--policy', 'sideways').status, 2);
  assert.equal(cli('placement-group', 'delete', 'web-spread').status, 0);
  assert.equal(cli('placement-group', 'show', 'web-spread').status, 3);
});

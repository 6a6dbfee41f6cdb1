/**
 * The network and security-group API without booting anything: validation at the edge, IPAM (lowest
 * free address, released with the VM, two tenants on the same subnet), tenant isolation (404 like an
 * absent object), quotas, and the refusals that keep the model consistent.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Network, Port, SecurityGroup } from '../src/api/network.js';
import type { Quota } from '../src/api/quota.js';
import { RampartHarness } from './helpers/rampart-harness.js';

let harness: RampartHarness;
type Answer<T> = T & { error: { code: string; message: string } };

before(async () => {
  harness = await RampartHarness.start();
  assert.equal((await harness.api('POST', '/v1/tenants', { name: 'blue' })).status, 201);
});

after(async () => {
  await harness?.cleanup();
});

test('networks: subnets are validated, names are unique per tenant, two tenants may share a subnet', async () => {
  const created = await harness.api<Answer<Network>>('POST', '/v1/networks', {
    name: 'n1',
    cidr: '10.7.0.0/29',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.capacity, 5);
  for (const [cidr, message] of [
    ['10.7.0.1/29', /host bits set/],
    ['16.0.0.0/4', /a network is a \/8 to \/29/],
    ['10.0.0.0/30', /a network is a \/8 to \/29/],
    ['10.0.0.300/24', /must match pattern|not an IPv4/],
  ] as const) {
    const bad = await harness.api<Answer<Network>>('POST', '/v1/networks', { name: 'bad', cidr });
    assert.equal(bad.status, 400, cidr);
    assert.match(bad.body.error.message, message);
  }
  assert.equal((await harness.api('POST', '/v1/networks', { name: 'n1', cidr: '10.8.0.0/24' })).status, 409);
  const blue = await harness.api<Network>('POST', '/v1/networks?tenant=blue', {
    name: 'n1',
    cidr: '10.7.0.0/29',
  });
  assert.equal(blue.status, 201);
  // Another tenant's network is absent, by name and by id.
  assert.equal((await harness.api('GET', `/v1/networks/${blue.body.id}`)).status, 404);
  const quota = await harness.api<Quota>('GET', '/v1/tenants/blue/quota');
  assert.equal(quota.body.resources.networks.usage, 1);
});

test('IPAM: the lowest free address, released with the VM; a full network refuses', async () => {
  const vms: string[] = [];
  for (let i = 0; i < 5; i++) {
    const vm = await harness.api<{ id: string }>('POST', '/v1/vms', {
      name: `v${i}`,
      image: 'tiny',
      flavor: 'tiny',
      network: 'n1',
      start: false,
    });
    assert.equal(vm.status, 201, JSON.stringify(vm.body));
    vms.push(`v${i}`);
  }
  const ports = await harness.api<{ items: Port[] }>('GET', '/v1/vms/v0/ports');
  assert.equal(ports.body.items[0]!.ipv4, '10.7.0.2');
  assert.equal(ports.body.items[0]!.prefixLength, 29);
  assert.deepEqual(
    ports.body.items[0]!.securityGroups.map((g) => g.name),
    ['default'],
  );
  const full = await harness.api<Answer<unknown>>('POST', '/v1/vms', {
    name: 'v5',
    image: 'tiny',
    flavor: 'tiny',
    network: 'n1',
    start: false,
  });
  assert.equal(full.status, 409);
  assert.match(full.body.error.message, /no free address/);
  assert.equal((await harness.api('GET', '/v1/vms/v5')).status, 404, 'the refused VM does not exist');
  // The network cannot go while VMs use it; deleting one VM frees its address for the next.
  assert.equal((await harness.api('DELETE', '/v1/networks/n1')).status, 409);
  assert.equal((await harness.api('DELETE', '/v1/vms/v0')).status, 202);
  await harness.waitFor(
    async () => (await harness.api('GET', '/v1/vms/v0')).status === 404,
    30_000,
    'v0 gone',
  );
  await harness.api('POST', '/v1/vms', {
    name: 'v6',
    image: 'tiny',
    flavor: 'tiny',
    network: 'n1',
    start: false,
  });
  const reused = await harness.api<{ items: Port[] }>('GET', '/v1/vms/v6/ports');
  assert.equal(reused.body.items[0]!.ipv4, '10.7.0.2');
  // A foreign or unknown network or group is a body error, not a hint that it exists elsewhere.
  const foreign = await harness.api<Answer<unknown>>('POST', '/v1/vms?tenant=blue', {
    name: 'x',
    image: 'tiny',
    flavor: 'tiny',
    network: 'absent',
    start: false,
  });
  assert.equal(foreign.status, 400);
  const groupsOnly = await harness.api('POST', '/v1/vms', {
    name: 'y',
    image: 'tiny',
    flavor: 'tiny',
    securityGroups: ['default'],
    start: false,
  });
  assert.equal(groupsOnly.status, 400);
  for (const vm of [...vms.slice(1), 'v6']) await harness.api('DELETE', `/v1/vms/${vm}`);
});

test('security groups: default exists, rules are validated, a used or referenced group cannot go', async () => {
  const list = await harness.api<{ items: SecurityGroup[] }>('GET', '/v1/security-groups');
  const fallback = list.body.items.find((g) => g.name === 'default');
  assert.ok(fallback);
  assert.deepEqual(
    fallback.rules.map((r) => [r.direction, r.protocol, r.remoteCidr]),
    [['egress', 'any', '0.0.0.0/0']],
  );
  assert.equal((await harness.api('POST', '/v1/security-groups', { name: 'web' })).status, 201);
  assert.equal((await harness.api('POST', '/v1/security-groups', { name: 'db' })).status, 201);
  for (const [body, message] of [
    [{ direction: 'ingress', protocol: 'icmp', portMin: 1, portMax: 2 }, /tcp and udp rules only/],
    [{ direction: 'ingress', protocol: 'tcp', portMin: 90, portMax: 80 }, /portMin is greater/],
    [{ direction: 'ingress', protocol: 'tcp', portMin: 80 }, /give both/],
    [{ direction: 'ingress', protocol: 'tcp', remoteCidr: '10.0.0.0/8', remoteGroup: 'db' }, /not both/],
    [{ direction: 'sideways', protocol: 'tcp' }, /direction/],
  ] as const) {
    const bad = await harness.api<Answer<unknown>>('POST', '/v1/security-groups/web/rules', body);
    assert.equal(bad.status, 400, JSON.stringify(body));
    assert.match(bad.body.error.message, message);
  }
  const rule = await harness.api<{ remoteCidr: string }>('POST', '/v1/security-groups/web/rules', {
    direction: 'ingress',
    protocol: 'tcp',
    portMin: 443,
    portMax: 443,
    remoteCidr: '192.168.1.7/24',
  });
  assert.equal(rule.status, 201);
  assert.equal(rule.body.remoteCidr, '192.168.1.0/24', 'normalized');
  assert.equal(
    (
      await harness.api('POST', '/v1/security-groups/db/rules', {
        direction: 'ingress',
        protocol: 'tcp',
        portMin: 5432,
        portMax: 5432,
        remoteGroup: 'web',
      })
    ).status,
    201,
  );
  const referenced = await harness.api<Answer<unknown>>('DELETE', '/v1/security-groups/web');
  assert.equal(referenced.status, 409);
  assert.match(referenced.body.error.message, /remote of a rule in group db/);
  // Another tenant cannot see or use them.
  assert.equal((await harness.api('GET', '/v1/security-groups/web?tenant=blue')).status, 404);
  const quota = await harness.api<Quota>('GET', '/v1/tenants/default/quota');
  assert.equal(quota.body.resources.securityGroups.usage, 3);
  assert.equal(quota.body.resources.securityGroupRules.usage, 3);
});

test('allowed addresses: platform admins only, never 0.0.0.0/0', async () => {
  const vm = await harness.api<{ id: string }>('POST', '/v1/vms', {
    name: 'vip',
    image: 'tiny',
    flavor: 'tiny',
    network: 'n1',
    start: false,
  });
  assert.equal(vm.status, 201, JSON.stringify(vm.body));
  const port = (await harness.api<{ items: Port[] }>('GET', '/v1/vms/vip/ports')).body.items[0]!;
  const path = `/v1/platform/vms/${vm.body.id}/ports/${port.id}/allowed-addresses`;
  const everything = await harness.api<Answer<unknown>>('PUT', path, { allowedAddresses: ['0.0.0.0/0'] });
  assert.equal(everything.status, 400);
  assert.match(everything.body.error.message, /too wide/);
  const vip = await harness.api<Port>('PUT', path, { allowedAddresses: ['10.7.0.6/32'] });
  assert.equal(vip.status, 200, JSON.stringify(vip.body));
  assert.deepEqual(vip.body.allowedAddresses, ['10.7.0.6/32']);
  await harness.api('DELETE', '/v1/vms/vip');
});

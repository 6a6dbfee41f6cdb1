/**
 * Tenant networks with real VMs and real packets (SECURITY-TESTS.md items 16-18 and 20), in a network
 * namespace this test creates as the "host" (RAMPART_NETNS): bridges, taps, nft tables and the QEMUs
 * live there and vanish with it.
 *
 * - Two VMs of one tenant on one network: the default group denies ingress (ping refused and counted),
 *   a group allowing icmp added to the port lets it through (groups add up); a tcp/80 rule lets a
 *   busybox httpd be reached, return traffic needs no rule, deleting the rule stops new connections.
 * - Another tenant with the same subnet (so the same addresses): its VM reaches nothing of the first.
 * - Spoofing from a guest: another source IP, another MAC, ARP for another IP: dropped and counted.
 * - Drift: a chain emptied by hand is repaired by the agent's reconciliation.
 * - After the VMs are deleted no tap, bridge or port rule remains.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Network, Port, SecurityGroup } from '../src/api/network.js';
import type { Vm } from '../src/api/vm.js';
import { GuestConsole } from './helpers/guest-console.js';
import { RampartHarness } from './helpers/rampart-harness.js';

const NETNS = `rpt-net-${randomBytes(3).toString('hex')}`;
/** Stands for the world beyond the host's uplink: 198.51.100.0/24 is the host's (management) subnet. */
const OUTSIDE = `rpt-out-${randomBytes(3).toString('hex')}`;
let harness: RampartHarness;
const consoles: GuestConsole[] = [];

function inHost(...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', NETNS, ...args], { encoding: 'utf8' });
}

async function ports(vm: string, tenant?: string): Promise<Port[]> {
  const q = tenant ? `?tenant=${tenant}` : '';
  const answer = await harness.api<{ items: Port[] }>('GET', `/v1/vms/${vm}/ports${q}`);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body.items;
}

async function waitRunning(vm: string, tenant?: string): Promise<Vm> {
  const q = tenant ? `?tenant=${tenant}` : '';
  let last: Vm | undefined;
  await harness.waitFor(
    async () => {
      last = (await harness.api<Vm>('GET', `/v1/vms/${vm}${q}`)).body;
      if (last.state === 'error') throw new Error(`${vm} failed: ${last.error}`);
      return last.state === 'running';
    },
    180_000,
    `${vm} running`,
  );
  return last!;
}

before(async () => {
  execFileSync('ip', ['netns', 'add', NETNS]);
  execFileSync('ip', ['netns', 'exec', NETNS, 'ip', 'link', 'set', 'lo', 'up']);
  execFileSync('ip', ['netns', 'add', OUTSIDE]);
  const link = (ns: string, ...args: string[]) => execFileSync('ip', ['-n', ns, ...args]);
  execFileSync('ip', [
    'link',
    'add',
    'rptup0',
    'netns',
    NETNS,
    'type',
    'veth',
    'peer',
    'name',
    'rptup1',
    'netns',
    OUTSIDE,
  ]);
  link(NETNS, 'addr', 'add', '198.51.100.1/24', 'dev', 'rptup0');
  link(NETNS, 'link', 'set', 'rptup0', 'up');
  link(NETNS, 'route', 'add', '203.0.113.0/24', 'via', '198.51.100.2');
  link(OUTSIDE, 'addr', 'add', '198.51.100.2/24', 'dev', 'rptup1');
  link(OUTSIDE, 'addr', 'add', '203.0.113.1/32', 'dev', 'lo');
  link(OUTSIDE, 'link', 'set', 'rptup1', 'up');
  link(OUTSIDE, 'link', 'set', 'lo', 'up');
  harness = await RampartHarness.start({
    // No telemetry: this file spoofs on purpose, and the detection rules would isolate the VM (that
    // response is tested in detection.test.ts); here the firewall itself is under test.
    env: { RAMPART_NETNS: NETNS, RAMPART_FIREWALL_RECONCILE_SECONDS: '2', RAMPART_TELEMETRY_SECONDS: '0' },
  });
});

after(async () => {
  for (const c of consoles) c.close();
  try {
    await harness?.cleanup();
  } finally {
    execFileSync('ip', ['netns', 'del', NETNS]);
    execFileSync('ip', ['netns', 'del', OUTSIDE]);
  }
});

let a1: Port;
let a2: Port;
/**
 * A positive reachability check: up to three pings, the first answered one wins (a single packet can be
 * lost while ARP resolves on a busy two-core host). Negative checks stay single pings.
 */
function reach(ip: string): string {
  return `for i in 1 2 3; do ping -c 1 -W 2 ${ip} && break; done`;
}

let shell1: GuestConsole;
let shell2: GuestConsole;

test('two VMs on one network get addresses from IPAM and boot on taps', async () => {
  const net = await harness.api<Network>('POST', '/v1/networks', { name: 'net-a', cidr: '10.50.0.0/24' });
  assert.equal(net.status, 201, JSON.stringify(net.body));
  // a1's flavor rate-limits its network (tbf on the tap, an ifb for what the guest sends).
  const flavor = await harness.api('POST', '/v1/flavors', {
    name: 'net50',
    vcpus: 1,
    memoryMiB: 128,
    diskGiB: 1,
    networkMbps: 50,
  });
  assert.equal(flavor.status, 201, JSON.stringify(flavor.body));
  for (const [name, flavorName] of [
    ['a1', 'net50'],
    ['a2', 'tiny'],
  ] as const) {
    const created = await harness.api<Vm>('POST', '/v1/vms', {
      name,
      image: 'tiny',
      flavor: flavorName,
      network: 'net-a',
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
  await Promise.all([waitRunning('a1'), waitRunning('a2')]);
  a1 = (await ports('a1'))[0]!;
  a2 = (await ports('a2'))[0]!;
  assert.equal(a1.ipv4, '10.50.0.2');
  assert.equal(a2.ipv4, '10.50.0.3');
  assert.deepEqual(
    a1.securityGroups.map((g) => g.name),
    ['default'],
  );
  const vm = await harness.vm('a1');
  assert.ok(
    vm.guestIps.some((ip) => ip.split('/')[0] === '10.50.0.2'),
    `guest reports its address: ${JSON.stringify(vm.guestIps)}`,
  );
  const tap = `rpt${a1.id.replace(/-/g, '').slice(0, 12)}`;
  assert.match(inHost('tc', 'qdisc', 'show', 'dev', tap), /tbf .*rate 50Mbit/);
  assert.equal(
    inHost('ip', '-o', 'link', 'show', 'type', 'ifb').trim().split('\n').length,
    1,
    'one ifb (a1 only)',
  );
  assert.equal((await harness.vm('a1')).networkMbps, 50);
  shell1 = await GuestConsole.open(harness, 'a1');
  shell2 = await GuestConsole.open(harness, 'a2');
  consoles.push(shell1, shell2);
});

test('the default group denies ingress; a second group allowing icmp lets ping in (groups add up)', async () => {
  const refused = await shell1.run('ping -c 1 -W 2 10.50.0.3');
  assert.notEqual(refused.status, 0, refused.output);
  const counted = (await ports('a2'))[0]!.counters;
  assert.ok(counted && counted.ingressDenied > 0, `ingress denial counted: ${JSON.stringify(counted)}`);

  const web = await harness.api<SecurityGroup>('POST', '/v1/security-groups', { name: 'web' });
  assert.equal(web.status, 201);
  const icmp = await harness.api('POST', '/v1/security-groups/web/rules', {
    direction: 'ingress',
    protocol: 'icmp',
    remoteCidr: '10.50.0.0/24',
  });
  assert.equal(icmp.status, 201, JSON.stringify(icmp.body));
  const set = await harness.api('PUT', `/v1/vms/a2/ports/${a2.id}/security-groups`, {
    securityGroups: ['default', 'web'],
  });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  const allowed = await shell1.run(reach('10.50.0.3'));
  assert.equal(allowed.status, 0, allowed.output);
});

test('a tcp/80 rule lets httpd be reached (return traffic needs no rule); deleting it stops new connections', async () => {
  await shell2.run('mkdir -p /tmp/www && echo hello-rampart > /tmp/www/index.html');
  await shell2.run('httpd -p 80 -h /tmp/www');
  // busybox nc as the client (its wget crashes in this guest): a plain HTTP/1.0 request.
  const get = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 10.50.0.3 80";
  const before = await shell1.run(get);
  assert.doesNotMatch(before.output, /hello-rampart/);
  const rule = await harness.api<{ id: string }>('POST', '/v1/security-groups/web/rules', {
    direction: 'ingress',
    protocol: 'tcp',
    portMin: 80,
    portMax: 80,
  });
  assert.equal(rule.status, 201, JSON.stringify(rule.body));
  const open = await shell1.run(get);
  assert.match(open.output, /hello-rampart/);
  const removed = await harness.api('DELETE', `/v1/security-groups/web/rules/${rule.body.id}`);
  assert.equal(removed.status, 204);
  const closed = await shell1.run(get);
  assert.doesNotMatch(closed.output, /hello-rampart/);
});

test("another tenant with the same subnet reaches nothing of the first tenant's network", async () => {
  assert.equal((await harness.api('POST', '/v1/tenants', { name: 'other' })).status, 201);
  const net = await harness.api('POST', '/v1/networks?tenant=other', { name: 'net-a', cidr: '10.50.0.0/24' });
  assert.equal(net.status, 201, JSON.stringify(net.body));
  // It may even allow everything in: the networks are still apart.
  await harness.api('POST', '/v1/security-groups/default/rules?tenant=other', {
    direction: 'ingress',
    protocol: 'any',
  });
  const b1 = await harness.api('POST', '/v1/vms?tenant=other', {
    name: 'b1',
    image: 'tiny',
    flavor: 'tiny',
    network: 'net-a',
  });
  assert.equal(b1.status, 201, JSON.stringify(b1.body));
  await waitRunning('b1', 'other');
  const [port] = await ports('b1', 'other');
  assert.equal(port!.ipv4, '10.50.0.2', 'the same address as a1, in another network');
  const shell = await GuestConsole.open(harness, 'b1', 'other');
  consoles.push(shell);
  const cross = await shell.run('ping -c 2 -W 2 10.50.0.3');
  assert.notEqual(cross.status, 0, `tenant B reached tenant A: ${cross.output}`);
  const web = await shell.run("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 10.50.0.3 80");
  assert.doesNotMatch(web.output, /hello-rampart/);
  // And tenant A's own traffic still works with the overlapping addresses around.
  assert.equal((await shell1.run(reach('10.50.0.3'))).status, 0);
  assert.equal((await harness.api('DELETE', '/v1/vms/b1?tenant=other')).status, 202);
});

test('spoofing from a guest is dropped and counted: source IP, source MAC, ARP', async () => {
  // A static neighbour entry, so the spoofed IP packet leaves without an ARP exchange first.
  await shell1.run(`ip neigh replace 10.50.0.3 lladdr ${a2.mac} dev eth0 nud permanent`);
  await shell1.run('ip addr add 10.50.0.99/24 dev eth0');
  // Three spoofed packets, not one: a single packet can go missing on this busy two-core host.
  await shell1.run('ping -c 3 -W 1 -I 10.50.0.99 10.50.0.3');
  await shell1.run('arping -c 1 -w 1 -s 10.50.0.99 -I eth0 10.50.0.3');
  await shell1.run('ip addr del 10.50.0.99/24 dev eth0');
  await shell1.run('ip link set eth0 address 52:54:00:de:ad:01');
  await shell1.run('ping -c 1 -W 1 10.50.0.3');
  await shell1.run(`ip link set eth0 address ${a1.mac}`);
  const counters = (await ports('a1'))[0]!.counters!;
  assert.ok(counters.spoofDrops.ip! > 0, `ip spoof counted: ${JSON.stringify(counters)}`);
  assert.ok(counters.spoofDrops.arp! > 0, `arp spoof counted: ${JSON.stringify(counters)}`);
  assert.ok(counters.spoofDrops.mac! > 0, `mac spoof counted: ${JSON.stringify(counters)}`);
  // With its own addresses again, it talks normally.
  assert.equal((await shell1.run(reach('10.50.0.3'))).status, 0);
});

test('per-port counters are in /metrics', async () => {
  const response = await fetch(`${harness.url}/metrics`, {
    headers: { authorization: `Bearer ${harness.token}` },
  });
  const text = await response.text();
  const line = text
    .split('\n')
    .find(
      (l) =>
        l.startsWith('rampart_port_packets{') &&
        l.includes(`port="${a1.id}"`) &&
        l.includes('verdict="spoof-ip"'),
    );
  assert.ok(line, 'a spoof-ip sample for a1');
  assert.ok(Number(line.split(' ').pop()) > 0, line);
});

test('guests cannot reach the host, even when the host has an address on their bridge', async () => {
  const net = (await harness.api<Network>('GET', '/v1/networks/net-a')).body;
  const bridge = `rpb${net.id.replace(/-/g, '').slice(0, 12)}`;
  inHost('ip', 'addr', 'add', '10.50.0.1/24', 'dev', bridge);
  try {
    const ping = await shell1.run('ping -c 1 -W 2 10.50.0.1');
    assert.notEqual(ping.status, 0, `the guest reached the host: ${ping.output}`);
    assert.match(inHost('nft', 'list', 'counter', 'inet', 'rampart', 'to_host'), /packets [1-9]/);
  } finally {
    inHost('ip', 'addr', 'del', '10.50.0.1/24', 'dev', bridge);
  }
});

test('outbound access: off by default; on, NAT to the outside but never into the host management subnet', async () => {
  assert.notEqual((await shell1.run('ping -c 1 -W 2 203.0.113.1')).status, 0, 'no way out by default');
  const on = await harness.api<Network>('PATCH', '/v1/networks/net-a', { outbound: true });
  assert.equal(on.status, 200, JSON.stringify(on.body));
  assert.equal(on.body.outbound, true);
  assert.equal(on.body.gateway, '10.50.0.1');
  const out = await shell1.run(reach('203.0.113.1'));
  assert.equal(out.status, 0, `outbound through NAT: ${out.output}`);
  // The host's own subnet (its management plane) and the host itself stay out of reach.
  assert.notEqual((await shell1.run('ping -c 1 -W 2 198.51.100.2')).status, 0, 'management subnet reached');
  assert.notEqual((await shell1.run('ping -c 1 -W 2 198.51.100.1')).status, 0, 'host address reached');
  assert.notEqual((await shell1.run('ping -c 1 -W 2 10.50.0.1')).status, 0, 'gateway (the host) answered');
  assert.match(inHost('nft', 'list', 'counter', 'inet', 'rampart', 'to_management'), /packets [1-9]/);
  // The other tenant's network (same subnet) has no outbound access, and cannot get it while it overlaps.
  const clash = await harness.api('PATCH', '/v1/networks/net-a?tenant=other', { outbound: true });
  assert.equal(clash.status, 409);
  const off = await harness.api<Network>('PATCH', '/v1/networks/net-a', { outbound: false });
  assert.equal(off.body.outbound, false);
  assert.notEqual((await shell1.run('ping -c 1 -W 2 203.0.113.1')).status, 0, 'no way out once off');
});

test("drift: a chain emptied by hand is repaired by the agent's reconciliation", async () => {
  inHost('nft', 'flush', 'chain', 'inet', 'rampart', 'forward');
  await harness.waitFor(
    async () => inHost('nft', 'list', 'chain', 'inet', 'rampart', 'forward').includes('jump guard'),
    20_000,
    'the forward chain repaired',
  );
  assert.equal((await shell1.run(reach('10.50.0.3'))).status, 0);
  const events = await harness.api<{ items: { kind: string; subjectType: string }[] }>(
    'GET',
    '/v1/platform/security/events?kind=host.firewall_drift',
  );
  assert.ok(events.body.items.length > 0, 'the repaired drift raised a security event');
});

test('after an agent crash the ruleset is reconciled to exactly the expected one', async () => {
  const expected = inHost('nft', 'list', 'ruleset');
  const oldAgent = harness.agentPid()!;
  process.kill(oldAgent, 'SIGKILL');
  // While no agent runs, someone removes the anti-spoofing table and adds an allow-all rule.
  inHost('nft', 'delete', 'table', 'bridge', 'rampart');
  inHost('nft', 'flush', 'chain', 'inet', 'rampart', 'guard');
  await harness.waitFor(
    async () => {
      const pid = harness.agentPid();
      return pid !== null && pid !== oldAgent;
    },
    30_000,
    'a new agent',
  );
  const normalize = (text: string) => text.replace(/packets \d+ bytes \d+/g, '');
  await harness.waitFor(
    async () => normalize(inHost('nft', 'list', 'ruleset')) === normalize(expected),
    30_000,
    'the ruleset reconciled to the expected one',
  );
  // The guest never noticed more than the gap: its own traffic works again.
  assert.equal((await shell1.run(reach('10.50.0.3'))).status, 0);
});

test('deleting the VMs leaves no tap, bridge or port rule behind', async () => {
  for (const c of consoles.splice(0)) c.close();
  for (const vm of ['a1', 'a2']) assert.equal((await harness.api('DELETE', `/v1/vms/${vm}`)).status, 202);
  await harness.waitFor(
    async () => (await harness.api<{ items: Vm[] }>('GET', '/v1/vms')).body.items.length === 0,
    60_000,
    'VMs deleted',
  );
  await harness.waitFor(
    async () => (await harness.api<{ items: Vm[] }>('GET', '/v1/vms?tenant=other')).body.items.length === 0,
    60_000,
    'tenant B VM deleted',
  );
  const links = inHost('ip', '-o', 'link', 'show');
  assert.doesNotMatch(links, /rpt[0-9a-f]{12}|rpb[0-9a-f]{12}/, links);
  assert.equal(inHost('ip', '-o', 'link', 'show', 'type', 'ifb').trim(), '', 'no ifb device left');
  // No port left on the host: no Rampart table either.
  await harness.waitFor(
    async () => !inHost('nft', 'list', 'tables').includes('rampart'),
    20_000,
    'the Rampart tables removed',
  );
});

/**
 * Networks that span hosts (VXLAN): two hosts (the harness's local agent and an extra one), each in its
 * own network namespace, joined by a veth pair whose ends carry the hosts' tunnel addresses
 * (192.0.2.1/24 and 192.0.2.2/24, TEST-NET-1, inside the namespaces only). Nothing leaves them.
 *
 * - Two tiny VMs of one network, spread over the hosts (anti-affinity): each host has the network's
 *   VXLAN device (VNI = the network's zone) on its bridge, flooding to the other host; ingress stays
 *   denied by the default group, a group whose rule names the other VM's group (resolved to member
 *   addresses on every host) lets ping across, and ping answers with return traffic only.
 * - A forged source address is dropped on the sender's own host (the receiver never sees it).
 * - VXLAN from an address that is no peer is refused by the host's input chain.
 * - A second network with the same subnet, spanning the same hosts, gets its own VNI: its VM with the
 *   address of the first network's VM reaches nothing of the first network.
 * - After the VMs are deleted no bridge, tap or tunnel remains in either namespace.
 *
 * At most two tiny VMs run at once.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import type { Network, Port, SecurityGroup } from '../src/api/network.js';
import type { Vm } from '../src/api/vm.js';
import { GuestConsole } from './helpers/guest-console.js';
import { RampartHarness } from './helpers/rampart-harness.js';

const suffix = randomBytes(3).toString('hex');
const NS = { 'host-a': `vxl-a-${suffix}`, 'host-b': `vxl-b-${suffix}` } as const;
type HostName = keyof typeof NS;
const TUNNEL_IP = { 'host-a': '192.0.2.1', 'host-b': '192.0.2.2' } as const;
const CIDR = '10.61.0.0/24';

let harness: RampartHarness;
let hostIds: Record<HostName, string>;
const consoles = new Map<string, GuestConsole>();

function inNs(host: HostName, ...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', NS[host], ...args], { encoding: 'utf8' });
}

interface VxlanLink {
  ifname: string;
  master?: string;
  mtu?: number;
  linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string; port?: number } };
}

function tunnels(host: HostName): VxlanLink[] {
  const text = execFileSync('ip', ['-n', NS[host], '-d', '-j', 'link', 'show', 'type', 'vxlan'], {
    encoding: 'utf8',
  });
  return (JSON.parse(text || '[]') as VxlanLink[]).filter((l) => l.ifname.startsWith('rpx'));
}

function floodTargets(host: HostName, dev: string): string[] {
  const text = inNs(host, 'bridge', '-j', 'fdb', 'show', 'dev', dev);
  return (JSON.parse(text || '[]') as { mac: string; dst?: string }[])
    .filter((e) => e.mac === '00:00:00:00:00:00' && e.dst)
    .map((e) => e.dst!);
}

function bridgeOf(networkId: string): string {
  return `rpb${networkId.replace(/-/g, '').slice(0, 12)}`;
}

function tunnelOf(networkId: string): string {
  return `rpx${networkId.replace(/-/g, '').slice(0, 12)}`;
}

/** A network's zone (its VNI), read from the server's database. */
function zoneOf(networkId: string): number {
  const db = new Database(join(harness.dataDir, 'db', 'rampart.db'), { readonly: true });
  try {
    return (db.prepare('SELECT zone FROM networks WHERE id = ?').get(networkId) as { zone: number }).zone;
  } finally {
    db.close();
  }
}

function hostOf(vm: Vm): HostName {
  const name = (Object.keys(hostIds) as HostName[]).find((h) => hostIds[h] === vm.hostId);
  assert.ok(name, `${vm.name} is on an unknown host ${vm.hostId}`);
  return name;
}

async function port(vm: string): Promise<Port> {
  const answer = await harness.api<{ items: Port[] }>('GET', `/v1/vms/${vm}/ports`);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body.items[0]!;
}

async function waitRunning(vm: string): Promise<Vm> {
  let last: Vm | undefined;
  await harness.waitFor(
    async () => {
      last = (await harness.api<Vm>('GET', `/v1/vms/${vm}`)).body;
      if (last.state === 'error') throw new Error(`${vm} failed: ${last.error}`);
      return last.state === 'running';
    },
    180_000,
    `${vm} running`,
  );
  return last!;
}

async function createVm(name: string, network: string, extra: Record<string, unknown> = {}): Promise<void> {
  const created = await harness.api<Vm>('POST', '/v1/vms', {
    name,
    image: 'tiny',
    flavor: 'tiny',
    network,
    placementGroup: 'span',
    ...extra,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
}

async function deleteVm(name: string): Promise<void> {
  consoles.get(name)?.close();
  consoles.delete(name);
  await harness.api('DELETE', `/v1/vms/${name}`);
  await harness.waitFor(
    async () => (await harness.api('GET', `/v1/vms/${name}`)).status === 404,
    60_000,
    `${name} deleted`,
  );
}

async function shell(vm: string): Promise<GuestConsole> {
  const existing = consoles.get(vm);
  if (existing) return existing;
  const opened = await GuestConsole.open(harness, vm);
  consoles.set(vm, opened);
  return opened;
}

/** Up to three pings, the first answered one wins (ARP and the first flood take a moment). */
function reach(ip: string): string {
  return `for i in 1 2 3; do ping -c 1 -W 2 ${ip} && break; done`;
}

function cleanupNamespaces(): void {
  for (const ns of Object.values(NS)) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // not created
    }
  }
}

before(async () => {
  for (const host of Object.keys(NS) as HostName[]) {
    execFileSync('ip', ['netns', 'add', NS[host]]);
    execFileSync('ip', ['-n', NS[host], 'link', 'set', 'lo', 'up']);
  }
  // The underlay: one veth pair between the two namespaces (created in host A's, one end moved), with
  // room for VXLAN's 50 bytes so the guests keep their 1500-byte MTU without fragmentation.
  execFileSync('ip', [
    '-n',
    NS['host-a'],
    'link',
    'add',
    'vxlu0',
    'type',
    'veth',
    'peer',
    'name',
    'vxlu1',
    'netns',
    NS['host-b'],
  ]);
  for (const [host, dev] of [
    ['host-a', 'vxlu0'],
    ['host-b', 'vxlu1'],
  ] as const) {
    execFileSync('ip', ['-n', NS[host], 'link', 'set', 'dev', dev, 'mtu', '1550']);
    execFileSync('ip', ['-n', NS[host], 'addr', 'add', `${TUNNEL_IP[host]}/24`, 'dev', dev]);
    execFileSync('ip', ['-n', NS[host], 'link', 'set', 'dev', dev, 'up']);
  }
  harness = await RampartHarness.start({
    env: {
      RAMPART_NETNS: NS['host-a'],
      RAMPART_HOST_NAME: 'host-a',
      RAMPART_TUNNEL_IP: TUNNEL_IP['host-a'],
      RAMPART_FIREWALL_RECONCILE_SECONDS: '2',
      // The forged-address test must not trip the detection rules (tested in detection.test.ts).
      RAMPART_TELEMETRY_SECONDS: '0',
    },
    extraHosts: [
      {
        name: 'host-b',
        env: {
          RAMPART_NETNS: NS['host-b'],
          RAMPART_TUNNEL_IP: TUNNEL_IP['host-b'],
          RAMPART_FIREWALL_RECONCILE_SECONDS: '2',
          // The forged-address test must not trip the detection rules (tested in detection.test.ts).
          RAMPART_TELEMETRY_SECONDS: '0',
        },
      },
    ],
  });
  const hosts = await harness.api<{ items: { id: string; hostname: string; tunnelIp?: string | null }[] }>(
    'GET',
    '/v1/hosts',
  );
  const byName = (name: string) => hosts.body.items.find((h) => h.hostname === name);
  hostIds = { 'host-a': byName('host-a')?.id ?? '', 'host-b': byName('host-b')?.id ?? '' };
  assert.ok(hostIds['host-a'] && hostIds['host-b'], JSON.stringify(hosts.body));
  // Each agent reported its tunnel address in its hello.
  assert.equal(byName('host-a')?.tunnelIp, TUNNEL_IP['host-a']);
  assert.equal(byName('host-b')?.tunnelIp, TUNNEL_IP['host-b']);
  assert.equal(
    (await harness.api('POST', '/v1/placement-groups', { name: 'span', policy: 'anti-affinity' })).status,
    201,
  );
});

after(async () => {
  for (const c of consoles.values()) c.close();
  try {
    await harness?.cleanup();
  } finally {
    cleanupNamespaces();
  }
});

let blue: Network;
let v1: Port;
let v2: Port;
let hostOfV1: HostName;
let hostOfV2: HostName;

test('a network over two hosts: one VXLAN device per host with its VNI, flooding to the other host', async () => {
  const created = await harness.api<Network>('POST', '/v1/networks', { name: 'blue', cidr: CIDR });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  blue = created.body;
  await createVm('v1', 'blue');
  await createVm('v2', 'blue');
  const [vm1, vm2] = await Promise.all([waitRunning('v1'), waitRunning('v2')]);
  hostOfV1 = hostOf(vm1);
  hostOfV2 = hostOf(vm2);
  assert.notEqual(hostOfV1, hostOfV2, 'anti-affinity put the VMs on two hosts');
  v1 = await port('v1');
  v2 = await port('v2');
  assert.equal(v1.ipv4, '10.61.0.2');
  assert.equal(v2.ipv4, '10.61.0.3');

  const zone = zoneOf(blue.id);
  for (const host of Object.keys(NS) as HostName[]) {
    const other: HostName = host === 'host-a' ? 'host-b' : 'host-a';
    await harness.waitFor(
      async () => floodTargets(host, tunnelOf(blue.id)).includes(TUNNEL_IP[other]),
      30_000,
      `${host} floods ${blue.name} to ${other}`,
    );
    const [link] = tunnels(host);
    assert.equal(link?.ifname, tunnelOf(blue.id));
    assert.equal(link.master, bridgeOf(blue.id));
    assert.equal(link.linkinfo?.info_kind, 'vxlan');
    assert.equal(link.linkinfo?.info_data?.id, zone, 'the VNI is the network zone');
    assert.equal(link.linkinfo?.info_data?.local, TUNNEL_IP[host]);
    assert.equal(link.linkinfo?.info_data?.port, 4789);
    assert.equal(link.mtu, 1500, 'guests keep a 1500-byte MTU');
    assert.deepEqual(floodTargets(host, tunnelOf(blue.id)), [TUNNEL_IP[other]]);
    // The firewall knows the tunnel and its peer.
    assert.match(
      inNs(host, 'nft', 'list', 'set', 'bridge', 'rampart', 'tunnels'),
      new RegExp(tunnelOf(blue.id)),
    );
    assert.match(
      inNs(host, 'nft', 'list', 'set', 'inet', 'rampart', 'tunnel_peers'),
      new RegExp(TUNNEL_IP[other].replace(/\./g, '\\.')),
    );
  }
});

test('security groups hold across hosts: default denies, a remote-group rule lets ping through', async () => {
  const s1 = await shell('v1');
  const s2 = await shell('v2');
  // The default group lets nothing in, from the other host either.
  const refused = await s1.run('ping -c 1 -W 2 10.61.0.3');
  assert.notEqual(refused.status, 0, `default group let ping in: ${refused.output}`);
  await harness.waitFor(
    async () => ((await port('v2')).counters?.ingressDenied ?? 0) > 0,
    10_000,
    'the denial counted on the receiving host',
  );
  // A group whose rule's remote is the `default` group (v1 is a member): its address on the other
  // host resolves into v2's ingress set.
  assert.equal(
    (await harness.api<SecurityGroup>('POST', '/v1/security-groups', { name: 'pingable' })).status,
    201,
  );
  const rule = await harness.api('POST', '/v1/security-groups/pingable/rules', {
    direction: 'ingress',
    protocol: 'icmp',
    remoteGroup: 'default',
  });
  assert.equal(rule.status, 201, JSON.stringify(rule.body));
  const set = await harness.api('PUT', `/v1/vms/v2/ports/${v2.id}/security-groups`, {
    securityGroups: ['default', 'pingable'],
  });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  const allowed = await s1.run(reach('10.61.0.3'));
  assert.equal(allowed.status, 0, `ping across hosts: ${allowed.output}`);
  // Only v2 allows icmp in: v1 still refuses it (stateful: v1's replies needed no rule).
  const back = await s2.run('ping -c 1 -W 2 10.61.0.2');
  assert.notEqual(back.status, 0, `v1 let ping in: ${back.output}`);
  // Egress rules of the sender still apply: a group on v1 without egress stops its pings at home.
  assert.equal((await harness.api('POST', '/v1/security-groups', { name: 'mute' })).status, 201);
  const mute = await harness.api('PUT', `/v1/vms/v1/ports/${v1.id}/security-groups`, {
    securityGroups: ['mute'],
  });
  assert.equal(mute.status, 200, JSON.stringify(mute.body));
  const muted = await s1.run('ping -c 1 -W 2 10.61.0.3');
  assert.notEqual(muted.status, 0, `egress-less port sent: ${muted.output}`);
  assert.ok(((await port('v1')).counters?.egressDenied ?? 0) > 0, 'egress denial counted on the sender');
  assert.equal(
    (
      await harness.api('PUT', `/v1/vms/v1/ports/${v1.id}/security-groups`, {
        securityGroups: ['default'],
      })
    ).status,
    200,
  );
  assert.equal((await s1.run(reach('10.61.0.3'))).status, 0);
});

test('a forged source address is dropped on the sender’s own host', async () => {
  const s1 = await shell('v1');
  const before = (await port('v1')).counters!.spoofDrops.ip ?? 0;
  const deniedBefore = (await port('v2')).counters!.ingressDenied;
  await s1.run(`ip neigh replace 10.61.0.3 lladdr ${v2.mac} dev eth0 nud permanent`);
  await s1.run('ip addr add 10.61.0.99/24 dev eth0');
  await s1.run('ping -c 3 -W 1 -I 10.61.0.99 10.61.0.3');
  await s1.run('ip addr del 10.61.0.99/24 dev eth0');
  const after = (await port('v1')).counters!.spoofDrops.ip ?? 0;
  assert.ok(after > before, `ip spoof counted on ${hostOfV1}: ${before} -> ${after}`);
  // v2's host never saw them: its ingress rules (icmp from the default group's members only) would
  // have refused and counted them.
  assert.equal((await port('v2')).counters!.ingressDenied, deniedBefore, 'a forged packet crossed');
  assert.equal((await s1.run(reach('10.61.0.3'))).status, 0, 'with its own address it talks again');
});

test('VXLAN from an address that is no peer is refused by the host', async () => {
  const counter = () =>
    Number(
      /packets (\d+)/.exec(
        inNs('host-a', 'nft', 'list', 'counter', 'inet', 'rampart', 'tunnel_refused'),
      )?.[1],
    );
  const before = counter();
  // host-b sends from a second, unknown address on the underlay (UDP 4789 to host-a's tunnel address).
  inNs('host-b', 'ip', 'addr', 'add', '192.0.2.77/24', 'dev', 'vxlu1');
  try {
    // A VXLAN header (flags 0x08, VNI 1) and a few bytes, three times.
    const send = [
      'import socket',
      's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
      "s.bind(('192.0.2.77', 0))",
      "[s.sendto(bytes([8, 0, 0, 0, 0, 0, 1, 0]) + bytes(14), ('192.0.2.1', 4789)) for _ in range(3)]",
    ].join('\n');
    inNs('host-b', '/usr/bin/python3', '-c', send);
  } finally {
    inNs('host-b', 'ip', 'addr', 'del', '192.0.2.77/24', 'dev', 'vxlu1');
  }
  assert.ok(counter() > before, 'the packet from 192.0.2.77 was counted as refused');
});

test('a second network with the same subnet gets its own VNI and stays apart from the first', async () => {
  const created = await harness.api<Network>('POST', '/v1/networks', { name: 'green', cidr: CIDR });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const green = created.body;
  // Replace v2 (on the other host) by g2 on green with v2's address: a stopped VM takes green's first.
  await deleteVm('v2');
  await createVm('gfill', 'green', { start: false, placementGroup: undefined });
  await createVm('g2', 'green');
  const g2vm = await waitRunning('g2');
  assert.equal(hostOf(g2vm), hostOfV2, 'g2 runs where v2 ran');
  const g2 = await port('g2');
  assert.equal(g2.ipv4, '10.61.0.3', "g2 has v2's address");
  // Anything may come into g2 and into v1: only the networks keep them apart.
  assert.equal((await harness.api('POST', '/v1/security-groups', { name: 'open' })).status, 201);
  await harness.api('POST', '/v1/security-groups/open/rules', { direction: 'ingress', protocol: 'any' });
  for (const [vm, p] of [
    ['g2', g2],
    ['v1', v1],
  ] as const) {
    const put = await harness.api('PUT', `/v1/vms/${vm}/ports/${p.id}/security-groups`, {
      securityGroups: ['default', 'open'],
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  }
  // Blue has no port on g2's host any more: its tunnels are gone on both hosts.
  await harness.waitFor(
    async () => tunnels('host-a').length === 0 && tunnels('host-b').length === 0,
    30_000,
    'the blue tunnels removed with their last remote port',
  );
  const s1 = await shell('v1');
  const cross = await s1.run('ping -c 2 -W 2 10.61.0.3');
  assert.notEqual(cross.status, 0, `blue reached green: ${cross.output}`);

  // Green spans both hosts once v1 gives way to g1 on green: its own VNI, not blue's.
  await deleteVm('v1');
  await createVm('g1', 'green');
  const g1vm = await waitRunning('g1');
  assert.equal(hostOf(g1vm), hostOfV1);
  const zone = zoneOf;
  assert.notEqual(zone(green.id), zone(blue.id));
  for (const host of Object.keys(NS) as HostName[]) {
    await harness.waitFor(
      async () => tunnels(host).some((t) => t.ifname === tunnelOf(green.id)),
      30_000,
      `green's tunnel on ${host}`,
    );
    const link = tunnels(host).find((t) => t.ifname === tunnelOf(green.id))!;
    assert.equal(link.linkinfo?.info_data?.id, zone(green.id));
    assert.ok(!tunnels(host).some((t) => t.ifname === tunnelOf(blue.id)));
  }
  const g1 = await port('g1');
  await harness.api('PUT', `/v1/vms/g1/ports/${g1.id}/security-groups`, {
    securityGroups: ['default', 'open'],
  });
  const sg1 = await shell('g1');
  assert.equal((await sg1.run(reach('10.61.0.3'))).status, 0, 'green works across hosts');
});

test('after the VMs are deleted no bridge, tap or tunnel remains on either host', async () => {
  for (const vm of ['g1', 'g2', 'gfill']) await deleteVm(vm);
  for (const host of Object.keys(NS) as HostName[]) {
    await harness.waitFor(
      async () => !/rp[btx][0-9a-f]{12}/.test(inNs(host, 'ip', '-o', 'link', 'show')),
      30_000,
      `${host} clean`,
    );
  }
});

/**
 * Integration tests of the host firewall on the real kernel (root). Each test builds its own network
 * namespaces (random suffixes) and deletes them afterwards, even on failure: a "host" namespace with the
 * Rampart bridge(s) and the firewall, and one "guest" namespace per port, connected by a veth pair whose
 * host end is named like a tap and enslaved to the bridge. Packets never leave these namespaces.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import type { FirewallRule, HostFirewall, PortIntent } from '../../api/host-network.js';
import { run, runSettled, spawnPiped } from '../../common/subprocess.js';
import { HostFirewallManager } from './firewall.js';
import {
  ensureBridge,
  ensurePort,
  ensureTunnel,
  listRampartLinks,
  listTunnelBridges,
  removeBridgeIfUnused,
  removePort,
  removeTunnel,
  tunnelName,
} from './port-devices.js';

const isRoot = process.getuid?.() === 0;

async function ip(...args: string[]): Promise<string> {
  return (await run('ip', args)).stdout;
}

async function inNs(ns: string, ...args: string[]) {
  return runSettled('ip', ['netns', 'exec', ns, ...args], { timeoutMs: 15_000 });
}

/** A fresh namespace that is deleted when the test ends. */
async function netns(t: TestContext, role: string): Promise<string> {
  const name = `rpt-${role}-${randomBytes(4).toString('hex')}`;
  await ip('netns', 'add', name);
  t.after(async () => {
    await runSettled('ip', ['netns', 'del', name]);
  });
  await ip('-n', name, 'link', 'set', 'lo', 'up');
  await inNs(name, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1');
  await inNs(name, 'sysctl', '-q', '-w', 'net.ipv6.conf.default.disable_ipv6=1');
  return name;
}

let counter = 0;
const uniqueHex = () => (++counter).toString(16).padStart(4, '0') + randomBytes(4).toString('hex');

function makePort(tag: number, bridge: string, zone: number, ipv4: string, mac: string): PortIntent {
  return {
    id: `00000000-0000-4000-8000-${tag.toString(16).padStart(12, '0')}`,
    networkId: `00000000-0000-4000-8000-${zone.toString(16).padStart(12, '0')}`,
    bridge,
    tap: `rpt${uniqueHex()}`,
    tag,
    zone,
    mac,
    ipv4,
    prefixLength: 24,
    gateway: null,
    allowedAddresses: [],
  };
}

/** A guest namespace whose eth0 is a veth whose host end (named like the port's tap) is on the bridge. */
async function attachGuest(t: TestContext, host: string, port: PortIntent): Promise<string> {
  const guest = await netns(t, 'g');
  await ip('link', 'add', port.tap, 'netns', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', guest);
  await inNs(host, 'sysctl', '-q', '-w', `net.ipv6.conf.${port.tap}.disable_ipv6=1`);
  await ip('-n', host, 'link', 'set', 'dev', port.tap, 'master', port.bridge, 'up');
  await ip('-n', guest, 'link', 'set', 'dev', 'eth0', 'address', port.mac);
  await ip('-n', guest, 'addr', 'add', `${port.ipv4}/${port.prefixLength}`, 'dev', 'eth0');
  await ip('-n', guest, 'link', 'set', 'dev', 'eth0', 'up');
  return guest;
}

async function ping(from: string, to: string, ...extra: string[]): Promise<boolean> {
  const result = await inNs(from, 'busybox', 'ping', '-c1', '-W1', ...extra, to);
  return result.exitCode === 0;
}

/** One network (bridge) in a fresh host namespace with a guest per address. */
async function setup(t: TestContext, addresses: string[], firstTag = 1) {
  const host = await netns(t, 'h');
  const bridge = `rpb${uniqueHex()}`;
  await ensureBridge(bridge, { netns: host });
  const ports = addresses.map((a, i) =>
    makePort(firstTag + i, bridge, 1, a, `02:00:00:00:01:${(firstTag + i).toString(16).padStart(2, '0')}`),
  );
  const guests: string[] = [];
  for (const port of ports) guests.push(await attachGuest(t, host, port));
  const fw = new HostFirewallManager({ netns: host });
  return { host, bridge, ports, guests, fw };
}

/** Sends three raw frames from eth0 (argv: source MAC, source IPv4). */
const RAW_FRAMES = `
import socket, struct, sys
mac = bytes.fromhex(sys.argv[1].replace(':', ''))
src = socket.inet_aton(sys.argv[2])
bcast = b'\\xff' * 6
def csum(data):
    if len(data) % 2: data += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
udp = struct.pack('!HHHH', 67, 68, 8 + 4, 0) + b'dhcp'
iph = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, b'\\xff' * 4)
iph = iph[:10] + struct.pack('!H', csum(iph)) + iph[12:]
s.send(bcast + mac + b'\\x08\\x00' + iph + udp)
ra = struct.pack('!BBHBBH', 134, 0, 0, 64, 0, 1800) + b'\\0' * 8
ip6 = struct.pack('!IHBB', 0x60000000, len(ra), 58, 255) + bytes.fromhex('fe80' + '0' * 26 + '01') + bytes.fromhex('ff02' + '0' * 26 + '01')
s.send(bytes.fromhex('333300000001') + mac + b'\\x86\\xdd' + ip6 + ra)
s.send(bcast + mac + b'\\x88\\xb5' + b'rampart test frame' + b'\\0' * 30)
`;

const egressAll = (tag: number): FirewallRule => ({
  tag,
  direction: 'egress',
  protocol: 'any',
  cidr: '0.0.0.0/0',
});

function state(ports: PortIntent[], rules: FirewallRule[], generation = 1): HostFirewall {
  return { generation, ports, rules };
}

async function counters(fw: HostFirewallManager, tag: number) {
  const all = await fw.readCounters();
  const found = all.find((c) => c.tag === tag);
  assert.ok(found, `counters of port ${tag}`);
  return found;
}

describe('host firewall (real kernel)', { skip: !isRoot && 'needs root' }, () => {
  test('re-applying the firewall keeps the counters (the security engine reads them)', async (t) => {
    const { ports, guests, fw } = await setup(t, ['10.0.0.5', '10.0.0.6']);
    const rules = [egressAll(ports[0]!.tag), egressAll(ports[1]!.tag)];
    await fw.apply(state(ports, rules, 1));
    assert.equal(await ping(guests[0]!, '10.0.0.6'), false, 'ingress is denied');
    const before = await counters(fw, ports[0]!.tag);
    const denied = (await counters(fw, ports[1]!.tag)).ingressDenied;
    assert.ok(before.fromGuestPackets > 0 && denied > 0);
    await fw.apply(state(ports, rules, 2));
    const after = await counters(fw, ports[0]!.tag);
    assert.ok(
      after.fromGuestPackets >= before.fromGuestPackets,
      `${after.fromGuestPackets} < ${before.fromGuestPackets}`,
    );
    assert.ok((await counters(fw, ports[1]!.tag)).ingressDenied >= denied);
    assert.deepEqual(await fw.drift(state(ports, rules, 2)), [], 'counter values are not drift');
  });

  test('(a) ingress denied by default, an ingress icmp rule lets ping in', async (t) => {
    const { ports, guests, fw } = await setup(t, ['10.0.0.5', '10.0.0.6']);
    const [p1, p2] = ports as [PortIntent, PortIntent];
    const [g1, g2] = guests as [string, string];
    await fw.apply(state(ports, [egressAll(1), egressAll(2)]));
    assert.equal(await ping(g1, p2.ipv4), false, 'no ingress rule: ping refused');
    assert.ok((await counters(fw, 2)).ingressDenied > 0);
    assert.equal(await ping(g2, p1.ipv4), false, 'and the other way');

    await fw.apply(
      state(ports, [
        egressAll(1),
        egressAll(2),
        { tag: 2, direction: 'ingress', protocol: 'icmp', cidr: '10.0.0.0/24' },
      ]),
    );
    assert.equal(await ping(g1, p2.ipv4), true, 'ingress icmp rule: ping works');
    const c1 = await counters(fw, 1);
    assert.ok(c1.fromGuestPackets > 0);
    assert.equal(c1.tap, p1.tap);
    assert.deepEqual(Object.values(c1.spoofDrops), [0, 0, 0, 0, 0, 0]);
    assert.equal(await ping(g2, p1.ipv4), false, 'port 1 still has no ingress rule');

    // Egress is enforced too: without an egress rule for port 1 nothing leaves it.
    const before = (await counters(fw, 1)).egressDenied;
    await fw.apply(
      state(ports, [egressAll(2), { tag: 2, direction: 'ingress', protocol: 'icmp', cidr: '10.0.0.0/24' }]),
    );
    assert.equal(await ping(g1, p2.ipv4), false);
    assert.ok((await counters(fw, 1)).egressDenied > before);
  });

  test('(b) tcp/80: a rule lets connections in, replies need no rule, removing it stops new ones', async (t) => {
    const { ports, guests, fw } = await setup(t, ['10.0.0.5', '10.0.0.6']);
    const [g1, g2] = guests as [string, string];
    const web = mkdtempSync(join(tmpdir(), 'rp-web-'));
    t.after(() => rmSync(web, { recursive: true, force: true }));
    writeFileSync(join(web, 'index.html'), 'hello from g2\n');
    const server = spawnPiped('ip', ['netns', 'exec', g2, 'busybox', 'httpd', '-f', '-p', '80', '-h', web]);
    t.after(() => {
      server.kill('SIGKILL');
    });
    const get = () =>
      inNs(g1, 'timeout', '3', 'busybox', 'wget', '-q', '-O', '-', `http://${ports[1]!.ipv4}/`);
    const allowHttp: FirewallRule = {
      tag: 2,
      direction: 'ingress',
      protocol: 'tcp',
      cidr: '10.0.0.0/24',
      portMin: 80,
      portMax: 80,
    };
    await fw.apply(state(ports, [egressAll(1), egressAll(2), allowHttp]));
    let ok = await get();
    for (let i = 0; i < 10 && ok.exitCode !== 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200)); // httpd may still be starting
      ok = await get();
    }
    assert.equal(ok.exitCode, 0, ok.stderr);
    assert.equal(ok.stdout, 'hello from g2\n');

    await fw.apply(state(ports, [egressAll(1), egressAll(2)], 2));
    const denied = (await counters(fw, 2)).ingressDenied;
    assert.notEqual((await get()).exitCode, 0, 'no new connection without the rule');
    assert.ok((await counters(fw, 2)).ingressDenied > denied);
    // A rule for another port does not help.
    await fw.apply(state(ports, [egressAll(1), egressAll(2), { ...allowHttp, tag: 1 }], 3));
    assert.notEqual((await get()).exitCode, 0);
  });

  test('(g) denied flows are remembered per sender and destination port; drift ignores them', async (t) => {
    const { ports, guests, fw } = await setup(t, ['10.0.0.5', '10.0.0.6']);
    const [g1, g2] = guests as [string, string];
    const icmpOut: FirewallRule = { tag: 2, direction: 'egress', protocol: 'icmp', cidr: '0.0.0.0/0' };
    const fwState = state(ports, [egressAll(1), icmpOut]);
    await fw.apply(fwState);
    const connect = (from: string, to: string, port: number) =>
      inNs(from, 'timeout', '2', 'busybox', 'nc', '-w', '1', to, String(port));
    // g1 may send anything, but port 2 lets nothing in; port 2 may only send ICMP.
    await Promise.all([
      connect(g1, '10.0.0.6', 81),
      connect(g1, '10.0.0.6', 82),
      connect(g2, '10.0.0.5', 9000),
    ]);
    const { denied, counters: all } = await fw.readTelemetry();
    const key = (d: (typeof denied)[number]) =>
      `${d.deniedBy} ${d.srcTag}>${d.dstIp}:${d.dstPort}/${d.protocol}`;
    assert.deepEqual(denied.map(key).sort(), [
      'egress 2>10.0.0.5:9000/tcp',
      'ingress 1>10.0.0.6:81/tcp',
      'ingress 1>10.0.0.6:82/tcp',
    ]);
    assert.equal(denied.find((d) => d.dstPort === 81)!.dstTag, 2, 'the receiving port is named');
    assert.ok(all.find((c) => c.tag === 2)!.ingressDenied >= 2);
    assert.deepEqual(await fw.drift(fwState), [], 'elements of the dynamic sets are not drift');
  });

  test('(c) spoofed IP, MAC and ARP from a guest are dropped and counted', async (t) => {
    const { host, ports, guests, fw } = await setup(t, ['10.0.0.5', '10.0.0.6']);
    const [p1, p2] = ports as [PortIntent, PortIntent];
    const [g1] = guests as [string, string];
    const rules: FirewallRule[] = [
      egressAll(1),
      egressAll(2),
      { tag: 2, direction: 'ingress', protocol: 'icmp', cidr: '10.0.0.0/24' },
    ];
    await fw.apply(state(ports, rules));
    assert.equal(await ping(g1, p2.ipv4), true, 'baseline');

    // Source IP: a second address, used explicitly (the neighbour entry is static so no ARP is needed).
    await ip('-n', g1, 'addr', 'add', '10.0.0.99/24', 'dev', 'eth0');
    await ip('-n', g1, 'neigh', 'replace', p2.ipv4, 'lladdr', p2.mac, 'dev', 'eth0', 'nud', 'permanent');
    assert.equal(await ping(g1, p2.ipv4, '-I', '10.0.0.99'), false);
    assert.ok((await counters(fw, 1)).spoofDrops.ip! > 0, 'ip counter');

    // ARP claiming another IP.
    await inNs(g1, 'busybox', 'arping', '-c', '1', '-w', '1', '-I', 'eth0', '-s', '10.0.0.99', p2.ipv4);
    assert.ok((await counters(fw, 1)).spoofDrops.arp! > 0, 'arp counter');

    // Allowed addresses are not spoofing.
    await fw.apply(state([{ ...p1, allowedAddresses: ['10.0.0.96/30'] }, p2], rules, 2));
    assert.equal(await ping(g1, p2.ipv4, '-I', '10.0.0.99'), true, 'allowed address');

    // Source MAC.
    await fw.apply(state(ports, rules, 3));
    await ip('-n', g1, 'link', 'set', 'dev', 'eth0', 'address', '02:00:00:00:01:99');
    assert.equal(await ping(g1, p2.ipv4), false);
    assert.ok((await counters(fw, 1)).spoofDrops.mac! > 0, 'mac counter');
    await ip('-n', g1, 'link', 'set', 'dev', 'eth0', 'address', p1.mac);

    // Raw frames: a DHCP server reply, an IPv6 router advertisement, an unknown ethertype.
    const before = (await counters(fw, 1)).spoofDrops;
    const sent = await inNs(g1, 'python3', '-c', RAW_FRAMES, p1.mac, p1.ipv4);
    if (sent.failure?.startsWith('ENOENT')) {
      t.diagnostic('python3 missing: raw frame checks skipped');
    } else {
      assert.equal(sent.exitCode, 0, sent.stderr);
      const after = (await counters(fw, 1)).spoofDrops;
      for (const reason of ['dhcp-server', 'router-advert', 'ethertype']) {
        assert.ok(after[reason]! > before[reason]!, `${reason} counter`);
      }
    }

    // A frame from an rpt* interface that is no known port is dropped.
    const stray = makePort(9, ports[0]!.bridge, 1, '10.0.0.9', '02:00:00:00:01:09');
    const g9 = await attachGuest(t, host, stray);
    assert.equal(await ping(g9, p2.ipv4), false);
  });

  test('(d) two networks with the same subnet and addresses are isolated and both work', async (t) => {
    const host = await netns(t, 'h');
    const b1 = `rpb${uniqueHex()}`;
    const b2 = `rpb${uniqueHex()}`;
    await ensureBridge(b1, { netns: host });
    await ensureBridge(b2, { netns: host });
    const ports = [
      makePort(1, b1, 11, '10.0.0.5', '02:00:00:00:02:05'),
      makePort(2, b1, 11, '10.0.0.6', '02:00:00:00:02:06'),
      makePort(3, b2, 12, '10.0.0.5', '02:00:00:00:02:05'),
      makePort(4, b2, 12, '10.0.0.6', '02:00:00:00:02:06'),
    ];
    const guests: string[] = [];
    for (const port of ports) guests.push(await attachGuest(t, host, port));
    const fw = new HostFirewallManager({ netns: host });
    const rules = ports.flatMap((p) => [
      egressAll(p.tag),
      { tag: p.tag, direction: 'ingress' as const, protocol: 'icmp' as const, cidr: '10.0.0.0/24' },
    ]);
    await fw.apply(state(ports, rules));
    // Same flows in both networks at once: each works (separate conntrack zones).
    const results = await Promise.all([ping(guests[0]!, '10.0.0.6'), ping(guests[2]!, '10.0.0.6')]);
    assert.deepEqual(results, [true, true]);
    const conntrack = await inNs(host, 'cat', '/proc/net/nf_conntrack');
    assert.match(conntrack.stdout, /zone=11/);
    assert.match(conntrack.stdout, /zone=12/);
    // g3's pings reach g4, never g2.
    const g2Before = (await counters(fw, 2)).fromGuestPackets;
    const g4Before = (await counters(fw, 4)).fromGuestPackets;
    assert.equal(await ping(guests[2]!, '10.0.0.6'), true);
    assert.equal((await counters(fw, 2)).fromGuestPackets, g2Before);
    assert.ok((await counters(fw, 4)).fromGuestPackets > g4Before);
    // Even with the host routing between the bridges, nothing crosses.
    await inNs(host, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1');
    await ip('-n', host, 'addr', 'add', '10.9.1.1/24', 'dev', b1);
    await ip('-n', host, 'addr', 'add', '10.9.2.1/24', 'dev', b2);
    await ip('-n', guests[0]!, 'addr', 'add', '10.9.1.5/24', 'dev', 'eth0');
    await ip('-n', guests[2]!, 'addr', 'add', '10.9.2.5/24', 'dev', 'eth0');
    await fw.apply(
      state(
        ports.map((p, i) =>
          i === 0
            ? { ...p, allowedAddresses: ['10.9.1.5/32'] }
            : i === 2
              ? { ...p, allowedAddresses: ['10.9.2.5/32'] }
              : p,
        ),
        [...rules, { tag: 3, direction: 'ingress', protocol: 'any', cidr: '0.0.0.0/0' }],
      ),
    );
    await ip('-n', guests[0]!, 'route', 'add', '10.9.2.0/24', 'via', '10.9.1.1');
    await ip('-n', guests[2]!, 'route', 'add', '10.9.1.0/24', 'via', '10.9.2.1');
    assert.equal(await ping(guests[0]!, '10.9.2.5'), false, 'routed cross-network traffic is dropped');
    assert.equal(await ping(guests[0]!, '10.9.1.1'), false, 'the host is unreachable from a guest');
    const inet = await inNs(host, 'nft', '-j', 'list', 'counters', 'table', 'inet', 'rampart');
    const named = (JSON.parse(inet.stdout) as { nftables: { counter?: { name: string; packets: number } }[] })
      .nftables;
    const packets = (name: string) => named.find((o) => o.counter?.name === name)?.counter?.packets ?? 0;
    assert.ok(packets('to_host') > 0, 'to_host counter');
  });

  test('(e) drift is detected and reconcile repairs it', async (t) => {
    const { host, ports, guests, fw } = await setup(t, ['10.0.0.5', '10.0.0.6']);
    const [, p2] = ports as [PortIntent, PortIntent];
    const [g1] = guests as [string, string];
    const intent = state(ports, [
      egressAll(1),
      egressAll(2),
      { tag: 2, direction: 'ingress', protocol: 'icmp', cidr: '10.0.0.0/24' },
    ]);
    assert.deepEqual(await fw.drift(intent), [
      'table bridge rampart: missing',
      'table inet rampart: missing',
    ]);
    await fw.apply(intent);
    assert.deepEqual(await fw.drift(intent), []);
    const nft = async (...args: string[]) => {
      const r = await inNs(host, 'nft', ...args);
      assert.equal(r.exitCode, 0, r.stderr);
    };

    await nft('delete', 'element', 'inet', 'rampart', 'ingress_proto', '{ 2 . 10.0.0.0/24 . icmp }');
    assert.equal(await ping(g1, p2.ipv4), false);
    const drift = await fw.drift(intent);
    assert.deepEqual(drift, ['table inet rampart set ingress_proto: missing 2 . 10.0.0.0-10.0.0.255 . icmp']);
    assert.deepEqual(await fw.reconcile(intent), drift);
    assert.deepEqual(await fw.drift(intent), []);
    assert.equal(await ping(g1, p2.ipv4), true);

    // An extra element, a deleted chain, a flushed chain, a replaced rule.
    await nft('add', 'element', 'inet', 'rampart', 'ingress_any', '{ 1 . 0.0.0.0/0 }');
    await nft('delete', 'element', 'inet', 'rampart', 'egress_deny', '{ 0x00010000 }');
    await nft('delete', 'chain', 'inet', 'rampart', 'deny_out_1');
    await nft('flush', 'chain', 'bridge', 'rampart', 'port_1');
    const repaired = await fw.reconcile(intent);
    assert.ok(
      repaired.includes('table inet rampart set ingress_any: unexpected 1 . 0.0.0.0-255.255.255.255'),
      repaired.join('\n'),
    );
    assert.ok(repaired.includes('table inet rampart chains: missing deny_out_1'), repaired.join('\n'));
    assert.ok(
      repaired.includes('table bridge rampart chain port_1: 0 rules, expected 10'),
      repaired.join('\n'),
    );
    assert.deepEqual(await fw.drift(intent), []);

    const list = await inNs(host, 'nft', '-a', 'list', 'chain', 'bridge', 'rampart', 'port_1');
    const handle = /ether type ip meta mark set .* # handle (\d+)/.exec(list.stdout)?.[1];
    assert.ok(handle, list.stdout);
    await nft('replace', 'rule', 'bridge', 'rampart', 'port_1', 'handle', handle, 'accept');
    assert.deepEqual(await fw.drift(intent), ['table bridge rampart chain port_1: rule 8 changed']);
    await fw.reconcile(intent);
    assert.deepEqual(await fw.drift(intent), []);

    // Another manager (an agent restart) sees structural drift too.
    const restarted = new HostFirewallManager({ netns: host });
    assert.deepEqual(await restarted.drift(intent), []);
    assert.deepEqual(await restarted.drift({ ...intent, rules: intent.rules.slice(0, 2) }), [
      'table inet rampart set ingress_proto: unexpected 2 . 10.0.0.0-10.0.0.255 . icmp',
    ]);
  });

  test('(f) remove() leaves no table; applying 10,000 rules works', async (t) => {
    const { host, ports: both, fw } = await setup(t, ['10.0.0.5', '10.0.0.6']);
    await fw.apply(state(both, [egressAll(1), egressAll(2)]));
    // A port that goes away leaves nothing behind in either table.
    const ports = both.slice(0, 1);
    await fw.apply(state(ports, [egressAll(1)], 2));
    const ruleset = await inNs(host, 'nft', 'list', 'ruleset');
    assert.doesNotMatch(ruleset.stdout, /p2_|port_2|out_2|deny_(in|out)_2|0x00020000|0x00000002/);
    assert.doesNotMatch(ruleset.stdout, new RegExp(both[1]!.tap));
    assert.deepEqual(
      (await fw.readCounters()).map((c) => c.tag),
      [1],
    );
    await fw.remove();
    await fw.remove(); // idempotent
    const tables = await inNs(host, 'nft', 'list', 'tables');
    assert.equal(tables.stdout.trim(), '');
    assert.deepEqual(await fw.readCounters(), []);

    const rules: FirewallRule[] = [];
    for (let i = 0; i < 10_000; i++) {
      rules.push({
        tag: 1,
        direction: i % 2 ? 'ingress' : 'egress',
        protocol: i % 3 ? 'tcp' : 'udp',
        cidr: `172.${16 + (i % 16)}.${Math.floor(i / 16) % 256}.0/24`,
        portMin: 1000 + (i % 7),
        portMax: 1000 + (i % 7),
      });
    }
    const big = state(ports, rules);
    const started = Date.now();
    await fw.apply(big);
    const applyMs = Date.now() - started;
    t.diagnostic(`10,000 rules applied in ${applyMs} ms`);
    assert.deepEqual(await fw.drift(big), []);
    await fw.remove();
  });

  test('ensurePort / removePort create and remove a real tap owned by the VM user', async (t) => {
    const host = await netns(t, 'h');
    const opts = { netns: host };
    const port = makePort(1, `rpb${uniqueHex()}`, 1, '10.0.0.5', '02:00:00:00:03:01');
    await ensurePort(port, { uid: 64_123, gid: 64_124 }, opts);
    await ensurePort(port, { uid: 64_123, gid: 64_124 }, opts); // idempotent
    let links = await listRampartLinks(opts);
    assert.deepEqual(
      links.map((l) => [l.name, l.kind, l.master, l.up, l.owner, l.group]),
      [
        [port.bridge, 'bridge', null, true, null, null],
        [port.tap, 'tap', port.bridge, true, 64_123, 64_124],
      ].sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    );
    const owner = await inNs(host, 'cat', `/sys/class/net/${port.tap}/owner`);
    assert.equal(owner.stdout.trim(), '64123');
    const v6 = await inNs(
      host,
      'sysctl',
      '-n',
      `net.ipv6.conf.${port.bridge}.disable_ipv6`,
      `net.ipv6.conf.${port.tap}.disable_ipv6`,
    );
    assert.equal(v6.stdout, '1\n1\n');
    const addrs = await ip('-n', host, '-json', 'addr', 'show', 'dev', port.bridge);
    assert.deepEqual((JSON.parse(addrs) as { addr_info: unknown[] }[])[0]?.addr_info, []);

    // A wrong owner is repaired by recreating the tap.
    await ensurePort(port, { uid: 64_200, gid: 64_201 }, opts);
    links = await listRampartLinks(opts);
    assert.equal(links.find((l) => l.name === port.tap)?.owner, 64_200);

    assert.equal(await removeBridgeIfUnused(port.bridge, opts), false, 'still in use');
    await removePort(port.tap, opts);
    await removePort(port.tap, opts); // idempotent
    assert.equal(await removeBridgeIfUnused(port.bridge, opts), true);
    assert.deepEqual(await listRampartLinks(opts), []);
  });

  test('ensureTunnel / removeTunnel: a VXLAN device on the bridge, its peers kept in step', async (t) => {
    const host = await netns(t, 'h');
    const opts = { netns: host };
    await ip('-n', host, 'link', 'add', 'vxlu0', 'type', 'veth', 'peer', 'name', 'vxlu1');
    await ip('-n', host, 'addr', 'add', '192.0.2.1/24', 'dev', 'vxlu0');
    await ip('-n', host, 'link', 'set', 'dev', 'vxlu0', 'up');
    const port = makePort(1, `rpb${uniqueHex()}`, 1, '10.0.0.5', '02:00:00:00:04:01');
    const dev = tunnelName(port.bridge);
    assert.equal(dev, `rpx${port.bridge.slice(3)}`);
    const show = async () => {
      const [link] = JSON.parse(await ip('-n', host, '-d', '-j', 'link', 'show', 'dev', dev)) as {
        master?: string;
        mtu?: number;
        flags?: string[];
        linkinfo?: { info_data?: { id?: number; local?: string; port?: number; learning?: boolean } };
      }[];
      const fdb = JSON.parse(await ip('netns', 'exec', host, 'bridge', '-j', 'fdb', 'show', 'dev', dev)) as {
        mac: string;
        dst?: string;
      }[];
      const data = link?.linkinfo?.info_data ?? {};
      return {
        master: link?.master,
        up: link?.flags?.includes('UP'),
        mtu: link?.mtu,
        vni: data.id,
        local: data.local,
        port: data.port,
        learning: data.learning,
        peers: fdb
          .filter((e) => e.mac === '00:00:00:00:00:00')
          .map((e) => e.dst)
          .sort(),
      };
    };
    const spec = { bridge: port.bridge, vni: 4242, local: '192.0.2.1', peers: ['192.0.2.2', '192.0.2.3'] };
    await ensureTunnel(spec, opts);
    await ensureTunnel(spec, opts); // idempotent
    assert.deepEqual(await show(), {
      master: port.bridge,
      up: true,
      mtu: 1500,
      vni: 4242,
      local: '192.0.2.1',
      port: 4789,
      learning: false,
      peers: ['192.0.2.2', '192.0.2.3'],
    });
    assert.deepEqual(await listTunnelBridges(opts), [port.bridge]);
    // Peers follow the intent: one gone, one new.
    await ensureTunnel({ ...spec, peers: ['192.0.2.3', '192.0.2.4'] }, opts);
    assert.deepEqual((await show()).peers, ['192.0.2.3', '192.0.2.4']);
    // Another VNI: the device is recreated.
    await ensureTunnel({ ...spec, vni: 4243, peers: ['192.0.2.3'] }, opts);
    assert.deepEqual([(await show()).vni, (await show()).peers], [4243, ['192.0.2.3']]);
    // Bad input never reaches a command.
    for (const bad of [
      { ...spec, vni: 0 },
      { ...spec, vni: 16_777_216 },
      { ...spec, local: '192.0.2.1; reboot' },
      { ...spec, peers: ['-x'] },
      { ...spec, bridge: 'eth0' },
    ])
      await assert.rejects(ensureTunnel(bad, opts), /not/);
    // A bridge whose only member is its tunnel is unused: both go.
    await ensurePort(port, { uid: 64_123, gid: 64_124 }, opts);
    assert.equal(await removeBridgeIfUnused(port.bridge, opts), false, 'a tap is still on it');
    await removePort(port.tap, opts);
    assert.equal(await removeBridgeIfUnused(port.bridge, opts), true);
    assert.deepEqual(await listRampartLinks(opts), []);
    // removeTunnel alone, and on nothing.
    await ensureTunnel(spec, opts);
    await removeTunnel(port.bridge, opts);
    await removeTunnel(port.bridge, opts);
    assert.deepEqual(await listTunnelBridges(opts), []);
  });
});

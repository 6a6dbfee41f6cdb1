/**
 * Unit tests of the nftables renderer: a snapshot of a small fixture, range merging, the disjoint
 * decomposition of (address x port) rectangles, validation of bad input, and (as root) `nft -c` accepting
 * the rendered text.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { FirewallRule, HostFirewall, PortIntent } from '../../api/host-network.js';
import { runSettled } from '../../common/subprocess.js';
import {
  buildModel,
  cidrToRange,
  directionElements,
  disjointRectangles,
  ipv4ToNumber,
  mergeRanges,
  numberToIpv4,
  renderIpRange,
  renderRemoval,
  renderRuleset,
  type Rectangle,
} from './nft-ruleset.js';

function port(tag: number, overrides: Partial<PortIntent> = {}): PortIntent {
  const hex = tag.toString(16).padStart(12, '0');
  return {
    id: `00000000-0000-4000-8000-${hex}`,
    networkId: '00000000-0000-4000-8000-000000000000',
    bridge: 'rpb000000000001',
    tap: `rpt${hex}`,
    tag,
    zone: 3,
    mac: `02:00:00:00:00:${tag.toString(16).padStart(2, '0')}`,
    ipv4: `10.0.0.${tag}`,
    prefixLength: 24,
    gateway: '10.0.0.1',
    allowedAddresses: [],
    ...overrides,
  };
}

function fw(ports: PortIntent[], rules: FirewallRule[]): HostFirewall {
  return { generation: 1, ports, rules };
}

const SNAPSHOT_ONE_PORT = `table bridge rampart {}
delete table bridge rampart
table inet rampart {}
delete table inet rampart
table bridge rampart {
	counter unknown_port {}
	counter tunnel_from_host {}
	counter p7_mac {}
	counter p7_ip {}
	counter p7_arp {}
	counter p7_dhcp_server {}
	counter p7_router_advert {}
	counter p7_ethertype {}
	counter p7_ok {}
	counter p7_quarantine {}
	map ports_in { type ifname : verdict;
		elements = { "rpt000000000007" : jump port_7 }
	}
	map ports_out { type ifname : verdict;
		elements = { "rpt000000000007" : jump out_7 }
	}
	set tunnels { type ifname; }
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		iifname vmap @ports_in
		iifname @tunnels meta mark set 0x00000000 accept
		iifname "rpt*" counter name unknown_port drop
	}
	chain out {
		type filter hook forward priority -10; policy accept;
		oifname vmap @ports_out
		oifname @tunnels meta mark set meta mark & 0xffff0000 | 0x0000ffff accept
		oifname "rpt*" counter name unknown_port drop
	}
	chain tunnel_post {
		type filter hook postrouting priority 0; policy accept;
		oifname @tunnels meta mark set 0x00000000
	}
	chain host_out {
		type filter hook output priority 0; policy accept;
		oifname @tunnels counter name tunnel_from_host drop
	}
	chain port_7 {
		ether saddr != 02:00:00:00:00:07 counter name p7_mac drop
		ether type arp arp saddr ether != 02:00:00:00:00:07 counter name p7_arp drop
		ether type arp arp saddr ip != { 10.0.0.7 } counter name p7_arp drop
		ether type arp meta mark set 0x00070000 counter name p7_ok accept
		ether type ip udp sport 67 counter name p7_dhcp_server drop
		ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 meta mark set 0x00070000 counter name p7_ok accept
		ether type ip ip saddr != { 10.0.0.7 } counter name p7_ip drop
		ether type ip meta mark set 0x00070000 counter name p7_ok accept
		ether type ip6 icmpv6 type nd-router-advert counter name p7_router_advert drop
		counter name p7_ethertype drop
	}
	chain out_7 {
		meta mark set meta mark & 0xffff0000 | 0x00000007 accept
	}
}
table inet rampart {
	counter cross_network {}
	counter invalid {}
	counter unknown_port {}
	counter to_host {}
	counter inbound {}
	counter no_outbound {}
	counter to_management {}
	counter tunnel_refused {}
	counter p7_ingress_denied {}
	counter p7_egress_denied {}
	set bridges { type ifname;
		elements = { "rpb000000000001" }
	}
	set same_bridge { type ifname . ifname;
		elements = { "rpb000000000001" . "rpb000000000001" }
	}
	set outbound { type ifname;
		elements = { "rpb000000000001" }
	}
	set internal { type ifname . ipv4_addr; flags interval;
		elements = { "rpb000000000001" . 10.0.0.0/24 }
	}
	set management { type ipv4_addr; flags interval;
		elements = { 127.0.0.0/8,
			192.0.2.0/24 }
	}
	set tunnel_peers { type ipv4_addr; flags interval; }
	map zones { typeof iifname : ct zone;
		elements = { "rpb000000000001" : 3 }
	}
	set ingress_l4 { type mark . ipv4_addr . inet_proto . inet_service; flags interval;
		elements = { 0x00000007 . 192.168.0.0/16 . tcp . 22 }
	}
	set ingress_proto { type mark . ipv4_addr . inet_proto; flags interval; }
	set ingress_any { type mark . ipv4_addr; flags interval; }
	set egress_l4 { type mark . ipv4_addr . inet_proto . inet_service; flags interval; }
	set egress_proto { type mark . ipv4_addr . inet_proto; flags interval;
		elements = { 0x00070000 . 10.0.0.0/8 . udp }
	}
	set egress_any { type mark . ipv4_addr; flags interval; }
	set denied_egress { typeof meta mark . ip daddr . meta l4proto . th dport; flags dynamic,timeout; timeout 60s; size 65535; }
	set denied_ingress { typeof meta mark . ip daddr . meta l4proto . th dport; flags dynamic,timeout; timeout 60s; size 65535; }
	map ingress_deny { type mark : verdict;
		elements = { 0x00000007 : jump deny_in_7 }
	}
	map egress_deny { type mark : verdict;
		elements = { 0x00070000 : jump deny_out_7 }
	}
	chain zones {
		type filter hook prerouting priority -300; policy accept;
		iifname @outbound ct original zone set iifname map @zones
		iifname . ip daddr @internal ct zone set iifname map @zones
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		meta mark & 0xffff0000 != 0 oifname != @bridges masquerade
	}
	chain forward {
		type filter hook forward priority 0; policy accept;
		iifname @bridges jump guard
		oifname @bridges jump guard
	}
	chain guard {
		ct state established,related accept
		ct state invalid counter name invalid drop
		iifname != @bridges counter name inbound drop
		oifname @bridges iifname . oifname != @same_bridge counter name cross_network drop
		oifname != @bridges iifname != @outbound counter name no_outbound drop
		oifname != @bridges ip daddr @management counter name to_management drop
		oifname != @bridges meta mark & 0xffff0000 == 0 counter name no_outbound drop
		meta mark & 0xffff0000 != 0 jump egress
		oifname != @bridges accept
		meta mark & 0xffff0000 != 0 meta mark & 0x0000ffff == 0x0000ffff accept
		meta mark & 0x0000ffff != 0 jump ingress
		counter name unknown_port drop
	}
	chain egress {
		meta mark & 0xffff0000 . ip daddr . meta l4proto . th dport @egress_l4 return
		meta mark & 0xffff0000 . ip daddr . meta l4proto @egress_proto return
		meta mark & 0xffff0000 . ip daddr @egress_any return
		meta mark & 0xffff0000 vmap @egress_deny
		counter name unknown_port drop
	}
	chain ingress {
		meta mark & 0x0000ffff . ip saddr . meta l4proto . th dport @ingress_l4 accept
		meta mark & 0x0000ffff . ip saddr . meta l4proto @ingress_proto accept
		meta mark & 0x0000ffff . ip saddr @ingress_any accept
		meta mark & 0x0000ffff vmap @ingress_deny
		counter name unknown_port drop
	}
	chain input {
		type filter hook input priority 0; policy accept;
		iifname @bridges counter name to_host drop
	}
	chain deny_in_7 {
		meta mark & 0xffff0000 != 0 meta l4proto { tcp, udp } add @denied_ingress { meta mark . ip daddr . meta l4proto . th dport }
		counter name p7_ingress_denied drop
	}
	chain deny_out_7 {
		meta l4proto { tcp, udp } add @denied_egress { meta mark . ip daddr . meta l4proto . th dport }
		counter name p7_egress_denied drop
	}
}
`;

describe('renderRuleset', () => {
  test('one port, one ingress and one egress rule (snapshot)', () => {
    const text = renderRuleset({
      ...fw(
        [port(7)],
        [
          { tag: 7, direction: 'ingress', protocol: 'tcp', cidr: '192.168.0.0/16', portMin: 22, portMax: 22 },
          { tag: 7, direction: 'egress', protocol: 'udp', cidr: '10.0.0.0/8' },
        ],
      ),
      networks: [
        { bridge: 'rpb000000000001', zone: 3, cidr: '10.0.0.0/24', gateway: '10.0.0.1', outbound: true },
      ],
      managementNets: ['192.0.2.0/24', '192.0.2.10/32', '127.0.0.0/8'],
    });
    assert.equal(text, SNAPSHOT_ONE_PORT);
  });

  test('no ports: both tables, empty sets without an elements clause', () => {
    const text = renderRuleset(fw([], []));
    assert.match(
      text,
      /^table bridge rampart \{\}\ndelete table bridge rampart\ntable inet rampart \{\}\ndelete table inet rampart\n/,
    );
    assert.match(
      text,
      /set ingress_l4 \{ type mark \. ipv4_addr \. inet_proto \. inet_service; flags interval; \}/,
    );
    assert.doesNotMatch(text, /elements = \{ \}/);
  });

  test('allowed addresses join the anti-spoofing sets; protocols map to the right sets', () => {
    const text = renderRuleset(
      fw(
        [port(1, { allowedAddresses: ['10.0.1.0/28', '10.0.0.1/32'] }), port(2, { zone: 3 })],
        [
          { tag: 2, direction: 'ingress', protocol: 'any', cidr: '10.0.0.0/24' },
          { tag: 2, direction: 'ingress', protocol: 'icmp', cidr: '10.0.0.0/24' },
          { tag: 2, direction: 'ingress', protocol: 'udp', cidr: '10.0.0.0/24' },
          { tag: 1, direction: 'egress', protocol: 'tcp', cidr: '0.0.0.0/0', portMin: 443, portMax: 443 },
        ],
      ),
    );
    assert.match(text, /ip saddr != \{ 10\.0\.0\.1, 10\.0\.1\.0\/28 \} counter name p1_ip drop/);
    assert.match(text, /arp saddr ip != \{ 10\.0\.0\.1, 10\.0\.1\.0\/28 \} counter name p1_arp drop/);
    assert.match(text, /set ingress_any \{[^}]*elements = \{ 0x00000002 \. 10\.0\.0\.0\/24 \}/);
    assert.match(text, /0x00000002 \. 10\.0\.0\.0\/24 \. icmp,\n\t+0x00000002 \. 10\.0\.0\.0\/24 \. udp \}/);
    assert.match(text, /set egress_l4 \{[^}]*elements = \{ 0x00010000 \. 0\.0\.0\.0\/0 \. tcp \. 443 \}/);
    assert.match(text, /"rpt000000000002" : jump port_2/);
    assert.match(text, /0x00020000 : jump deny_out_2/);
  });

  test('an isolated port drops every frame from and to it first, counted; the others are untouched', () => {
    const model = buildModel(fw([port(1, { quarantined: true }), port(2)], []));
    const first = (chain: string) => model.bridge.chains.get(chain)?.rules[0];
    assert.equal(first('port_1'), 'counter name p1_quarantine drop');
    assert.equal(first('out_1'), 'counter name p1_quarantine drop');
    assert.match(first('port_2') ?? '', /^ether saddr != /);
    assert.match(first('out_2') ?? '', /^meta mark set/);
    assert.ok(
      model.bridge.counters.includes('p1_quarantine') && model.bridge.counters.includes('p2_quarantine'),
    );
  });

  test('duplicate and overlapping rules become disjoint elements', () => {
    const model = buildModel(
      fw(
        [port(5)],
        [
          { tag: 5, direction: 'ingress', protocol: 'tcp', cidr: '10.0.0.0/24', portMin: 80, portMax: 90 },
          { tag: 5, direction: 'ingress', protocol: 'tcp', cidr: '10.0.0.0/24', portMin: 80, portMax: 90 },
          { tag: 5, direction: 'ingress', protocol: 'tcp', cidr: '10.0.0.0/16', portMin: 85, portMax: 443 },
          { tag: 5, direction: 'ingress', protocol: 'any', cidr: '10.1.0.0/24' },
          { tag: 5, direction: 'ingress', protocol: 'any', cidr: '10.1.1.0/24' },
          { tag: 5, direction: 'ingress', protocol: 'any', cidr: '10.1.0.128/25' },
        ],
      ),
    );
    assert.deepEqual(model.inet.sets.get('ingress_l4')?.elements, [
      '0x00000005 . 10.0.0.0/24 . tcp . 80-443',
      '0x00000005 . 10.0.1.0-10.0.255.255 . tcp . 85-443',
    ]);
    assert.deepEqual(model.inet.sets.get('ingress_any')?.elements, ['0x00000005 . 10.1.0.0/23']);
  });

  test('bad input is refused with an Error', () => {
    const bad: [string, HostFirewall][] = [
      ['0.0.0.0/0 allowed', fw([port(1, { allowedAddresses: ['0.0.0.0/0'] })], [])],
      ['duplicate tag', fw([port(1), port(1, { tap: 'rpt0000000000ff' })], [])],
      ['duplicate tap', fw([port(1), port(2, { tap: 'rpt000000000001' })], [])],
      ['bad tap name', fw([port(1, { tap: 'eth0' })], [])],
      ['injection in tap', fw([port(1, { tap: 'rpt00000000000" accept' })], [])],
      ['bad mac', fw([port(1, { mac: '02:00:00:00:00:0g' })], [])],
      ['multicast mac', fw([port(1, { mac: '01:00:5e:00:00:01' })], [])],
      ['bridge with two zones', fw([port(1), port(2, { zone: 4 })], [])],
      ['zone on two bridges', fw([port(1), port(2, { bridge: 'rpb000000000002' })], [])],
      [
        'rule for unknown tag',
        fw([port(1)], [{ tag: 2, direction: 'ingress', protocol: 'any', cidr: '10.0.0.0/8' }]),
      ],
      [
        'ports for icmp',
        fw(
          [port(1)],
          [{ tag: 1, direction: 'ingress', protocol: 'icmp', cidr: '10.0.0.0/8', portMin: 1, portMax: 2 }],
        ),
      ],
      [
        'portMin > portMax',
        fw(
          [port(1)],
          [{ tag: 1, direction: 'ingress', protocol: 'tcp', cidr: '10.0.0.0/8', portMin: 9, portMax: 2 }],
        ),
      ],
      [
        'only portMin',
        fw([port(1)], [{ tag: 1, direction: 'ingress', protocol: 'tcp', cidr: '10.0.0.0/8', portMin: 9 }]),
      ],
      ['bad cidr', fw([port(1)], [{ tag: 1, direction: 'ingress', protocol: 'tcp', cidr: '10.0.0.0/33' }])],
    ];
    for (const [what, input] of bad) assert.throws(() => renderRuleset(input), Error, what);
  });

  test('renders 10,000 rules compactly and quickly', () => {
    const ports = Array.from({ length: 100 }, (_, i) =>
      port(i + 1, { ipv4: `10.0.${Math.floor(i / 200)}.${(i % 200) + 2}` }),
    );
    const rules: FirewallRule[] = [];
    for (let i = 0; i < 10_000; i++) {
      rules.push({
        tag: (i % 100) + 1,
        direction: i % 2 ? 'ingress' : 'egress',
        protocol: 'tcp',
        cidr: `172.${16 + (i % 16)}.${Math.floor(i / 16) % 256}.0/24`,
        portMin: 1000 + (i % 7),
        portMax: 1000 + (i % 7),
      });
    }
    const started = performance.now();
    const text = renderRuleset(fw(ports, rules));
    assert.ok(performance.now() - started < 2000);
    assert.ok(text.length < 1_500_000, `${text.length} characters`);
  });

  test(
    'as root, nft -c accepts the rendering and the removal',
    { skip: process.getuid?.() !== 0 },
    async () => {
      const text = renderRuleset(
        fw(
          [port(1, { allowedAddresses: ['10.0.1.0/28'] }), port(2)],
          [
            { tag: 1, direction: 'egress', protocol: 'any', cidr: '0.0.0.0/0' },
            { tag: 2, direction: 'ingress', protocol: 'icmp', cidr: '10.0.0.0/24' },
            {
              tag: 2,
              direction: 'ingress',
              protocol: 'tcp',
              cidr: '10.0.0.0/16',
              portMin: 1,
              portMax: 65535,
            },
          ],
        ),
      );
      const tunnelled = renderRuleset({ ...fw([port(1)], []), networks: [TUNNELLED] });
      for (const input of [text, tunnelled, renderRemoval()]) {
        const result = await runSettled('nft', ['-c', '-f', '-'], { input });
        assert.equal(result.exitCode, 0, result.stderr);
      }
    },
  );
});

const TUNNELLED = {
  bridge: 'rpb000000000001',
  zone: 3,
  cidr: '10.0.0.0/24',
  gateway: '10.0.0.1',
  outbound: false,
  vni: 3,
  peers: ['192.0.2.3', '192.0.2.2', '192.0.2.9'],
};

describe('networks that span hosts (VXLAN)', () => {
  test('a network with peers: its tunnel is marked, peers listed, VXLAN accepted only from them', () => {
    const model = buildModel({
      ...fw([port(1)], [{ tag: 1, direction: 'ingress', protocol: 'icmp', cidr: '10.0.0.9/32' }]),
      networks: [TUNNELLED],
    });
    assert.deepEqual(model.bridge.sets.get('tunnels')!.canonical, ['rpx000000000001']);
    assert.deepEqual(model.inet.sets.get('tunnel_peers')!.canonical, [
      '192.0.2.2-192.0.2.3',
      '192.0.2.9-192.0.2.9',
    ]);
    const out = model.bridge.chains.get('out')!.rules;
    assert.deepEqual(out, [
      'oifname vmap @ports_out',
      'oifname @tunnels meta mark set meta mark & 0xffff0000 | 0x0000ffff accept',
      'oifname "rpt*" counter name unknown_port drop',
    ]);
    // Frames from a tunnel lose any mark (no in-port); the ports' marks never leave in the outer packet.
    assert.ok(
      model.bridge.chains.get('pre')!.rules.includes('iifname @tunnels meta mark set 0x00000000 accept'),
    );
    assert.deepEqual(model.bridge.chains.get('tunnel_post')!.rules, [
      'oifname @tunnels meta mark set 0x00000000',
    ]);
    // The host's own frames (gateway, ARP answers) never enter a tunnel.
    assert.deepEqual(model.bridge.chains.get('host_out')!.rules, [
      'oifname @tunnels counter name tunnel_from_host drop',
    ]);
    assert.deepEqual(model.inet.chains.get('input')!.rules, [
      'iifname @bridges counter name to_host drop',
      'udp dport 4789 ip saddr != @tunnel_peers counter name tunnel_refused drop',
    ]);
    const guard = model.inet.chains.get('guard')!.rules;
    // Into a tunnel only after the sender's egress check; a remote sender takes the normal ingress path
    // (keyed by out-port and source address); nothing from a tunnel leaves the network here.
    const egress = guard.indexOf('meta mark & 0xffff0000 != 0 jump egress');
    const toTunnel = guard.indexOf('meta mark & 0xffff0000 != 0 meta mark & 0x0000ffff == 0x0000ffff accept');
    const ingress = guard.indexOf('meta mark & 0x0000ffff != 0 jump ingress');
    const remoteOut = guard.indexOf(
      'oifname != @bridges meta mark & 0xffff0000 == 0 counter name no_outbound drop',
    );
    assert.ok(
      remoteOut >= 0 && remoteOut < egress && egress < toTunnel && toTunnel < ingress,
      guard.join('\n'),
    );
    // A remote sender is matched by its address in the receiving port's ingress set.
    assert.deepEqual(model.inet.sets.get('ingress_proto')!.canonical, ['1 . 10.0.0.9-10.0.0.9 . icmp']);
  });

  test('without peers there is no tunnel and UDP 4789 is left alone', () => {
    for (const network of [
      { ...TUNNELLED, peers: [] },
      { bridge: 'rpb000000000001', zone: 3, cidr: '10.0.0.0/24', gateway: '10.0.0.1', outbound: false },
    ]) {
      const model = buildModel({ ...fw([port(1)], []), networks: [network] });
      assert.deepEqual(model.bridge.sets.get('tunnels')!.canonical, []);
      assert.deepEqual(model.inet.sets.get('tunnel_peers')!.canonical, []);
      assert.deepEqual(model.inet.chains.get('input')!.rules, ['iifname @bridges counter name to_host drop']);
    }
  });

  test('bad tunnel input is refused; tag 65535 is reserved while there are tunnels', () => {
    const bad = [
      { ...TUNNELLED, peers: ['192.0.2.300'] },
      { ...TUNNELLED, peers: ['192.0.2.2; drop'] },
      { ...TUNNELLED, vni: undefined },
      { ...TUNNELLED, vni: 0 },
      { ...TUNNELLED, vni: 16_777_216 },
    ];
    for (const network of bad)
      assert.throws(
        () => buildModel({ ...fw([port(1)], []), networks: [network] }),
        /invalid firewall state/,
      );
    assert.throws(
      () =>
        buildModel({
          ...fw([port(65_535, { mac: '02:00:00:00:ff:ff', ipv4: '10.0.0.200' })], []),
          networks: [TUNNELLED],
        }),
      /reserved for tunnels/,
    );
    assert.doesNotThrow(() =>
      buildModel({
        ...fw([port(65_535, { mac: '02:00:00:00:ff:ff', ipv4: '10.0.0.200' })], []),
        networks: [{ ...TUNNELLED, peers: [] }],
      }),
    );
  });
});

describe('ranges', () => {
  test('addresses and CIDRs', () => {
    assert.equal(ipv4ToNumber('10.0.0.1'), 0x0a000001);
    assert.equal(numberToIpv4(0xffffffff), '255.255.255.255');
    assert.deepEqual(cidrToRange('10.0.0.5/24'), { start: 0x0a000000, end: 0x0a0000ff });
    assert.deepEqual(cidrToRange('0.0.0.0/0'), { start: 0, end: 0xffffffff });
    assert.equal(renderIpRange(cidrToRange('10.1.0.0/16')), '10.1.0.0/16');
    assert.equal(renderIpRange({ start: 1, end: 1 }), '0.0.0.1');
    assert.equal(renderIpRange({ start: 1, end: 2 }), '0.0.0.1-0.0.0.2');
    assert.equal(renderIpRange({ start: 0, end: 0xffffffff }), '0.0.0.0/0');
    assert.throws(() => cidrToRange('10.0.0.0'));
  });

  test('mergeRanges merges overlapping and adjacent ranges, keeps gaps', () => {
    assert.deepEqual(
      mergeRanges([
        { start: 10, end: 20 },
        { start: 1, end: 3 },
        { start: 4, end: 5 },
        { start: 15, end: 30 },
        { start: 40, end: 40 },
        { start: 40, end: 40 },
      ]),
      [
        { start: 1, end: 5 },
        { start: 10, end: 30 },
        { start: 40, end: 40 },
      ],
    );
    assert.deepEqual(mergeRanges([]), []);
  });

  test('disjointRectangles covers the same area with disjoint rectangles', () => {
    const rects: Rectangle[] = [
      { ip: { start: 0, end: 99 }, port: { start: 80, end: 90 } },
      { ip: { start: 50, end: 149 }, port: { start: 85, end: 100 } },
      { ip: { start: 50, end: 149 }, port: { start: 200, end: 200 } },
      { ip: { start: 150, end: 160 }, port: { start: 85, end: 100 } },
    ];
    const out = disjointRectangles(rects);
    assert.deepEqual(out, [
      { ip: { start: 0, end: 49 }, port: { start: 80, end: 90 } },
      { ip: { start: 50, end: 99 }, port: { start: 80, end: 100 } },
      { ip: { start: 50, end: 99 }, port: { start: 200, end: 200 } },
      { ip: { start: 100, end: 149 }, port: { start: 85, end: 100 } },
      { ip: { start: 100, end: 149 }, port: { start: 200, end: 200 } },
      { ip: { start: 150, end: 160 }, port: { start: 85, end: 100 } },
    ]);
    // Brute-force check on a small grid: same coverage, no overlap.
    const covered = (list: Rectangle[], ip: number, p: number) =>
      list.filter((r) => r.ip.start <= ip && ip <= r.ip.end && r.port.start <= p && p <= r.port.end).length;
    for (let ip = 0; ip <= 170; ip += 1) {
      for (const p of [79, 80, 85, 90, 91, 100, 101, 199, 200, 201]) {
        assert.equal(covered(out, ip, p), covered(rects, ip, p) > 0 ? 1 : 0, `${ip}/${p}`);
      }
    }
  });

  test('directionElements is deterministic whatever the rule order', () => {
    const rules = [
      { mark: 2, protocol: 'udp' as const, ip: cidrToRange('10.0.0.0/8'), port: null },
      { mark: 1, protocol: 'tcp' as const, ip: cidrToRange('10.0.0.0/8'), port: { start: 1, end: 2 } },
      { mark: 1, protocol: 'icmp' as const, ip: cidrToRange('10.0.0.0/8'), port: null },
    ];
    assert.deepEqual(directionElements(rules), directionElements([...rules].reverse()));
  });
});

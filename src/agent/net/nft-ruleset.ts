/**
 * Renders the host's firewall intent (src/api/host-network.ts) into one nftables transaction for
 * `nft -f -` that replaces Rampart's two tables atomically. Pure: no I/O.
 *
 * Why two tables (HOST-NOTES.md, Networking): this kernel has no CONFIG_NF_CONNTRACK_BRIDGE, so the
 * bridge family can filter only statelessly. Stateful security groups run in an `inet` table, which sees
 * bridged IPv4 because br_netfilter is on (bridge-nf-call-iptables=1), but there the input and output
 * interface are the *bridge*, not the taps. The bridge table therefore writes the ports into the packet
 * mark: in-port tag in the high 16 bits (bridge prerouting), out-port tag in the low 16 bits (bridge
 * forward at priority -10, before br_netfilter hands the packet to the inet forward hook at 0).
 *
 * bridge table `rampart`
 * - `pre` (prerouting, -300): `iifname vmap @ports_in` jumps to the port's `port_<tag>` chain; an
 *   `rpt*` interface that is not a known port is dropped (counter `unknown_port`). Other interfaces are
 *   untouched (policy accept).
 * - `port_<tag>`: anti-spoofing, one named counter per reason (`p<tag>_mac`, `_arp`, `_dhcp_server`,
 *   `_ip`, `_router_advert`, `_ethertype`); accepted frames are counted in `p<tag>_ok` and marked
 *   `tag << 16`. Only IPv4 and ARP are accepted: IPv6 is not offered to guests yet, so every IPv6 frame
 *   is dropped (router advertisements under their own counter, the rest as `ethertype`).
 * - `out` (forward, -10): `oifname vmap @ports_out` jumps to `out_<tag>`, which puts the tag into the
 *   low 16 bits; frames to an unknown `rpt*` interface are dropped.
 *
 * inet table `rampart`
 * - `zones` (prerouting, raw = -300, before conntrack): `ct zone set iifname map @zones`, one zone per
 *   bridge, so two networks with the same addresses never share conntrack entries.
 * - `forward` (filter): only packets whose iifname or oifname is a Rampart bridge (`@bridges`) go to
 *   `guard`: traffic that does not stay on one bridge is dropped (`cross_network`); established/related
 *   accepted; invalid dropped; then a new flow from a port must be in one of the `egress_*` sets (keyed
 *   by `mark & 0xffff0000`), and a new flow to a port in one of the `ingress_*` sets (keyed by
 *   `mark & 0xffff`). A refused flow goes through the `ingress_deny` / `egress_deny` verdict maps to the
 *   port's `deny_in_<tag>` / `deny_out_<tag>` chain, which counts it (`p<tag>_ingress_denied`,
 *   `p<tag>_egress_denied`) and drops it. The packet path has a fixed number of rules whatever the
 *   number of ports and rules: every per-port decision is a set or map lookup.
 * - Denied TCP/UDP flows are also written, once per minute each, into two dynamic sets keyed by
 *   `mark . daddr . l4proto . dport`: `denied_egress` (refused by the sending port's own groups) and
 *   `denied_ingress` (refused by the receiving port's groups, when the sender is a local port). The
 *   agent reads them for the security engine (a port scan is many destination ports); their elements
 *   come and go with traffic, so drift detection ignores them.
 * - `input` (filter): everything arriving from a Rampart bridge is dropped and counted (`to_host`):
 *   guests never reach the host (no DHCP or metadata service yet).
 *
 * Networks that span hosts (a VXLAN device `rpx…` per network on its bridge, port-devices.ts): a frame
 * from the tunnel comes from no local tap, so it carries no in-port (high 16 bits 0): it was checked by
 * the anti-spoofing and the egress rules of its sending port on its own host. A frame to the tunnel gets
 * the reserved out-port value 0xffff (`TUNNEL_MARK`; the server never gives a port tag 65535) in the
 * bridge `out` chain (`oifname @tunnels`), and `guard` accepts it after the sender's egress check
 * (ingress is the receiving host's job). A frame from the tunnel to a local port takes the normal
 * ingress path: the `ingress_*` sets are keyed by out-port and source address, so rules with a CIDR or
 * a remote group (resolved by the server to its members' addresses on every host) apply to remote
 * senders as to local ones. Nothing from the tunnel leaves the network (`no_outbound`: a new flow
 * leaving it must come from a local port), and the host's own frames (its gateway address, ARP
 * answers) never enter a tunnel (bridge `host_out`, counter `tunnel_from_host`), so every host is the
 * gateway of its own guests only. The mark is cleared on frames entering from a tunnel (bridge `pre`)
 * and leaving into one (bridge `tunnel_post`): the kernel keeps it across VXLAN, and the ports' marks
 * must neither steer the host's own routing or NAT of the outer packet nor be forged from outside. When there are tunnels, the inet `input` chain accepts VXLAN (UDP
 * 4789) only from the peers' addresses (`tunnel_peers`; counter `tunnel_refused`).
 *
 * Sets with `flags interval` refuse overlapping elements, so the rules are turned into disjoint
 * elements first: address ranges merged per key, and for (address x port) rectangles a sweep that
 * yields disjoint rectangles (`disjointRectangles`).
 */
import {
  BRIDGE_NAME_PATTERN,
  CIDR4_PATTERN,
  IPV4_PATTERN,
  MAC_PATTERN,
  SPOOF_REASONS,
  TAP_NAME_PATTERN,
  VXLAN_PORT,
  type FirewallRule,
  type HostFirewall,
  type PortIntent,
  type SpoofReason,
} from '../../api/host-network.js';

export const TABLE_NAME = 'rampart';
export type Family = 'bridge' | 'inet';
export const FAMILIES: readonly Family[] = ['bridge', 'inet'];

/** An inclusive range of unsigned integers (IPv4 addresses as 32-bit numbers, or ports). */
export interface Range {
  start: number;
  end: number;
}

/** Host-wide named counters in the inet table / bridge table. */
export const GLOBAL_COUNTERS = {
  bridge: ['unknown_port', 'tunnel_from_host'],
  inet: [
    'cross_network',
    'invalid',
    'unknown_port',
    'to_host',
    'inbound',
    'no_outbound',
    'to_management',
    'tunnel_refused',
  ],
} as const;

const BRIDGE_RE = new RegExp(BRIDGE_NAME_PATTERN);
const TAP_RE = new RegExp(TAP_NAME_PATTERN);
const IPV4_RE = new RegExp(IPV4_PATTERN);
const CIDR4_RE = new RegExp(CIDR4_PATTERN);
const MAC_RE = new RegExp(MAC_PATTERN);

/** The low-16-bit (out-port) mark value of a frame sent into a tunnel: never a port tag. */
export const TUNNEL_MARK = 0xffff;

/** The VXLAN device of the network on `bridge` (port-devices.ts creates it under this name). */
export function tunnelOf(bridge: string): string {
  return `rpx${bridge.slice(3)}`;
}

// ---- counter names ----

export function spoofCounterName(tag: number, reason: SpoofReason): string {
  return `p${tag}_${reason.replace(/-/g, '_')}`;
}
export function okCounterName(tag: number): string {
  return `p${tag}_ok`;
}
/** Frames dropped because the port is isolated (quarantined). */
export function quarantineCounterName(tag: number): string {
  return `p${tag}_quarantine`;
}
export function deniedCounterName(tag: number, direction: 'ingress' | 'egress'): string {
  return `p${tag}_${direction}_denied`;
}

/** The dynamic sets of denied flows (see the header), by where the flow was refused. */
export const DENIED_SETS = { egress: 'denied_egress', ingress: 'denied_ingress' } as const;
/** How long a denied flow stays in its set: one report per flow per this many seconds. */
export const DENIED_TIMEOUT_SECONDS = 60;
/** At most this many denied flows are remembered per host (nft refuses new ones when full). */
export const DENIED_SET_SIZE = 65_535;
const DENIED_KEY = 'meta mark . ip daddr . meta l4proto . th dport';

// ---- addresses and ranges ----

export function ipv4ToNumber(address: string): number {
  if (!IPV4_RE.test(address)) throw new Error(`not an IPv4 address: ${JSON.stringify(address)}`);
  return address.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

export function numberToIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

/** The address range of a CIDR; host bits are ignored (10.0.0.5/24 is 10.0.0.0-10.0.0.255). */
export function cidrToRange(cidr: string): Range {
  if (!CIDR4_RE.test(cidr)) throw new Error(`not an IPv4 CIDR: ${JSON.stringify(cidr)}`);
  const [address, lengthText] = cidr.split('/') as [string, string];
  const length = Number(lengthText);
  const size = 2 ** (32 - length);
  const start = Math.floor(ipv4ToNumber(address) / size) * size;
  return { start, end: start + size - 1 };
}

/** nft text for an address range: a plain address, a prefix when it is one, otherwise `a-b`. */
export function renderIpRange(range: Range): string {
  if (range.start === range.end) return numberToIpv4(range.start);
  const size = range.end - range.start + 1;
  const length = 32 - Math.log2(size);
  if (Number.isInteger(length) && range.start % size === 0) return `${numberToIpv4(range.start)}/${length}`;
  return `${numberToIpv4(range.start)}-${numberToIpv4(range.end)}`;
}

/** Sorts and merges overlapping and adjacent ranges. */
export function mergeRanges(ranges: readonly Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a.start - b.start || a.end - b.end);
  const merged: Range[] = [];
  for (const range of sorted) {
    if (range.start > range.end) throw new Error(`empty range ${range.start}-${range.end}`);
    const last = merged[merged.length - 1];
    if (last && range.start <= last.end + 1) last.end = Math.max(last.end, range.end);
    else merged.push({ ...range });
  }
  return merged;
}

export interface Rectangle {
  ip: Range;
  port: Range;
}

function sameRanges(a: readonly Range[], b: readonly Range[]): boolean {
  return a.length === b.length && a.every((r, i) => r.start === b[i]?.start && r.end === b[i]?.end);
}

/**
 * Turns possibly overlapping (address range x port range) rectangles into disjoint ones covering the
 * same area: a sweep over the address axis; each elementary address interval gets the merged port
 * ranges of the rectangles covering it, and neighbouring intervals with the same ports are joined.
 * Deterministic (sorted by address, then port).
 */
export function disjointRectangles(rects: readonly Rectangle[]): Rectangle[] {
  if (rects.length === 0) return [];
  const starts = new Map<number, Rectangle[]>();
  const ends = new Map<number, Rectangle[]>(); // keyed by end + 1
  const points = new Set<number>();
  for (const rect of rects) {
    if (rect.ip.start > rect.ip.end || rect.port.start > rect.port.end) throw new Error('empty rectangle');
    (starts.get(rect.ip.start) ?? starts.set(rect.ip.start, []).get(rect.ip.start)!).push(rect);
    const after = rect.ip.end + 1;
    (ends.get(after) ?? ends.set(after, []).get(after)!).push(rect);
    points.add(rect.ip.start).add(after);
  }
  const sorted = [...points].sort((a, b) => a - b);
  const active = new Set<Rectangle>();
  // Segments [start, end] with their merged port ranges.
  const segments: { ip: Range; ports: Range[] }[] = [];
  for (let i = 0; i < sorted.length - 1; i++) {
    const point = sorted[i]!;
    for (const rect of ends.get(point) ?? []) active.delete(rect);
    for (const rect of starts.get(point) ?? []) active.add(rect);
    if (active.size === 0) continue;
    const ports = mergeRanges([...active].map((r) => r.port));
    const ip = { start: point, end: sorted[i + 1]! - 1 };
    const last = segments[segments.length - 1];
    if (last && last.ip.end + 1 === ip.start && sameRanges(last.ports, ports)) last.ip.end = ip.end;
    else segments.push({ ip, ports });
  }
  return segments.flatMap((segment) => segment.ports.map((port) => ({ ip: { ...segment.ip }, port })));
}

// ---- validation ----

function fail(message: string): never {
  throw new Error(`invalid firewall state: ${message}`);
}

function isTag(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65_535;
}

function validatePort(port: PortIntent): void {
  if (!isTag(port.tag)) fail(`port tag ${String(port.tag)} is not 1..65535`);
  const what = `port ${port.tag}`;
  if (!isTag(port.zone)) fail(`${what}: zone ${String(port.zone)} is not 1..65535`);
  if (typeof port.bridge !== 'string' || !BRIDGE_RE.test(port.bridge)) fail(`${what}: bad bridge name`);
  if (typeof port.tap !== 'string' || !TAP_RE.test(port.tap)) fail(`${what}: bad tap name`);
  if (typeof port.mac !== 'string' || !MAC_RE.test(port.mac)) fail(`${what}: bad MAC address`);
  if (parseInt(port.mac.slice(0, 2), 16) & 1) fail(`${what}: MAC ${port.mac} is a multicast address`);
  if (typeof port.ipv4 !== 'string' || !IPV4_RE.test(port.ipv4)) fail(`${what}: bad IPv4 address`);
  if (port.ipv4 === '0.0.0.0' || port.ipv4 === '255.255.255.255') fail(`${what}: unusable IPv4 address`);
  if (!Array.isArray(port.allowedAddresses) || port.allowedAddresses.length > 16) {
    fail(`${what}: allowedAddresses must be an array of at most 16 CIDRs`);
  }
  for (const cidr of port.allowedAddresses) {
    if (typeof cidr !== 'string' || !CIDR4_RE.test(cidr)) fail(`${what}: bad allowed address`);
    if (cidr.endsWith('/0')) fail(`${what}: allowed address ${cidr} would allow any source address`);
  }
}

function validateRule(rule: FirewallRule, tags: ReadonlySet<number>, index: number): void {
  const what = `rule ${index}`;
  if (!isTag(rule.tag) || !tags.has(rule.tag))
    fail(`${what}: tag ${String(rule.tag)} is no port on this host`);
  if (rule.direction !== 'ingress' && rule.direction !== 'egress') fail(`${what}: bad direction`);
  if (!['tcp', 'udp', 'icmp', 'any'].includes(rule.protocol)) fail(`${what}: bad protocol`);
  if (typeof rule.cidr !== 'string' || !CIDR4_RE.test(rule.cidr)) fail(`${what}: bad CIDR`);
  const hasMin = rule.portMin !== undefined;
  const hasMax = rule.portMax !== undefined;
  if (hasMin || hasMax) {
    if (rule.protocol !== 'tcp' && rule.protocol !== 'udp') fail(`${what}: ports only for tcp and udp`);
    if (!hasMin || !hasMax) fail(`${what}: portMin and portMax go together`);
    for (const p of [rule.portMin, rule.portMax]) {
      if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65_535) fail(`${what}: bad port`);
    }
    if (rule.portMin! > rule.portMax!) fail(`${what}: portMin > portMax`);
  }
}

// ---- the model: what the tables contain, used for rendering and for drift detection ----

/** One set or map: its declaration line(s) and its canonical elements (see canonical forms below). */
export interface SetModel {
  kind: 'set' | 'map';
  /** nft declaration body without elements, e.g. `type mark . ipv4_addr; flags interval;`. */
  declaration: string;
  /** Elements as nft text (rendered). */
  elements: string[];
  /**
   * Canonical elements, comparable with what `nft -j list` returns: parts joined by ` . `, addresses
   * and ports as `start-end`, marks and zones as decimal numbers, verdicts as `jump <chain>`, map
   * values after ` : `.
   */
  canonical: string[];
  /** Filled by the packet path (`add @set`), not by the intent: its elements are never compared. */
  dynamic?: boolean;
}

export interface ChainModel {
  /** For base chains: `type filter hook <hook> priority <n>; policy accept;`. */
  base: { type: string; hook: string; priority: number } | null;
  rules: string[];
}

export interface TableModel {
  counters: string[];
  sets: Map<string, SetModel>;
  chains: Map<string, ChainModel>;
}

export type RulesetModel = Record<Family, TableModel>;

const hex = (value: number) => `0x${value.toString(16).padStart(8, '0')}`;
const rangeText = (r: Range) => `${r.start}-${r.end}`;
const ipCanon = (r: Range) => `${numberToIpv4(r.start)}-${numberToIpv4(r.end)}`;
const portText = (r: Range) => (r.start === r.end ? String(r.start) : `${r.start}-${r.end}`);

interface Element {
  text: string;
  canonical: string;
}

export interface RuleKeyed {
  /** mark value of the key (tag for ingress, tag << 16 for egress). */
  mark: number;
  protocol: 'tcp' | 'udp' | 'icmp' | 'any';
  ip: Range;
  port: Range | null;
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = groups.get(k);
    if (list) list.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

/** The elements of the three sets of one direction, disjoint and deterministic. */
export function directionElements(rules: readonly RuleKeyed[]): {
  l4: Element[];
  proto: Element[];
  any: Element[];
} {
  const byMark = (a: RuleKeyed, b: RuleKeyed) => a.mark - b.mark;
  const l4: Element[] = [];
  const proto: Element[] = [];
  const any: Element[] = [];
  const protoOrder = ['icmp', 'tcp', 'udp'];
  // any protocol: mark . ip
  for (const [, group] of [
    ...groupBy(
      rules.filter((r) => r.protocol === 'any'),
      (r) => String(r.mark),
    ),
  ].sort((a, b) => byMark(a[1][0]!, b[1][0]!))) {
    const mark = group[0]!.mark;
    for (const ip of mergeRanges(group.map((r) => r.ip))) {
      any.push({ text: `${hex(mark)} . ${renderIpRange(ip)}`, canonical: `${mark} . ${ipCanon(ip)}` });
    }
  }
  // a protocol with every port: mark . ip . proto
  const whole = rules.filter((r) => r.protocol !== 'any' && r.port === null);
  const wholeGroups = [...groupBy(whole, (r) => `${r.mark}/${r.protocol}`)].sort(
    (a, b) =>
      byMark(a[1][0]!, b[1][0]!) ||
      protoOrder.indexOf(a[1][0]!.protocol) - protoOrder.indexOf(b[1][0]!.protocol),
  );
  for (const [, group] of wholeGroups) {
    const { mark, protocol } = group[0]!;
    for (const ip of mergeRanges(group.map((r) => r.ip))) {
      proto.push({
        text: `${hex(mark)} . ${renderIpRange(ip)} . ${protocol}`,
        canonical: `${mark} . ${ipCanon(ip)} . ${protocol}`,
      });
    }
  }
  // tcp/udp with ports: mark . ip . proto . port range
  const ported = rules.filter((r) => r.port !== null);
  const portedGroups = [...groupBy(ported, (r) => `${r.mark}/${r.protocol}`)].sort(
    (a, b) =>
      byMark(a[1][0]!, b[1][0]!) ||
      protoOrder.indexOf(a[1][0]!.protocol) - protoOrder.indexOf(b[1][0]!.protocol),
  );
  for (const [, group] of portedGroups) {
    const { mark, protocol } = group[0]!;
    for (const rect of disjointRectangles(group.map((r) => ({ ip: r.ip, port: r.port! })))) {
      l4.push({
        text: `${hex(mark)} . ${renderIpRange(rect.ip)} . ${protocol} . ${portText(rect.port)}`,
        canonical: `${mark} . ${ipCanon(rect.ip)} . ${protocol} . ${rangeText(rect.port)}`,
      });
    }
  }
  return { l4, proto, any };
}

function set(kind: 'set' | 'map', declaration: string, elements: readonly Element[]): SetModel {
  return {
    kind,
    declaration,
    elements: elements.map((e) => e.text),
    canonical: elements.map((e) => e.canonical).sort(),
  };
}

function quote(name: string): string {
  return `"${name}"`;
}

function portChainRules(port: PortIntent): string[] {
  const tag = port.tag;
  const mark = hex(tag * 65_536);
  const c = (reason: SpoofReason) => `counter name ${spoofCounterName(tag, reason)} drop`;
  const sources = mergeRanges([
    { start: ipv4ToNumber(port.ipv4), end: ipv4ToNumber(port.ipv4) },
    ...port.allowedAddresses.map(cidrToRange),
  ])
    .map(renderIpRange)
    .join(', ');
  const accept = `meta mark set ${mark} counter name ${okCounterName(tag)} accept`;
  return [
    `ether saddr != ${port.mac} ${c('mac')}`,
    `ether type arp arp saddr ether != ${port.mac} ${c('arp')}`,
    `ether type arp arp saddr ip != { ${sources} } ${c('arp')}`,
    `ether type arp ${accept}`,
    `ether type ip udp sport 67 ${c('dhcp-server')}`,
    `ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 ${accept}`,
    `ether type ip ip saddr != { ${sources} } ${c('ip')}`,
    `ether type ip ${accept}`,
    `ether type ip6 icmpv6 type nd-router-advert ${c('router-advert')}`,
    c('ethertype'),
  ];
}

/** Validates the intent and builds the model of both tables. Throws an Error on invalid input. */
export function buildModel(fw: HostFirewall): RulesetModel {
  if (typeof fw !== 'object' || fw === null || !Array.isArray(fw.ports) || !Array.isArray(fw.rules)) {
    fail('expected { ports: [], rules: [] }');
  }
  const ports = [...fw.ports].sort((a, b) => a.tag - b.tag);
  const tags = new Set<number>();
  const taps = new Set<string>();
  const bridgeZone = new Map<string, number>();
  const zoneBridge = new Map<number, string>();
  for (const port of ports) {
    validatePort(port);
    if (tags.has(port.tag)) fail(`tag ${port.tag} is used by two ports`);
    if (taps.has(port.tap)) fail(`tap ${port.tap} is used by two ports`);
    tags.add(port.tag);
    taps.add(port.tap);
    const zone = bridgeZone.get(port.bridge);
    if (zone !== undefined && zone !== port.zone) fail(`bridge ${port.bridge} has two zones`);
    const bridge = zoneBridge.get(port.zone);
    if (bridge !== undefined && bridge !== port.bridge) fail(`zone ${port.zone} is used by two bridges`);
    bridgeZone.set(port.bridge, port.zone);
    zoneBridge.set(port.zone, port.bridge);
  }
  const ingress: RuleKeyed[] = [];
  const egress: RuleKeyed[] = [];
  fw.rules.forEach((rule, index) => {
    validateRule(rule, tags, index);
    const keyed: RuleKeyed = {
      mark: rule.direction === 'ingress' ? rule.tag : rule.tag * 65_536,
      protocol: rule.protocol,
      ip: cidrToRange(rule.cidr),
      port: rule.portMin === undefined ? null : { start: rule.portMin, end: rule.portMax! },
    };
    (rule.direction === 'ingress' ? ingress : egress).push(keyed);
  });
  const bridges = [...bridgeZone.keys()].sort();
  // Networks: their subnets (intra-network traffic) and which have outbound access (NAT).
  const networks = [...(fw.networks ?? [])].filter((n) => bridgeZone.has(n.bridge));
  for (const network of networks) {
    if (!BRIDGE_RE.test(network.bridge)) fail(`bad bridge name ${JSON.stringify(network.bridge)}`);
    if (bridgeZone.get(network.bridge) !== network.zone)
      fail(`network ${network.bridge} has another zone than its ports`);
    if (!CIDR4_RE.test(network.cidr))
      fail(`network ${network.bridge}: bad subnet ${JSON.stringify(network.cidr)}`);
    if (!IPV4_RE.test(network.gateway))
      fail(`network ${network.bridge}: bad gateway ${JSON.stringify(network.gateway)}`);
  }
  networks.sort((a, b) => (a.bridge < b.bridge ? -1 : a.bridge > b.bridge ? 1 : 0));
  const outbound = networks.filter((n) => n.outbound).map((n) => n.bridge);
  // Networks spanning hosts: their tunnels and every peer address.
  const peerAddresses = new Set<string>();
  const tunnels: string[] = [];
  for (const network of networks) {
    const peers = network.peers ?? [];
    if (!Array.isArray(peers) || peers.length > 4096) fail(`network ${network.bridge}: bad peers`);
    for (const peer of peers) {
      if (typeof peer !== 'string' || !IPV4_RE.test(peer))
        fail(`network ${network.bridge}: bad peer ${JSON.stringify(peer)}`);
    }
    if (peers.length === 0) continue;
    const vni = network.vni;
    if (typeof vni !== 'number' || !Number.isInteger(vni) || vni < 1 || vni > 16_777_215)
      fail(`network ${network.bridge}: peers without a VNI 1..16777215`);
    tunnels.push(tunnelOf(network.bridge));
    for (const peer of peers) peerAddresses.add(peer);
  }
  if (tunnels.length > 0 && tags.has(TUNNEL_MARK))
    fail(`port tag ${TUNNEL_MARK} is reserved for tunnels (the out-port mark of a frame to a peer)`);
  const peerRanges = mergeRanges([...peerAddresses].map((a) => cidrToRange(`${a}/32`)));
  const management = mergeRanges(
    (fw.managementNets ?? []).map((c) => {
      if (!CIDR4_RE.test(c)) fail(`bad management subnet ${JSON.stringify(c)}`);
      return cidrToRange(c);
    }),
  );

  // bridge table
  const bridgeTable: TableModel = {
    counters: [
      ...GLOBAL_COUNTERS.bridge,
      ...ports.flatMap((p) => [
        ...SPOOF_REASONS.map((r) => spoofCounterName(p.tag, r)),
        okCounterName(p.tag),
        quarantineCounterName(p.tag),
      ]),
    ],
    sets: new Map([
      [
        'ports_in',
        set(
          'map',
          'type ifname : verdict;',
          ports.map((p) => ({
            text: `${quote(p.tap)} : jump port_${p.tag}`,
            canonical: `${p.tap} : jump port_${p.tag}`,
          })),
        ),
      ],
      [
        'ports_out',
        set(
          'map',
          'type ifname : verdict;',
          ports.map((p) => ({
            text: `${quote(p.tap)} : jump out_${p.tag}`,
            canonical: `${p.tap} : jump out_${p.tag}`,
          })),
        ),
      ],
      [
        'tunnels',
        set(
          'set',
          'type ifname;',
          tunnels.map((t) => ({ text: quote(t), canonical: t })),
        ),
      ],
    ]),
    chains: new Map<string, ChainModel>([
      [
        'pre',
        {
          base: { type: 'filter', hook: 'prerouting', priority: -300 },
          rules: [
            'iifname vmap @ports_in',
            // From a tunnel: no local in-port (a mark of the outer packet must not pose as one).
            'iifname @tunnels meta mark set 0x00000000 accept',
            'iifname "rpt*" counter name unknown_port drop',
          ],
        },
      ],
      [
        'out',
        {
          base: { type: 'filter', hook: 'forward', priority: -10 },
          rules: [
            'oifname vmap @ports_out',
            // Into a tunnel: the reserved out-port value (the receiving host checks ingress).
            `oifname @tunnels meta mark set meta mark & 0xffff0000 | ${hex(TUNNEL_MARK)} accept`,
            'oifname "rpt*" counter name unknown_port drop',
          ],
        },
      ],
      [
        'tunnel_post',
        {
          base: { type: 'filter', hook: 'postrouting', priority: 0 },
          // The ports' mark stays inside: the encapsulated packet leaves the host without it.
          rules: ['oifname @tunnels meta mark set 0x00000000'],
        },
      ],
      [
        'host_out',
        {
          base: { type: 'filter', hook: 'output', priority: 0 },
          // The host's own frames (gateway address, ARP answers) stay off the tunnels.
          rules: ['oifname @tunnels counter name tunnel_from_host drop'],
        },
      ],
    ]),
  };
  for (const port of ports) {
    // An isolated port: everything from and to it dropped first (established flows included).
    const isolate = port.quarantined === true ? [`counter name ${quarantineCounterName(port.tag)} drop`] : [];
    bridgeTable.chains.set(`port_${port.tag}`, { base: null, rules: [...isolate, ...portChainRules(port)] });
    bridgeTable.chains.set(`out_${port.tag}`, {
      base: null,
      rules: [...isolate, `meta mark set meta mark & 0xffff0000 | ${hex(port.tag)} accept`],
    });
  }

  // inet table
  const ing = directionElements(ingress);
  const egr = directionElements(egress);
  const inetTable: TableModel = {
    counters: [
      ...GLOBAL_COUNTERS.inet,
      ...ports.flatMap((p) => [deniedCounterName(p.tag, 'ingress'), deniedCounterName(p.tag, 'egress')]),
    ],
    sets: new Map([
      [
        'bridges',
        set(
          'set',
          'type ifname;',
          bridges.map((b) => ({ text: quote(b), canonical: b })),
        ),
      ],
      [
        'same_bridge',
        set(
          'set',
          'type ifname . ifname;',
          bridges.map((b) => ({ text: `${quote(b)} . ${quote(b)}`, canonical: `${b} . ${b}` })),
        ),
      ],
      [
        'outbound',
        set(
          'set',
          'type ifname;',
          outbound.map((b) => ({ text: quote(b), canonical: b })),
        ),
      ],
      [
        'internal',
        set(
          'set',
          'type ifname . ipv4_addr; flags interval;',
          // A bridge without a network entry keeps every destination in its zone (both directions).
          bridges.map((bridge) => {
            const network = networks.find((n) => n.bridge === bridge);
            const range = cidrToRange(network ? network.cidr : '0.0.0.0/0');
            return {
              text: `${quote(bridge)} . ${renderIpRange(range)}`,
              canonical: `${bridge} . ${ipCanon(range)}`,
            };
          }),
        ),
      ],
      [
        'management',
        set(
          'set',
          'type ipv4_addr; flags interval;',
          management.map((r) => ({ text: renderIpRange(r), canonical: ipCanon(r) })),
        ),
      ],
      [
        'tunnel_peers',
        set(
          'set',
          'type ipv4_addr; flags interval;',
          peerRanges.map((r) => ({ text: renderIpRange(r), canonical: ipCanon(r) })),
        ),
      ],
      [
        'zones',
        set(
          'map',
          'typeof iifname : ct zone;',
          bridges.map((b) => ({
            text: `${quote(b)} : ${bridgeZone.get(b)!}`,
            canonical: `${b} : ${bridgeZone.get(b)!}`,
          })),
        ),
      ],
      [
        'ingress_l4',
        set('set', 'type mark . ipv4_addr . inet_proto . inet_service; flags interval;', ing.l4),
      ],
      ['ingress_proto', set('set', 'type mark . ipv4_addr . inet_proto; flags interval;', ing.proto)],
      ['ingress_any', set('set', 'type mark . ipv4_addr; flags interval;', ing.any)],
      ['egress_l4', set('set', 'type mark . ipv4_addr . inet_proto . inet_service; flags interval;', egr.l4)],
      ['egress_proto', set('set', 'type mark . ipv4_addr . inet_proto; flags interval;', egr.proto)],
      ['egress_any', set('set', 'type mark . ipv4_addr; flags interval;', egr.any)],
      ...Object.values(DENIED_SETS).map((name): [string, SetModel] => [
        name,
        {
          ...set(
            'set',
            `typeof ${DENIED_KEY}; flags dynamic,timeout; timeout ${DENIED_TIMEOUT_SECONDS}s; size ${DENIED_SET_SIZE};`,
            [],
          ),
          dynamic: true,
        },
      ]),
      [
        'ingress_deny',
        set(
          'map',
          'type mark : verdict;',
          ports.map((p) => ({
            text: `${hex(p.tag)} : jump deny_in_${p.tag}`,
            canonical: `${p.tag} : jump deny_in_${p.tag}`,
          })),
        ),
      ],
      [
        'egress_deny',
        set(
          'map',
          'type mark : verdict;',
          ports.map((p) => ({
            text: `${hex(p.tag * 65_536)} : jump deny_out_${p.tag}`,
            canonical: `${p.tag * 65_536} : jump deny_out_${p.tag}`,
          })),
        ),
      ],
    ]),
    chains: new Map<string, ChainModel>([
      [
        'zones',
        {
          base: { type: 'filter', hook: 'prerouting', priority: -300 },
          rules: [
            // Inside a network both directions share its zone; traffic leaving through NAT has the
            // zone in its original direction only, so replies from outside (zone 0) still match.
            'iifname @outbound ct original zone set iifname map @zones',
            'iifname . ip daddr @internal ct zone set iifname map @zones',
          ],
        },
      ],
      [
        'postrouting',
        {
          base: { type: 'nat', hook: 'postrouting', priority: 100 },
          rules: ['meta mark & 0xffff0000 != 0 oifname != @bridges masquerade'],
        },
      ],
      [
        'forward',
        {
          base: { type: 'filter', hook: 'forward', priority: 0 },
          rules: ['iifname @bridges jump guard', 'oifname @bridges jump guard'],
        },
      ],
      [
        'guard',
        {
          base: null,
          rules: [
            'ct state established,related accept',
            'ct state invalid counter name invalid drop',
            // Nothing new comes into a network from outside it (no inbound NAT, no routing between).
            'iifname != @bridges counter name inbound drop',
            'oifname @bridges iifname . oifname != @same_bridge counter name cross_network drop',
            // Leaving a network: only with outbound access, and never into the host's own subnets.
            'oifname != @bridges iifname != @outbound counter name no_outbound drop',
            'oifname != @bridges ip daddr @management counter name to_management drop',
            // Only a local port's traffic leaves through this host (never a remote guest's, by tunnel).
            'oifname != @bridges meta mark & 0xffff0000 == 0 counter name no_outbound drop',
            'meta mark & 0xffff0000 != 0 jump egress',
            'oifname != @bridges accept',
            // From a local port into a tunnel, egress checked: the receiving host checks ingress.
            `meta mark & 0xffff0000 != 0 meta mark & 0x0000ffff == ${hex(TUNNEL_MARK)} accept`,
            'meta mark & 0x0000ffff != 0 jump ingress',
            'counter name unknown_port drop',
          ],
        },
      ],
      [
        'egress',
        {
          base: null,
          rules: [
            'meta mark & 0xffff0000 . ip daddr . meta l4proto . th dport @egress_l4 return',
            'meta mark & 0xffff0000 . ip daddr . meta l4proto @egress_proto return',
            'meta mark & 0xffff0000 . ip daddr @egress_any return',
            'meta mark & 0xffff0000 vmap @egress_deny',
            'counter name unknown_port drop',
          ],
        },
      ],
      [
        'ingress',
        {
          base: null,
          rules: [
            'meta mark & 0x0000ffff . ip saddr . meta l4proto . th dport @ingress_l4 accept',
            'meta mark & 0x0000ffff . ip saddr . meta l4proto @ingress_proto accept',
            'meta mark & 0x0000ffff . ip saddr @ingress_any accept',
            'meta mark & 0x0000ffff vmap @ingress_deny',
            'counter name unknown_port drop',
          ],
        },
      ],
      [
        'input',
        {
          base: { type: 'filter', hook: 'input', priority: 0 },
          rules: [
            'iifname @bridges counter name to_host drop',
            // VXLAN only from the peers (present while this host has tunnels).
            ...(tunnels.length > 0
              ? [`udp dport ${VXLAN_PORT} ip saddr != @tunnel_peers counter name tunnel_refused drop`]
              : []),
          ],
        },
      ],
    ]),
  };
  for (const port of ports) {
    inetTable.chains.set(`deny_in_${port.tag}`, {
      base: null,
      rules: [
        // Only flows from a local port are remembered: they name the VM that sent them.
        `meta mark & 0xffff0000 != 0 meta l4proto { tcp, udp } add @${DENIED_SETS.ingress} { ${DENIED_KEY} }`,
        `counter name ${deniedCounterName(port.tag, 'ingress')} drop`,
      ],
    });
    inetTable.chains.set(`deny_out_${port.tag}`, {
      base: null,
      rules: [
        `meta l4proto { tcp, udp } add @${DENIED_SETS.egress} { ${DENIED_KEY} }`,
        `counter name ${deniedCounterName(port.tag, 'egress')} drop`,
      ],
    });
  }
  return { bridge: bridgeTable, inet: inetTable };
}

/** Values named counters start from (so a re-apply keeps what they counted), per family. */
export type CounterValues = Partial<Record<Family, ReadonlyMap<string, { packets: number; bytes: number }>>>;

function renderTable(family: Family, table: TableModel, start?: CounterValues): string {
  const out: string[] = [`table ${family} ${TABLE_NAME} {`];
  for (const name of table.counters) {
    const value = start?.[family]?.get(name);
    const packets = Math.max(0, Math.floor(value?.packets ?? 0));
    const bytes = Math.max(0, Math.floor(value?.bytes ?? 0));
    out.push(
      packets > 0 || bytes > 0
        ? `\tcounter ${name} { packets ${packets} bytes ${bytes} }`
        : `\tcounter ${name} {}`,
    );
  }
  for (const [name, s] of table.sets) {
    if (s.elements.length === 0) {
      out.push(`\t${s.kind} ${name} { ${s.declaration} }`);
    } else {
      out.push(
        `\t${s.kind} ${name} { ${s.declaration}`,
        `\t\telements = { ${s.elements.join(',\n\t\t\t')} }`,
        '\t}',
      );
    }
  }
  for (const [name, chain] of table.chains) {
    out.push(`\tchain ${name} {`);
    if (chain.base) {
      out.push(
        `\t\ttype ${chain.base.type} hook ${chain.base.hook} priority ${chain.base.priority}; policy accept;`,
      );
    }
    for (const rule of chain.rules) out.push(`\t\t${rule}`);
    out.push('\t}');
  }
  out.push('}');
  return out.join('\n');
}

/**
 * The `nft -f -` input for a model: replaces both tables in one transaction. `counters` carries the
 * live values of the named counters into the new tables (a re-apply must not zero what the security
 * engine reads).
 */
export function renderModel(model: RulesetModel, counters?: CounterValues): string {
  const lines: string[] = [];
  for (const family of FAMILIES)
    lines.push(`table ${family} ${TABLE_NAME} {}`, `delete table ${family} ${TABLE_NAME}`);
  for (const family of FAMILIES) lines.push(renderTable(family, model[family], counters));
  return `${lines.join('\n')}\n`;
}

/** The complete text for `nft -f -` that (re)defines Rampart's two tables atomically. */
export function renderRuleset(fw: HostFirewall): string {
  return renderModel(buildModel(fw));
}

/** The text for `nft -f -` that deletes both tables (whether or not they exist). */
export function renderRemoval(): string {
  return FAMILIES.map((f) => `table ${f} ${TABLE_NAME} {}\ndelete table ${f} ${TABLE_NAME}\n`).join('');
}

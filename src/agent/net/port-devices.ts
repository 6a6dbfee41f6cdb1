/**
 * Bridge and tap lifecycle for VM ports. A network's bridge (`rpb…`) carries no IP address and no IPv6
 * (guests never reach the host through it); br_netfilter must be on so the inet table's conntrack sees
 * bridged IPv4 (nft-ruleset.ts). A VM's tap (`rpt…`) is created persistent and owned by the VM's uid and
 * gid, so its unprivileged QEMU can open it (HOST-NOTES.md, Sandboxing QEMU), and enslaved to the bridge.
 *
 * Every command goes through the subprocess helper as an argument array; with `netns` it runs inside
 * `ip netns exec <ns>`. Operations are serialized per namespace in-process.
 */
import { KeyedMutex } from '../../common/keyed-mutex.js';
import { CommandError, run, runJson } from '../../common/subprocess.js';
import {
  BRIDGE_NAME_PATTERN,
  IPV4_PATTERN,
  TAP_NAME_PATTERN,
  TUNNEL_NAME_PATTERN,
  VXLAN_PORT,
  type PortIntent,
} from '../../api/host-network.js';
import { assertNetnsName } from './tap-shaper.js';

export interface PortDeviceOptions {
  /** Run every command inside this network namespace (`ip netns exec <netns> ...`). */
  netns?: string;
}

export interface VmOwner {
  uid: number;
  gid: number;
}

export interface RampartLink {
  name: string;
  kind: 'bridge' | 'tap' | 'vxlan' | 'other';
  /** The bridge it is enslaved to, if any. */
  master: string | null;
  up: boolean;
  /** tun/tap owner and group (null when not a tap or not set). */
  owner: number | null;
  group: number | null;
}

const COMMAND_TIMEOUT_MS = 10_000;
const BRIDGE_RE = new RegExp(BRIDGE_NAME_PATTERN);
const TAP_RE = new RegExp(TAP_NAME_PATTERN);
const TUNNEL_RE = new RegExp(TUNNEL_NAME_PATTERN);
const IPV4_RE = new RegExp(IPV4_PATTERN);
const locks = new KeyedMutex();

function assertName(name: string, re: RegExp, what: string): string {
  if (typeof name !== 'string' || !re.test(name))
    throw new Error(`${what} ${JSON.stringify(name)} is not valid`);
  return name;
}

function assertId(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xfffffffe)
    throw new Error(`${what} must be a valid id`);
  return value;
}

function netnsOf(opts: PortDeviceOptions): string | undefined {
  return opts.netns === undefined ? undefined : assertNetnsName(opts.netns);
}

function wrap(netns: string | undefined, command: string, args: string[]): [string, string[]] {
  return netns === undefined ? [command, args] : ['ip', ['netns', 'exec', netns, command, ...args]];
}

async function exec(netns: string | undefined, command: string, args: string[]): Promise<string> {
  const [cmd, argv] = wrap(netns, command, args);
  return (await run(cmd, argv, { timeoutMs: COMMAND_TIMEOUT_MS })).stdout;
}

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function toLink(raw: Json): RampartLink {
  const linkinfo = isRecord(raw.linkinfo) ? raw.linkinfo : {};
  const data = isRecord(linkinfo.info_data) ? linkinfo.info_data : {};
  const kindName = linkinfo.info_kind;
  const kind =
    kindName === 'bridge'
      ? 'bridge'
      : kindName === 'tun' && data.type === 'tap'
        ? 'tap'
        : kindName === 'vxlan'
          ? 'vxlan'
          : 'other';
  const flags = Array.isArray(raw.flags) ? raw.flags : [];
  return {
    name: String(raw.ifname),
    kind,
    master: typeof raw.master === 'string' ? raw.master : null,
    up: flags.includes('UP'),
    owner: typeof data.user === 'number' ? data.user : null,
    group: typeof data.group === 'number' ? data.group : null,
  };
}

async function readLink(netns: string | undefined, dev: string): Promise<RampartLink | null> {
  const [cmd, argv] = wrap(netns, 'ip', ['-json', '-details', 'link', 'show', 'dev', dev]);
  try {
    const links = await runJson<unknown>(cmd, argv, { timeoutMs: COMMAND_TIMEOUT_MS });
    const first = Array.isArray(links) ? links.find(isRecord) : undefined;
    return first ? toLink(first) : null;
  } catch (error) {
    if (error instanceof CommandError && /does not exist/.test(error.stderr)) return null;
    throw error;
  }
}

async function sysctl(netns: string | undefined, key: string, value: string): Promise<void> {
  await exec(netns, 'sysctl', ['-q', '-w', `${key}=${value}`]);
}

/** Makes sure bridged IPv4 passes the inet hooks in this namespace (loads br_netfilter if needed). */
async function ensureBridgeNetfilter(netns: string | undefined): Promise<void> {
  try {
    await sysctl(netns, 'net.bridge.bridge-nf-call-iptables', '1');
  } catch {
    await run('modprobe', ['br_netfilter'], { timeoutMs: COMMAND_TIMEOUT_MS });
    await sysctl(netns, 'net.bridge.bridge-nf-call-iptables', '1');
  }
}

async function ensureBridgeLocked(netns: string | undefined, bridge: string): Promise<void> {
  const existing = await readLink(netns, bridge);
  if (existing && existing.kind !== 'bridge') throw new Error(`${bridge} exists and is not a bridge`);
  if (!existing) {
    // Created down, so IPv6 is off before the link ever comes up (no link-local address, no RS).
    await exec(netns, 'ip', ['link', 'add', bridge, 'type', 'bridge']);
  }
  await sysctl(netns, `net.ipv6.conf.${bridge}.disable_ipv6`, '1');
  await ensureBridgeNetfilter(netns);
  if (!existing?.up) await exec(netns, 'ip', ['link', 'set', 'dev', bridge, 'up']);
}

/**
 * Creates the bridge if missing (no address, IPv6 off, up) and makes sure br_netfilter hands bridged
 * IPv4 to the inet hooks in that namespace. Idempotent.
 */
export async function ensureBridge(bridge: string, opts: PortDeviceOptions = {}): Promise<void> {
  const netns = netnsOf(opts);
  assertName(bridge, BRIDGE_RE, 'bridge name');
  await locks.run(netns ?? '', () => ensureBridgeLocked(netns, bridge));
}

/**
 * Creates the port's bridge (if missing) and tap (owned by `owner`, enslaved to the bridge, up, without
 * IPv6). Idempotent: a tap with the right owner and master is kept; one with a wrong owner is recreated
 * (the owner of a tap cannot be changed while it exists); one on another bridge is moved.
 */
export async function ensurePort(
  port: PortIntent,
  owner: VmOwner,
  opts: PortDeviceOptions = {},
): Promise<void> {
  const netns = netnsOf(opts);
  const bridge = assertName(port.bridge, BRIDGE_RE, 'bridge name');
  const tap = assertName(port.tap, TAP_RE, 'tap name');
  const uid = assertId(owner.uid, 'uid');
  const gid = assertId(owner.gid, 'gid');
  await locks.run(netns ?? '', async () => {
    await ensureBridgeLocked(netns, bridge);
    let link = await readLink(netns, tap);
    if (link && (link.kind !== 'tap' || link.owner !== uid || link.group !== gid)) {
      if (link.kind !== 'tap') throw new Error(`${tap} exists and is not a tap`);
      await exec(netns, 'ip', ['link', 'del', 'dev', tap]);
      link = null;
    }
    if (!link) {
      await exec(netns, 'ip', [
        'tuntap',
        'add',
        'dev',
        tap,
        'mode',
        'tap',
        'user',
        String(uid),
        'group',
        String(gid),
      ]);
    }
    await sysctl(netns, `net.ipv6.conf.${tap}.disable_ipv6`, '1');
    if (link?.master !== bridge || !link.up) {
      await exec(netns, 'ip', ['link', 'set', 'dev', tap, 'master', bridge, 'up']);
    }
  });
}

/** Deletes the tap (no error when it does not exist). */
export async function removePort(tap: string, opts: PortDeviceOptions = {}): Promise<void> {
  const netns = netnsOf(opts);
  assertName(tap, TAP_RE, 'tap name');
  await locks.run(netns ?? '', async () => {
    const link = await readLink(netns, tap);
    if (!link) return;
    if (link.kind !== 'tap') throw new Error(`${tap} is not a tap; not deleting it`);
    await exec(netns, 'ip', ['link', 'del', 'dev', tap]);
  });
}

/**
 * Deletes the bridge when no interface but its network's tunnel is enslaved to it (the tunnel goes
 * with it: a network without ports on this host needs none); returns whether it is gone.
 */
export async function removeBridgeIfUnused(bridge: string, opts: PortDeviceOptions = {}): Promise<boolean> {
  const netns = netnsOf(opts);
  assertName(bridge, BRIDGE_RE, 'bridge name');
  return locks.run(netns ?? '', async () => {
    const link = await readLink(netns, bridge);
    if (!link) return true;
    if (link.kind !== 'bridge') throw new Error(`${bridge} is not a bridge; not deleting it`);
    const [cmd, argv] = wrap(netns, 'ip', ['-json', 'link', 'show', 'master', bridge]);
    const members = await runJson<unknown>(cmd, argv, { timeoutMs: COMMAND_TIMEOUT_MS });
    const names = (Array.isArray(members) ? members : []).filter(isRecord).map((m) => String(m.ifname));
    const tunnel = tunnelName(bridge);
    if (names.some((n) => n !== tunnel)) return false;
    if (names.includes(tunnel)) await exec(netns, 'ip', ['link', 'del', 'dev', tunnel]);
    await exec(netns, 'ip', ['link', 'del', 'dev', bridge]);
    return true;
  });
}

// ---- VXLAN tunnels (networks that span hosts) ----

/** The VXLAN device of a network on this host: `rpx` + the 12 hex of its bridge. */
export function tunnelName(bridge: string): string {
  assertName(bridge, BRIDGE_RE, 'bridge name');
  return `rpx${bridge.slice(3)}`;
}

export interface TunnelSpec {
  bridge: string;
  /** The network's VNI (1..16777215). */
  vni: number;
  /** This host's underlay address (RAMPART_TUNNEL_IP). */
  local: string;
  /** The other hosts' underlay addresses: every broadcast and unknown frame is sent to each. */
  peers: readonly string[];
}

/**
 * The MTU of the tunnel device: the guests keep 1500. VXLAN adds 50 bytes outside; an underlay with a
 * smaller MTU than 1550 fragments them (or, for inner packets with DF, the kernel answers the guest
 * with "fragmentation needed" so its path MTU discovery shrinks).
 */
export const TUNNEL_MTU = 1500;

function assertTunnelSpec(spec: TunnelSpec): void {
  assertName(spec.bridge, BRIDGE_RE, 'bridge name');
  if (!Number.isInteger(spec.vni) || spec.vni < 1 || spec.vni > 16_777_215)
    throw new Error(`VNI ${String(spec.vni)} is not 1..16777215`);
  for (const address of [spec.local, ...spec.peers])
    if (typeof address !== 'string' || !IPV4_RE.test(address))
      throw new Error(`tunnel address ${JSON.stringify(address)} is not an IPv4 address`);
}

interface VxlanInfo {
  id: number | null;
  local: string | null;
  port: number | null;
  learning: boolean | null;
  mtu: number | null;
}

async function readVxlan(netns: string | undefined, dev: string): Promise<VxlanInfo | null> {
  const [cmd, argv] = wrap(netns, 'ip', ['-json', '-details', 'link', 'show', 'dev', dev]);
  try {
    const links = await runJson<unknown>(cmd, argv, { timeoutMs: COMMAND_TIMEOUT_MS });
    const first = Array.isArray(links) ? links.find(isRecord) : undefined;
    if (!first) return null;
    const linkinfo = isRecord(first.linkinfo) ? first.linkinfo : {};
    const data = isRecord(linkinfo.info_data) ? linkinfo.info_data : {};
    if (linkinfo.info_kind !== 'vxlan') throw new Error(`${dev} exists and is not a VXLAN device`);
    return {
      id: typeof data.id === 'number' ? data.id : null,
      local: typeof data.local === 'string' ? data.local : null,
      port: typeof data.port === 'number' ? data.port : null,
      learning: typeof data.learning === 'boolean' ? data.learning : null,
      mtu: typeof first.mtu === 'number' ? first.mtu : null,
    };
  } catch (error) {
    if (error instanceof CommandError && /does not exist/.test(error.stderr)) return null;
    throw error;
  }
}

const ZERO_MAC = '00:00:00:00:00:00';

/** The head-end replication entries (all-zero MAC) of a VXLAN device: the peers it floods to. */
async function floodPeers(netns: string | undefined, dev: string): Promise<string[]> {
  const [cmd, argv] = wrap(netns, 'bridge', ['-json', 'fdb', 'show', 'dev', dev]);
  const entries = await runJson<unknown>(cmd, argv, { timeoutMs: COMMAND_TIMEOUT_MS });
  return (Array.isArray(entries) ? entries : [])
    .filter(isRecord)
    .filter((e) => e.mac === ZERO_MAC && typeof e.dst === 'string')
    .map((e) => String(e.dst));
}

/**
 * Makes a network's VXLAN device match `spec`: created (VNI, local address, UDP 4789, no learning: the
 * remote MACs are never learnt from the wire, so a peer cannot redirect another network's or VM's
 * frames), enslaved to the network's bridge (created if missing) and up; one all-zero FDB entry per
 * peer (head-end replication), stale peers removed. A device with another VNI, local address or port
 * is recreated. Idempotent.
 */
export async function ensureTunnel(spec: TunnelSpec, opts: PortDeviceOptions = {}): Promise<void> {
  const netns = netnsOf(opts);
  assertTunnelSpec(spec);
  const dev = tunnelName(spec.bridge);
  await locks.run(netns ?? '', async () => {
    await ensureBridgeLocked(netns, spec.bridge);
    let info = await readVxlan(netns, dev);
    if (
      info &&
      (info.id !== spec.vni ||
        info.local !== spec.local ||
        info.port !== VXLAN_PORT ||
        info.learning === true)
    ) {
      await exec(netns, 'ip', ['link', 'del', 'dev', dev]);
      info = null;
    }
    if (!info) {
      // Created down and with IPv6 off before it ever comes up.
      await exec(netns, 'ip', [
        'link',
        'add',
        dev,
        'mtu',
        String(TUNNEL_MTU),
        'type',
        'vxlan',
        'id',
        String(spec.vni),
        'local',
        spec.local,
        'dstport',
        String(VXLAN_PORT),
        'nolearning',
      ]);
    } else if (info.mtu !== TUNNEL_MTU) {
      await exec(netns, 'ip', ['link', 'set', 'dev', dev, 'mtu', String(TUNNEL_MTU)]);
    }
    await sysctl(netns, `net.ipv6.conf.${dev}.disable_ipv6`, '1');
    const link = await readLink(netns, dev);
    if (link?.master !== spec.bridge || !link.up)
      await exec(netns, 'ip', ['link', 'set', 'dev', dev, 'master', spec.bridge, 'up']);
    const current = await floodPeers(netns, dev);
    for (const peer of spec.peers)
      if (!current.includes(peer))
        await exec(netns, 'bridge', ['fdb', 'append', ZERO_MAC, 'dev', dev, 'dst', peer]);
    for (const peer of current)
      if (!spec.peers.includes(peer))
        await exec(netns, 'bridge', ['fdb', 'del', ZERO_MAC, 'dev', dev, 'dst', peer]);
  });
}

/** Deletes a network's VXLAN device (no error when it does not exist). */
export async function removeTunnel(bridge: string, opts: PortDeviceOptions = {}): Promise<void> {
  const netns = netnsOf(opts);
  const dev = tunnelName(bridge);
  await locks.run(netns ?? '', async () => {
    const info = await readVxlan(netns, dev);
    if (info) await exec(netns, 'ip', ['link', 'del', 'dev', dev]);
  });
}

/** The bridges whose network has a VXLAN device on this host. */
export async function listTunnelBridges(opts: PortDeviceOptions = {}): Promise<string[]> {
  const netns = netnsOf(opts);
  const [cmd, argv] = wrap(netns, 'ip', ['-json', 'link', 'show', 'type', 'vxlan']);
  const links = await runJson<unknown>(cmd, argv, { timeoutMs: COMMAND_TIMEOUT_MS });
  return (Array.isArray(links) ? links : [])
    .filter(isRecord)
    .map((l) => String(l.ifname))
    .filter((name) => TUNNEL_RE.test(name))
    .map((name) => `rpb${name.slice(3)}`)
    .sort();
}

/** Every interface named like a Rampart bridge, tap or tunnel (for leftover checks). */
export async function listRampartLinks(opts: PortDeviceOptions = {}): Promise<RampartLink[]> {
  const netns = netnsOf(opts);
  const [cmd, argv] = wrap(netns, 'ip', ['-json', '-details', 'link', 'show']);
  const links = await runJson<unknown>(cmd, argv, {
    timeoutMs: COMMAND_TIMEOUT_MS,
    maxBufferBytes: 256 * 1024 * 1024,
  });
  if (!Array.isArray(links)) return [];
  return links
    .filter(isRecord)
    .filter(
      (l) =>
        typeof l.ifname === 'string' &&
        (BRIDGE_RE.test(l.ifname) || TAP_RE.test(l.ifname) || TUNNEL_RE.test(l.ifname)),
    )
    .map(toLink)
    .sort((a, b) => a.name.localeCompare(b.name));
}

const GATEWAY_RE = /^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/;

/**
 * The gateway address of a network on its bridge: present (`gateway/prefix`) while the network has
 * outbound access, absent otherwise (the bridge has no address, so the host is not on the network).
 * Outbound access needs IPv4 forwarding in the namespace; it is turned on, never off (other software
 * on the host may rely on it).
 */
export async function setBridgeGateway(
  bridge: string,
  gateway: string | null,
  opts: PortDeviceOptions = {},
): Promise<void> {
  const netns = netnsOf(opts);
  assertName(bridge, BRIDGE_RE, 'bridge name');
  if (gateway !== null && !GATEWAY_RE.test(gateway))
    throw new Error(`bad gateway address ${JSON.stringify(gateway)}`);
  await locks.run(netns ?? '', async () => {
    await ensureBridgeLocked(netns, bridge);
    const [cmd, argv] = wrap(netns, 'ip', ['-j', 'addr', 'show', 'dev', bridge]);
    const shown = JSON.parse((await run(cmd, argv, { timeoutMs: COMMAND_TIMEOUT_MS })).stdout || '[]') as {
      addr_info?: { family?: string; local?: string; prefixlen?: number }[];
    }[];
    const current = (shown[0]?.addr_info ?? [])
      .filter((a) => a.family === 'inet')
      .map((a) => `${a.local}/${a.prefixlen}`);
    for (const address of current)
      if (address !== gateway) await exec(netns, 'ip', ['addr', 'del', address, 'dev', bridge]);
    if (gateway !== null && !current.includes(gateway)) {
      await sysctl(netns, 'net.ipv4.ip_forward', '1');
      await exec(netns, 'ip', ['addr', 'add', gateway, 'dev', bridge]);
    }
  });
}

/**
 * The host's own IPv4 subnets outside Rampart (every address on an interface that is not a Rampart
 * bridge or tap, as its connected subnet, and the address itself): its management plane, which
 * guests never reach, not even through outbound access.
 */
export async function managementSubnets(opts: PortDeviceOptions = {}): Promise<string[]> {
  const netns = netnsOf(opts);
  const [cmd, argv] = wrap(netns, 'ip', ['-j', '-4', 'addr', 'show']);
  const links = JSON.parse((await run(cmd, argv, { timeoutMs: COMMAND_TIMEOUT_MS })).stdout || '[]') as {
    ifname?: string;
    addr_info?: { local?: string; prefixlen?: number }[];
  }[];
  const out = new Set<string>();
  for (const link of links) {
    if (!link.ifname || BRIDGE_RE.test(link.ifname) || TAP_RE.test(link.ifname)) continue;
    for (const a of link.addr_info ?? []) {
      if (!a.local || a.prefixlen === undefined) continue;
      const parts = a.local.split('.').map(Number);
      const value = ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
      const mask = a.prefixlen === 0 ? 0 : (0xffffffff << (32 - a.prefixlen)) >>> 0;
      const base = (value & mask) >>> 0;
      const text = [base >>> 24, (base >>> 16) & 255, (base >>> 8) & 255, base & 255].join('.');
      out.add(`${text}/${a.prefixlen}`);
      out.add(`${a.local}/32`);
    }
  }
  return [...out].sort();
}

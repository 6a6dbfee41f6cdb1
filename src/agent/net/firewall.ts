/**
 * Applies the host's firewall intent as one `nft -f -` transaction (see nft-ruleset.ts for the design),
 * reads the per-port counters, and detects and repairs drift between the live ruleset and the intent.
 *
 * Drift detection compares a normalized view of `nft -j list table ...` with the model the renderer
 * builds: the tables, every counter, every set and map with its exact elements, every chain (base
 * chain hook, priority and policy; number of rules). Rule *contents* are compared too once this process
 * has applied the ruleset: right after an apply the live rules (as nft's JSON, handles stripped) are
 * remembered for that exact rendered text, and later reads must match them. After a restart there is no
 * such record, so the agent's startup reconcile should simply apply (or call reconcile(), which re-applies
 * whenever the structure differs).
 *
 * Every command runs through the subprocess helper with an argument array, inside
 * `ip netns exec <netns>` when a netns is configured. Calls are serialized per manager.
 */
import { createHash } from 'node:crypto';
import { KeyedMutex } from '../../common/keyed-mutex.js';
import { run, runSettled } from '../../common/subprocess.js';
import { SPOOF_REASONS, type HostFirewall, type PortCounters } from '../../api/host-network.js';
import {
  FAMILIES,
  TABLE_NAME,
  buildModel,
  DENIED_SETS,
  deniedCounterName,
  numberToIpv4,
  ipv4ToNumber,
  okCounterName,
  renderModel,
  renderRemoval,
  spoofCounterName,
  TUNNEL_MARK,
  type Family,
  type RulesetModel,
} from './nft-ruleset.js';
import { assertNetnsName } from './tap-shaper.js';

const COMMAND_TIMEOUT_MS = 120_000;
const MAX_OUTPUT_BYTES = 512 * 1024 * 1024;

export interface FirewallOptions {
  /** Run every command inside this network namespace (`ip netns exec <netns> ...`). */
  netns?: string;
}

/** A normalized view of one live table. */
export interface LiveTable {
  counters: Map<string, { packets: number; bytes: number }>;
  sets: Map<string, { kind: 'set' | 'map'; elements: string[] }>;
  chains: Map<
    string,
    { base: { type: string; hook: string; priority: number; policy: string } | null; rules: string[] }
  >;
}

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const PROTOCOL_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp' };

function ipRangeOf(value: unknown): string {
  if (typeof value === 'string') return `${value}-${value}`;
  if (isRecord(value) && isRecord(value.prefix)) {
    const { addr, len } = value.prefix as { addr: string; len: number };
    const size = 2 ** (32 - len);
    const start = Math.floor(ipv4ToNumber(addr) / size) * size;
    return `${numberToIpv4(start)}-${numberToIpv4(start + size - 1)}`;
  }
  if (isRecord(value) && Array.isArray(value.range))
    return `${String(value.range[0])}-${String(value.range[1])}`;
  return JSON.stringify(value);
}

function canonicalPart(type: string, value: unknown): string {
  switch (type) {
    case 'ipv4_addr':
      return ipRangeOf(value);
    case 'inet_service':
      if (typeof value === 'number') return `${value}-${value}`;
      if (isRecord(value) && Array.isArray(value.range))
        return `${String(value.range[0])}-${String(value.range[1])}`;
      return JSON.stringify(value);
    case 'mark':
    case 'integer':
      return typeof value === 'string' && /^0x[0-9a-f]+$/i.test(value)
        ? String(parseInt(value, 16))
        : String(value);
    case 'inet_proto':
      return typeof value === 'number' ? (PROTOCOL_NAMES[value] ?? String(value)) : String(value);
    case 'verdict':
      if (isRecord(value)) {
        for (const kind of ['jump', 'goto']) {
          const target = value[kind];
          if (isRecord(target)) return `${kind} ${String(target.target)}`;
        }
        return Object.keys(value).join(' ');
      }
      return String(value);
    default:
      return typeof value === 'string' ? value : JSON.stringify(value);
  }
}

function unwrapElem(value: unknown): unknown {
  return isRecord(value) && isRecord(value.elem) && 'val' in value.elem ? value.elem.val : value;
}

function bswap32(value: number): number {
  return (((value & 0xff) << 24) | ((value & 0xff00) << 8) | ((value >>> 8) & 0xff00) | (value >>> 24)) >>> 0;
}

/**
 * nft 1.0.6 lists a few elements of large concatenated interval sets with the (host byte order) mark
 * byte-swapped, e.g. 0x01000000 for 1, although the kernel holds and matches the right value (`nft get
 * element` with 1 finds it). Ingress keys are <= 0xffff and egress keys have zero low 16 bits, so a
 * swapped key is recognizable and is swapped back here (such a key could never match a packet anyway).
 */
function fixMark(setName: string, value: unknown): unknown {
  if (typeof value !== 'number' || value === 0) return value;
  if (setName.startsWith('ingress_') && value > 0xffff) return bswap32(value);
  if (setName.startsWith('egress_') && (value & 0xffff) !== 0 && value <= 0xffff) return bswap32(value);
  return value;
}

function canonicalKey(setName: string, types: string[], value: unknown): string {
  const v = unwrapElem(value);
  const parts = isRecord(v) && Array.isArray(v.concat) ? (v.concat as unknown[]) : [v];
  return parts
    .map((part, i) => {
      const type = types[i] ?? 'unknown';
      return canonicalPart(type, type === 'mark' ? fixMark(setName, part) : part);
    })
    .join(' . ');
}

/** Normalizes `nft -j list table <family> rampart` output. */
export function parseLiveTable(json: unknown): LiveTable {
  const table: LiveTable = { counters: new Map(), sets: new Map(), chains: new Map() };
  const items = isRecord(json) && Array.isArray(json.nftables) ? (json.nftables as unknown[]) : [];
  for (const item of items) {
    if (!isRecord(item)) continue;
    if (isRecord(item.counter)) {
      const c = item.counter;
      table.counters.set(String(c.name), { packets: Number(c.packets ?? 0), bytes: Number(c.bytes ?? 0) });
    } else if (isRecord(item.set) || isRecord(item.map)) {
      const kind = isRecord(item.set) ? 'set' : 'map';
      const s = (item.set ?? item.map) as Json;
      const types = (Array.isArray(s.type) ? s.type : [s.type]).map(String);
      const elems = Array.isArray(s.elem) ? (s.elem as unknown[]) : [];
      const elements = elems.map((e) => {
        if (kind === 'map' && Array.isArray(e)) {
          return `${canonicalKey(String(s.name), types, e[0])} : ${canonicalPart(String(s.map), e[1])}`;
        }
        return canonicalKey(String(s.name), types, e);
      });
      table.sets.set(String(s.name), { kind, elements: elements.sort() });
    } else if (isRecord(item.chain)) {
      const c = item.chain;
      const base =
        typeof c.hook === 'string'
          ? { type: String(c.type), hook: c.hook, priority: Number(c.prio), policy: String(c.policy) }
          : null;
      const existing = table.chains.get(String(c.name));
      table.chains.set(String(c.name), { base, rules: existing?.rules ?? [] });
    } else if (isRecord(item.rule)) {
      const r = item.rule;
      const name = String(r.chain);
      const chain = table.chains.get(name) ?? { base: null, rules: [] };
      chain.rules.push(JSON.stringify(r.expr));
      table.chains.set(name, chain);
    }
  }
  return table;
}

function listDiff(
  what: string,
  expected: readonly string[],
  actual: readonly string[],
  limit = 20,
): string[] {
  const want = new Set(expected);
  const have = new Set(actual);
  const missing = expected.filter((e) => !have.has(e));
  const extra = actual.filter((a) => !want.has(a));
  const out: string[] = [];
  const show = (list: string[], verb: string) => {
    for (const item of list.slice(0, limit)) out.push(`${what}: ${verb} ${item}`);
    if (list.length > limit) out.push(`${what}: ${list.length - limit} more ${verb}`);
  };
  show(missing, 'missing');
  show(extra, 'unexpected');
  return out;
}

/** Human-readable differences between the intended model and a live table (null: table absent). */
export function compareTable(family: Family, model: RulesetModel, live: LiveTable | null): string[] {
  const where = `table ${family} ${TABLE_NAME}`;
  if (!live) return [`${where}: missing`];
  const want = model[family];
  const out: string[] = [];
  out.push(...listDiff(`${where} counters`, want.counters, [...live.counters.keys()]));
  out.push(...listDiff(`${where} sets`, [...want.sets.keys()], [...live.sets.keys()]));
  for (const [name, s] of want.sets) {
    const l = live.sets.get(name);
    if (!l) continue;
    if (l.kind !== s.kind) out.push(`${where} ${name}: is a ${l.kind}, expected a ${s.kind}`);
    if (s.dynamic !== true) out.push(...listDiff(`${where} ${s.kind} ${name}`, s.canonical, l.elements));
  }
  out.push(...listDiff(`${where} chains`, [...want.chains.keys()], [...live.chains.keys()]));
  for (const [name, chain] of want.chains) {
    const l = live.chains.get(name);
    if (!l) continue;
    const wantBase = chain.base
      ? `${chain.base.type} ${chain.base.hook} ${chain.base.priority} accept`
      : 'none';
    const haveBase = l.base ? `${l.base.type} ${l.base.hook} ${l.base.priority} ${l.base.policy}` : 'none';
    if (wantBase !== haveBase) out.push(`${where} chain ${name}: hook ${haveBase}, expected ${wantBase}`);
    if (l.rules.length !== chain.rules.length) {
      out.push(`${where} chain ${name}: ${l.rules.length} rules, expected ${chain.rules.length}`);
    }
  }
  return out;
}

/** Maps the live counters of both tables to per-port counters (ports from the bridge table's map). */
export function portCountersFrom(bridge: LiveTable | null, inet: LiveTable | null): PortCounters[] {
  if (!bridge) return [];
  const value = (t: LiveTable | null, name: string) => t?.counters.get(name)?.packets ?? 0;
  const ports: PortCounters[] = [];
  for (const element of bridge.sets.get('ports_in')?.elements ?? []) {
    const match = /^(\S+) : jump port_(\d+)$/.exec(element);
    if (!match) continue;
    const tag = Number(match[2]);
    const spoofDrops: Record<string, number> = {};
    for (const reason of SPOOF_REASONS) spoofDrops[reason] = value(bridge, spoofCounterName(tag, reason));
    ports.push({
      tag,
      tap: match[1]!,
      fromGuestPackets: value(bridge, okCounterName(tag)),
      spoofDrops,
      ingressDenied: value(inet, deniedCounterName(tag, 'ingress')),
      egressDenied: value(inet, deniedCounterName(tag, 'egress')),
    });
  }
  return ports.sort((a, b) => a.tag - b.tag);
}

/** A TCP/UDP flow a security group refused, as remembered in a `denied_*` set (nft-ruleset.ts). */
export interface DeniedFlow {
  /** Refused by the sender's own egress rules, or by the receiver's ingress rules. */
  deniedBy: 'egress' | 'ingress';
  /** The sending port. */
  srcTag: number;
  /** The receiving local port, or null (leaving the network or to another host, or not yet known). */
  dstTag: number | null;
  protocol: 'tcp' | 'udp';
  dstIp: string;
  dstPort: number;
}

const DENIED_ELEMENT = /^(\d+) \. (\d+\.\d+\.\d+\.\d+)-\S+ \. (tcp|udp) \. (\d+)-\d+$/;

/** The flows in the live `denied_*` sets of the inet table (elements of another shape are skipped). */
export function deniedFlowsFrom(inet: LiveTable | null): DeniedFlow[] {
  const flows: DeniedFlow[] = [];
  for (const [deniedBy, setName] of Object.entries(DENIED_SETS) as ['egress' | 'ingress', string][]) {
    for (const element of inet?.sets.get(setName)?.elements ?? []) {
      const match = DENIED_ELEMENT.exec(element);
      if (!match) continue;
      const mark = Number(match[1]);
      const srcTag = Math.floor(mark / 65_536);
      if (srcTag === 0) continue;
      const low = mark % 65_536;
      flows.push({
        deniedBy,
        srcTag,
        // 0: leaving the network; TUNNEL_MARK: to another host (its receiving port is not known here).
        dstTag: low === 0 || low === TUNNEL_MARK ? null : low,
        protocol: match[3] as 'tcp' | 'udp',
        dstIp: match[2]!,
        dstPort: Number(match[4]),
      });
    }
  }
  return flows;
}

/** One read of the host's firewall state for the security engine. */
export interface FirewallTelemetry {
  counters: PortCounters[];
  denied: DeniedFlow[];
}

export class HostFirewallManager {
  private readonly netns: string | undefined;
  private readonly lock = new KeyedMutex();
  /** The rules as nft reported them right after our last apply, for that rendered text. */
  private applied: { textHash: string; rules: Map<string, string[]> } | null = null;

  constructor(opts: FirewallOptions = {}) {
    this.netns = opts.netns === undefined ? undefined : assertNetnsName(opts.netns);
  }

  private argv(args: string[]): [string, string[]] {
    return this.netns === undefined ? ['nft', args] : ['ip', ['netns', 'exec', this.netns, 'nft', ...args]];
  }

  private async nftInput(text: string): Promise<void> {
    const [cmd, argv] = this.argv(['-f', '-']);
    await run(cmd, argv, { input: text, timeoutMs: COMMAND_TIMEOUT_MS });
  }

  /** The normalized live table, or null when it does not exist. */
  private async readTable(family: Family): Promise<LiveTable | null> {
    const [cmd, argv] = this.argv(['-j', 'list', 'table', family, TABLE_NAME]);
    const result = await runSettled(cmd, argv, {
      timeoutMs: COMMAND_TIMEOUT_MS,
      maxBufferBytes: MAX_OUTPUT_BYTES,
    });
    if (result.exitCode === 0) return parseLiveTable(JSON.parse(result.stdout));
    if (result.exitCode === 1 && /No such file or directory/.test(result.stderr)) return null;
    throw new Error(
      `nft list table ${family} ${TABLE_NAME} failed: ${(result.failure ?? result.stderr).trim().slice(0, 500)}`,
    );
  }

  private async readBoth(): Promise<Record<Family, LiveTable | null>> {
    const [bridge, inet] = await Promise.all([this.readTable('bridge'), this.readTable('inet')]);
    return { bridge, inet };
  }

  private static rulesOf(tables: Record<Family, LiveTable | null>): Map<string, string[]> {
    const rules = new Map<string, string[]>();
    for (const family of FAMILIES) {
      for (const [name, chain] of tables[family]?.chains ?? []) rules.set(`${family} ${name}`, chain.rules);
    }
    return rules;
  }

  private async applyLocked(fw: HostFirewall): Promise<void> {
    const model = buildModel(fw);
    // The counters start where the live ones are (they would be zeroed with the old tables otherwise).
    const before = await this.readBoth().catch(() => ({ bridge: null, inet: null }));
    await this.nftInput(renderModel(model, { bridge: before.bridge?.counters, inet: before.inet?.counters }));
    const text = renderModel(model);
    const live = await this.readBoth();
    this.applied = { textHash: hash(text), rules: HostFirewallManager.rulesOf(live) };
  }

  /** Replaces Rampart's tables with the rendering of `fw` in one transaction. */
  apply(fw: HostFirewall): Promise<void> {
    return this.lock.run('fw', () => this.applyLocked(fw));
  }

  private async driftLocked(fw: HostFirewall): Promise<string[]> {
    const model = buildModel(fw);
    const live = await this.readBoth();
    const out: string[] = [];
    for (const family of FAMILIES) out.push(...compareTable(family, model, live[family]));
    const textHash = hash(renderModel(model));
    if (out.length === 0 && this.applied?.textHash === textHash) {
      const now = HostFirewallManager.rulesOf(live);
      for (const [chain, rules] of this.applied.rules) {
        const current = now.get(chain) ?? [];
        rules.forEach((rule, i) => {
          if (current[i] !== rule)
            out.push(`table ${chain.replace(' ', ` ${TABLE_NAME} chain `)}: rule ${i + 1} changed`);
        });
      }
    }
    return out;
  }

  /** Differences between the live ruleset and the rendering of `fw`; empty when they match. */
  drift(fw: HostFirewall): Promise<string[]> {
    return this.lock.run('fw', () => this.driftLocked(fw));
  }

  /** Re-applies `fw` when the live ruleset drifted from it; returns what was repaired. */
  reconcile(fw: HostFirewall): Promise<string[]> {
    return this.lock.run('fw', async () => {
      const differences = await this.driftLocked(fw);
      if (differences.length > 0) await this.applyLocked(fw);
      return differences;
    });
  }

  /** Per-port packet counters as the kernel reports them. */
  readCounters(): Promise<PortCounters[]> {
    return this.lock.run('fw', async () => {
      const live = await this.readBoth();
      return portCountersFrom(live.bridge, live.inet);
    });
  }

  /** Per-port counters and the denied flows remembered in the last minute, from one read. */
  readTelemetry(): Promise<FirewallTelemetry> {
    return this.lock.run('fw', async () => {
      const live = await this.readBoth();
      return { counters: portCountersFrom(live.bridge, live.inet), denied: deniedFlowsFrom(live.inet) };
    });
  }

  /** Deletes both tables (no error when they are absent). */
  remove(): Promise<void> {
    return this.lock.run('fw', async () => {
      await this.nftInput(renderRemoval());
      this.applied = null;
    });
  }
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

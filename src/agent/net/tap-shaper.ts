/**
 * Per-VM network rate limits on the VM's tap device, built only from what every host kernel we target
 * has (HOST-NOTES.md: tbf, ingress, u32, mirred and ifb; no act_police, matchall or flower).
 *
 * - To the guest: what the host sends into the tap leaves the tap's egress queue, so a `tbf` root qdisc
 *   on the tap shapes it.
 * - From the guest: what the guest sends arrives on the tap's *ingress*, where Linux cannot queue. A u32
 *   match-all filter on the tap's ingress qdisc redirects every packet (mirred) to a per-tap `ifb`
 *   device, whose root `tbf` shapes it; the ifb then re-injects the packets where they came from.
 *
 * Rampart owns the tap's root and ingress qdiscs and the ifb device: applyShaping makes them match the
 * requested limits exactly (a direction without a limit is unshaped), so calling it twice is harmless.
 * A multi-step change registers an undo per step with the Reverter, so a failure restores the previous
 * state instead of leaving, say, an ingress redirect to an ifb without a shaper. removeShaping is best
 * effort instead: it attempts every step and reports all failures, since leaving less behind is better.
 *
 * Every command goes through the subprocess helper as an argument array; with `netns` it runs inside
 * `ip netns exec <ns>`, which lets tests shape interfaces in namespaces they create. Changes for one
 * interface are serialized in-process so a read-then-change never interleaves with another.
 */
import { createHash } from 'node:crypto';
import { KeyedMutex } from '../../common/keyed-mutex.js';
import { Reverter } from '../../common/reverter.js';
import { CommandError, run, runJson } from '../../common/subprocess.js';

export interface ShapingLimits {
  /** Host -> guest (leaves the tap), in Mbit/s (10^6 bit/s). Absent: unshaped. */
  toGuestMbps?: number;
  /** Guest -> host (arrives on the tap), in Mbit/s. Absent: unshaped. */
  fromGuestMbps?: number;
}

export interface ShaperOptions {
  /** Run every command inside this network namespace (`ip netns exec <netns> ...`). */
  netns?: string;
}

/** Counters of one tbf qdisc, as the kernel reports them (for metrics). */
export interface TbfCounters {
  bytes: number;
  packets: number;
  /** Packets dropped because the queue was full. */
  drops: number;
  /** Times a packet had to wait for tokens: how often the limit was hit. */
  overlimits: number;
  requeues: number;
  /** Bytes and packets waiting in the queue right now. */
  backlogBytes: number;
  queuedPackets: number;
}

/** One applied tbf: its parameters as the kernel stores them (burst is rounded to timer ticks). */
export interface TbfReading {
  rateMbps: number;
  burstBytes: number;
  latencyUs: number;
  counters: TbfCounters;
}

export interface ShapingState {
  tap: string;
  /** The ifb device name derived from the tap name (whether or not it exists). */
  ifb: string;
  /** The tbf on the tap's root, or null when to-guest traffic is unshaped. */
  toGuest: TbfReading | null;
  /** The tbf on the ifb; reported only when the tap's ingress redirect to the up ifb is in place. */
  fromGuest: TbfReading | null;
  /**
   * Pieces of a from-guest setup exist without the rest (e.g. the agent died mid-change, or someone
   * deleted the ifb). applyShaping and removeShaping repair this.
   */
  partial: boolean;
}

/** Kernel IFNAMSIZ is 16 including the terminating NUL. */
export const MAX_INTERFACE_NAME_LENGTH = 15;
export const MIN_RATE_MBPS = 0.1;
export const MAX_RATE_MBPS = 100_000;

const INTERFACE_NAME = /^[A-Za-z0-9_.-]+$/;
const NETNS_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
/** ifb names live in two disjoint forms, so a readable name never equals a hashed one. */
const IFB_READABLE_PREFIX = 'ifb-';
const IFB_HASHED_PREFIX = 'ifb_';
/** Our one ingress filter has this fixed preference, so "is the redirect ours" is a plain check. */
const FILTER_PREF = 10;
const INGRESS_HANDLE = 'ffff:';
const COMMAND_TIMEOUT_MS = 10_000;

const ETHERNET_FRAME_BYTES = 1514;
const MIN_BURST_BYTES = 10 * ETHERNET_FRAME_BYTES;
const BURST_SECONDS = 0.01;
const QUEUE_SECONDS = 0.05;
const MIN_QUEUE_BYTES = 32 * 1024;
const MAX_QUEUE_BYTES = 4 * 1024 * 1024;

/**
 * Validates a network interface name as the kernel would accept it, restricted to [A-Za-z0-9_.-], and
 * without a leading '-' (which ip/tc would read as an option).
 */
export function assertInterfaceName(name: string, what = 'interface name'): string {
  if (
    name.length === 0 ||
    name.length > MAX_INTERFACE_NAME_LENGTH ||
    !INTERFACE_NAME.test(name) ||
    name.startsWith('-') ||
    name === '.' ||
    name === '..'
  ) {
    throw new Error(
      `${what} ${JSON.stringify(name)} is not valid: 1-${MAX_INTERFACE_NAME_LENGTH} characters of [A-Za-z0-9_.-], not starting with '-'`,
    );
  }
  return name;
}

/** A tap name: a valid interface name that is not in the ifb name space. */
function assertTapName(tap: string): string {
  assertInterfaceName(tap, 'tap name');
  if (tap.startsWith(IFB_READABLE_PREFIX) || tap.startsWith(IFB_HASHED_PREFIX)) {
    throw new Error(
      `tap name ${JSON.stringify(tap)} must not start with ${IFB_READABLE_PREFIX} or ${IFB_HASHED_PREFIX} (reserved for ifb devices)`,
    );
  }
  return tap;
}

export function assertNetnsName(netns: string): string {
  if (!NETNS_NAME.test(netns) || netns.startsWith('-') || netns === '.' || netns === '..') {
    throw new Error(`network namespace name ${JSON.stringify(netns)} is not valid`);
  }
  return netns;
}

/**
 * The ifb device for a tap: `ifb-<tap>` when that fits in 15 characters (taps of up to 11), otherwise
 * `ifb_` + the first 11 hex digits of SHA-256(tap). Deterministic, so a restarted agent finds it again.
 */
export function ifbNameFor(tap: string): string {
  assertTapName(tap);
  const readable = `${IFB_READABLE_PREFIX}${tap}`;
  if (readable.length <= MAX_INTERFACE_NAME_LENGTH) return readable;
  const digits = MAX_INTERFACE_NAME_LENGTH - IFB_HASHED_PREFIX.length;
  return `${IFB_HASHED_PREFIX}${createHash('sha256').update(tap).digest('hex').slice(0, digits)}`;
}

export interface TbfParameters {
  rateKbit: number;
  burstBytes: number;
  latencyUs: number;
}

/**
 * tbf parameters for a rate. The rate is rounded to whole kbit/s.
 *
 * - burst = max(10 ms of traffic at the rate, 10 full Ethernet frames = 15,140 bytes). The bucket must
 *   hold at least one packet (bigger GSO packets are split by tbf); a few ms worth lets ACK-clocked TCP
 *   run without stalls, and keeping it at 10 ms bounds the overshoot over any window to 10 ms of rate.
 * - latency = the time to drain a queue of 50 ms of traffic, but at least 32 KiB (so slow links still
 *   queue ~20 frames instead of tail-dropping TCP into the ground) and at most 4 MiB (so fast links do
 *   not pin tens of MiB of kernel memory per VM). tc turns it into the queue limit (rate x latency +
 *   burst).
 *
 * Examples: 8 Mbit/s -> burst 15,140 B, latency 50 ms; 4 Mbit/s -> 15,140 B, 65.5 ms; 1 Gbit/s ->
 * 1.25 MB, 33.6 ms.
 */
export function tbfParameters(rateMbps: number): TbfParameters {
  if (typeof rateMbps !== 'number' || !Number.isFinite(rateMbps)) {
    throw new Error('rate must be a finite number of Mbit/s');
  }
  if (rateMbps < MIN_RATE_MBPS || rateMbps > MAX_RATE_MBPS) {
    throw new Error(`rate must be between ${MIN_RATE_MBPS} and ${MAX_RATE_MBPS} Mbit/s, got ${rateMbps}`);
  }
  const rateKbit = Math.round(rateMbps * 1000);
  const bytesPerSecond = rateKbit * 125;
  const burstBytes = Math.max(Math.ceil(bytesPerSecond * BURST_SECONDS), MIN_BURST_BYTES);
  const queueBytes = Math.min(Math.max(bytesPerSecond * QUEUE_SECONDS, MIN_QUEUE_BYTES), MAX_QUEUE_BYTES);
  const latencyUs = Math.ceil((queueBytes * 1_000_000) / bytesPerSecond);
  return { rateKbit, burstBytes, latencyUs };
}

/** The `tbf ...` tail of a `tc qdisc replace dev X root` command. */
export function tbfArgs(params: TbfParameters): string[] {
  return [
    'tbf',
    'rate',
    `${params.rateKbit}kbit`,
    'burst',
    String(params.burstBytes),
    'latency',
    `${params.latencyUs}us`,
  ];
}

// ---- reading tc/ip JSON ----

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function num(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

function records(value: unknown, what: string): Record<string, unknown>[] {
  if (!Array.isArray(value)) throw new Error(`${what}: expected a JSON array`);
  return value.filter(isRecord);
}

/** What `tc -json -s qdisc show dev X` says about Rampart's qdiscs on that device. */
export interface QdiscSummary {
  rootTbf: TbfReading | null;
  ingress: boolean;
}

export function parseQdiscs(json: unknown): QdiscSummary {
  let rootTbf: TbfReading | null = null;
  let ingress = false;
  for (const qdisc of records(json, 'tc qdisc show')) {
    if (qdisc.kind === 'ingress') ingress = true;
    if (qdisc.kind === 'tbf' && qdisc.root === true) {
      const options = isRecord(qdisc.options) ? qdisc.options : {};
      rootTbf = {
        // tc reports the rate in bytes per second.
        rateMbps: (num(options.rate) * 8) / 1_000_000,
        burstBytes: num(options.burst),
        latencyUs: num(options.lat),
        counters: {
          bytes: num(qdisc.bytes),
          packets: num(qdisc.packets),
          drops: num(qdisc.drops),
          overlimits: num(qdisc.overlimits),
          requeues: num(qdisc.requeues),
          backlogBytes: num(qdisc.backlog),
          queuedPackets: num(qdisc.qlen),
        },
      };
    }
  }
  return { rootTbf, ingress };
}

/**
 * Classifies the filters under the ingress qdisc: 'none', 'ours' (only our preference, and a mirred
 * redirect to `ifb` among them) or 'other' (anything else, which applyShaping replaces).
 */
export function classifyIngressFilters(json: unknown, ifb: string): 'none' | 'ours' | 'other' {
  const filters = records(json, 'tc filter show');
  if (filters.length === 0) return 'none';
  if (!filters.every((f) => f.pref === FILTER_PREF && f.kind === 'u32')) return 'other';
  const redirects = filters.some((f) => {
    const actions = isRecord(f.options) && Array.isArray(f.options.actions) ? f.options.actions : [];
    return actions.some(
      (a) =>
        isRecord(a) &&
        a.kind === 'mirred' &&
        a.mirred_action === 'redirect' &&
        a.direction === 'egress' &&
        a.to_dev === ifb,
    );
  });
  return redirects ? 'ours' : 'other';
}

interface LinkInfo {
  kind: string | undefined;
  up: boolean;
}

function parseLink(json: unknown): LinkInfo | null {
  const link = records(json, 'ip link show')[0];
  if (!link) return null;
  const linkinfo = isRecord(link.linkinfo) ? link.linkinfo : {};
  const flags = Array.isArray(link.flags) ? link.flags : [];
  return {
    kind: typeof linkinfo.info_kind === 'string' ? linkinfo.info_kind : undefined,
    up: flags.includes('UP'),
  };
}

// ---- running commands ----

function inNetns(netns: string | undefined, command: 'ip' | 'tc', args: string[]): [string, string[]] {
  return netns === undefined ? [command, args] : ['ip', ['netns', 'exec', netns, command, ...args]];
}

async function exec(netns: string | undefined, command: 'ip' | 'tc', args: string[]): Promise<void> {
  const [cmd, argv] = inNetns(netns, command, args);
  await run(cmd, argv, { timeoutMs: COMMAND_TIMEOUT_MS });
}

function execJson(netns: string | undefined, command: 'ip' | 'tc', args: string[]): Promise<unknown> {
  const [cmd, argv] = inNetns(netns, command, args);
  return runJson<unknown>(cmd, argv, { timeoutMs: COMMAND_TIMEOUT_MS });
}

/** `ip -json -d link show dev X`, or null when the device does not exist (ip exits 1 saying so). */
async function readLink(netns: string | undefined, dev: string): Promise<LinkInfo | null> {
  try {
    return parseLink(await execJson(netns, 'ip', ['-json', '-details', 'link', 'show', 'dev', dev]));
  } catch (error) {
    if (error instanceof CommandError && error.exitCode === 1 && /does not exist/.test(error.stderr)) {
      return null;
    }
    throw error;
  }
}

interface Inspection {
  root: TbfReading | null;
  ingress: boolean;
  filters: 'none' | 'ours' | 'other';
  /** null: no device by that name. */
  ifbLink: LinkInfo | null;
  ifbTbf: TbfReading | null;
}

async function inspect(netns: string | undefined, tap: string, ifb: string): Promise<Inspection> {
  // Fails (CommandError) when the tap does not exist.
  const qdiscs = parseQdiscs(await execJson(netns, 'tc', ['-json', '-s', 'qdisc', 'show', 'dev', tap]));
  const filters = qdiscs.ingress
    ? classifyIngressFilters(
        await execJson(netns, 'tc', ['-json', 'filter', 'show', 'dev', tap, 'parent', INGRESS_HANDLE]),
        ifb,
      )
    : 'none';
  const ifbLink = await readLink(netns, ifb);
  const ifbTbf =
    ifbLink?.kind === 'ifb'
      ? parseQdiscs(await execJson(netns, 'tc', ['-json', '-s', 'qdisc', 'show', 'dev', ifb])).rootTbf
      : null;
  return { root: qdiscs.rootTbf, ingress: qdiscs.ingress, filters, ifbLink, ifbTbf };
}

function fromGuestComplete(state: Inspection): boolean {
  return (
    state.ingress &&
    state.filters === 'ours' &&
    state.ifbLink?.kind === 'ifb' &&
    state.ifbLink.up &&
    state.ifbTbf !== null
  );
}

/** The match-all u32 filter on the tap's ingress that redirects every packet to the ifb. */
export function redirectFilterArgs(tap: string, ifb: string): string[] {
  return [
    'filter',
    'add',
    'dev',
    tap,
    'parent',
    INGRESS_HANDLE,
    'protocol',
    'all',
    'pref',
    String(FILTER_PREF),
    'u32',
    'match',
    'u32',
    '0',
    '0',
    'action',
    'mirred',
    'egress',
    'redirect',
    'dev',
    ifb,
  ];
}

/** Re-creates a tbf exactly as read back (used by undos). */
function restoreTbfArgs(dev: string, tbf: TbfReading): string[] {
  return [
    'qdisc',
    'replace',
    'dev',
    dev,
    'root',
    'tbf',
    'rate',
    `${Math.round(tbf.rateMbps * 1_000_000)}bit`,
    'burst',
    String(tbf.burstBytes),
    'latency',
    `${Math.max(1, tbf.latencyUs)}us`,
  ];
}

function validateLimits(limits: ShapingLimits): {
  toGuest: TbfParameters | null;
  fromGuest: TbfParameters | null;
} {
  if (typeof limits !== 'object' || limits === null) throw new Error('limits must be an object');
  return {
    toGuest: limits.toGuestMbps === undefined ? null : tbfParameters(limits.toGuestMbps),
    fromGuest: limits.fromGuestMbps === undefined ? null : tbfParameters(limits.fromGuestMbps),
  };
}

const locks = new KeyedMutex();

function lockKey(netns: string | undefined, tap: string): string {
  return `${netns ?? ''}\u0000${tap}`;
}

function validateTarget(tap: string, options: ShaperOptions): { netns: string | undefined; ifb: string } {
  assertTapName(tap);
  const netns = options.netns === undefined ? undefined : assertNetnsName(options.netns);
  return { netns, ifb: ifbNameFor(tap) };
}

/**
 * Makes the tap's shaping match `limits` exactly: a given direction is shaped at that rate, an absent
 * one is unshaped. Idempotent. The tap must exist. On failure the previous shaping is restored.
 */
export async function applyShaping(
  tap: string,
  limits: ShapingLimits,
  options: ShaperOptions = {},
): Promise<void> {
  const { netns, ifb } = validateTarget(tap, options);
  const wanted = validateLimits(limits);
  await locks.run(lockKey(netns, tap), async () => {
    const before = await inspect(netns, tap, ifb);
    const tc = (...args: string[]) => exec(netns, 'tc', args);
    const ip = (...args: string[]) => exec(netns, 'ip', args);
    const reverter = new Reverter();
    try {
      // To the guest: the tap's root qdisc.
      if (wanted.toGuest) {
        await tc('qdisc', 'replace', 'dev', tap, 'root', ...tbfArgs(wanted.toGuest));
        const old = before.root;
        reverter.add(() => (old ? tc(...restoreTbfArgs(tap, old)) : tc('qdisc', 'del', 'dev', tap, 'root')));
      } else if (before.root) {
        await tc('qdisc', 'del', 'dev', tap, 'root');
        const old = before.root;
        reverter.add(() => tc(...restoreTbfArgs(tap, old)));
      }

      // From the guest: shaper on the ifb first, then the redirect into it, so no packet ever goes
      // through an ifb that is down (dropped) or not yet shaped.
      if (wanted.fromGuest) {
        if (before.ifbLink && before.ifbLink.kind !== 'ifb') {
          throw new Error(`cannot shape ${tap}: ${ifb} exists and is not an ifb device`);
        }
        if (!before.ifbLink) {
          await ip('link', 'add', ifb, 'type', 'ifb');
          reverter.add(() => ip('link', 'del', ifb));
        }
        if (!before.ifbLink?.up) await ip('link', 'set', 'dev', ifb, 'up');
        await tc('qdisc', 'replace', 'dev', ifb, 'root', ...tbfArgs(wanted.fromGuest));
        if (before.ifbLink) {
          const old = before.ifbTbf;
          reverter.add(() =>
            old ? tc(...restoreTbfArgs(ifb, old)) : tc('qdisc', 'del', 'dev', ifb, 'root'),
          );
        }
        if (!before.ingress || before.filters !== 'ours') {
          if (before.ingress) {
            // Not (only) our redirect: start from a clean ingress qdisc. Foreign filters are not restored.
            await tc('qdisc', 'del', 'dev', tap, 'handle', INGRESS_HANDLE, 'ingress');
          }
          await tc('qdisc', 'add', 'dev', tap, 'handle', INGRESS_HANDLE, 'ingress');
          reverter.add(() => tc('qdisc', 'del', 'dev', tap, 'handle', INGRESS_HANDLE, 'ingress'));
          await tc(...redirectFilterArgs(tap, ifb));
        }
      } else {
        // Stop redirecting first, then drop the ifb.
        if (before.ingress) {
          await tc('qdisc', 'del', 'dev', tap, 'handle', INGRESS_HANDLE, 'ingress');
          if (fromGuestComplete(before)) {
            reverter.add(async () => {
              await tc('qdisc', 'add', 'dev', tap, 'handle', INGRESS_HANDLE, 'ingress');
              await tc(...redirectFilterArgs(tap, ifb));
            });
          }
        }
        if (before.ifbLink?.kind === 'ifb') {
          await ip('link', 'del', ifb);
          const old = before.ifbTbf;
          reverter.add(async () => {
            await ip('link', 'add', ifb, 'type', 'ifb');
            await ip('link', 'set', 'dev', ifb, 'up');
            if (old) await tc(...restoreTbfArgs(ifb, old));
          });
        }
      }
      reverter.success();
    } catch (error) {
      await reverter.fail();
      throw error;
    }
  });
}

/**
 * Removes all shaping from the tap and deletes its ifb. Works when the tap is already gone (the kernel
 * dropped its qdiscs, but the ifb would otherwise stay behind). Best effort: every step is attempted and
 * all failures are reported together.
 */
export async function removeShaping(tap: string, options: ShaperOptions = {}): Promise<void> {
  const { netns, ifb } = validateTarget(tap, options);
  await locks.run(lockKey(netns, tap), async () => {
    const errors: unknown[] = [];
    const attempt = async (step: () => Promise<void>) => {
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    };
    const tc = (...args: string[]) => exec(netns, 'tc', args);
    await attempt(async () => {
      if (!(await readLink(netns, tap))) return;
      const qdiscs = parseQdiscs(await execJson(netns, 'tc', ['-json', 'qdisc', 'show', 'dev', tap]));
      if (qdiscs.ingress) {
        await attempt(() => tc('qdisc', 'del', 'dev', tap, 'handle', INGRESS_HANDLE, 'ingress'));
      }
      if (qdiscs.rootTbf) await attempt(() => tc('qdisc', 'del', 'dev', tap, 'root'));
    });
    await attempt(async () => {
      const link = await readLink(netns, ifb);
      // A device of another kind under that name is not ours to delete.
      if (link?.kind === 'ifb') await exec(netns, 'ip', ['link', 'del', ifb]);
    });
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `removing shaping from ${tap} failed`);
  });
}

/** What shaping is applied to the tap, with the kernel's counters. Throws if the tap does not exist. */
export async function readShaping(tap: string, options: ShaperOptions = {}): Promise<ShapingState> {
  const { netns, ifb } = validateTarget(tap, options);
  const state = await locks.run(lockKey(netns, tap), () => inspect(netns, tap, ifb));
  const complete = fromGuestComplete(state);
  const anyPiece = state.ingress || state.ifbLink?.kind === 'ifb';
  return {
    tap,
    ifb,
    toGuest: state.root,
    fromGuest: complete ? state.ifbTbf : null,
    partial: anyPiece && !complete,
  };
}

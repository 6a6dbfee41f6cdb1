/**
 * Host firewall benchmark: how long a security-group change that touches every port of a full host
 * takes to land with Rampart's one-transaction apply, against adding the same rules one `nft add rule`
 * process at a time, in the same run; and packets/s through the bridge with 10 and with 10,000 rules.
 * Needs root (network namespaces, nftables); everything happens in throwaway namespaces.
 *
 *   npm run build && node scripts/run-benches.mjs firewall
 *   RAMPART_BENCH_FW_BASELINE_CALLS=1000 ...   # time only an evenly spaced sample of the one-at-a-time
 *                                              # calls and extrapolate to all of them (said in the output)
 *   RAMPART_BENCH_FW_SECONDS=2 ...             # length of one packets/s measurement (default 3)
 *
 * Apply. A host namespace `rpt-bf-<random>` (deleted in `finally`, whatever happens) holds the tables;
 * no devices are needed for this part (the ruleset names taps and bridges as strings). The intent: 500
 * ports (tags 1..500, taps `rpt` + 12 hex, 5 bridges/zones of 100 ports, unique IPv4 and MAC) with 20
 * ingress rules each = 10,000 rules: tcp, port ranges of 1, 10, 100 or 1,000 ports, from CIDRs of
 * /16 to /32, all deterministic. Two variants differ in one rule of every port (a changed CIDR), so
 * going from one to the other is a change that touches all 500 ports. HostFirewallManager.apply() of
 * variant A is timed for information (the first apply); then the change is applied 3 times (B, A, B),
 * each timed as a whole (apply() reads both tables before and after the transaction to carry the
 * counters over and record the live rules: that is part of Rampart's cost), median = Rampart's number.
 * After each apply, drift() must report nothing (else the benchmark fails).
 *
 * Baseline, same namespace, same run: a plain `table inet base` with one regular chain per port
 * (created untimed in one `nft -f -`), then the 10,000 rules of variant B added one `ip netns exec <ns>
 * nft add rule inet base port_<tag> ip saddr <cidr> tcp dport <a>-<b> accept` process at a time
 * through the subprocess helper, timed; the rule count is checked afterwards. The baseline is given
 * the easier job: empty chains (no flush of the old rules, no counters, no anti-spoofing chains, no
 * sets), and Rampart's apply also goes through `ip netns exec`. With RAMPART_BENCH_FW_BASELINE_CALLS
 * below 10,000, only that many evenly spaced rules are added (one call each) and the time is scaled
 * linearly (per-call cost does not grow with the ruleset: nft does not load the rules to add one).
 * Ratio = baseline time / Rampart's change time. Target: >= 10x. Why 10x: one nft process per rule
 * costs a fork+exec, a netlink cache fetch and a commit each (~5 ms here), so the per-rule way takes
 * most of a minute for this change; an operator's security-group edit on a full host should land in
 * seconds, i.e. an order of magnitude below that, while leaving Rampart room for the work it does and
 * the baseline does not (rendering disjoint interval sets, 500 anti-spoofing chains and 3,500 named
 * counters, reading the counters before and the rules after, replacing whole tables atomically).
 *
 * Packets/s. In the same host namespace: bridge 1 (port-devices' ensureBridge, which also turns on
 * br_netfilter there) and two guest namespaces `rpt-bg-<random>` whose eth0 is a veth whose host end
 * is named like the port's tap and enslaved to the bridge, as in src/agent/net/firewall.test.ts. A
 * tiny python3 UDP sender (unconnected sendto() of 18-byte payloads in a loop for a fixed time) runs
 * in guest 1 and sends to guest 2, udp/9000; packets delivered = growth of guest 2's eth0 rx_packets
 * (counted when the bridge hands the frame to that veth, i.e. after the firewall); packets/s =
 * delivered / the sender's own elapsed time. UDP without replies stays conntrack state `new`, so every
 * packet goes through the egress and ingress set lookups, not just the established shortcut. States:
 * "10 rules" = ports 1 and 2 only, port 1 egress any, port 2 ingress udp/9000 from the subnet, 8 tcp
 * rules from the generator; "10,000 rules" = all 500 ports, the same two rules plus 19 generated ones
 * on ports 1 and 2 and 20 on each of the other 498. So the comparison is a quiet host against a full
 * one (ports and rules both grow); a third state, the 10 rules with all 500 ports, is measured for
 * information only, to tell the cost of more ports from the cost of more set elements. Before
 * measuring, the 10-rule state minus the udp rule must drop the flow (and count it), otherwise the
 * firewall is not in the path and the benchmark fails. Target: pps(10,000) / pps(10) >= 0.9 (flat:
 * every per-port decision is a set or map lookup).
 * The python sender costs CPU per packet too, which dilutes a firewall slowdown: read the ratio as a
 * lower bound on flatness for the whole path guest -> bridge -> guest.
 *
 * Every packets/s measurement is repeated 3 times (order alternating) and the median is reported.
 * Misses are reported on stdout with exit code 0; the exit code is non-zero only when something broke
 * (a command failed, drift after an apply, wrong rule count, the firewall not in the packet path).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { FirewallRule, HostFirewall, PortIntent } from '../src/api/host-network.js';
import { run, runSettled } from '../src/common/subprocess.js';
import { HostFirewallManager } from '../src/agent/net/firewall.js';
import { buildModel, numberToIpv4, renderRuleset } from '../src/agent/net/nft-ruleset.js';
import { ensureBridge } from '../src/agent/net/port-devices.js';
import { median } from './lib/stats.js';

const PORTS = 500;
const PORTS_PER_BRIDGE = 100;
const RULES_PER_PORT = 20;
const TOTAL_RULES = PORTS * RULES_PER_PORT;
const REPEATS = 3;
const APPLY_TARGET = 10;
const PPS_TARGET = 0.9;
const BASELINE_CALLS = Math.min(
  TOTAL_RULES,
  Math.max(1, Number(process.env.RAMPART_BENCH_FW_BASELINE_CALLS ?? TOTAL_RULES)),
);
const BLAST_SECONDS = Number(process.env.RAMPART_BENCH_FW_SECONDS ?? '3');
const UDP_PORT = 9000;
const NFT_TIMEOUT_MS = 120_000;
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** Sends 18-byte UDP datagrams to argv[1]:argv[2] for argv[3] seconds; prints "sent errors elapsed". */
const SENDER = `
import socket, sys, time
addr = (sys.argv[1], int(sys.argv[2]))
seconds = float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
send = s.sendto
payload = b'rampart-bench-pps!'
sent = errors = 0
start = time.perf_counter()
end = start + seconds
while True:
    for _ in range(256):
        try:
            send(payload, addr)
            sent += 1
        except OSError:
            errors += 1
    if time.perf_counter() >= end:
        break
print(sent, errors, time.perf_counter() - start)
`;

const suffix = randomBytes(4).toString('hex');
const hex4 = (n: number) => n.toString(16).padStart(4, '0');
const bridgeOf = (zone: number) => `rpb${hex4(zone)}${suffix}`;

function makePort(tag: number): PortIntent {
  const zone = 1 + Math.floor((tag - 1) / PORTS_PER_BRIDGE);
  const host = 1 + ((tag - 1) % PORTS_PER_BRIDGE);
  return {
    id: `00000000-0000-4000-8000-${tag.toString(16).padStart(12, '0')}`,
    networkId: `00000000-0000-4000-9000-${zone.toString(16).padStart(12, '0')}`,
    bridge: bridgeOf(zone),
    tap: `rpt${hex4(tag)}${suffix}`,
    tag,
    zone,
    mac: `02:00:00:00:${hex4(tag).slice(0, 2)}:${hex4(tag).slice(2)}`,
    ipv4: `10.${zone}.0.${host}`,
    prefixLength: 24,
    gateway: null,
    allowedAddresses: [],
  };
}

const PREFIXES = [16, 20, 22, 24, 24, 26, 28, 32];
const WIDTHS = [0, 9, 99, 999];

/** Rule `index` of port `tag`; `variant` changes the CIDR of rule 0 only. Deterministic. */
function generatedRule(tag: number, index: number, variant: number): FirewallRule {
  const length = PREFIXES[(tag + index) % PREFIXES.length]!;
  const b = 16 + ((tag * 3 + index * 5 + (index === 0 ? variant * 7 : 0)) % 16);
  const address =
    172 * 2 ** 24 + b * 2 ** 16 + ((tag * 11 + index * 29) % 256) * 256 + ((tag * 13 + index * 7) % 256);
  const size = 2 ** (32 - length);
  const portMin = 1 + ((tag * 37 + index * 997) % 60_000);
  return {
    tag,
    direction: 'ingress',
    protocol: 'tcp',
    cidr: `${numberToIpv4(Math.floor(address / size) * size)}/${length}`,
    portMin,
    portMax: portMin + WIDTHS[(tag + 2 * index) % WIDTHS.length]!,
  };
}

function generatedRules(tags: readonly number[], perPort: number, variant: number): FirewallRule[] {
  return tags.flatMap((tag) => Array.from({ length: perPort }, (_, i) => generatedRule(tag, i, variant)));
}

const ALL_TAGS = Array.from({ length: PORTS }, (_, i) => i + 1);
const ALL_PORTS = ALL_TAGS.map(makePort);

function applyState(variant: number, generation: number): HostFirewall {
  return { generation, ports: ALL_PORTS, rules: generatedRules(ALL_TAGS, RULES_PER_PORT, variant) };
}

type PpsKind = 'small' | 'ports' | 'large';
const PPS_NAMES: Record<PpsKind, string> = {
  small: '10 rules',
  ports: '10 rules, 500 ports (information)',
  large: '10,000 rules',
};

/** The states of the packets/s part (see the top of this file). */
function ppsState(kind: PpsKind | 'deny', generation: number): HostFirewall {
  const [p1, p2] = [ALL_PORTS[0]!, ALL_PORTS[1]!];
  const egress: FirewallRule = { tag: 1, direction: 'egress', protocol: 'any', cidr: '10.1.0.0/24' };
  const udp: FirewallRule = {
    tag: 2,
    direction: 'ingress',
    protocol: 'udp',
    cidr: '10.1.0.0/24',
    portMin: UDP_PORT,
    portMax: UDP_PORT,
  };
  if (kind !== 'large') {
    const rules = [egress, ...(kind === 'deny' ? [] : [udp]), ...generatedRules([1, 2], 4, 0)];
    return { generation, ports: kind === 'ports' ? ALL_PORTS : [p1, p2], rules };
  }
  const rules = [egress, udp, ...generatedRules([1, 2], RULES_PER_PORT - 1, 0)];
  rules.push(...generatedRules(ALL_TAGS.slice(2), RULES_PER_PORT, 0));
  return { generation, ports: ALL_PORTS, rules };
}

async function ip(...args: string[]): Promise<string> {
  return (await run('ip', args)).stdout;
}

async function inNs(ns: string, command: string, args: string[], timeoutMs = 30_000): Promise<string> {
  return (await run('ip', ['netns', 'exec', ns, command, ...args], { timeoutMs })).stdout;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await fn();
  return { ms: performance.now() - started, value };
}

async function addNetns(created: string[], name: string): Promise<string> {
  await ip('netns', 'add', name);
  created.push(name);
  await ip('-n', name, 'link', 'set', 'lo', 'up');
  await inNs(name, 'sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1']);
  await inNs(name, 'sysctl', ['-q', '-w', 'net.ipv6.conf.default.disable_ipv6=1']);
  return name;
}

async function assertNoDrift(fw: HostFirewallManager, state: HostFirewall, what: string): Promise<void> {
  const drift = await fw.drift(state);
  if (drift.length > 0) throw new Error(`${what}: drift after apply: ${drift.slice(0, 5).join('; ')}`);
}

interface ApplyResult {
  firstMs: number;
  changeMs: number[];
  baselineMs: number;
  baselineCalls: number;
  elements: number;
  renderedLines: number;
}

async function applyBenchmark(host: string): Promise<ApplyResult> {
  const fw = new HostFirewallManager({ netns: host });
  const variants = [applyState(0, 1), applyState(1, 2), applyState(0, 3), applyState(1, 4)];
  const model = buildModel(variants[1]!);
  const first = await timed(() => fw.apply(variants[0]!));
  await assertNoDrift(fw, variants[0]!, 'first apply');
  const changeMs: number[] = [];
  for (const state of variants.slice(1)) {
    const { ms } = await timed(() => fw.apply(state));
    await assertNoDrift(fw, state, `change to generation ${state.generation}`);
    changeMs.push(ms);
  }
  await fw.remove();

  // Baseline: one `nft add rule` process per rule of variant B into a plain table.
  const nft = (args: string[], input?: string) =>
    run('ip', ['netns', 'exec', host, 'nft', ...args], { timeoutMs: NFT_TIMEOUT_MS, input });
  const chains = ALL_TAGS.map((tag) => `\tchain port_${tag} {}`).join('\n');
  await nft(['-f', '-'], `table inet base {\n${chains}\n}\n`);
  const rules = variants[1]!.rules;
  const step = TOTAL_RULES / BASELINE_CALLS;
  const sample = Array.from({ length: BASELINE_CALLS }, (_, i) => rules[Math.floor(i * step)]!);
  const baseline = await timed(async () => {
    for (const rule of sample) {
      const ports = rule.portMin === rule.portMax ? `${rule.portMin}` : `${rule.portMin}-${rule.portMax}`;
      await nft([
        'add',
        'rule',
        'inet',
        'base',
        `port_${rule.tag}`,
        'ip',
        'saddr',
        rule.cidr,
        'tcp',
        'dport',
        ports,
        'accept',
      ]);
    }
  });
  const listed = await run('ip', ['netns', 'exec', host, 'nft', '-j', 'list', 'table', 'inet', 'base'], {
    timeoutMs: NFT_TIMEOUT_MS,
    maxBufferBytes: 256 * 1024 * 1024,
  });
  const items = (JSON.parse(listed.stdout) as { nftables: Array<Record<string, unknown>> }).nftables;
  const count = items.filter((item) => 'rule' in item).length;
  if (count !== BASELINE_CALLS) throw new Error(`baseline: ${count} rules listed, ${BASELINE_CALLS} added`);
  await nft(['delete', 'table', 'inet', 'base']);

  return {
    firstMs: first.ms,
    changeMs,
    baselineMs: baseline.ms * (TOTAL_RULES / BASELINE_CALLS),
    baselineCalls: BASELINE_CALLS,
    elements: model.inet.sets.get('ingress_l4')!.elements.length,
    renderedLines: renderRuleset(variants[1]!).split('\n').length,
  };
}

async function attachGuest(created: string[], host: string, port: PortIntent): Promise<string> {
  const guest = await addNetns(created, `rpt-bg-${randomBytes(4).toString('hex')}`);
  await ip('link', 'add', port.tap, 'netns', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', guest);
  await inNs(host, 'sysctl', ['-q', '-w', `net.ipv6.conf.${port.tap}.disable_ipv6=1`]);
  await ip('-n', host, 'link', 'set', 'dev', port.tap, 'master', port.bridge, 'up');
  await ip('-n', guest, 'link', 'set', 'dev', 'eth0', 'address', port.mac);
  await ip('-n', guest, 'addr', 'add', `${port.ipv4}/${port.prefixLength}`, 'dev', 'eth0');
  await ip('-n', guest, 'link', 'set', 'dev', 'eth0', 'up');
  return guest;
}

async function rxPackets(guest: string): Promise<number> {
  return Number((await inNs(guest, 'cat', ['/sys/class/net/eth0/statistics/rx_packets'])).trim());
}

/** Runs the sender in `from` for `seconds`; returns what reached `to` and the sender's figures. */
async function blast(
  from: string,
  to: string,
  seconds: number,
): Promise<{ delivered: number; sent: number; errors: number; seconds: number }> {
  const before = await rxPackets(to);
  const out = await inNs(
    from,
    PYTHON,
    ['-c', SENDER, ALL_PORTS[1]!.ipv4, String(UDP_PORT), String(seconds)],
    (seconds + 30) * 1000,
  );
  const after = await rxPackets(to);
  const [sent, errors, elapsed] = out.trim().split(/\s+/).map(Number) as [number, number, number];
  return { delivered: after - before, sent, errors, seconds: elapsed };
}

interface PpsRun {
  pps: number;
  deliveredShare: number;
}

async function ppsBenchmark(created: string[], host: string): Promise<Record<string, PpsRun[]>> {
  const fw = new HostFirewallManager({ netns: host });
  const [p1, p2] = [ALL_PORTS[0]!, ALL_PORTS[1]!];
  await ensureBridge(p1.bridge, { netns: host });
  const g1 = await attachGuest(created, host, p1);
  const g2 = await attachGuest(created, host, p2);
  let generation = 10;

  // The firewall must be in the path: without the udp rule the flow is dropped and counted.
  const deny = ppsState('deny', ++generation);
  await fw.apply(deny);
  await assertNoDrift(fw, deny, 'deny state');
  const denied = await blast(g1, g2, 0.5);
  const counted = (await fw.readCounters()).find((c) => c.tag === 2)?.ingressDenied ?? 0;
  if (denied.sent === 0 || denied.delivered > denied.sent * 0.01 || counted === 0) {
    throw new Error(
      `firewall not in the packet path: ${denied.delivered} of ${denied.sent} delivered without a rule, ` +
        `${counted} counted as denied`,
    );
  }

  const results: Record<string, PpsRun[]> = {};
  for (const kind of Object.keys(PPS_NAMES) as PpsKind[]) results[PPS_NAMES[kind]] = [];
  for (let rep = 0; rep < REPEATS; rep++) {
    const order: PpsKind[] = rep % 2 === 0 ? ['small', 'ports', 'large'] : ['large', 'ports', 'small'];
    for (const kind of order) {
      const state = ppsState(kind, ++generation);
      if (state.rules.length !== (kind === 'large' ? TOTAL_RULES : 10))
        throw new Error(`${kind} state has ${state.rules.length} rules`);
      await fw.apply(state);
      await assertNoDrift(fw, state, `${kind} state`);
      await blast(g1, g2, 0.2); // ARP and caches
      const r = await blast(g1, g2, BLAST_SECONDS);
      if (r.delivered === 0) throw new Error(`${kind} state: nothing delivered (${r.sent} sent)`);
      results[PPS_NAMES[kind]]!.push({
        pps: r.delivered / r.seconds,
        deliveredShare: r.delivered / r.sent,
      });
    }
  }
  return results;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces and nftables)');
  const created: string[] = [];
  try {
    const host = await addNetns(created, `rpt-bf-${randomBytes(4).toString('hex')}`);
    const sampled = BASELINE_CALLS < TOTAL_RULES;
    console.log(
      `firewall benchmark: ${PORTS} ports x ${RULES_PER_PORT} ingress rules = ${TOTAL_RULES} rules; ` +
        `baseline ${sampled ? `SAMPLED: ${BASELINE_CALLS} of ${TOTAL_RULES} calls timed and extrapolated` : `all ${TOTAL_RULES} nft calls`}; ` +
        `packets/s ${REPEATS} x ${BLAST_SECONDS} s per state, medians`,
    );
    const apply = await applyBenchmark(host);
    const pps = await ppsBenchmark(created, host);

    const rampartMs = median(apply.changeMs);
    const ratio = apply.baselineMs / rampartMs;
    const s = (ms: number) => (ms / 1000).toFixed(2);
    console.log('');
    console.log(`${'measurement'.padEnd(44)} ${'median'.padStart(12)}   runs`);
    console.log(`${'rampart first apply (10,000 rules)'.padEnd(44)} ${`${s(apply.firstMs)} s`.padStart(12)}`);
    console.log(
      `${'rampart change apply (500 ports touched)'.padEnd(44)} ${`${s(rampartMs)} s`.padStart(12)}   ${apply.changeMs.map(s).join(' ')} s`,
    );
    console.log(
      `${`nft add rule x ${TOTAL_RULES}${sampled ? ` (extrapolated from ${apply.baselineCalls})` : ''}`.padEnd(44)} ${`${s(apply.baselineMs)} s`.padStart(12)}   ${((apply.baselineMs / TOTAL_RULES) * 1000).toFixed(0)} µs per call`,
    );
    for (const [name, runs] of Object.entries(pps)) {
      const m = median(runs.map((r) => r.pps));
      const share = median(runs.map((r) => r.deliveredShare));
      console.log(
        `${`packets/s, ${name}`.padEnd(44)} ${m.toFixed(0).padStart(12)}   ${runs.map((r) => r.pps.toFixed(0)).join(' ')} (delivered ${(share * 100).toFixed(1)}% of sent)`,
      );
    }
    const ppsRatio =
      median(pps['10,000 rules']!.map((r) => r.pps)) / median(pps['10 rules']!.map((r) => r.pps));
    console.log('');
    console.log(
      `ruleset of the change: ${apply.renderedLines} lines for nft -f, ${apply.elements} ingress_l4 set elements`,
    );
    console.log(
      `apply: Rampart ${s(rampartMs)} s vs one nft add rule at a time ${s(apply.baselineMs)} s` +
        `${sampled ? ` (EXTRAPOLATED from ${apply.baselineCalls} calls)` : ''}`,
    );
    console.log(
      `apply: ${ratio >= APPLY_TARGET ? 'PASS' : 'MISS'} (${ratio.toFixed(1)}x faster, target >= ${APPLY_TARGET}x)`,
    );
    console.log(
      `packets/s: ${ppsRatio >= PPS_TARGET ? 'PASS' : 'MISS'} (10,000 rules / 10 rules = ${ppsRatio.toFixed(2)}, target >= ${PPS_TARGET})`,
    );
  } finally {
    for (const name of created.reverse()) await runSettled('ip', ['netns', 'del', name]);
  }
}

main().catch((error: unknown) => {
  console.error(
    `firewall benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  process.exitCode = 1;
});

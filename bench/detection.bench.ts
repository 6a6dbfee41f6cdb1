/**
 * Detection engine benchmark: security events per second through all shipped rules, against a loop
 * that only parses the same events, in the same run on the same machine (one thread).
 *
 *   npm run build && node dist/bench/detection.bench.js
 *   RAMPART_BENCH_DETECTION_EVENTS=1000000 node dist/bench/detection.bench.js
 *   taskset -c 0 node dist/bench/detection.bench.js     # pin to one core, GC threads included
 *
 * The events: a seeded, realistic mix as JSON lines in the SecurityEvent shape (id, seq, occurredAt,
 * kind, severity, tenantId, subjectType, subjectId, summary, detail) spread over an hour: mostly
 * vm.sample (1,000 VMs, a few of them mining or flooding) and api.denied (2,000 principals, a few
 * enumerating ids), then logins (with one brute-forcing address), console lines, denied egress (with
 * one port scanner), spoofing drops, QEMU exits, heartbeats, volume copies and image failures, plus
 * 5% of kinds no rule looks at.
 * Timed, after a warm-up of both loops: (a) JSON.parse of every line; (b) JSON.parse + process()
 * through the shipped rules on a fresh engine, with the event time taken from occurredAt (parsed by
 * the engine, as in production). Median of RUNS alternating runs of each.
 * Targets: (b) >= 100,000 events/s, and (b)'s cost < 3x (a)'s. A miss is reported, not failed: the
 * exit code is 0 unless something broke.
 */
import { DetectionEngine } from '../src/server/security/detection/rule-engine.js';
import { SHIPPED_RULES_TEXT } from '../src/server/security/detection/shipped-rules.js';
import type { DetectionEvent } from '../src/server/security/detection/rule-loader.js';
import { intFromEnv, median, prng } from './lib/stats.js';

const TARGET_EVENTS_PER_S = 100_000;
const TARGET_RATIO = 3;
const RUNS = 5;

const random = prng(0xde7ec7);
const int = (n: number): number => Math.floor(random() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
const hex = (n: number): string => Array.from({ length: n }, () => int(16).toString(16)).join('');
const uuid = (): string => `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`;

const T0 = Date.UTC(2026, 0, 1);
const TENANTS = Array.from({ length: 20 }, () => uuid());
const VMS = Array.from({ length: 1000 }, (_, i) => ({ id: uuid(), tenant: TENANTS[i % TENANTS.length]! }));
const PRINCIPALS = Array.from({ length: 2000 }, () => uuid());
const HOSTS = Array.from({ length: 20 }, () => uuid());
const MINERS = new Set(VMS.slice(0, 3).map((v) => v.id));
const FLOODER = VMS[3]!.id;
const SCANNER = VMS[4]!.id;
const PROBER = PRINCIPALS[0]!;
const CONSOLE_LINES = [
  '[  812.113] systemd[1]: Started Daily apt upgrade and clean activities.',
  '[  813.020] EXT4-fs (vda1): re-mounted. Opts: (null)',
  'Ubuntu 24.04 LTS web-1 ttyS0',
  '[ 1201.5] nginx[811]: segfault at 7ffd3c ip 0000559 sp 00007ff error 4 in nginx',
  '[ 2201.7] Out of memory: Killed process 912 (java) total-vm:8123456kB',
  '[ 9001.2] BUG: unable to handle page fault for address: ffff8880deadbeef',
];

interface Generated {
  kind: string;
  severity: string;
  tenantId: string | null;
  subjectType: string;
  subjectId: string | null;
  detail: Record<string, unknown>;
}

function generate(): Generated {
  const r = random();
  const vm = pick(VMS);
  const vmEvent = (kind: string, detail: Record<string, unknown>, severity = 'info'): Generated => ({
    kind,
    severity,
    tenantId: vm.tenant,
    subjectType: 'vm',
    subjectId: vm.id,
    detail: { vmId: vm.id, ...detail },
  });
  if (r < 0.5) {
    const miner = MINERS.has(vm.id);
    const flood = vm.id === FLOODER;
    const txPps = flood ? 250_000 + int(50_000) : int(2000);
    return vmEvent('vm.sample', {
      hostId: pick(HOSTS),
      intervalSeconds: 10,
      cpuPercent: miner ? 97 + int(3) : int(100),
      txPackets: txPps * 10,
      txBytes: txPps * 10 * 800,
      rxPackets: int(20_000),
      rxBytes: int(20_000_000),
      txPps,
      txBps: miner ? 30_000 + int(5000) : txPps * 800,
    });
  }
  if (r < 0.7) {
    const principalId = random() < 0.05 ? PROBER : pick(PRINCIPALS);
    return {
      kind: 'api.denied',
      severity: 'low',
      tenantId: pick(TENANTS),
      subjectType: 'vm',
      subjectId: null,
      detail: {
        principalId,
        tokenId: uuid(),
        reason: random() < 0.7 ? 'not-found' : 'forbidden',
        resourceType: 'vm',
        resourceId: principalId === PROBER ? uuid() : pick(VMS).id,
        method: 'GET',
        route: '/v1/vms/:id',
        sourceIp: `198.51.100.${int(256)}`,
      },
    };
  }
  if (r < 0.8) {
    const brute = random() < 0.2;
    const failed = brute || random() < 0.3;
    return {
      kind: failed ? 'auth.login_failed' : 'auth.login_succeeded',
      severity: failed ? 'low' : 'info',
      tenantId: null,
      subjectType: 'user',
      subjectId: pick(PRINCIPALS),
      detail: {
        username: `user${int(2000)}`,
        sourceIp: brute ? '203.0.113.66' : `192.0.2.${int(256)}`,
        reason: 'bad-password',
        userAgent: 'Mozilla/5.0 (X11; Linux x86_64)',
      },
    };
  }
  if (r < 0.85)
    return vmEvent('guest.console', {
      line: random() < 0.995 ? pick(CONSOLE_LINES.slice(0, 3)) : pick(CONSOLE_LINES),
    });
  if (r < 0.89) {
    const scan = random() < 0.3;
    return vmEvent('port.egress_denied', {
      vmId: scan ? SCANNER : vm.id,
      portId: uuid(),
      protocol: 'tcp',
      dstIp: `10.0.${int(4)}.${int(256)}`,
      dstPort: scan ? int(65536) : pick([25, 445, 6667]),
      packets: 1 + int(5),
    });
  }
  if (r < 0.91)
    return vmEvent('port.spoof_drop', {
      portId: uuid(),
      reason: pick(['mac', 'ip', 'arp']),
      packets: int(20),
      srcIp: '10.9.9.9',
    });
  if (r < 0.92) {
    const reason = random() < 0.01 ? 'seccomp' : pick(['shutdown', 'stop', 'crash']);
    return vmEvent('vm.exit', {
      hostId: pick(HOSTS),
      expected: reason === 'shutdown' || reason === 'stop',
      reason,
      signal: null,
      exitCode: 0,
    });
  }
  if (r < 0.93)
    return vmEvent('vm.heartbeat_lost', {
      hostId: pick(HOSTS),
      lastSeenAt: new Date(T0).toISOString(),
      missed: 3,
    });
  if (r < 0.94) {
    const volumeId = uuid();
    return {
      kind: random() < 0.5 ? 'volume.cloned' : 'volume.snapshot_created',
      severity: 'info',
      tenantId: vm.tenant,
      subjectType: 'volume',
      subjectId: volumeId,
      detail: {
        actorId: pick(PRINCIPALS),
        actorType: 'user',
        crossTenant: random() < 0.01,
        volumeId,
        newId: uuid(),
        vmId: vm.id,
      },
    };
  }
  if (r < 0.95)
    return vmEvent(
      'image.verification_failed',
      { vmName: 'web', imageId: uuid(), hostId: pick(HOSTS), reason: 'digest mismatch' },
      'high',
    );
  // Kinds no shipped rule looks at.
  return {
    kind: pick(['host.firewall_drift', 'image.scan_error', 'iam.role_bound', 'vm.started']),
    severity: 'info',
    tenantId: vm.tenant,
    subjectType: 'vm',
    subjectId: vm.id,
    detail: { differences: ['table inet rampart: chain fwd: rule 3'] },
  };
}

function makeLines(n: number): string[] {
  const lines: string[] = new Array<string>(n);
  const stepMs = 3_600_000 / n;
  for (let i = 0; i < n; i++) {
    const g = generate();
    lines[i] = JSON.stringify({
      id: uuid(),
      seq: i + 1,
      occurredAt: new Date(T0 + Math.floor(i * stepMs)).toISOString(),
      kind: g.kind,
      severity: g.severity,
      tenantId: g.tenantId,
      subjectType: g.subjectType,
      subjectId: g.subjectId,
      summary: `${g.kind} on ${g.subjectType}`,
      detail: g.detail,
    });
  }
  return lines;
}

function parseOnly(lines: readonly string[]): number {
  let sum = 0;
  for (let i = 0; i < lines.length; i++) sum += (JSON.parse(lines[i]!) as DetectionEvent).seq;
  return sum;
}

function parseAndDetect(
  lines: readonly string[],
  engine: DetectionEngine,
  perRule?: Map<string, number>,
): number {
  let detections = 0;
  for (let i = 0; i < lines.length; i++) {
    const out = engine.process(JSON.parse(lines[i]!) as DetectionEvent);
    if (out.length > 0) {
      detections += out.length;
      if (perRule) for (const d of out) perRule.set(d.ruleId, (perRule.get(d.ruleId) ?? 0) + 1);
    }
  }
  return detections;
}

function seconds(fn: () => number): { s: number; result: number } {
  const t0 = process.hrtime.bigint();
  const result = fn();
  return { s: Number(process.hrtime.bigint() - t0) / 1e9, result };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const verdict = (pass: boolean): string => (pass ? 'PASS' : 'MISS');

function main(): void {
  const n = intFromEnv('RAMPART_BENCH_DETECTION_EVENTS', 500_000, 10_000, 10_000_000);
  const lines = makeLines(n);
  const bytes = lines.reduce((sum, l) => sum + l.length, 0);
  const newEngine = (): DetectionEngine => new DetectionEngine(SHIPPED_RULES_TEXT);
  console.log(
    `detection benchmark: ${fmt(n)} events (${(bytes / n).toFixed(0)} bytes/event average), ` +
      `${newEngine().ruleIds.length} shipped rules, ${RUNS} runs each`,
  );

  // Warm-up: JIT both loops.
  const warm = lines.slice(0, Math.min(n, 100_000));
  parseOnly(warm);
  parseAndDetect(warm, newEngine());
  parseOnly(warm);

  const perRule = new Map<string, number>();
  const parseTimes: number[] = [];
  const detectTimes: number[] = [];
  let detections = -1;
  for (let run = 0; run < RUNS; run++) {
    parseTimes.push(seconds(() => parseOnly(lines)).s);
    const engine = newEngine();
    const timed = seconds(() => parseAndDetect(lines, engine, run === 0 ? perRule : undefined));
    detectTimes.push(timed.s);
    if (detections >= 0 && timed.result !== detections)
      throw new Error(`runs disagree: ${detections} then ${timed.result} detections`);
    detections = timed.result;
  }

  const parseRate = n / median(parseTimes);
  const detectRate = n / median(detectTimes);
  const ratio = median(detectTimes) / median(parseTimes);
  const perEventUs = ((median(detectTimes) - median(parseTimes)) / n) * 1e6;
  const line = (label: string, value: string): void => console.log(`${label.padEnd(40)} = ${value}`);
  console.log('');
  line('(a) JSON.parse only', `${fmt(parseRate)} events/s (median ${median(parseTimes).toFixed(3)} s)`);
  line(
    '(b) JSON.parse + engine.process',
    `${fmt(detectRate)} events/s (median ${median(detectTimes).toFixed(3)} s)`,
  );
  line('engine cost per event', `${perEventUs.toFixed(2)} µs`);
  line('ratio (b) / (a)', `${ratio.toFixed(2)}x`);
  line(
    'detections per run',
    `${fmt(detections)}: ${[...perRule.entries()].map(([id, count]) => `${id} ${count}`).join(', ')}`,
  );
  if (detections === 0) throw new Error('no detections: the generated mix no longer exercises the rules');
  console.log(
    `verdict: ${verdict(detectRate >= TARGET_EVENTS_PER_S)} >= ${fmt(TARGET_EVENTS_PER_S)} events/s (got ${fmt(detectRate)})`,
  );
  console.log(
    `verdict: ${verdict(ratio < TARGET_RATIO)} ratio < ${TARGET_RATIO}x parsing alone (got ${ratio.toFixed(2)}x)`,
  );
}

try {
  main();
} catch (error: unknown) {
  console.error(
    `detection benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  process.exitCode = 1;
}

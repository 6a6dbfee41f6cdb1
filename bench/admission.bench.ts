/**
 * Admission benchmark: what tenant quota enforcement costs on the VM create path, through the real
 * API of a real server, in the same run on the same machine.
 *
 *   npm run build && node dist/bench/admission.bench.js
 *   RAMPART_BENCH_ADMISSION_CREATES=2000 RAMPART_BENCH_ADMISSION_ROUNDS=3 node dist/bench/admission.bench.js
 *
 * Two all-in-one servers (server + local agent, each in its own temp data dir, started by the test
 * harness: strong random admin password, random high uid base, the shared accelerator cache) run side
 * by side, identical but for RAMPART_QUOTA_ENFORCEMENT=off on the second. Both get overcommit ratios of
 * 64 (CPU) and 4 (memory), the API rate limits switched off (0) and the tenant `default` quota raised
 * to unlimited for VMs, vCPUs, memory and disk, so that no create is refused. Before that a probe
 * checks that the setting took: with a quota of 0 VMs, a create is refused (403) by the enforcing
 * server and admitted by the other.
 *
 * Timed: 50 concurrent clients (a closed loop: each sends its next create when the last is answered)
 * POST /v1/vms with {"start": false, "flavor": "tiny", "image": "tiny"} and unique names, 1,000 creates
 * per measurement after an untimed warm-up. No VM is ever started. Every VM, stopped or not, holds its
 * vCPUs on the host, and the host's CPUs x 64 may be fewer than 1,000 (128 on two cores): the creates
 * then run in waves of as many as the host holds (rounded down to a multiple of the client count), and
 * each wave's VMs are deleted, untimed, before the next. Rate = creates / the summed wall time of the
 * waves; latencies are per request, client side (fetch to the full body). The configurations alternate
 * (on, off; then off, on; ...) and the medians over the rounds are compared.
 * Targets: quota enforcement costs under 20% of the create rate (1 - rate_on / rate_off), and the p99
 * create latency with enforcement is under 50 ms. A miss is reported, not failed: the exit code is 0
 * unless something broke. Servers, agents and data dirs are removed at the end, also on failure.
 */
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Flavor } from '../src/api/flavor.js';
import type { Host } from '../src/api/host.js';
import type { Quota } from '../src/api/quota.js';
import type { Vm } from '../src/api/vm.js';
import { RampartHarness } from '../test/helpers/rampart-harness.js';
import { intFromEnv, median } from './lib/stats.js';

const TARGET_COST = 0.2;
const TARGET_P99_MS = 50;
const TENANT = 'default';
const FLAVOR = 'tiny';
const IMAGE = 'tiny';
const CPU_OVERCOMMIT = 64;
const MEMORY_OVERCOMMIT = 4;
const STOP_TIMEOUT_MS = 15_000;
const DRAIN_TIMEOUT_MS = 120_000;

/** What both servers get; they differ only in RAMPART_QUOTA_ENFORCEMENT. */
const COMMON_ENV: Record<string, string> = {
  RAMPART_CPU_OVERCOMMIT: String(CPU_OVERCOMMIT),
  RAMPART_MEMORY_OVERCOMMIT: String(MEMORY_OVERCOMMIT),
  // 0 = no limit: 50 clients of one admin in one tenant are far above the defaults (20/s per principal).
  RAMPART_RATE_LIMIT_PRINCIPAL: '0',
  RAMPART_RATE_LIMIT_TENANT: '0',
  RAMPART_RATE_LIMIT_ANONYMOUS: '0',
};

type Config = 'on' | 'off';

interface Target {
  config: Config;
  harness: RampartHarness;
  /** VMs per wave: what the host holds, rounded down to a multiple of the client count. */
  wave: number;
  /** Makes VM names unique on this server. */
  seq: number;
}

interface Measurement {
  round: number;
  config: Config;
  creates: number;
  ms: number;
  rate: number;
  p50: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? NaN;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One API request as the admin, in the bench tenant; the body is read in full but not parsed. */
async function call(
  target: Target,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = { authorization: `Bearer ${target.harness.token}` };
  const init: RequestInit = { method, headers };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`${target.harness.url}${path}`, init);
  return { status: response.status, text: await response.text() };
}

async function callJson<T>(target: Target, method: string, path: string, body?: unknown): Promise<T> {
  const { status, text } = await call(target, method, path, body);
  if (status >= 300) throw new Error(`${target.config}: ${method} ${path}: ${status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

/** Runs `task(0..count-1)` on `clients` concurrent loops; the first failure fails the whole. */
async function pool(count: number, clients: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const loop = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(clients, count) }, loop));
}

function vmBody(name: string) {
  return { name, image: IMAGE, flavor: FLAVOR, start: false };
}

const vmsPath = `/v1/vms?tenant=${TENANT}`;
const vmPath = (name: string) => `/v1/vms/${name}?tenant=${TENANT}`;

/** Deletes the VMs and waits until their rows are gone (their vCPUs back on the host). */
async function deleteAll(target: Target, names: readonly string[], clients: number): Promise<void> {
  await pool(names.length, clients, async (i) => {
    const { status, text } = await call(target, 'DELETE', vmPath(names[i]!));
    if (status !== 202)
      throw new Error(`${target.config}: delete ${names[i]}: ${status} ${text.slice(0, 300)}`);
  });
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  for (;;) {
    const list = await callJson<{ items: Vm[] }>(target, 'GET', vmsPath);
    if (list.items.length === 0) return;
    if (Date.now() > deadline)
      throw new Error(`${target.config}: ${list.items.length} VM(s) still there after deleting them`);
    await sleep(50);
  }
}

/** `count` creates in waves; returns the summed wall time of the waves and every request's latency. */
async function createWaves(
  target: Target,
  count: number,
  clients: number,
): Promise<{ ms: number; latencies: number[] }> {
  const latencies: number[] = [];
  let ms = 0;
  for (let done = 0; done < count;) {
    const n = Math.min(target.wave, count - done);
    const names = Array.from({ length: n }, () => `bench-${target.config}-${++target.seq}`);
    const t0 = performance.now();
    await pool(n, clients, async (i) => {
      const started = performance.now();
      const { status, text } = await call(target, 'POST', vmsPath, vmBody(names[i]!));
      latencies.push(performance.now() - started);
      if (status !== 201)
        throw new Error(`${target.config}: create ${names[i]}: ${status} ${text.slice(0, 300)}`);
    });
    ms += performance.now() - t0;
    await deleteAll(target, names, clients);
    done += n;
  }
  return { ms, latencies };
}

async function measure(
  target: Target,
  round: number,
  creates: number,
  clients: number,
): Promise<Measurement> {
  const { ms, latencies } = await createWaves(target, creates, clients);
  const sorted = latencies.sort((a, b) => a - b);
  return {
    round,
    config: target.config,
    creates,
    ms,
    rate: (creates / ms) * 1000,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted[sorted.length - 1] ?? NaN,
  };
}

// ------------------------------------------------------------------ setup

async function startServer(config: Config): Promise<RampartHarness> {
  const env = config === 'off' ? { ...COMMON_ENV, RAMPART_QUOTA_ENFORCEMENT: 'off' } : COMMON_ENV;
  // start() logs in as admin and waits until the host is online (GET /v1/hosts).
  return RampartHarness.start({ env });
}

/**
 * Checks that the server runs as configured (the ratios, enforcement on or off), then raises the
 * tenant's quota so that nothing is refused, and sizes the waves from the host's room.
 */
async function prepare(config: Config, harness: RampartHarness, clients: number): Promise<Target> {
  const target: Target = { config, harness, wave: 0, seq: 0 };
  const hosts = await callJson<{ items: Host[] }>(target, 'GET', '/v1/hosts');
  const host = hosts.items.find((h) => h.state === 'online');
  if (!host) throw new Error(`${config}: no online host`);
  if (host.overcommit.cpu !== CPU_OVERCOMMIT || host.overcommit.memory !== MEMORY_OVERCOMMIT)
    throw new Error(
      `${config}: the server ignored the overcommit ratios: ${JSON.stringify(host.overcommit)}`,
    );

  // Enforcement probe: with a quota of 0 VMs, only the server without enforcement admits a create.
  await callJson<Quota>(target, 'PUT', `/v1/tenants/${TENANT}/quota?force=true`, { vms: 0 });
  const probe = await call(target, 'POST', vmsPath, vmBody('bench-probe'));
  const expected = config === 'on' ? 403 : 201;
  if (probe.status !== expected)
    throw new Error(
      `${config}: enforcement probe: expected ${expected}, got ${probe.status} ${probe.text.slice(0, 300)}`,
    );
  if (probe.status === 201) await deleteAll(target, ['bench-probe'], 1);

  const quota = await callJson<Quota>(target, 'PUT', `/v1/tenants/${TENANT}/quota`, {
    vms: -1,
    vcpus: -1,
    memoryMiB: -1,
    diskGiB: -1,
  });
  for (const resource of ['vms', 'vcpus', 'memoryMiB', 'diskGiB'] as const)
    if (quota.resources[resource].limit !== -1) throw new Error(`${config}: quota ${resource} not raised`);

  const flavor = await callJson<Flavor>(target, 'GET', `/v1/flavors/${FLAVOR}`);
  const roomVcpus = host.capacity.vcpusAllocatable - host.allocated.vcpus;
  const roomMemory = host.capacity.memoryMiBAllocatable - host.allocated.memoryMiB;
  const fits = Math.min(Math.floor(roomVcpus / flavor.vcpus), Math.floor(roomMemory / flavor.memoryMiB));
  if (fits < 1) throw new Error(`${config}: the host has no room for one ${FLAVOR} VM`);
  target.wave = fits >= clients ? fits - (fits % clients) : fits;
  return target;
}

/** Stops the server (SIGTERM, then SIGKILL), kills its agent and removes its data dir. */
async function stop(harness: RampartHarness): Promise<void> {
  const agentPid = harness.agentPid();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    harness.killServer('SIGTERM').catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, STOP_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  // SIGKILL to the server if it is still there, the agent (agent/agent.pid) and any QEMU; rm -rf.
  harness.killEverythingSync();
  if (agentPid === null) return;
  const deadline = Date.now() + 5000;
  while (isAlive(agentPid)) {
    if (Date.now() > deadline) {
      console.error(`warning: agent ${agentPid} of ${harness.dataDir} is still alive`);
      return;
    }
    await sleep(50);
  }
}

/** Whether a process exists and is not a zombie (a killed orphan waits a moment for init to reap it). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------ report

const fmtMs = (ms: number): string => `${ms.toFixed(1)} ms`;
const fmtRate = (rate: number): string => `${Math.round(rate).toLocaleString('en-US')}/s`;
const verdict = (pass: boolean): string => (pass ? 'PASS' : 'MISS');

function row(cells: readonly string[]): string {
  const widths = [6, 7, 12, 10, 10, 10];
  return cells.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(' ');
}

async function main(): Promise<void> {
  const creates = intFromEnv('RAMPART_BENCH_ADMISSION_CREATES', 1000, 50, 1_000_000);
  const clients = intFromEnv('RAMPART_BENCH_ADMISSION_CLIENTS', 50, 1, 1000);
  const rounds = intFromEnv('RAMPART_BENCH_ADMISSION_ROUNDS', 2, 1, 20);
  const warmup = 2 * Math.min(creates, 250);

  const harnesses: RampartHarness[] = [];
  try {
    for (const config of ['on', 'off'] as const) harnesses.push(await startServer(config));
    const on = await prepare('on', harnesses[0]!, clients);
    const off = await prepare('off', harnesses[1]!, clients);
    const hosts = await callJson<{ items: Host[] }>(on, 'GET', '/v1/hosts');
    const host = hosts.items.find((h) => h.state === 'online')!;
    console.log(
      `admission benchmark: ${rounds} round(s) x ${creates.toLocaleString('en-US')} creates per configuration ` +
        `(after ${warmup} untimed), ${clients} concurrent clients, flavor ${FLAVOR}, start: false`,
    );
    console.log(
      `host: ${host.capacity.cpus} CPUs, ${host.capacity.memoryMiB} MiB; overcommit ${CPU_OVERCOMMIT}x CPU, ` +
        `${MEMORY_OVERCOMMIT}x memory -> ${host.capacity.vcpusAllocatable} vCPUs allocatable`,
    );
    if (on.wave < creates || off.wave < creates)
      console.log(
        `the host holds fewer VMs than a measurement creates: waves of ${on.wave} (on) / ${off.wave} (off), ` +
          'each deleted (untimed) before the next',
      );

    const load = loadavg()[0] ?? 0;
    if (load > 0.5)
      console.log(
        `note: load average ${load.toFixed(2)} on ${cpus().length} CPUs before the run: other work on this ` +
          'machine makes the numbers noisy',
      );

    // Warm-up in two alternating halves, so that neither server has sat idle longer before its first run.
    for (let pass = 0; pass < 2; pass++)
      for (const target of [on, off]) await createWaves(target, warmup / 2, clients);

    const results: Measurement[] = [];
    console.log('');
    console.log(row(['round', 'quota', 'creates/s', 'p50', 'p99', 'max']));
    for (let round = 1; round <= rounds; round++) {
      const order = round % 2 === 1 ? [on, off] : [off, on];
      for (const target of order) {
        const m = await measure(target, round, creates, clients);
        results.push(m);
        console.log(
          row([String(round), m.config, fmtRate(m.rate), fmtMs(m.p50), fmtMs(m.p99), fmtMs(m.max)]),
        );
      }
    }

    for (const target of [on, off]) {
      const qemu = target.harness.qemuPids();
      if (qemu.length > 0)
        throw new Error(`${target.config}: QEMU is running (${qemu.join(', ')}): a VM started`);
    }

    const summary = (config: Config) => {
      const mine = results.filter((m) => m.config === config);
      return {
        rate: median(mine.map((m) => m.rate)),
        p50: median(mine.map((m) => m.p50)),
        p99: median(mine.map((m) => m.p99)),
      };
    };
    const withQuota = summary('on');
    const without = summary('off');
    const cost = 1 - withQuota.rate / without.rate;
    const line = (label: string, value: string): void => console.log(`${label.padEnd(44)} ${value}`);
    console.log('');
    line(
      `median with quota enforcement (${rounds} rounds)`,
      `${fmtRate(withQuota.rate)}, p50 ${fmtMs(withQuota.p50)}, p99 ${fmtMs(withQuota.p99)}`,
    );
    line(
      `median without (RAMPART_QUOTA_ENFORCEMENT=off)`,
      `${fmtRate(without.rate)}, p50 ${fmtMs(without.p50)}, p99 ${fmtMs(without.p99)}`,
    );
    console.log(`ratio (rate on/off) = ${(withQuota.rate / without.rate).toFixed(3)}`);
    console.log(
      `cost of quota enforcement = 1 - on/off = ${(cost * 100).toFixed(1)}% ` +
        `(target: under ${TARGET_COST * 100}%): ${verdict(cost < TARGET_COST)}`,
    );
    console.log(
      `p99 create latency with enforcement = ${fmtMs(withQuota.p99)} ` +
        `(target: under ${TARGET_P99_MS} ms): ${verdict(withQuota.p99 < TARGET_P99_MS)}`,
    );
  } finally {
    for (const harness of harnesses) await stop(harness);
  }
}

main().catch((error: unknown) => {
  console.error(
    `admission benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  process.exitCode = 1;
});

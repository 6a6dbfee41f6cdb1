/**
 * Control-plane scale benchmark (issue 11): how fast real `rampart server` processes place and delete
 * VMs across many hosts, on SQLite and on PostgreSQL, with one and two server replicas.
 *
 *   npm run build && node scripts/run-benches.mjs control-plane
 *   RAMPART_BENCH_VMS=500 RAMPART_BENCH_HOSTS=100 node dist/bench/control-plane.bench.js
 *
 * The hosts are simulated (bench/lib/simulated-hosts.ts, a BENCHMARK MODE that is no part of the
 * product): one process serves RAMPART_BENCH_HOSTS (default 1,000) fake host agents on unix sockets,
 * speaking the real agent protocol, reporting 64 CPUs and 256 GiB each and accepting every assignment
 * without booting anything. The servers run with RAMPART_AGENT_MODE=external and those sockets,
 * quota enforcement off and the API rate limits off, each in a temp data dir.
 *
 * Configurations: SQLite, 1 replica; PostgreSQL, 1 replica; PostgreSQL, 2 replicas on one database
 * (the second starts with the first's secrets and admin password; each links half of the hosts; the
 * requests alternate between the replicas). PostgreSQL is RAMPART_TEST_POSTGRES_URL, else what
 * `bash scripts/test-postgres.sh` prints; each configuration gets a fresh database, dropped at the end.
 * Without PostgreSQL its configurations are skipped (and say why). RAMPART_BENCH_CONFIGS=sqlite,pg1,pg2
 * picks configurations.
 *
 * Timed, per configuration: RAMPART_BENCH_CLIENTS (50) concurrent clients in a closed loop POST
 * /v1/vms {"image":"tiny","flavor":"tiny","start":true} until RAMPART_BENCH_VMS (10,000) VMs exist,
 * then the run waits until every created VM is `running` (the simulated agent reports it right after
 * the apply). creates/s = creates / that time; p50/p99 = client-side latency of the POSTs. Then the
 * same clients DELETE every VM and the run waits until none is left. boot+delete/s = VMs / (create
 * phase + delete phase): the throughput figure of Rally's NovaServers.boot_and_delete_server, which
 * the published reference uses (OpenStack Nova, 1,000 fake nodes, concurrency 50: about 5.4/s).
 * Failed requests and VMs that never got running (or never went away) are counted and printed, never
 * hidden. Target: at least the Nova reference's boot+delete rate (PASS/MISS); a miss exits 0, a
 * broken run non-zero. Every process, socket dir, data dir and database is removed at the end, also
 * on failure.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  cpSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { intFromEnv } from './lib/stats.js';
import { SIMULATOR_BANNER, simulatedSocket } from './lib/simulated-hosts.js';

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const REPO_ROOT = join(HERE, '..', '..');
const CLI_MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const SIMULATOR = join(HERE, 'lib', 'simulated-hosts.js');
const GUEST_IMAGE_DIR = join(REPO_ROOT, 'guest', 'out', 'tiny');

const TENANT = 'default';
/** OpenStack Nova, 1,000 fake nodes, concurrency 50 (Rally boot_and_delete_server): boot+delete per second. */
const NOVA_BOOT_DELETE_PER_S = 5.4;
const START_TIMEOUT_MS = 60_000;
const HOSTS_ONLINE_TIMEOUT_MS = 180_000;
/** A wait for VMs to reach a state ends when nothing changed for this long. */
const STALL_MS = 20_000;
const STOP_TIMEOUT_MS = 15_000;

type ConfigName = 'sqlite' | 'pg1' | 'pg2';
const CONFIG_LABELS: Record<ConfigName, string> = {
  sqlite: 'SQLite, 1 replica',
  pg1: 'PostgreSQL, 1 replica',
  pg2: 'PostgreSQL, 2 replicas',
};

interface Replica {
  name: string;
  dataDir: string;
  logFile: string;
  process: ChildProcess;
  url: string;
  token: string;
}

interface Result {
  config: ConfigName;
  vms: number;
  hosts: number;
  createsOk: number;
  createFailures: number;
  createRate: number;
  p50: number;
  p99: number;
  notRunning: number;
  deletesOk: number;
  deleteFailures: number;
  notGone: number;
  deleteRate: number;
  bootDeleteRate: number;
  failureSamples: string[];
  notes: string[];
}

/** Everything to undo at the end, in reverse order, whatever happened. */
const cleanups: (() => Promise<void> | void)[] = [];

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? NaN;
}

// ------------------------------------------------------------------ processes

/** Waits until `check` answers true (polled), or throws naming `what`. */
async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

async function stopProcess(child: ChildProcess, what: string): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = sleep(STOP_TIMEOUT_MS).then(() => 'timeout' as const);
  if ((await Promise.race([exited.then(() => 'exited' as const), timer])) === 'timeout') {
    console.error(`warning: ${what} (pid ${child.pid}) ignored SIGTERM; killing it`);
    child.kill('SIGKILL');
    await exited;
  }
}

interface Simulator {
  process: ChildProcess;
  dir: string;
  sockets: string[];
  release(): void;
}

async function startSimulator(root: string, hosts: number, seed: string, bootMs: number): Promise<Simulator> {
  const dir = join(root, `sockets-${seed}`);
  const child = spawn(
    process.execPath,
    [
      SIMULATOR,
      ...['--dir', dir, '--hosts', String(hosts), '--seed', seed, '--boot-ms', String(bootMs)],
      '--hold-hello',
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  cleanups.push(async () => {
    await stopProcess(child, 'simulator');
    rmSync(dir, { recursive: true, force: true });
  });
  let output = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    output += chunk;
    if (output.length > 65_536) output = output.slice(-65_536);
  });
  await waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`the simulator exited (${child.exitCode}):\n${output}`);
      return /^ready \d+/m.test(output);
    },
    START_TIMEOUT_MS,
    'the simulated hosts',
  );
  if (!output.includes(SIMULATOR_BANNER)) throw new Error('the simulator did not print its banner');
  return {
    process: child,
    dir,
    sockets: Array.from({ length: hosts }, (_, i) => simulatedSocket(dir, i)),
    release: () => child.stdin.write('go\n'),
  };
}

async function startReplica(
  name: string,
  root: string,
  options: { sockets: readonly string[]; adminPassword: string; database?: string; secretsFrom?: string },
): Promise<Replica> {
  const dataDir = mkdtempSync(join(root, `${name}-`));
  chmodSync(dataDir, 0o755);
  if (options.secretsFrom) {
    const secrets = join(dataDir, 'secrets');
    cpSync(join(options.secretsFrom, 'secrets'), secrets, { recursive: true });
    chmodSync(secrets, 0o700);
    for (const file of readdirSync(secrets)) chmodSync(join(secrets, file), 0o600);
  }
  const logFile = join(root, `${name}.log`);
  const log = openSync(logFile, 'a');
  const child = spawn(
    process.execPath,
    [
      // For profiling a run, e.g. RAMPART_BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof".
      ...(process.env.RAMPART_BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''),
      CLI_MAIN,
      'server',
      ...(options.database ? ['--database', options.database] : []),
    ],
    {
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        RAMPART_DATA_DIR: dataDir,
        RAMPART_LISTEN: '127.0.0.1:0',
        RAMPART_ADMIN_PASSWORD: options.adminPassword,
        RAMPART_SESSION_TTL_SECONDS: '7200',
        RAMPART_GUEST_IMAGE_DIR: GUEST_IMAGE_DIR,
        RAMPART_AGENT_MODE: 'external',
        RAMPART_AGENT_SOCKETS: options.sockets.join(','),
        RAMPART_QUOTA_ENFORCEMENT: 'off',
        RAMPART_RATE_LIMIT_PRINCIPAL: 'off',
        RAMPART_RATE_LIMIT_TENANT: 'off',
        RAMPART_RATE_LIMIT_ANONYMOUS: 'off',
        RAMPART_LOG_LEVEL: process.env.RAMPART_BENCH_LOG_LEVEL ?? 'warn',
      },
      stdio: ['ignore', log, log],
    },
  );
  closeSync(log);
  cleanups.push(async () => {
    await stopProcess(child, `server ${name}`);
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(logFile, { force: true });
  });
  let url = '';
  await waitFor(
    () => {
      const text = readFileSync(logFile, 'utf8');
      if (child.exitCode !== null)
        throw new Error(`server ${name} exited (${child.exitCode}):\n${text.slice(-4000)}`);
      const match = /listening on (http:\/\/[0-9.]+:\d+)/.exec(text);
      if (match) url = match[1]!;
      return match !== null;
    },
    START_TIMEOUT_MS,
    `server ${name} to listen`,
  );
  return { name, dataDir, logFile, process: child, url, token: '' };
}

function logTail(replica: Replica, chars = 3000): string {
  try {
    return readFileSync(replica.logFile, 'utf8').slice(-chars);
  } catch {
    return '';
  }
}

// ------------------------------------------------------------------ PostgreSQL

/** The PostgreSQL URL the test role can create databases from, or why there is none. */
function postgresAdminUrl(): { url: string } | { skip: string } {
  const fromEnv = process.env.RAMPART_TEST_POSTGRES_URL;
  if (fromEnv) return { url: fromEnv };
  const script = join(REPO_ROOT, 'scripts', 'test-postgres.sh');
  const run = spawnSync('bash', [script], { encoding: 'utf8', timeout: 120_000 });
  const url = run.stdout?.trim() ?? '';
  if (run.status !== 0 || !/^postgres(ql)?:\/\//.test(url))
    return {
      skip: `RAMPART_TEST_POSTGRES_URL is not set and scripts/test-postgres.sh failed (${
        run.error?.message ?? `exit ${run.status}`
      }): ${(run.stderr ?? '').trim().split('\n').slice(-2).join(' ')}`,
    };
  return { url };
}

async function onPostgres<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A fresh database (rampart_bench_<hex>); dropped by the cleanups. */
async function createDatabase(adminUrl: string): Promise<string> {
  const name = `rampart_bench_${randomBytes(6).toString('hex')}`;
  await onPostgres(adminUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  cleanups.push(() =>
    onPostgres(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(
      () => undefined,
      (error: unknown) =>
        console.error(`warning: could not drop database ${name}: ${(error as Error).message}`),
    ),
  );
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

// ------------------------------------------------------------------ API

async function call(
  replica: Replica,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = {};
  if (replica.token) headers.authorization = `Bearer ${replica.token}`;
  const init: RequestInit = { method, headers };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  try {
    const response = await fetch(`${replica.url}${path}`, init);
    return { status: response.status, text: await response.text() };
  } catch (error) {
    return { status: 0, text: `fetch failed: ${(error as Error).message}` };
  }
}

async function login(replica: Replica, password: string): Promise<void> {
  const { status, text } = await call(replica, 'POST', '/v1/auth/login', { username: 'admin', password });
  if (status !== 200) throw new Error(`login on ${replica.name}: ${status} ${text.slice(0, 300)}`);
  replica.token = (JSON.parse(text) as { token: string }).token;
}

async function onlineHosts(replica: Replica): Promise<number> {
  const { status, text } = await call(replica, 'GET', '/v1/hosts');
  if (status !== 200) throw new Error(`GET /v1/hosts on ${replica.name}: ${status} ${text.slice(0, 300)}`);
  return (JSON.parse(text) as { items: { state: string }[] }).items.filter((h) => h.state === 'online')
    .length;
}

/** VMs by state, from the replica's /metrics (the shared database's count). */
async function vmsByState(replica: Replica): Promise<Record<string, number>> {
  const { status, text } = await call(replica, 'GET', '/metrics');
  if (status !== 200) throw new Error(`GET /metrics on ${replica.name}: ${status} ${text.slice(0, 300)}`);
  const counts: Record<string, number> = {};
  for (const match of text.matchAll(/^rampart_vms\{state="([a-z]+)"\} (\d+)/gm))
    counts[match[1]!] = Number(match[2]);
  return counts;
}

/**
 * Waits until `done(counts)`, or until nothing changed for STALL_MS; answers the last counts and when
 * they last changed (so that a stall is not counted into the rates).
 */
async function waitForStates(
  replica: Replica,
  done: (counts: Record<string, number>) => boolean,
): Promise<{ counts: Record<string, number>; settledAt: number }> {
  let last = '';
  let changedAt = performance.now();
  for (;;) {
    const counts = await vmsByState(replica);
    if (done(counts)) return { counts, settledAt: performance.now() };
    const key = JSON.stringify(counts);
    if (key !== last) {
      last = key;
      changedAt = performance.now();
    } else if (performance.now() - changedAt > STALL_MS) return { counts, settledAt: changedAt };
    await sleep(100);
  }
}

/** Runs `task(0..count-1)` on `clients` concurrent loops. */
async function pool(count: number, clients: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const loop = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(clients, count) }, loop));
}

/** For a report: which replica took the create of each VM that is not running, and its state. */
async function notRunningBy(replicas: readonly Replica[], names: readonly string[]): Promise<string> {
  const { status, text } = await call(replicas[0]!, 'GET', `/v1/vms?tenant=${TENANT}`);
  if (status !== 200) return `(GET /v1/vms: ${status})`;
  const index = new Map(names.map((name, i) => [name, i]));
  const tally: Record<string, number> = {};
  for (const vm of (JSON.parse(text) as { items: { name: string; state: string }[] }).items) {
    if (vm.state === 'running') continue;
    const replica = replicas[(index.get(vm.name) ?? 0) % replicas.length]!.name;
    const key = `${replica} -> ${vm.state}`;
    tally[key] = (tally[key] ?? 0) + 1;
  }
  return JSON.stringify(tally);
}

// ------------------------------------------------------------------ one configuration

async function runConfig(
  config: ConfigName,
  root: string,
  settings: { vms: number; hosts: number; clients: number; bootMs: number; postgres: string | null },
): Promise<Result> {
  const started = cleanups.length;
  try {
    const notes: string[] = [];
    const sim = await startSimulator(
      root,
      settings.hosts,
      `${config}-${randomBytes(3).toString('hex')}`,
      settings.bootMs,
    );
    const adminPassword = `Adm1n-${randomBytes(18).toString('base64url')}`;
    const database = config === 'sqlite' ? undefined : await createDatabase(settings.postgres!);
    const replicas: Replica[] = [];
    if (config === 'pg2') {
      const half = Math.ceil(sim.sockets.length / 2);
      const a = await startReplica('pg2-a', root, {
        sockets: sim.sockets.slice(0, half),
        adminPassword,
        database: database!,
      });
      replicas.push(a);
      replicas.push(
        await startReplica('pg2-b', root, {
          sockets: sim.sockets.slice(half),
          adminPassword,
          database: database!,
          secretsFrom: a.dataDir,
        }),
      );
    } else {
      replicas.push(
        await startReplica(config, root, {
          sockets: sim.sockets,
          adminPassword,
          ...(database ? { database } : {}),
        }),
      );
    }
    for (const replica of replicas) await login(replica, adminPassword);
    // Every replica is up (its start-up marks the hosts it does not know to be linked offline): now the
    // hosts say hello.
    sim.release();
    const t0 = performance.now();
    let online = 0;
    try {
      await waitFor(
        async () => {
          online = await onlineHosts(replicas[0]!);
          return online === settings.hosts;
        },
        HOSTS_ONLINE_TIMEOUT_MS,
        `${settings.hosts} hosts online`,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message} (${online} online)\n${logTail(replicas[0]!)}`, {
        cause: error,
      });
    }
    console.log(
      `  ${CONFIG_LABELS[config]}: ${settings.hosts} simulated hosts online after ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );

    // ---- creates
    const vmsPath = `/v1/vms?tenant=${TENANT}`;
    const names = Array.from({ length: settings.vms }, (_, i) => `cp-${i + 1}`);
    const created: boolean[] = names.map(() => false);
    const latencies: number[] = [];
    const failureSamples: string[] = [];
    let createFailures = 0;
    const replicaFor = (i: number) => replicas[i % replicas.length]!;
    const createStart = performance.now();
    await pool(settings.vms, settings.clients, async (i) => {
      const replica = replicaFor(i);
      const t = performance.now();
      const { status, text } = await call(replica, 'POST', vmsPath, {
        name: names[i],
        image: 'tiny',
        flavor: 'tiny',
        start: true,
      });
      latencies.push(performance.now() - t);
      if (status === 201) created[i] = true;
      else {
        createFailures++;
        if (failureSamples.length < 5)
          failureSamples.push(`create via ${replica.name}: ${status} ${text.slice(0, 200)}`);
      }
    });
    const createsOk = created.filter(Boolean).length;
    const creates = await waitForStates(replicas[0]!, (c) => (c.running ?? 0) >= createsOk);
    const createMs = creates.settledAt - createStart;
    const notRunning = createsOk - (creates.counts.running ?? 0);
    if (notRunning > 0) {
      notes.push(
        `after the creates (no change for ${STALL_MS / 1000} s), VMs by state: ${JSON.stringify(creates.counts)}`,
      );
      notes.push(`not running, by the replica that took the create: ${await notRunningBy(replicas, names)}`);
    }

    // ---- deletes (of every VM that was created, whatever its state)
    let deleteFailures = 0;
    let deletesOk = 0;
    const toDelete = names.filter((_, i) => created[i]);
    const deleteStart = performance.now();
    await pool(toDelete.length, settings.clients, async (i) => {
      const replica = replicaFor(i);
      const { status, text } = await call(replica, 'DELETE', `/v1/vms/${toDelete[i]}?tenant=${TENANT}`);
      if (status === 202) deletesOk++;
      else {
        deleteFailures++;
        if (failureSamples.length < 10)
          failureSamples.push(`delete via ${replica.name}: ${status} ${text.slice(0, 200)}`);
      }
    });
    const deletes = await waitForStates(replicas[0]!, (c) => Object.values(c).every((n) => n === 0));
    const deleteMs = deletes.settledAt - deleteStart;
    const notGone = Object.values(deletes.counts).reduce((a, b) => a + b, 0);
    if (notGone > 0)
      notes.push(
        `after the deletes (no change for ${STALL_MS / 1000} s), VMs by state: ${JSON.stringify(deletes.counts)}`,
      );

    for (const replica of replicas)
      if (replica.process.exitCode !== null)
        throw new Error(`server ${replica.name} died:\n${logTail(replica)}`);
    if (sim.process.exitCode !== null) throw new Error(`the simulator died (exit ${sim.process.exitCode})`);

    const sorted = latencies.sort((a, b) => a - b);
    return {
      config,
      vms: settings.vms,
      hosts: settings.hosts,
      createsOk,
      createFailures,
      createRate: ((createsOk - Math.max(0, notRunning)) / createMs) * 1000,
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      notRunning,
      deletesOk,
      deleteFailures,
      notGone,
      deleteRate: ((deletesOk - notGone) / deleteMs) * 1000,
      bootDeleteRate:
        ((Math.min(createsOk - notRunning, deletesOk - notGone) || 0) / (createMs + deleteMs)) * 1000,
      failureSamples,
      notes,
    };
  } finally {
    // This configuration's processes, directories and database, newest first.
    for (const undo of cleanups.splice(started).reverse()) {
      try {
        await undo();
      } catch (error) {
        console.error(`warning: cleanup: ${(error as Error).message}`);
      }
    }
  }
}

// ------------------------------------------------------------------ report

const fmtMs = (ms: number): string => (Number.isFinite(ms) ? `${ms.toFixed(1)} ms` : '-');
const fmtRate = (rate: number): string => (Number.isFinite(rate) ? `${rate.toFixed(1)}/s` : '-');

function row(cells: readonly string[]): string {
  const widths = [24, 7, 6, 10, 10, 10, 9, 15, 16];
  return cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(' ');
}

async function main(): Promise<void> {
  const vms = intFromEnv('RAMPART_BENCH_VMS', 10_000, 1, 1_000_000);
  const hosts = intFromEnv('RAMPART_BENCH_HOSTS', 1000, 1, 9999);
  const clients = intFromEnv('RAMPART_BENCH_CLIENTS', 50, 1, 1000);
  // Simulated boot time (starting -> running); 0 = at once.
  const bootMs = intFromEnv('RAMPART_BENCH_BOOT_MS', 0, 0, 600_000);
  const wanted = (process.env.RAMPART_BENCH_CONFIGS ?? 'sqlite,pg1,pg2').split(',').map((s) => s.trim());
  for (const name of wanted)
    if (!(name in CONFIG_LABELS))
      throw new Error(`RAMPART_BENCH_CONFIGS: unknown configuration ${JSON.stringify(name)}`);
  const configs = wanted as ConfigName[];

  const root = mkdtempSync(join(tmpdir(), 'rampart-cp-bench-'));
  chmodSync(root, 0o755);
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  try {
    let postgres: string | null = null;
    let pgSkip: string | null = null;
    if (configs.some((c) => c !== 'sqlite')) {
      const found = postgresAdminUrl();
      if ('url' in found) postgres = found.url;
      else pgSkip = found.skip;
    }
    console.log(
      `control-plane benchmark: ${vms.toLocaleString('en-US')} VMs on ${hosts.toLocaleString('en-US')} simulated hosts ` +
        `(64 CPUs, 256 GiB each; nothing is booted; simulated boot ${bootMs} ms), ${clients} concurrent clients, ` +
        'flavor tiny, start: true',
    );
    const results: Result[] = [];
    const skipped: string[] = [];
    for (const config of configs) {
      if (config !== 'sqlite' && postgres === null) {
        skipped.push(`${CONFIG_LABELS[config]}: skipped: ${pgSkip}`);
        console.log(`  ${CONFIG_LABELS[config]}: skipped: ${pgSkip}`);
        continue;
      }
      console.log(`  ${CONFIG_LABELS[config]}: starting`);
      const result = await runConfig(config, root, { vms, hosts, clients, bootMs, postgres });
      results.push(result);
      console.log(
        `  ${CONFIG_LABELS[config]}: ${fmtRate(result.createRate)} creates, p99 ${fmtMs(result.p99)}, ` +
          `${fmtRate(result.bootDeleteRate)} boot+delete; failures: ${result.createFailures} creates, ` +
          `${result.notRunning} not running, ${result.deleteFailures} deletes, ${result.notGone} not gone`,
      );
    }

    console.log('');
    console.log(
      row([
        'configuration',
        'VMs',
        'hosts',
        'creates/s',
        'p50',
        'p99',
        'deletes/s',
        'boot+delete/s',
        'vs Nova (5.4/s)',
      ]),
    );
    for (const r of results)
      console.log(
        row([
          CONFIG_LABELS[r.config],
          String(r.vms),
          String(r.hosts),
          fmtRate(r.createRate),
          fmtMs(r.p50),
          fmtMs(r.p99),
          fmtRate(r.deleteRate),
          fmtRate(r.bootDeleteRate),
          `${(r.bootDeleteRate / NOVA_BOOT_DELETE_PER_S).toFixed(1)}x`,
        ]),
      );
    for (const line of skipped) console.log(line);
    console.log(
      `reference: OpenStack Nova, 1,000 fake nodes, concurrency 50: about ${NOVA_BOOT_DELETE_PER_S} boot+delete/s ` +
        '(Rally NovaServers.boot_and_delete_server)',
    );
    console.log('');
    for (const r of results) {
      const failures = r.createFailures + r.notRunning + r.deleteFailures + r.notGone;
      console.log(
        `${CONFIG_LABELS[r.config]}: failures: ${r.createFailures} create requests, ${r.notRunning} created but not running, ` +
          `${r.deleteFailures} delete requests, ${r.notGone} not gone${failures === 0 ? '' : ' (counted out of the rates)'}`,
      );
      for (const sample of r.failureSamples) console.log(`    ${sample}`);
      for (const note of r.notes) console.log(`    ${note}`);
    }
    console.log('');
    for (const r of results) {
      const ratio = r.bootDeleteRate / NOVA_BOOT_DELETE_PER_S;
      const failures = r.createFailures + r.notRunning + r.deleteFailures + r.notGone;
      console.log(
        `${CONFIG_LABELS[r.config]}: boot+delete ratio vs Nova = ${ratio.toFixed(2)} ` +
          `(target: at least 1, and no failure): ${ratio >= 1 && failures === 0 ? 'PASS' : 'MISS'}` +
          (failures > 0 ? ` (${failures} failure(s))` : ''),
      );
    }
  } finally {
    for (const undo of cleanups.splice(0).reverse()) {
      try {
        await undo();
      } catch (error) {
        console.error(`warning: cleanup: ${(error as Error).message}`);
      }
    }
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    void (async () => {
      for (const undo of cleanups.splice(0).reverse()) await Promise.resolve(undo()).catch(() => undefined);
      process.exit(130);
    })();
  });

main().catch((error: unknown) => {
  console.error(
    `control-plane benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  process.exitCode = 1;
});

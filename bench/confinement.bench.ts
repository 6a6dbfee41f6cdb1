/**
 * Confinement benchmark: what the QEMU jail costs. The tiny guest boots on the same QEMU command line
 * twice per round, in the same run on the same machine:
 *
 *   unconfined: qemu-system-x86_64 <buildQemuArgs() without -sandbox>, as root
 *   jail:       prlimit --nofile --fsize -- setpriv --reuid/--regid <unused uid> --clear-groups
 *               --no-new-privs --inh-caps=-all --bounding-set=-all -- qemu-system-x86_64
 *               <buildQemuArgs(), -sandbox included>, with a run dir owned by that uid
 *
 * (The agent also wraps this in cgexec and, with tenant networks, `ip netns exec`; those carry the VM's
 * resource-limit policy, not the confinement mechanism, and are not part of this comparison.)
 *
 *   node scripts/run-benches.mjs confinement     # 3 rounds
 *   RAMPART_BENCH_ROUNDS=5 node scripts/run-benches.mjs confinement
 *
 * Boot time: spawn -> first guest-agent heartbeat on the ga socket (as in boot.bench.ts). RSS: VmRSS of
 * the QEMU process from /proc/<pid>/status, SETTLE_MS after that heartbeat (the same delay for both).
 * TCG, the tiny flavor's size (1 vCPU, 128 MiB). Rounds alternate which side goes first; one QEMU runs at
 * a time (two cores). Targets (medians): the jail boots at most 5% slower and adds under 1 MiB of RSS.
 * A miss is reported, not failed: the exit code is 0 unless something broke.
 */
import { type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { findExecutable } from '../src/agent/host-facts.js';
import {
  buildQemuArgs,
  rlimitPrefix,
  SANDBOX,
  socketPaths,
  unprivilegedPrefix,
} from '../src/agent/qemu/command-line.js';
import { readJsonLines } from '../src/common/json-lines.js';
import { spawnDetached } from '../src/common/subprocess.js';
import { tryConnect } from '../src/common/unix-socket.js';
import { GUEST_IMAGE_DIR } from '../test/helpers/repo.js';

const TARGET_BOOT_RATIO = 1.05;
const TARGET_RSS_DIFF_MIB = 1;
const BOOT_TIMEOUT_MS = 120_000;
/** Delay between the first heartbeat and the RSS sample, the same for both sides. */
const SETTLE_MS = 3_000;
/** The tiny flavor (src/server/compute/flavor-catalog.ts). */
const VCPUS = 1;
const MEMORY_MIB = 128;
/** Unused by the harness (3_100_000 ..) and by boot.bench.ts (3_900_000). */
const JAIL_UID = 3_999_000;
const TEMP_PREFIX = 'rampart-bench-confinement-';

type Side = 'unconfined' | 'jail';

interface Setup {
  kernelPath: string;
  initrdPath: string;
  qemuBinary: string;
  setprivBinary: string;
  prlimitBinary: string;
}

interface BootResult {
  bootMs: number;
  rssKiB: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function roundsFromEnv(): number {
  const raw = process.env.RAMPART_BENCH_ROUNDS ?? '3';
  const rounds = Number(raw);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100) {
    throw new Error(`RAMPART_BENCH_ROUNDS must be an integer from 1 to 100, got ${JSON.stringify(raw)}`);
  }
  return rounds;
}

/** QEMUs still alive; killed on any exit so a crash of the bench leaves nothing behind. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (hasExited(child)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    // The timer also keeps the event loop alive: spawnDetached() unref'd the child.
    const timer = setTimeout(() => reject(new Error(`QEMU ${child.pid} did not exit`)), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function connectWhenReady(path: string, child: ChildProcess, deadline: number): Promise<Socket> {
  for (;;) {
    const socket = await tryConnect(path);
    if (socket) return socket;
    if (hasExited(child)) throw new Error('QEMU exited before its sockets opened');
    if (Date.now() > deadline) throw new Error(`${path} did not open in time`);
    await sleep(10); // the agent's retry interval
  }
}

function firstHeartbeat(socket: Socket, child: ChildProcess, deadline: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => finish(new Error('no heartbeat in time')),
      Math.max(0, deadline - Date.now()),
    );
    const onExit = () => finish(new Error('QEMU exited before the first heartbeat'));
    const detach = readJsonLines(socket, {
      maxLineBytes: 64 * 1024,
      onValue: (value) => {
        if (typeof value === 'object' && value !== null && (value as { type?: unknown }).type === 'heartbeat')
          finish();
      },
    });
    function finish(error?: Error): void {
      clearTimeout(timer);
      detach();
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve();
    }
    child.once('exit', onExit);
    socket.on('error', () => undefined);
  });
}

/** The fields of /proc/<pid>/status this bench reads (the pid is QEMU's: prlimit and setpriv exec). */
function procStatus(pid: number): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return fields;
}

/** Reads QEMU's RSS and checks that the process really is (or is not) confined as the side says. */
function sampleQemu(pid: number, side: Side): number {
  const status = procStatus(pid);
  const name = status.get('Name') ?? '';
  if (!name.startsWith('qemu-system')) throw new Error(`pid ${pid} is ${JSON.stringify(name)}, not QEMU`);
  const uid = Number((status.get('Uid') ?? '').split(/\s+/)[0]);
  const seccomp = Number(status.get('Seccomp'));
  const noNewPrivs = Number(status.get('NoNewPrivs'));
  const capBnd = status.get('CapBnd');
  if (side === 'jail') {
    if (uid !== JAIL_UID || seccomp !== 2 || noNewPrivs !== 1 || !/^0+$/.test(capBnd ?? ''))
      throw new Error(
        `jailed QEMU is not confined: uid ${uid}, Seccomp ${seccomp}, NoNewPrivs ${noNewPrivs}, CapBnd ${capBnd}`,
      );
  } else if (uid !== 0 || seccomp !== 0) {
    throw new Error(`unconfined QEMU is not plain root: uid ${uid}, Seccomp ${seccomp}`);
  }
  const rss = /^(\d+)\s*kB$/.exec(status.get('VmRSS') ?? '');
  if (!rss) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(rss[1]);
}

/** buildQemuArgs() without its `-sandbox <value>` pair. */
function withoutSandbox(args: readonly string[]): string[] {
  const index = args.indexOf('-sandbox');
  if (index === -1 || args[index + 1] !== SANDBOX) throw new Error('buildQemuArgs() has no -sandbox option');
  return [...args.slice(0, index), ...args.slice(index + 2)];
}

async function boot(setup: Setup, side: Side, name: string): Promise<BootResult> {
  const parent = mkdtempSync(join(tmpdir(), TEMP_PREFIX));
  let child: ChildProcess | null = null;
  let socket: Socket | null = null;
  try {
    chmodSync(parent, 0o755);
    const runDir = join(parent, 'run');
    mkdirSync(runDir, { mode: 0o700 });
    if (side === 'jail') chownSync(runDir, JAIL_UID, JAIL_UID);
    const args = buildQemuArgs({
      id: randomUUID(),
      name,
      vcpus: VCPUS,
      memoryMiB: MEMORY_MIB,
      accelerator: 'tcg',
      kernelPath: setup.kernelPath,
      initrdPath: setup.initrdPath,
      runDir,
    });
    const [command, ...commandArgs] =
      side === 'jail'
        ? [
            ...rlimitPrefix(setup.prlimitBinary),
            setup.setprivBinary,
            ...unprivilegedPrefix(JAIL_UID, JAIL_UID, []),
            setup.qemuBinary,
            ...args,
          ]
        : [setup.qemuBinary, ...withoutSandbox(args)];
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    const t0 = performance.now();
    const spawned = spawnDetached(command!, commandArgs, { logFile: join(parent, 'qemu.log'), env: {} });
    child = spawned;
    live.add(spawned);
    spawned.once('exit', () => live.delete(spawned));
    if (spawned.pid === undefined) throw new Error('QEMU could not be started');
    socket = await connectWhenReady(socketPaths(runDir).guestAgent, spawned, deadline);
    await firstHeartbeat(socket, spawned, deadline);
    const bootMs = performance.now() - t0;
    await sleep(SETTLE_MS);
    if (hasExited(spawned)) throw new Error('QEMU exited after the first heartbeat');
    return { bootMs, rssKiB: sampleQemu(spawned.pid, side) };
  } catch (error) {
    const log = join(parent, 'qemu.log');
    const tail = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').slice(-5).join('\n') : '';
    throw new Error(`${side} boot failed: ${(error as Error).message}${tail ? `\nqemu.log:\n${tail}` : ''}`, {
      cause: error,
    });
  } finally {
    socket?.destroy();
    if (child && !hasExited(child)) {
      child.kill('SIGKILL');
      await waitForExit(child, 10_000);
    }
    rmSync(parent, { recursive: true, force: true });
  }
}

/** QEMU processes on this host that are not this benchmark's (they add noise). */
function countForeignQemu(): number {
  let count = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes('qemu-system') && !cmdline.includes(TEMP_PREFIX)) count++;
    } catch {
      // gone
    }
  }
  return count;
}

function prepare(): Setup {
  const manifest = JSON.parse(readFileSync(join(GUEST_IMAGE_DIR, 'manifest.json'), 'utf8')) as {
    kernel: string;
    initrd: string;
  };
  const file = (name: string): string => {
    const path = join(GUEST_IMAGE_DIR, name);
    if (!existsSync(path)) throw new Error(`${path} not found (build the guest image first)`);
    return path;
  };
  return {
    kernelPath: file(manifest.kernel),
    initrdPath: file(manifest.initrd),
    qemuBinary: findExecutable(process.env.RAMPART_QEMU ?? 'qemu-system-x86_64'),
    setprivBinary: findExecutable('setpriv'),
    prlimitBinary: findExecutable('prlimit'),
  };
}

const MS = (ms: number): string => `${ms.toFixed(0)} ms`.padStart(10);
const MIB = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`.padStart(11);

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the confinement benchmark runs as root (setpriv, chown)');
  const rounds = roundsFromEnv();
  const setup = prepare();
  console.log(
    `confinement benchmark: ${rounds} round(s), TCG, ${VCPUS} vCPU, ${MEMORY_MIB} MiB, QEMU ${setup.qemuBinary}; ` +
      `jail uid ${JAIL_UID}; RSS sampled ${SETTLE_MS} ms after the first heartbeat`,
  );
  let foreignQemu = countForeignQemu();
  // One untimed boot of each side first: page cache, dynamic loader, QEMU's module loading.
  await boot(setup, 'unconfined', 'bench-warmup-u');
  await boot(setup, 'jail', 'bench-warmup-j');

  const results: { side: Side; round: number; result: BootResult }[] = [];
  console.log('');
  console.log(
    `${'round'.padEnd(6)} ${'order'.padEnd(6)} ${'boot u'.padStart(10)} ${'boot jail'.padStart(10)} ` +
      `${'RSS u'.padStart(11)} ${'RSS jail'.padStart(11)}`,
  );
  for (let round = 1; round <= rounds; round++) {
    foreignQemu = Math.max(foreignQemu, countForeignQemu());
    const order: Side[] = round % 2 === 1 ? ['unconfined', 'jail'] : ['jail', 'unconfined'];
    const got = new Map<Side, BootResult>();
    for (const side of order) {
      const result = await boot(setup, side, `bench-${side === 'jail' ? 'j' : 'u'}${round}`);
      got.set(side, result);
      results.push({ side, round, result });
    }
    const u = got.get('unconfined')!;
    const j = got.get('jail')!;
    console.log(
      `${String(round).padEnd(6)} ${(order[0] === 'jail' ? 'J,U' : 'U,J').padEnd(6)} ${MS(u.bootMs)} ${MS(j.bootMs)} ` +
        `${MIB(u.rssKiB)} ${MIB(j.rssKiB)}`,
    );
  }

  const of = (side: Side, pick: (r: BootResult) => number): number =>
    median(results.filter((r) => r.side === side).map((r) => pick(r.result)));
  const bootU = of('unconfined', (r) => r.bootMs);
  const bootJ = of('jail', (r) => r.bootMs);
  const rssU = of('unconfined', (r) => r.rssKiB);
  const rssJ = of('jail', (r) => r.rssKiB);
  const ratio = bootJ / bootU;
  const rssDiffMiB = (rssJ - rssU) / 1024;
  const rssRatio = rssJ / rssU;

  console.log('');
  const line = (label: string, value: string): void => console.log(`${label.padEnd(52)} = ${value}`);
  line('median boot, unconfined (spawn -> first heartbeat)', `${bootU.toFixed(0)} ms`);
  line('median boot, jail', `${bootJ.toFixed(0)} ms`);
  line('median QEMU RSS, unconfined', `${(rssU / 1024).toFixed(2)} MiB`);
  line('median QEMU RSS, jail', `${(rssJ / 1024).toFixed(2)} MiB`);
  // The run-to-run spread within one side: a difference smaller than this is noise.
  const spread = (side: Side, pick: (r: BootResult) => number): number => {
    const values = results.filter((r) => r.side === side).map((r) => pick(r.result));
    return Math.max(...values) - Math.min(...values);
  };
  line(
    'spread (max - min) of boot, unconfined / jail',
    `${spread('unconfined', (r) => r.bootMs).toFixed(0)} / ${spread('jail', (r) => r.bootMs).toFixed(0)} ms`,
  );
  line(
    'spread (max - min) of RSS, unconfined / jail',
    `${(spread('unconfined', (r) => r.rssKiB) / 1024).toFixed(2)} / ${(spread('jail', (r) => r.rssKiB) / 1024).toFixed(2)} MiB`,
  );
  if (foreignQemu > 0)
    console.log(`note: ${foreignQemu} other QEMU process(es) were running on this host: results are noisy`);
  console.log(`boot ratio (jail/unconfined) = ${ratio.toFixed(3)}`);
  console.log(`RSS ratio (jail/unconfined) = ${rssRatio.toFixed(3)}`);
  console.log(`RSS diff (jail - unconfined) = ${rssDiffMiB >= 0 ? '+' : ''}${rssDiffMiB.toFixed(2)} MiB`);
  console.log(
    `boot: ${ratio <= TARGET_BOOT_RATIO ? 'PASS' : 'MISS'} (target: jail/unconfined <= ${TARGET_BOOT_RATIO.toFixed(2)})`,
  );
  console.log(
    `RSS: ${rssDiffMiB < TARGET_RSS_DIFF_MIB ? 'PASS' : 'MISS'} (target: jail adds under ${TARGET_RSS_DIFF_MIB} MiB)`,
  );
}

main().catch((error: unknown) => {
  console.error(
    `confinement benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  process.exitCode = 1;
});

/**
 * What the benchmarks that boot the tiny guest with a hand-made QEMU command line share (boot.bench.ts,
 * confinement.bench.ts): a fresh temporary directory per boot (root, 0755, with qemu.log and the run
 * directory), the spawn of QEMU (tracked, so a crash of the bench leaves no QEMU behind), the wait for
 * the guest agent's first heartbeat (connect to its socket the way the agent does, retrying every 10 ms,
 * then read JSON lines), and the teardown (SIGKILL, wait for the exit, remove the directory). Plus the
 * small statistics and environment helpers both use.
 */
import { type ChildProcess } from 'node:child_process';
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
import { readJsonLines } from '../../src/common/json-lines.js';
import { spawnDetached } from '../../src/common/subprocess.js';
import { tryConnect } from '../../src/common/unix-socket.js';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** RAMPART_BENCH_ROUNDS, or `fallback` when unset. */
export function roundsFromEnv(fallback: number): number {
  const raw = process.env.RAMPART_BENCH_ROUNDS ?? String(fallback);
  const rounds = Number(raw);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100) {
    throw new Error(`RAMPART_BENCH_ROUNDS must be an integer from 1 to 100, got ${JSON.stringify(raw)}`);
  }
  return rounds;
}

/** QEMUs this process started and that are still alive; killed on any exit. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<void> {
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

export async function connectWhenReady(path: string, child: ChildProcess, deadline: number): Promise<Socket> {
  for (;;) {
    const socket = await tryConnect(path);
    if (socket) return socket;
    if (hasExited(child)) throw new Error('QEMU exited before its sockets opened');
    if (Date.now() > deadline) throw new Error(`${path} did not open in time`);
    await sleep(10); // the agent's retry interval
  }
}

export function firstHeartbeat(socket: Socket, child: ChildProcess, deadline: number): Promise<void> {
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

/**
 * One QEMU boot's directory, process and guest-agent socket. `dir` (root, 0755) plays the agent's
 * vms/<id>/: it holds qemu.log, the run directory and anything else the caller puts there.
 */
export class BenchQemu {
  readonly dir: string;
  readonly logFile: string;
  private child: ChildProcess | null = null;
  private socket: Socket | null = null;

  constructor(tempPrefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), tempPrefix));
    chmodSync(this.dir, 0o755);
    this.logFile = join(this.dir, 'qemu.log');
  }

  /** The run directory (mode 0700), owned by `uid` when given (what the agent does before it spawns). */
  makeRunDir(uid: number | null): string {
    const runDir = join(this.dir, 'run');
    mkdirSync(runDir, { mode: 0o700 });
    if (uid !== null) chownSync(runDir, uid, uid);
    return runDir;
  }

  /** Spawns `command` (detached, empty environment, output to qemu.log); its pid is defined. */
  spawn(command: string, args: readonly string[]): ChildProcess & { pid: number } {
    const spawned = spawnDetached(command, [...args], { logFile: this.logFile, env: {} });
    this.child = spawned;
    live.add(spawned);
    spawned.once('exit', () => live.delete(spawned));
    if (spawned.pid === undefined) throw new Error('QEMU could not be started');
    return spawned as ChildProcess & { pid: number };
  }

  /** Connects to the guest-agent socket (retrying until it exists) and waits for the first heartbeat. */
  async firstHeartbeat(guestAgentSocket: string, deadline: number): Promise<void> {
    const child = this.child;
    if (!child) throw new Error('QEMU was not started');
    this.socket = await connectWhenReady(guestAgentSocket, child, deadline);
    await firstHeartbeat(this.socket, child, deadline);
  }

  exited(): boolean {
    return this.child === null || hasExited(this.child);
  }

  /** `error`, with what went wrong prefixed by `label` and the end of qemu.log. */
  failure(label: string, error: unknown): Error {
    const tail = existsSync(this.logFile)
      ? readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-5).join('\n')
      : '';
    return new Error(`${label} failed: ${(error as Error).message}${tail ? `\nqemu.log:\n${tail}` : ''}`, {
      cause: error,
    });
  }

  /** Closes the socket, kills QEMU (and waits for it) and removes the directory. */
  async close(): Promise<void> {
    this.socket?.destroy();
    if (this.child && !hasExited(this.child)) {
      this.child.kill('SIGKILL');
      await waitForExit(this.child, 10_000);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Runs `body` with a fresh BenchQemu; any error comes out as `<label> failed: …` with the end of
 * qemu.log, and everything is torn down in every case.
 */
export async function withBenchQemu<T>(
  tempPrefix: string,
  label: string,
  body: (qemu: BenchQemu) => Promise<T>,
): Promise<T> {
  const qemu = new BenchQemu(tempPrefix);
  try {
    return await body(qemu);
  } catch (error) {
    throw qemu.failure(label, error);
  } finally {
    await qemu.close();
  }
}

/**
 * QEMU processes on this host whose command line contains none of `ownMarkers` (the benchmark's own
 * temporary directories, a harness's data directory): they add noise.
 */
export function countForeignQemu(ownMarkers: readonly string[]): number {
  let count = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes('qemu-system') && !ownMarkers.some((marker) => cmdline.includes(marker))) count++;
    } catch {
      // gone
    }
  }
  return count;
}

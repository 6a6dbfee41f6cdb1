/**
 * Remote hosts in tests: a host joins through the CLI (join token, `rampart agent join`), its agent
 * runs as its own process (optionally inside a network namespace, so cutting its link cuts it off),
 * and the QEMUs of a VM are counted across every host on this machine.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { JoinTokenCreated } from '../../src/api/host.js';
import { runCli, type CliTarget } from './cli-runner.js';
import { CLI_MAIN } from './repo.js';

/** `ip <args>` (root), quietly. */
export function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'ignore' });
}

/** `ip <args>` for cleanup: a missing device or namespace is fine. */
export function ipQuietly(...args: string[]): void {
  try {
    ip(...args);
  } catch {
    // not there
  }
}

/** Joins a host named `name` through `server` (a join token made there); answers its host id. */
export async function joinHost(server: CliTarget, name: string, dataDir: string): Promise<string> {
  const made = await runCli(server, ['host', 'join-token', '--name', name, '--ttl', '30m', '-o', 'json']);
  assert.equal(made.code, 0, made.stderr);
  const { token, caFingerprint } = JSON.parse(made.stdout) as JoinTokenCreated;
  mkdirSync(dataDir, { recursive: true, mode: 0o755 });
  const joined = await runCli(server, [
    'agent',
    'join',
    '--server',
    server.url,
    '--token',
    token,
    '--name',
    name,
    '--data-dir',
    dataDir,
    '--ca-fingerprint',
    caFingerprint,
  ]);
  assert.equal(joined.code, 0, joined.stderr);
  return /\(([0-9a-f-]{36})\)/.exec(joined.stdout)![1]!;
}

export interface RemoteAgentOptions {
  name: string;
  dataDir: string;
  logFile: string;
  /** Its cgroup parent (its own: hosts on one machine would otherwise share vm-<id> for a moved VM). */
  cgroupParent: string;
  /** Runs it inside this network namespace (only the network: nsenter keeps the mounts). */
  netns?: string;
  env?: Record<string, string>;
}

/** Starts a joined host's agent (detached; it dials the server replicas it was given at join). */
export function startRemoteAgent(o: RemoteAgentOptions): ChildProcess {
  const log = openSync(o.logFile, 'a');
  const command = [
    process.execPath,
    CLI_MAIN,
    'agent',
    '--data-dir',
    o.dataDir,
    '--socket',
    join(o.dataDir, 'agent.sock'),
  ];
  const [file, ...args] = o.netns ? ['nsenter', `--net=/run/netns/${o.netns}`, ...command] : command;
  const agent = spawn(file!, args, {
    env: {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      RAMPART_HOST_NAME: o.name,
      ...(o.netns ? { RAMPART_NETNS: o.netns } : {}),
      RAMPART_ACCEL: 'tcg',
      RAMPART_UID_BASE: String(3_800_000 + Math.floor(Math.random() * 1000) * 250),
      RAMPART_UID_COUNT: '250',
      RAMPART_CGROUP_PARENT: o.cgroupParent,
      RAMPART_DEDICATED_CPUS: 'none',
      RAMPART_HEARTBEAT_SECONDS: '1',
      RAMPART_TELEMETRY_SECONDS: '0',
      RAMPART_LOG_LEVEL: 'info',
      ...o.env,
    },
    stdio: ['ignore', log, log],
    detached: true,
  });
  closeSync(log);
  agent.unref();
  return agent;
}

/** Kills an agent (woken first if it was frozen). */
export function killAgent(agent: ChildProcess | null): void {
  if (!agent?.pid) return;
  try {
    process.kill(agent.pid, 'SIGCONT');
  } catch {
    // gone
  }
  agent.kill('SIGKILL');
}

/** The QEMUs of a VM on this machine (any host), with their scheduler state (T: stopped). */
export function qemusOf(vmId: string): { pid: number; state: string }[] {
  const found: { pid: number; state: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (!cmdline.includes('qemu-system') || !cmdline.includes(vmId)) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state !== 'Z') found.push({ pid: Number(entry), state });
    } catch {
      // went away
    }
  }
  return found;
}

/** Kills every QEMU under `dir` (a host's data directory): named in its command line, or jailed there. */
export function killQemusUnder(dir: string): void {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const ours = cmdline.includes(dir) || readlinkSync(`/proc/${entry}/root`).startsWith(`${dir}/`);
      if (cmdline.includes('qemu-system') && ours) process.kill(Number(entry), 'SIGKILL');
    } catch {
      // went away
    }
  }
}

/** Watches a VM's QEMUs every 50 ms: the most that ran (not stopped) at one time. */
export function watchCopies(vmId: string): { stop: () => number } {
  let most = 0;
  const timer = setInterval(() => {
    most = Math.max(most, qemusOf(vmId).filter((q) => q.state !== 'T').length);
  }, 50);
  return {
    stop: () => {
      clearInterval(timer);
      return most;
    },
  };
}

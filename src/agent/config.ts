/**
 * Agent configuration from flags and environment. Paths end up inside QEMU option strings and on
 * disk, so the data directory is restricted to a safe character set here, once.
 */
import { join, resolve } from 'node:path';
import { defaultDataDir } from '../common/data-dir.js';
import { assertCgroupParent } from './cgroups/cgroup-driver.js';
import type { CgroupMode } from './cgroups/cgroup-load.js';

export type AccelMode = 'auto' | 'kvm' | 'tcg';

export interface AgentConfig {
  dataDir: string;
  socket: string;
  accel: AccelMode;
  /** Where the accelerator verdict is cached (keyed by QEMU version, kernel and probe image). */
  accelCacheFile: string;
  probeKernel: string | null;
  probeInitrd: string | null;
  consoleCapBytes: number;
  uidBase: number;
  uidCount: number;
  qemuBinary: string;
  logLevel: string;
  /** RAMPART_CGROUP: auto-detect v2/v1, force one, or `none` (no limits; tests and special hosts). */
  cgroupMode: CgroupMode;
  /** RAMPART_CGROUP_PARENT: the directory holding the VMs' cgroups (unique per test run). */
  cgroupParent: string;
  /** RAMPART_NETNS: the network namespace holding this host's bridges, taps, nft tables and QEMUs. */
  netns: string | null;
  /** RAMPART_FIREWALL_RECONCILE_SECONDS: how often the live ruleset is checked for drift (0: never). */
  firewallReconcileSeconds: number;
  /**
   * RAMPART_TELEMETRY_SECONDS: how often the agent reports anti-spoofing drops, denied flows and VM
   * resource samples to the security engine (default 10; 0: never).
   */
  telemetrySeconds: number;
  /** RAMPART_HOST_NAME: the name this host reports (default: the machine's hostname). */
  hostname: string | null;
  /**
   * RAMPART_HOST_CPUS / RAMPART_HOST_MEMORY_MIB: offer the scheduler less than the machine has
   * (several agents sharing one machine, or room kept for other services). Never more than there is.
   */
  cpuLimit: number | null;
  memoryLimitMiB: number | null;
  /** RAMPART_DEDICATED_CPUS: CPUs whose cores may be pinned (unset: all cores but the first). */
  dedicatedCpus: string | undefined;
  /**
   * Remote mode: the server replicas' agent listeners (host:port, comma-separated) to dial over TLS,
   * from --server or RAMPART_SERVER (default: the endpoints stored at join). Only used once the host
   * has joined.
   */
  server: string[] | null;
  /** RAMPART_HEARTBEAT_SECONDS: remote mode heartbeat interval (default 5). */
  heartbeatSeconds: number;
  /**
   * RAMPART_TUNNEL_IP: this host's IPv4 underlay address for the VXLAN tunnels of networks that span
   * hosts (reported to the server; other hosts send to it on UDP 4789). Unset: networks stay per host.
   */
  tunnelIp: string | null;
}

export interface AgentConfigInput {
  dataDir?: string;
  socket?: string;
  server?: string;
}

const SAFE_PATH = /^\/[A-Za-z0-9._/-]+$/;

function integerEnv(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = env[name];
  if (raw === undefined) return fallback;
  const value = /^\d{1,10}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(value) || value < min || value > max)
    throw new Error(`${name} must be an integer from ${min} to ${max}`);
  return value;
}

/** A unicast IPv4 address in dotted decimal (not 0.x, loopback, multicast or broadcast). */
function validTunnelIp(value: string): boolean {
  const parts = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(value)?.slice(1).map(Number);
  if (!parts || parts.some((p, i) => p > 255 || String(p) !== value.split('.')[i])) return false;
  return parts[0] !== 0 && parts[0] !== 127 && parts[0]! < 224;
}

export function loadAgentConfig(input: AgentConfigInput, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const base = defaultDataDir();
  const dataDir = resolve(
    input.dataDir ?? env.RAMPART_AGENT_DATA_DIR ?? join(env.RAMPART_DATA_DIR ?? base, 'agent'),
  );
  if (!SAFE_PATH.test(dataDir))
    throw new Error(`agent data directory ${JSON.stringify(dataDir)} must match ${SAFE_PATH.source}`);
  const socket = resolve(input.socket ?? env.RAMPART_AGENT_SOCKET ?? join(dataDir, 'agent.sock'));
  const accel = (env.RAMPART_ACCEL ?? 'auto') as AccelMode;
  if (!['auto', 'kvm', 'tcg'].includes(accel)) throw new Error('RAMPART_ACCEL must be auto, kvm or tcg');
  const cgroupMode = (env.RAMPART_CGROUP ?? 'auto') as CgroupMode;
  if (!['auto', 'v1', 'v2', 'none'].includes(cgroupMode))
    throw new Error('RAMPART_CGROUP must be auto, v1, v2 or none');
  const cgroupParent = assertCgroupParent(env.RAMPART_CGROUP_PARENT ?? 'rampart');
  const netns = env.RAMPART_NETNS || null;
  if (netns !== null && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(netns))
    throw new Error('RAMPART_NETNS must be a network namespace name');
  const hostname = env.RAMPART_HOST_NAME || null;
  if (hostname !== null && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$/.test(hostname))
    throw new Error('RAMPART_HOST_NAME must be a hostname (letters, digits, dots and dashes)');
  const dedicatedCpus = env.RAMPART_DEDICATED_CPUS;
  if (dedicatedCpus !== undefined && !/^(none|[0-9,-]*)$/.test(dedicatedCpus.trim()))
    throw new Error('RAMPART_DEDICATED_CPUS must be a CPU list such as 2-7,10 or none');
  const serverList = input.server ?? (env.RAMPART_SERVER || null);
  const server =
    serverList === null
      ? null
      : serverList
          .split(',')
          .map((endpoint) => endpoint.trim())
          .filter((endpoint) => endpoint !== '');
  if (
    server !== null &&
    (server.length === 0 ||
      server.some((endpoint) => !/^(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/.test(endpoint)))
  )
    throw new Error(
      'RAMPART_SERVER / --server must be HOST:PORT of the server agent listener (several: comma-separated)',
    );
  const tunnelIp = env.RAMPART_TUNNEL_IP || null;
  if (tunnelIp !== null && !validTunnelIp(tunnelIp))
    throw new Error('RAMPART_TUNNEL_IP must be a unicast IPv4 address such as 192.0.2.1');
  const probeKernel = env.RAMPART_PROBE_KERNEL ?? null;
  const probeInitrd = env.RAMPART_PROBE_INITRD ?? null;
  return {
    dataDir,
    socket,
    accel,
    accelCacheFile: resolve(env.RAMPART_ACCEL_CACHE ?? join(dataDir, 'accel-probe.json')),
    probeKernel: probeKernel && SAFE_PATH.test(probeKernel) ? probeKernel : null,
    probeInitrd: probeInitrd && SAFE_PATH.test(probeInitrd) ? probeInitrd : null,
    consoleCapBytes: integerEnv(env, 'RAMPART_CONSOLE_CAP_BYTES', 1024 * 1024, 4096, 1 << 30),
    uidBase: integerEnv(env, 'RAMPART_UID_BASE', 3_000_000, 1000, 4_000_000_000),
    uidCount: integerEnv(env, 'RAMPART_UID_COUNT', 65_536, 1, 1_000_000),
    qemuBinary: env.RAMPART_QEMU ?? 'qemu-system-x86_64',
    logLevel: env.RAMPART_LOG_LEVEL ?? 'info',
    cgroupMode,
    cgroupParent,
    netns,
    firewallReconcileSeconds: integerEnv(env, 'RAMPART_FIREWALL_RECONCILE_SECONDS', 30, 0, 86_400),
    telemetrySeconds: integerEnv(env, 'RAMPART_TELEMETRY_SECONDS', 10, 0, 3600),
    hostname,
    dedicatedCpus,
    server,
    heartbeatSeconds: integerEnv(env, 'RAMPART_HEARTBEAT_SECONDS', 5, 1, 300),
    tunnelIp,
    cpuLimit: env.RAMPART_HOST_CPUS === undefined ? null : integerEnv(env, 'RAMPART_HOST_CPUS', 1, 1, 65_536),
    memoryLimitMiB:
      env.RAMPART_HOST_MEMORY_MIB === undefined
        ? null
        : integerEnv(env, 'RAMPART_HOST_MEMORY_MIB', 1024, 64, 1 << 30),
  };
}

/** Facts about this host the agent reports: a stable host id, capacity, QEMU version, binaries. */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname, totalmem } from 'node:os';
import { delimiter, join } from 'node:path';
import { parseCpuList } from '../common/cpu-list.js';
import { newId, isUuid } from '../common/ids.js';
import { run } from '../common/subprocess.js';

/** Overcommit ratios for allocatable capacity (like Nova's cpu/ram_allocation_ratio). */
export const CPU_ALLOCATION_RATIO = 4;
export const MEMORY_RESERVED_MIB = 512;

export function loadHostId(dataDir: string): string {
  mkdirSync(dataDir, { recursive: true, mode: 0o755 });
  const file = join(dataDir, 'host-id');
  if (existsSync(file)) {
    const id = readFileSync(file, 'utf8').trim();
    if (isUuid(id)) return id;
  }
  const id = newId();
  writeFileSync(file, `${id}\n`, { mode: 0o644 });
  return id;
}

/** The machine's CPUs and memory, capped by the agent's configured limits (never raised by them). */
export function hostCapacity(limits: { cpus?: number | null; memoryMiB?: number | null } = {}) {
  const cpuCount = Math.min(cpus().length, limits.cpus ?? Infinity);
  const memoryMiB = Math.min(Math.floor(totalmem() / 1024 / 1024), limits.memoryMiB ?? Infinity);
  return {
    cpus: cpuCount,
    memoryMiB,
    vcpusAllocatable: cpuCount * CPU_ALLOCATION_RATIO,
    memoryMiBAllocatable: Math.max(0, memoryMiB - MEMORY_RESERVED_MIB),
  };
}

/**
 * The online CPUs grouped into physical cores (SMT siblings together), from sysfs. A CPU whose
 * topology cannot be read counts as a core of its own.
 */
export function cpuCores(sysCpu = '/sys/devices/system/cpu'): { online: number[]; cores: number[][] } {
  const read = (path: string) => readFileSync(join(sysCpu, path), 'utf8');
  let online: number[];
  try {
    online = parseCpuList(read('online'));
  } catch {
    online = cpus().map((_, i) => i);
  }
  const cores = new Map<string, number[]>();
  for (const cpu of online) {
    let siblings: number[];
    try {
      siblings = parseCpuList(read(`cpu${cpu}/topology/thread_siblings_list`)).filter((c) =>
        online.includes(c),
      );
    } catch {
      siblings = [cpu];
    }
    cores.set(siblings.join(','), siblings.length > 0 ? siblings : [cpu]);
  }
  return { online, cores: [...cores.values()].sort((a, b) => a[0]! - b[0]!) };
}

/**
 * The cores dedicated-CPU VMs may get. `setting` (RAMPART_DEDICATED_CPUS) is a CPU list: the cores
 * wholly inside it; `none` or empty: no core. Unset: every core but the first, which stays with the
 * host and the shared pool (a one-core host has none).
 */
export function dedicatedCores(cores: readonly number[][], setting: string | undefined): number[][] {
  if (setting === undefined) return cores.slice(1);
  if (setting.trim() === '' || setting.trim() === 'none') return [];
  const allowed = new Set(parseCpuList(setting));
  const chosen = cores.filter((core) => core.every((cpu) => allowed.has(cpu)));
  // The shared pool (host processes, VMs without dedicated CPUs) always keeps at least one core.
  return chosen.length === cores.length ? chosen.slice(1) : chosen;
}

export function hostName(): string {
  return hostname();
}

/** Resolves a program name against PATH once at start, so children can run with an empty environment. */
export function findExecutable(name: string): string {
  if (name.startsWith('/')) return name;
  const dirs = (process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(
    delimiter,
  );
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`${name} not found in PATH (install the Debian package that provides it)`);
}

export async function qemuVersion(binary: string): Promise<string> {
  const { stdout } = await run(binary, ['--version'], { timeoutMs: 10_000 });
  const match = /version ([0-9][^\s]*)/.exec(stdout);
  return match?.[1] ?? 'unknown';
}

/** The gid of the `kvm` group, which a KVM guest's uid needs as a supplementary group. */
export function kvmGroupId(): number | null {
  try {
    const line = readFileSync('/etc/group', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('kvm:'));
    const gid = line ? Number(line.split(':')[2]) : NaN;
    return Number.isInteger(gid) ? gid : null;
  } catch {
    return null;
  }
}

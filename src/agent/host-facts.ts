/** Facts about this host the agent reports: a stable host id, capacity, QEMU version, binaries. */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname, totalmem } from 'node:os';
import { delimiter, join } from 'node:path';
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

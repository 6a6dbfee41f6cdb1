/**
 * Per-VM runtime limits through cgroups, behind one interface. The build hosts run cgroup v1 (one
 * hierarchy per controller), production hosts run v2 (a single hierarchy). The agent never cares which
 * one it has: it creates the VM's cgroups, applies limits, starts QEMU inside them (`execArgs`, for
 * cgexec), reads usage and removes them. Drivers: cgroup-v1.ts and cgroup-v2.ts; cgroup-load.ts picks one.
 *
 * Layout in every hierarchy: `<parent>/vm-<id>` (parent default `rampart`). The VM id is validated
 * before it reaches a path.
 */

export type CgroupVersion = 'v1' | 'v2';

export interface CgroupLimits {
  /** CPU time for the whole VM in percent of one host CPU (quota per 100 ms period). */
  cpuPercent: number;
  /** Relative share under contention on the v2 cpu.weight scale (1..10000, default 100). */
  cpuWeight: number;
  /** Hard memory limit in bytes (guest RAM + QEMU overhead); no swap beyond it. */
  memoryBytes: number;
  /** Tasks (threads) the cgroup may hold. */
  pidsMax: number;
}

export interface CgroupUsage {
  /** CPU time used by everything in the VM's cgroup, in microseconds. */
  cpuUsageUsec: number;
  /** Memory currently charged to the cgroup, in bytes (includes page cache the cgroup faulted in). */
  memoryBytes: number;
  /** Tasks (threads) in the cgroup. */
  pids: number;
}

export interface PruneResult {
  removed: string[];
  /** Unknown VM cgroups left in place because they still hold processes or are too new. */
  kept: string[];
}

export interface CgroupDriver {
  readonly version: CgroupVersion;
  /** The directory name under each hierarchy's root that holds the VMs' cgroups. */
  readonly parent: string;
  /** Creates the VM's cgroups. Existing ones, their processes and their values are kept. */
  create(vmId: string): void;
  /** Writes the limits. A file that already holds the value is not written again. */
  apply(vmId: string, limits: CgroupLimits): void;
  /** Whether VMs can be kept to chosen CPUs (the cpuset controller is available). */
  readonly supportsCpuset: boolean;
  /** Keeps the VM's existing cgroup to these host CPUs (null: all of the parent's). */
  setCpus(vmId: string, cpus: readonly number[] | null): void;
  readUsage(vmId: string): CgroupUsage;
  /** True when `pid` is in each of the VM's cgroups. */
  contains(vmId: string, pid: number): boolean;
  /** Moves a running process (all its threads) into each of the VM's cgroups. */
  place(vmId: string, pid: number): void;
  /** `cgexec` arguments (before the command) that start a command inside the VM's cgroups. */
  execArgs(vmId: string): string[];
  /** SIGKILLs whatever is left in the VM's cgroups and removes them (missing ones are fine). */
  remove(vmId: string): Promise<void>;
  /** Ids of the VMs that have a cgroup under the parent in any hierarchy. */
  listVmIds(): string[];
  /**
   * Removes the empty cgroups of VMs not in `known` that are at least `minAgeMs` old. The age check
   * protects a cgroup another agent sharing the parent has just created and is about to join.
   */
  pruneUnknown(known: ReadonlySet<string>, minAgeMs: number): Promise<PruneResult>;
}

/** A cgroup operation failed. The message names the file and the errno, never any other data. */
export class CgroupError extends Error {
  override name = 'CgroupError';
  constructor(
    message: string,
    readonly path: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

/** A name for the parent directory: one path component, no dots-only names. */
const PARENT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

export function assertCgroupParent(parent: string): string {
  if (!PARENT_NAME.test(parent))
    throw new CgroupError(
      `cgroup parent ${JSON.stringify(parent.slice(0, 100))} must match ${PARENT_NAME.source}`,
    );
  return parent;
}

/** The v1 cpu.shares equivalent of a v2 cpu.weight (1024 = default 100), clamped to the kernel range. */
export function weightToShares(weight: number): number {
  return Math.min(262_144, Math.max(2, Math.round((weight * 1024) / 100)));
}

export const CFS_PERIOD_USEC = 100_000;

/** The CFS quota in microseconds per CFS_PERIOD_USEC for a percentage of one CPU. */
export function cpuQuotaUsec(cpuPercent: number): number {
  return Math.max(1000, Math.round(cpuPercent * 1000));
}

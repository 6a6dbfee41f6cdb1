/**
 * cgroup v2: a single hierarchy at the root. A controller works in a child only once its parent enables
 * it in `cgroup.subtree_control`. The driver therefore enables cpu, memory and pids in the root and in
 * `<parent>` before it creates a VM's cgroup. The parent holds no tasks itself (v2's "no internal
 * processes" rule), only the `vm-<id>` leaves. Control files:
 *   cpu.max "<percent x 1000> 100000", cpu.weight, memory.max, memory.swap.max = 0 (when swap is
 *   accounted), pids.max.
 * Usage: cpu.stat usage_usec, memory.current, pids.current.
 *
 * On a systemd host the parent sits beside systemd's slices. systemd leaves cgroups it did not create
 * alone; a host that wants systemd to own the tree can point the parent at a delegated subtree.
 */
import { join } from 'node:path';
import { formatCpuList } from '../../common/cpu-list.js';
import {
  CFS_PERIOD_USEC,
  CgroupError,
  cpuQuotaUsec,
  type CgroupLimits,
  type CgroupUsage,
} from './cgroup-driver.js';
import { CgroupTreeDriver, type CgroupDriverOptions } from './cgroup-tree.js';

export const V2_CONTROLLERS = ['cpu', 'memory', 'pids'] as const;

export class CgroupV2Driver extends CgroupTreeDriver {
  readonly version = 'v2' as const;

  constructor(options: CgroupDriverOptions = {}) {
    super([''], V2_CONTROLLERS, options);
  }

  private file(vmId: string, name: string): string {
    return join(this.vmDir('', vmId), name);
  }

  /** Enables the controllers for the children of `dir`, writing only the ones not yet enabled. */
  private enableControllers(dir: string): void {
    const path = join(dir, 'cgroup.subtree_control');
    const enabled = new Set(this.fs.exists(path) ? this.fs.read(path).trim().split(/\s+/) : []);
    const missing = V2_CONTROLLERS.filter((c) => !enabled.has(c));
    if (missing.length > 0) this.fs.write(path, missing.map((c) => `+${c}`).join(' '));
  }

  /** cpuset is enabled only when a VM is first kept to chosen CPUs (and only if the root offers it). */
  get supportsCpuset(): boolean {
    const path = join(this.root, 'cgroup.controllers');
    return this.fs.exists(path) && this.fs.read(path).trim().split(/\s+/).includes('cpuset');
  }

  setCpus(vmId: string, cpus: readonly number[] | null): void {
    if (!this.supportsCpuset) throw new CgroupError('the cpuset controller is not available on this host');
    for (const dir of [this.root, this.parentDir('')]) {
      const path = join(dir, 'cgroup.subtree_control');
      if (!this.fs.read(path).trim().split(/\s+/).includes('cpuset')) this.fs.write(path, '+cpuset');
    }
    // Empty: the parent's effective CPUs.
    this.writeIfChanged(this.file(vmId, 'cpuset.cpus'), cpus ? formatCpuList(cpus) : '');
  }

  protected override prepareParent(): void {
    this.enableControllers(this.root);
    const parent = this.parentDir('');
    this.fs.mkdir(parent);
    this.enableControllers(parent);
  }

  apply(vmId: string, limits: CgroupLimits): void {
    this.writeIfChanged(this.file(vmId, 'cpu.max'), `${cpuQuotaUsec(limits.cpuPercent)} ${CFS_PERIOD_USEC}`);
    this.writeIfChanged(this.file(vmId, 'cpu.weight'), String(limits.cpuWeight));
    this.writeIfChanged(this.file(vmId, 'memory.max'), String(limits.memoryBytes));
    // Absent when the kernel does not account swap (swapaccount=0 / no CONFIG_MEMCG_SWAP).
    if (this.fs.exists(this.file(vmId, 'memory.swap.max')))
      this.writeIfChanged(this.file(vmId, 'memory.swap.max'), '0');
    this.writeIfChanged(this.file(vmId, 'pids.max'), String(limits.pidsMax));
  }

  readUsage(vmId: string): CgroupUsage {
    const stat = this.fs.read(this.file(vmId, 'cpu.stat'));
    const usage = /^usage_usec (\d+)$/m.exec(stat);
    if (!usage) throw new CgroupError(`no usage_usec in ${this.file(vmId, 'cpu.stat')}`);
    return {
      cpuUsageUsec: Number(usage[1]),
      memoryBytes: this.readNumber(this.file(vmId, 'memory.current')),
      pids: this.readNumber(this.file(vmId, 'pids.current')),
    };
  }
}

/**
 * cgroup v1: one hierarchy per controller, each mounted at `<root>/<controller>` (the build hosts mount
 * cpu and cpuacct separately; where they are co-mounted behind symlinks the same directory shows up
 * twice and is handled once). Control files:
 *   cpu      cpu.cfs_period_us = 100000, cpu.cfs_quota_us = percent x 1000, cpu.shares = weight x 1024/100
 *   memory   memory.limit_in_bytes, and memory.memsw.limit_in_bytes (= the same: no swap) when the
 *            kernel has swap accounting; the kernel refuses a memory limit above memsw, so the write
 *            order depends on the direction of the change
 *   pids     pids.max
 *   cpuset   cpuset.cpus (pinned cores, or the shared pool), when the hierarchy is mounted. A new v1
 *            cpuset cgroup starts with no CPUs and no memory nodes (nothing could join it), so the
 *            parent and each VM cgroup get their parent's cpus and mems at creation.
 * Usage: cpuacct.usage (ns), memory.usage_in_bytes, pids.current.
 */
import { join } from 'node:path';
import { formatCpuList } from '../../common/cpu-list.js';
import { nodeCgroupFs } from './cgroup-fs.js';
import {
  CFS_PERIOD_USEC,
  CgroupError,
  cpuQuotaUsec,
  weightToShares,
  type CgroupLimits,
  type CgroupUsage,
} from './cgroup-driver.js';
import { CgroupTreeDriver, type CgroupDriverOptions } from './cgroup-tree.js';

export const V1_CONTROLLERS = ['cpu', 'cpuacct', 'memory', 'pids'] as const;

export class CgroupV1Driver extends CgroupTreeDriver {
  readonly version = 'v1' as const;
  readonly supportsCpuset: boolean;

  constructor(options: CgroupDriverOptions = {}) {
    const cpuset = (options.fs ?? nodeCgroupFs).exists(
      join(options.root ?? '/sys/fs/cgroup', 'cpuset', 'cgroup.procs'),
    );
    const controllers = cpuset ? [...V1_CONTROLLERS, 'cpuset'] : [...V1_CONTROLLERS];
    super(controllers, controllers, options);
    this.supportsCpuset = cpuset;
  }

  override create(vmId: string): void {
    super.create(vmId);
    if (!this.supportsCpuset) return;
    const parent = this.parentDir('cpuset');
    for (const name of ['cpuset.cpus', 'cpuset.mems']) {
      const inherited = join(parent, name);
      if (this.fs.read(inherited).trim() === '')
        this.fs.write(inherited, this.fs.read(join(this.root, 'cpuset', name)).trim());
      const own = join(this.vmDir('cpuset', vmId), name);
      if (this.fs.read(own).trim() === '') this.fs.write(own, this.fs.read(inherited).trim());
    }
  }

  setCpus(vmId: string, cpus: readonly number[] | null): void {
    if (!this.supportsCpuset) throw new CgroupError('the cpuset controller is not mounted on this host');
    const value = cpus
      ? formatCpuList(cpus)
      : this.fs.read(join(this.parentDir('cpuset'), 'cpuset.cpus')).trim();
    this.writeIfChanged(join(this.vmDir('cpuset', vmId), 'cpuset.cpus'), value);
  }

  private file(controller: (typeof V1_CONTROLLERS)[number], vmId: string, name: string): string {
    return join(this.vmDir(controller, vmId), name);
  }

  /** Swap accounting is a boot option (swapaccount=1): the hierarchy root shows whether it is on. */
  private get hasMemsw(): boolean {
    return this.fs.exists(join(this.root, 'memory', 'memory.memsw.limit_in_bytes'));
  }

  apply(vmId: string, limits: CgroupLimits): void {
    this.writeIfChanged(this.file('cpu', vmId, 'cpu.cfs_period_us'), String(CFS_PERIOD_USEC));
    this.writeIfChanged(this.file('cpu', vmId, 'cpu.cfs_quota_us'), String(cpuQuotaUsec(limits.cpuPercent)));
    this.writeIfChanged(this.file('cpu', vmId, 'cpu.shares'), String(weightToShares(limits.cpuWeight)));
    this.applyMemory(vmId, limits.memoryBytes);
    this.writeIfChanged(this.file('pids', vmId, 'pids.max'), String(limits.pidsMax));
  }

  private applyMemory(vmId: string, bytes: number): void {
    const memory = this.file('memory', vmId, 'memory.limit_in_bytes');
    const memsw = this.file('memory', vmId, 'memory.memsw.limit_in_bytes');
    const value = String(bytes);
    if (!this.hasMemsw) {
      this.writeIfChanged(memory, value);
      return;
    }
    // memory <= memsw at every moment: raise memsw first, lower memory first.
    const current = this.fs.exists(memory) ? this.readNumber(memory) : Infinity;
    if (bytes > current) {
      this.writeIfChanged(memsw, value);
      this.writeIfChanged(memory, value);
    } else {
      this.writeIfChanged(memory, value);
      this.writeIfChanged(memsw, value);
    }
  }

  readUsage(vmId: string): CgroupUsage {
    return {
      cpuUsageUsec: this.readNanosecondsAsUsec(this.file('cpuacct', vmId, 'cpuacct.usage')),
      memoryBytes: this.readNumber(this.file('memory', vmId, 'memory.usage_in_bytes')),
      pids: this.readNumber(this.file('pids', vmId, 'pids.current')),
    };
  }

  /** cpuacct.usage is in ns and passes 2^53 after ~104 days of CPU time: parse it as a BigInt. */
  private readNanosecondsAsUsec(path: string): number {
    const text = this.fs.read(path).trim();
    if (!/^\d{1,30}$/.test(text)) throw new CgroupError(`unexpected content in ${path}`, path);
    return Number(BigInt(text) / 1000n);
  }
}

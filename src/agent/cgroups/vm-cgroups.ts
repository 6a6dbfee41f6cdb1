/**
 * The VM-level policy over a cgroup driver. It turns an intent into limits and prepares the cgroups
 * before a start; if that fails the start fails, so a VM never runs unconfined. It wraps the QEMU
 * command in `cgexec -g <controllers>:<parent>/vm-<id>` and checks that QEMU really is inside. It
 * re-applies limits to an adopted QEMU without disturbing it, and it removes a VM's cgroups once QEMU
 * is gone.
 *
 * Join before exec: cgexec writes its own pid into each cgroup's cgroup.procs and only then execs
 * setpriv, which execs QEMU (same pid). QEMU's first allocation, the guest RAM included, is therefore
 * charged to the VM, and its CPU and task count are capped from its first instruction. If the join
 * fails, cgexec exits (code 8x) without running the command, so it fails closed. QEMU cannot leave
 * afterwards: it runs as an unprivileged uid with no capabilities, and the cgroup files belong to root.
 *
 * Why cgexec and not "start QEMU with -S, move its pid, then `cont`": with -S, QEMU has already
 * allocated the guest RAM and loaded the kernel and initrd before the move. On v1 those charges stay
 * with the old cgroup unless memory.move_charge_at_immigrate is set, and v2 never moves them. Tested
 * on this host's v1 layout, where cpu and cpuacct are separate mounts: one `-g cpu,cpuacct,memory,pids:`
 * places the task in all four. On v2, libcgroup >= 2.0 (Debian 12 ships 2.0.2) writes the single
 * unified cgroup.procs, per libcgroup PR #13 "Add cgroup v2 support for cgclassify and cgexec". That
 * path is not tested here, but the QMP-time membership check below would catch a failure.
 */
import type { VmIntent, VmResources } from '../../api/agent-protocol.js';
import type { Accelerator } from '../../api/host.js';
import type { Logger } from '../../common/logger.js';
import { vmMemoryLimitMiB } from '../qemu/memory-overhead.js';
import { CgroupError, type CgroupLimits, type CgroupUsage, type PruneResult } from './cgroup-driver.js';
import type { CgroupSetup } from './cgroup-load.js';

const MIB = 1024 * 1024;
/** A cgroup this young may belong to another agent sharing the parent that is about to join it. */
const PRUNE_MIN_AGE_MS = 60_000;

export function limitsFor(
  intent: VmIntent,
  accelerator: Accelerator,
): { limits: CgroupLimits; memoryLimitMiB: number } {
  const memoryLimitMiB = vmMemoryLimitMiB(accelerator, intent);
  return {
    memoryLimitMiB,
    limits: {
      cpuPercent: intent.limits.cpuPercent,
      cpuWeight: intent.limits.cpuWeight,
      memoryBytes: memoryLimitMiB * MIB,
      pidsMax: intent.limits.pidsMax,
    },
  };
}

export interface PreparedStart {
  /** The command to spawn: `[cgexec, -g, ..., ...command]`, or `command` when limits are off. */
  command: string[];
  resources: VmResources | null;
}

/** The host CPUs a VM's cgroup is kept to (its pinned cores, or the shared pool); null: no restriction. */
export type CpuPlan = (intent: VmIntent) => readonly number[] | null;

export class VmCgroups {
  private cpuPlan: CpuPlan = () => null;

  constructor(
    private readonly setup: CgroupSetup,
    private readonly log: Logger,
  ) {}

  /** Set by the VM manager, which knows the pinned cores and the shared pool. */
  setCpuPlan(plan: CpuPlan): void {
    this.cpuPlan = plan;
  }

  /** Whether dedicated CPUs can be enforced here (limits on, cpuset controller available). */
  get canPin(): boolean {
    return this.setup.state === 'enabled' && this.setup.driver.supportsCpuset;
  }

  /**
   * Keeps the VM to its planned CPUs: pinned cores fail closed without cpuset; the shared pool is
   * best effort (a host without cpuset has no pinned VMs to keep the shared ones away from).
   */
  private applyCpus(intent: VmIntent): void {
    if (this.setup.state !== 'enabled') {
      if (intent.pinnedCpus) throw new CgroupError('dedicated CPUs need resource limits (cgroups) on');
      return;
    }
    if (!this.setup.driver.supportsCpuset) {
      if (intent.pinnedCpus)
        throw new CgroupError('dedicated CPUs need the cpuset cgroup controller, which this host lacks');
      return;
    }
    const cpus = this.cpuPlan(intent);
    if (cpus !== null) this.setup.driver.setCpus(intent.id, cpus);
  }

  /** Moves a running VM to a changed shared pool (errors logged: its QEMU may be exiting). */
  refreshCpus(intent: VmIntent): void {
    if (!this.canPin) return;
    try {
      this.applyCpus(intent);
    } catch (error) {
      this.log.debug({ vmId: intent.id, err: (error as Error).message }, 'CPU set not refreshed');
    }
  }

  /** For logs: `v1 (parent rampart)`, `off`, or `unavailable: <reason>`. */
  describe(): string {
    if (this.setup.state === 'enabled')
      return `${this.setup.driver.version} (parent ${this.setup.driver.parent})`;
    return this.setup.state === 'disabled' ? 'off' : `unavailable: ${this.setup.reason}`;
  }

  /**
   * Creates the VM's cgroups and applies the intent's limits before QEMU starts. Throws a CgroupError
   * whose message is meant for the VM's status when the limits cannot be applied.
   */
  prepare(intent: VmIntent, accelerator: Accelerator, command: readonly string[]): PreparedStart {
    const setup = this.setup;
    if (setup.state === 'disabled') {
      if (intent.pinnedCpus) throw new CgroupError('dedicated CPUs need resource limits (cgroups) on');
      return { command: [...command], resources: null };
    }
    if (setup.state === 'unavailable')
      throw new CgroupError(`resource limits cannot be applied on this host: ${setup.reason}`);
    const { limits, memoryLimitMiB } = limitsFor(intent, accelerator);
    try {
      setup.driver.create(intent.id);
      setup.driver.apply(intent.id, limits);
      this.applyCpus(intent);
    } catch (error) {
      throw new CgroupError(`resource limits could not be applied: ${(error as Error).message}`);
    }
    return {
      command: [setup.cgexec, ...setup.driver.execArgs(intent.id), ...command],
      resources: this.resources(intent, memoryLimitMiB, true),
    };
  }

  /** True when `pid` is inside every cgroup of the VM (always true when limits are off). */
  isConfined(vmId: string, pid: number): boolean {
    if (this.setup.state === 'disabled') return true;
    if (this.setup.state === 'unavailable') return false;
    try {
      return this.setup.driver.contains(vmId, pid);
    } catch {
      return false;
    }
  }

  /**
   * For a QEMU that is already running (adopted after an agent restart, or an intent whose limits
   * changed). It re-creates missing cgroups and rewrites only the values that differ, so nothing is
   * reset and no task is moved. Then it checks that QEMU is inside. If it is not, that is reported
   * (`confined: false`, an error in the log) and QEMU is moved in so CPU, memory and task limits hold
   * from now on.
   */
  readopt(intent: VmIntent, accelerator: Accelerator, pid: number, wasConfined: boolean): VmResources | null {
    const setup = this.setup;
    const log = { vmId: intent.id, pid };
    if (setup.state === 'disabled') return null;
    if (setup.state === 'unavailable') {
      this.log.error({ ...log, reason: setup.reason }, 'cannot verify the resource limits of a running QEMU');
      return null;
    }
    const { limits, memoryLimitMiB } = limitsFor(intent, accelerator);
    try {
      setup.driver.create(intent.id);
      setup.driver.apply(intent.id, limits);
      this.applyCpus(intent);
    } catch (error) {
      this.log.error({ ...log, err: (error as Error).message }, 'could not re-apply resource limits');
    }
    let confined = wasConfined;
    if (!this.isConfined(intent.id, pid)) {
      confined = false;
      this.log.error(
        log,
        'running QEMU was outside its cgroups; moving it in (earlier memory stays uncharged)',
      );
      try {
        setup.driver.place(intent.id, pid);
      } catch (error) {
        this.log.error({ ...log, err: (error as Error).message }, 'could not move QEMU into its cgroups');
      }
    }
    return this.resources(intent, memoryLimitMiB, confined && this.isConfined(intent.id, pid));
  }

  /** Removes the VM's cgroups after its QEMU is gone (tasks left inside are killed). */
  async release(vmId: string): Promise<void> {
    if (this.setup.state !== 'enabled') return;
    await this.setup.driver.remove(vmId);
  }

  /** CPU, memory and task usage of the VM's cgroups; null when limits are off or it has none. */
  usage(vmId: string): CgroupUsage | null {
    if (this.setup.state !== 'enabled') return null;
    try {
      return this.setup.driver.readUsage(vmId);
    } catch {
      return null;
    }
  }

  /** At agent start: removes empty cgroups left behind by VMs this agent no longer knows. */
  async prune(known: ReadonlySet<string>): Promise<PruneResult | null> {
    if (this.setup.state !== 'enabled') return null;
    const result = await this.setup.driver.pruneUnknown(known, PRUNE_MIN_AGE_MS);
    if (result.removed.length > 0 || result.kept.length > 0)
      this.log.info(result, 'pruned cgroups of unknown VMs');
    return result;
  }

  private resources(intent: VmIntent, memoryLimitMiB: number, confined: boolean): VmResources | null {
    if (this.setup.state !== 'enabled') return null;
    return {
      cgroup: this.setup.driver.version,
      cpuPercent: intent.limits.cpuPercent,
      cpuWeight: intent.limits.cpuWeight,
      pidsMax: intent.limits.pidsMax,
      memoryLimitMiB,
      confined,
    };
  }
}

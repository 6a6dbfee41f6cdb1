/**
 * What v1 and v2 have in common: a VM's cgroup is `<root>/<hierarchy>/<parent>/vm-<id>` in each
 * hierarchy the driver uses. v1 has one hierarchy per controller; v2 has a single one, `''`. So
 * creation, membership, placement, removal and pruning are the same code, and the drivers add only
 * their control files. Removal kills leftover tasks first and retries `rmdir` briefly while the kernel
 * still reports EBUSY (tasks that are dying).
 */
import { join } from 'node:path';
import { assertSafeId, isUuid } from '../../common/ids.js';
import {
  assertCgroupParent,
  CgroupError,
  type CgroupDriver,
  type CgroupLimits,
  type CgroupUsage,
  type CgroupVersion,
  type PruneResult,
} from './cgroup-driver.js';
import { nodeCgroupFs, type CgroupFs } from './cgroup-fs.js';

export interface CgroupDriverOptions {
  /** Where the cgroup hierarchies are mounted: /sys/fs/cgroup (a temp dir in unit tests). */
  root?: string;
  /** The directory under each hierarchy holding the VMs' cgroups (default `rampart`). */
  parent?: string;
  fs?: CgroupFs;
  /** Sends SIGKILL (injected by tests). */
  kill?: (pid: number) => void;
  /** How long removal keeps retrying `rmdir` on EBUSY. */
  removeTimeoutMs?: number;
}

const VM_PREFIX = 'vm-';
const REMOVE_RETRY_MS = 50;

function killProcess(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export abstract class CgroupTreeDriver implements CgroupDriver {
  abstract readonly version: CgroupVersion;
  readonly root: string;
  readonly parent: string;
  protected readonly fs: CgroupFs;
  private readonly kill: (pid: number) => void;
  private readonly removeTimeoutMs: number;

  /**
   * @param hierarchies directories under the root, one per mounted hierarchy the driver uses
   * @param controllers the controller names given to cgexec
   */
  protected constructor(
    protected readonly hierarchies: readonly string[],
    private readonly controllers: readonly string[],
    options: CgroupDriverOptions,
  ) {
    this.root = options.root ?? '/sys/fs/cgroup';
    this.parent = assertCgroupParent(options.parent ?? 'rampart');
    this.fs = options.fs ?? nodeCgroupFs;
    this.kill = options.kill ?? killProcess;
    this.removeTimeoutMs = options.removeTimeoutMs ?? 5000;
  }

  abstract apply(vmId: string, limits: CgroupLimits): void;
  abstract readUsage(vmId: string): CgroupUsage;
  abstract readonly supportsCpuset: boolean;
  abstract setCpus(vmId: string, cpus: readonly number[] | null): void;

  /** Called before a VM cgroup is created, e.g. to enable controllers for the parent's children. */
  protected prepareParent(): void {}

  /** The parent directory in one hierarchy. */
  protected parentDir(hierarchy: string): string {
    return join(this.root, hierarchy, this.parent);
  }

  /** The VM's cgroup directory in one hierarchy. */
  protected vmDir(hierarchy: string, vmId: string): string {
    return join(this.parentDir(hierarchy), `${VM_PREFIX}${assertSafeId(vmId)}`);
  }

  private vmDirs(vmId: string): string[] {
    return [...new Set(this.hierarchies.map((h) => this.vmDir(h, vmId)))];
  }

  create(vmId: string): void {
    const dirs = this.vmDirs(vmId); // validates the id before anything is touched
    this.prepareParent();
    for (const dir of dirs) this.fs.mkdir(dir);
  }

  /** Writes `value` unless the file already holds it: re-applying the same limits changes nothing. */
  protected writeIfChanged(path: string, value: string): void {
    if (this.fs.exists(path) && this.fs.read(path).trim() === value) return;
    this.fs.write(path, value);
  }

  /**
   * Reads a file holding one integer. `max` (v2) and values beyond 2^53 (v1's unlimited is
   * 9223372036854771712) are answered as Infinity.
   */
  protected readNumber(path: string): number {
    const text = this.fs.read(path).trim();
    if (text === 'max') return Infinity;
    if (!/^-?\d{1,20}$/.test(text)) throw new CgroupError(`unexpected content in ${path}`, path);
    const value = Number(text);
    return Number.isSafeInteger(value) ? value : value > 0 ? Infinity : -Infinity;
  }

  private procs(dir: string): number[] {
    const path = join(dir, 'cgroup.procs');
    if (!this.fs.exists(path)) return [];
    return this.fs
      .read(path)
      .split('\n')
      .filter((line) => /^\d+$/.test(line.trim()))
      .map(Number);
  }

  contains(vmId: string, pid: number): boolean {
    return this.vmDirs(vmId).every((dir) => this.procs(dir).includes(pid));
  }

  place(vmId: string, pid: number): void {
    if (!Number.isInteger(pid) || pid <= 1) throw new CgroupError(`not a placeable pid: ${pid}`);
    for (const dir of this.vmDirs(vmId)) this.fs.write(join(dir, 'cgroup.procs'), String(pid));
  }

  execArgs(vmId: string): string[] {
    return ['-g', `${this.controllers.join(',')}:${this.parent}/${VM_PREFIX}${assertSafeId(vmId)}`];
  }

  async remove(vmId: string): Promise<void> {
    let failure: Error | null = null;
    for (const dir of this.vmDirs(vmId)) {
      try {
        await this.removeDir(dir, true);
      } catch (error) {
        failure ??= error as Error; // the other hierarchies are still cleaned up
      }
    }
    if (failure) throw failure;
  }

  /** Removes one cgroup directory, optionally killing its tasks first. Answers false if it stays. */
  private async removeDir(dir: string, killTasks: boolean): Promise<boolean> {
    const deadline = Date.now() + this.removeTimeoutMs;
    for (;;) {
      if (!this.fs.exists(dir)) return true;
      if (killTasks) for (const pid of this.procs(dir)) if (pid > 1 && pid !== process.pid) this.kill(pid);
      try {
        this.fs.rmdir(dir);
        return true;
      } catch (error) {
        const code = error instanceof CgroupError ? error.code : null;
        if (code === 'ENOENT') return true;
        if (code === 'EBUSY' && !killTasks) return false; // it holds tasks that are not ours to kill
        if (code !== 'EBUSY' || Date.now() >= deadline) throw error;
      }
      await sleep(REMOVE_RETRY_MS);
    }
  }

  listVmIds(): string[] {
    const ids = new Set<string>();
    for (const hierarchy of new Set(this.hierarchies)) {
      const dir = this.parentDir(hierarchy);
      if (!this.fs.exists(dir)) continue;
      for (const name of this.fs.subdirectories(dir)) {
        const id = name.startsWith(VM_PREFIX) ? name.slice(VM_PREFIX.length) : '';
        if (isUuid(id)) ids.add(id);
      }
    }
    return [...ids].sort();
  }

  async pruneUnknown(known: ReadonlySet<string>, minAgeMs: number): Promise<PruneResult> {
    const result: PruneResult = { removed: [], kept: [] };
    for (const vmId of this.listVmIds()) {
      if (known.has(vmId)) continue;
      const dirs = this.vmDirs(vmId).filter((dir) => this.fs.exists(dir));
      const busy = dirs.some((dir) => this.procs(dir).length > 0 || this.fs.ageMs(dir) < minAgeMs);
      if (busy) {
        result.kept.push(vmId);
        continue;
      }
      let removedAll = true;
      for (const dir of dirs) removedAll = (await this.removeDir(dir, false)) && removedAll;
      (removedAll ? result.removed : result.kept).push(vmId);
    }
    return result;
  }
}

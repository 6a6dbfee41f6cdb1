/**
 * All VMs of this host: creates instances for new intents (allocating each a uid of its own from the
 * configured range), loads and re-adopts them at agent start (then prunes cgroups of VMs it no longer
 * knows), removes VMs the server no longer wants, and forwards status and console output to whoever
 * listens (the server link).
 */
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { VmIntent, VmStatus } from '../../api/agent-protocol.js';
import { isUuid } from '../../common/ids.js';
import { KeyedMutex } from '../../common/keyed-mutex.js';
import { VmInstance, type VmRuntimeEnv } from './vm-instance.js';

export interface VmManagerEvents {
  status: [VmStatus];
  console: [vmId: string, data: Buffer];
}

export interface UidRange {
  base: number;
  count: number;
}

/** The host's CPUs: all online ones, and the cores (SMT siblings together) that may be pinned. */
export interface HostCpus {
  online: readonly number[];
  dedicatedCores: readonly (readonly number[])[];
}

export class VmManager extends EventEmitter<VmManagerEvents> {
  private readonly instances = new Map<string, VmInstance>();
  private readonly mutex = new KeyedMutex();

  constructor(
    private readonly env: VmRuntimeEnv,
    private readonly uids: UidRange,
    private readonly cpus: HostCpus = { online: [], dedicatedCores: [] },
  ) {
    super();
    mkdirSync(env.vmsDir, { recursive: true, mode: 0o755 });
    env.cgroups.setCpuPlan((intent) => intent.pinnedCpus ?? this.sharedPool());
  }

  /**
   * The CPUs of VMs without dedicated CPUs: every online CPU but those pinned by this host's VMs
   * (running or not: a dedicated VM's cores stay its own while it exists). Empty: no restriction.
   */
  sharedPool(): number[] | null {
    const pinned = new Set([...this.instances.values()].flatMap((i) => i.intent.pinnedCpus ?? []));
    if (pinned.size === 0 || this.cpus.online.length === 0) return null;
    return this.cpus.online.filter((cpu) => !pinned.has(cpu));
  }

  /** After the pinned set changed: every shared VM that runs moves to the new shared pool. */
  private refreshSharedPool(): void {
    for (const instance of this.instances.values())
      if (!instance.intent.pinnedCpus) this.env.cgroups.refreshCpus(instance.intent);
  }

  /**
   * The host's own check of dedicated CPUs: whole dedicated cores of this host, held by no other VM,
   * and never the last shared CPU.
   */
  private pinningConflict(intent: VmIntent): string | null {
    const wanted = intent.pinnedCpus;
    if (!wanted) return null;
    if (!this.env.cgroups.canPin)
      return 'dedicated CPUs cannot be enforced on this host (no cpuset controller)';
    const set = new Set(wanted);
    for (const cpu of wanted) {
      const core = this.cpus.dedicatedCores.find((c) => c.includes(cpu));
      if (!core) return `CPU ${cpu} is not one of this host's dedicated cores`;
      if (!core.every((sibling) => set.has(sibling)))
        return `CPU ${cpu} would share its physical core with another VM (SMT siblings go together)`;
    }
    for (const other of this.instances.values()) {
      const overlap = (other.intent.pinnedCpus ?? []).filter((cpu) => set.has(cpu));
      if (other.id !== intent.id && overlap.length > 0)
        return `CPU(s) ${overlap.join(',')} are already pinned to another VM`;
    }
    return null;
  }

  /** Loads every VM recorded on disk and re-adopts the QEMU processes that still run. */
  loadExisting(): void {
    for (const entry of readdirSync(this.env.vmsDir)) {
      const file = join(this.env.vmsDir, entry, 'state.json');
      if (!isUuid(entry) || !existsSync(file)) continue;
      try {
        const instance = this.track(new VmInstance(VmInstance.load(file), this.env));
        instance.adopt();
      } catch (error) {
        this.env.log.error({ vmId: entry, err: (error as Error).message }, 'cannot load VM state');
      }
    }
  }

  /** Removes the empty cgroups of VMs this agent no longer knows (leftovers of a crash or removal). */
  async pruneCgroups(): Promise<void> {
    try {
      await this.env.cgroups.prune(new Set(this.instances.keys()));
    } catch (error) {
      this.env.log.warn({ err: (error as Error).message }, 'could not prune leftover cgroups');
    }
  }

  get(vmId: string): VmInstance | undefined {
    return this.instances.get(vmId);
  }

  list(): VmInstance[] {
    return [...this.instances.values()];
  }

  reconcile(intent: VmIntent): Promise<VmStatus> {
    return this.mutex.run(intent.id, async () => {
      let instance = this.instances.get(intent.id);
      if (!instance) {
        const conflict = this.tenancyConflict(intent) ?? this.pinningConflict(intent);
        if (conflict) throw new Error(`placement refused by the host: ${conflict}`);
        instance = this.track(
          new VmInstance(
            {
              intent,
              uid: this.allocateUid(),
              process: null,
              accelerator: null,
              bootId: 0,
              rebootId: intent.rebootId,
              spawnedAt: null,
              booted: false,
              bootMs: null,
              phase: 'stopped',
              error: null,
            },
            this.env,
          ),
        );
        instance.persist();
        if (intent.pinnedCpus) this.refreshSharedPool();
      }
      return instance.reconcile(intent);
    });
  }

  /**
   * The host's own check of dedicated hosts, whatever the scheduler decided: a VM of a dedicated
   * tenant never joins another tenant's VMs here, and no VM joins a dedicated tenant's.
   */
  private tenancyConflict(intent: VmIntent): string | null {
    const mine = intent.tenant;
    if (!mine) return null;
    for (const other of this.instances.values()) {
      const theirs = other.intent.tenant;
      if (!theirs || theirs.id === mine.id) continue;
      if (mine.dedicatedHosts)
        return 'the tenant has dedicated hosts and this host runs another tenant’s VMs';
      if (theirs.dedicatedHosts) return 'this host is dedicated to another tenant';
    }
    return null;
  }

  /** Brings the host to exactly this set of VMs: reconciles each, removes the others. */
  async sync(intents: VmIntent[]): Promise<VmStatus[]> {
    const wanted = new Set(intents.map((i) => i.id));
    for (const id of [...this.instances.keys()]) if (!wanted.has(id)) await this.remove(id);
    const statuses: VmStatus[] = [];
    for (const intent of intents) {
      try {
        statuses.push(await this.reconcile(intent));
      } catch (error) {
        this.env.log.error({ vmId: intent.id, err: (error as Error).message }, 'reconcile failed');
        const instance = this.instances.get(intent.id);
        if (instance) statuses.push(instance.status());
      }
    }
    return statuses;
  }

  remove(vmId: string): Promise<boolean> {
    return this.mutex.run(vmId, async () => {
      const instance = this.instances.get(vmId);
      if (!instance) return false;
      await instance.remove();
      this.instances.delete(vmId);
      instance.removeAllListeners();
      if (instance.intent.pinnedCpus) this.refreshSharedPool();
      return true;
    });
  }

  /** The VM of this host whose QEMU runs (or is being started) with the volume attached, if any. */
  volumeUser(volumeId: string): string | null {
    for (const instance of this.instances.values()) if (instance.usesVolume(volumeId)) return instance.id;
    return null;
  }

  /** Self-fencing: kills every QEMU of this host now; resolves with the ids of the VMs that ran. */
  async fence(): Promise<string[]> {
    const killed = await Promise.all(
      [...this.instances.values()].map(async (instance) => ((await instance.fence()) ? instance.id : null)),
    );
    return killed.filter((id): id is string => id !== null);
  }

  detachAll(): void {
    for (const instance of this.instances.values()) instance.detach();
  }

  private track(instance: VmInstance): VmInstance {
    this.instances.set(instance.id, instance);
    instance.on('status', (status) => this.emit('status', status));
    instance.on('console', (data) => this.emit('console', instance.id, data));
    return instance;
  }

  private allocateUid(): number {
    const used = new Set([...this.instances.values()].map((i) => i.uid));
    for (let uid = this.uids.base; uid < this.uids.base + this.uids.count; uid++)
      if (!used.has(uid)) return uid;
    throw new Error('no free VM uid left in the configured range');
  }
}

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

export class VmManager extends EventEmitter<VmManagerEvents> {
  private readonly instances = new Map<string, VmInstance>();
  private readonly mutex = new KeyedMutex();

  constructor(
    private readonly env: VmRuntimeEnv,
    private readonly uids: UidRange,
  ) {
    super();
    mkdirSync(env.vmsDir, { recursive: true, mode: 0o755 });
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
        const conflict = this.tenancyConflict(intent);
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
      return true;
    });
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

/**
 * The last hour (by default) of resource samples per VM, in memory: what the console's CPU and network
 * charts draw (GET /v1/vms/{vm}/samples). Samples come from the agents' telemetry reports; they are
 * lost on a server restart, like any live gauge. A VM's samples go when the VM is deleted.
 */
import type { VmSample } from '../../api/vm.js';

export const DEFAULT_SAMPLES_PER_VM = 360;

export class VmSampleStore {
  private readonly rings = new Map<string, VmSample[]>();

  constructor(private readonly perVm = DEFAULT_SAMPLES_PER_VM) {}

  add(sample: VmSample): void {
    let ring = this.rings.get(sample.vmId);
    if (!ring) {
      ring = [];
      this.rings.set(sample.vmId, ring);
    }
    ring.push(sample);
    if (ring.length > this.perVm) ring.splice(0, ring.length - this.perVm);
  }

  /** A VM's samples, oldest first; `after`: only those taken after that ISO time. */
  list(vmId: string, after?: string): VmSample[] {
    const ring = this.rings.get(vmId) ?? [];
    return after === undefined ? [...ring] : ring.filter((s) => s.at > after);
  }

  forget(vmId: string): void {
    this.rings.delete(vmId);
  }

  /** Drops the rings of VMs not in `live` (deleted VMs). */
  retain(live: ReadonlySet<string>): void {
    for (const id of this.rings.keys()) if (!live.has(id)) this.rings.delete(id);
  }
}

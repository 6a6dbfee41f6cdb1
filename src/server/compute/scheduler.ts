/**
 * Placement: picks an online host with room for the VM (allocatable vCPUs and memory minus what its
 * VMs already hold), preferring the least loaded. Pure over its inputs so it is easy to test.
 */
import { NoCapacityError, HostUnavailableError } from '../../api/errors.js';
import type { HostsTable } from '../store/schema.js';
import type { HostAllocation } from './host-registry.js';

export interface PlacementRequest {
  vcpus: number;
  memoryMiB: number;
}

export function pickHost(
  hosts: readonly HostsTable[],
  allocations: Map<string, HostAllocation>,
  request: PlacementRequest,
): HostsTable {
  const online = hosts.filter((h) => h.state === 'online');
  if (online.length === 0) throw new HostUnavailableError('no hypervisor host is online');
  const candidates = online
    .map((host) => {
      const used = allocations.get(host.id) ?? { vcpus: 0, memoryMiB: 0, vms: 0 };
      return {
        host,
        freeVcpus: host.vcpusAllocatable - used.vcpus,
        freeMemory: host.memoryMibAllocatable - used.memoryMiB,
      };
    })
    .filter((c) => c.freeVcpus >= request.vcpus && c.freeMemory >= request.memoryMiB)
    .sort((a, b) => b.freeMemory - a.freeMemory || a.host.id.localeCompare(b.host.id));
  const best = candidates[0];
  if (!best) {
    throw new NoCapacityError(`no host has room for ${request.vcpus} vCPUs and ${request.memoryMiB} MiB`);
  }
  return best.host;
}

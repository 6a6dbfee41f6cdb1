/**
 * Placement: picks an online host with room for the VM, preferring the least loaded. A host's room is
 * its capacity times the platform's overcommit ratios (vCPUs per physical CPU; memory, usually 1.0)
 * minus what its VMs already hold. CPUs pinned by dedicated-CPU VMs leave the shared pool: shared vCPU
 * room is (CPUs - pinned) x ratio - shared vCPUs. A dedicated-CPU VM needs whole free cores of the
 * host's dedicated cores (SMT siblings go together, so no core is ever split between two VMs, let alone
 * two tenants). Pure over its inputs so it is easy to test.
 */
import { NoCapacityError, HostUnavailableError } from '../../api/errors.js';
import type { HostsTable } from '../store/schema.js';
import type { HostAllocation } from './host-registry.js';

export interface PlacementRequest {
  vcpus: number;
  memoryMiB: number;
  /** The tenant of the VM, and whether it must have hosts of its own. */
  tenantId?: string;
  dedicated?: boolean;
  /** A placement group: affinity = a host of its members (if any), anti-affinity = none of them. */
  group?: { name: string; policy: 'affinity' | 'anti-affinity'; memberHosts: ReadonlySet<string> };
  /** Dedicated CPU policy: the VM gets whole cores of its own instead of shared vCPUs. */
  dedicatedCpus?: boolean;
}

/** Which tenants run VMs on each host, and which of them have dedicated hosts. */
export type HostOccupancy = Map<string, { tenants: Set<string>; dedicated: Set<string> }>;

/** vCPUs per host CPU and memory per host MiB that may be allocated (1.0 = no overcommit). */
export interface Overcommit {
  cpu: number;
  memory: number;
}

export const DEFAULT_OVERCOMMIT: Overcommit = { cpu: 4, memory: 1 };

/** What a host can hold in total under the ratios (memory: the agent's allocatable, after its reserve). */
export function hostCapacity(host: HostsTable, overcommit: Overcommit): { vcpus: number; memoryMiB: number } {
  return {
    vcpus: Math.floor(host.cpus * overcommit.cpu),
    memoryMiB: Math.floor(host.memoryMibAllocatable * overcommit.memory),
  };
}

export function hostRoom(
  host: HostsTable,
  used: HostAllocation,
  overcommit: Overcommit,
): { vcpus: number; memoryMiB: number } {
  const capacity = hostCapacity(host, overcommit);
  const pinned = used.pinnedCpus?.length ?? 0;
  const sharedCapacity = Math.floor(Math.max(0, host.cpus - pinned) * overcommit.cpu);
  return {
    vcpus: (pinned > 0 ? sharedCapacity : capacity.vcpus) - (used.sharedVcpus ?? used.vcpus),
    memoryMiB: capacity.memoryMiB - used.memoryMiB,
  };
}

/** The host's cores that may be pinned (as its agent reported them). */
export function dedicatedCoresOf(host: Pick<HostsTable, 'dedicatedCores'>): number[][] {
  try {
    const cores = JSON.parse(host.dedicatedCores ?? '[]') as unknown;
    return Array.isArray(cores) ? (cores as number[][]) : [];
  } catch {
    return [];
  }
}

/**
 * Whole free cores for `vcpus` pinned vCPUs (each core with all its SMT siblings), or null when the
 * host does not have enough of them. The VM gets every logical CPU of the cores it takes.
 */
export function chooseDedicatedCpus(
  host: Pick<HostsTable, 'dedicatedCores'>,
  used: Pick<HostAllocation, 'pinnedCpus'> | undefined,
  vcpus: number,
): number[] | null {
  const taken = new Set(used?.pinnedCpus ?? []);
  const free = dedicatedCoresOf(host).filter((core) => core.every((cpu) => !taken.has(cpu)));
  const chosen: number[] = [];
  for (const core of free) {
    if (chosen.length >= vcpus) break;
    chosen.push(...core);
  }
  return chosen.length >= vcpus ? chosen.sort((a, b) => a - b) : null;
}

export function pickHost(
  hosts: readonly HostsTable[],
  allocations: Map<string, HostAllocation>,
  request: PlacementRequest,
  overcommit: Overcommit = DEFAULT_OVERCOMMIT,
  occupancy: HostOccupancy = new Map(),
): HostsTable {
  const online = hosts.filter((h) => h.state === 'online');
  if (online.length === 0) throw new HostUnavailableError('no hypervisor host is online');
  // A placement failure names the constraint that could not be met.
  const open = online.filter((h) => h.maintenance !== 1);
  if (open.length === 0)
    throw new NoCapacityError(
      `no host can take new VMs: every online host is in maintenance (${online.map((h) => h.hostname).join(', ')})`,
    );
  // Tenancy: a dedicated tenant only where no other tenant runs; nobody else where one does.
  const tenant = request.tenantId;
  const allowed = open.filter((h) => {
    const here = occupancy.get(h.id);
    if (!here || tenant === undefined) return true;
    const others = [...here.tenants].filter((t) => t !== tenant);
    if (request.dedicated) return others.length === 0;
    return ![...here.dedicated].some((t) => t !== tenant);
  });
  if (allowed.length === 0)
    throw new NoCapacityError(
      request.dedicated
        ? 'no host can take the VM: the tenant requires dedicated hosts and every open host runs other tenants’ VMs'
        : 'no host can take the VM: every open host is dedicated to another tenant',
    );
  const group = request.group;
  const grouped = group
    ? allowed.filter((h) =>
        group.policy === 'anti-affinity'
          ? !group.memberHosts.has(h.id)
          : group.memberHosts.size === 0 || group.memberHosts.has(h.id),
      )
    : allowed;
  if (group && grouped.length === 0)
    throw new NoCapacityError(
      group.policy === 'anti-affinity'
        ? `no host can take the VM: anti-affinity group ${group.name} already has a member on every open host`
        : `no host can take the VM: affinity group ${group.name} is on a host that cannot take more VMs`,
    );
  const candidates = grouped
    .map((host) => {
      const used = allocations.get(host.id) ?? { vcpus: 0, memoryMiB: 0, vms: 0 };
      const room = hostRoom(host, used, overcommit);
      const cpusFit = request.dedicatedCpus
        ? chooseDedicatedCpus(host, used, request.vcpus) !== null
        : room.vcpus >= request.vcpus;
      return { host, cpusFit, freeMemory: room.memoryMiB };
    })
    .filter((c) => c.cpusFit && c.freeMemory >= request.memoryMiB)
    .sort((a, b) => b.freeMemory - a.freeMemory || a.host.id.localeCompare(b.host.id));
  const best = candidates[0];
  if (!best) {
    if (request.dedicatedCpus)
      throw new NoCapacityError(
        `no host can take the VM: it needs ${request.vcpus} dedicated CPU(s) (whole cores, never shared) and ${request.memoryMiB} MiB, and no host has that many free dedicated cores with that memory`,
      );
    if (group?.policy === 'affinity' && group.memberHosts.size > 0)
      throw new NoCapacityError(
        `no host can take the VM: affinity group ${group.name} is on a host without room for ${request.vcpus} vCPUs and ${request.memoryMiB} MiB`,
      );
    throw new NoCapacityError(`no host has room for ${request.vcpus} vCPUs and ${request.memoryMiB} MiB`);
  }
  return best.host;
}

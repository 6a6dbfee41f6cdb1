/** Hypervisor hosts as the control plane knows them: recorded on each agent hello, marked offline on loss. */
import {
  DEFAULT_OVERCOMMIT,
  dedicatedCoresOf,
  hostCapacity,
  type HostOccupancy,
  type Overcommit,
} from './scheduler.js';
import type { HostInfo } from '../../api/agent-protocol.js';
import type { Host } from '../../api/host.js';
import { NotFoundError } from '../../api/errors.js';
import { isUuid } from '../../common/ids.js';
import { nowIso, type Db } from '../store/database.js';
import type { HostsTable } from '../store/schema.js';

export interface HostAllocation {
  vcpus: number;
  memoryMiB: number;
  vms: number;
  /** vCPUs of the VMs on the shared pool (dedicated-CPU VMs hold pinnedCpus instead). */
  sharedVcpus?: number;
  /** Host CPUs pinned by dedicated-CPU VMs. */
  pinnedCpus?: number[];
}

/**
 * A host's agent said hello: the host is online, with what it reported. With `linkedReplica` (the
 * replica the hello came through), the same statement records the link, so no other replica ever
 * sees the host online but linked nowhere (it would answer a forwarded request HOST_UNAVAILABLE).
 */
export async function recordHostHello(db: Db, info: HostInfo, linkedReplica?: string): Promise<void> {
  const now = nowIso();
  const values = {
    ...(linkedReplica === undefined ? {} : { linkedReplica }),
    hostname: info.hostname,
    state: 'online' as const,
    accelerator: info.accelerator,
    acceleratorReason: info.acceleratorReason,
    qemuVersion: info.qemuVersion,
    agentVersion: info.agentVersion,
    cpus: info.capacity.cpus,
    memoryMib: info.capacity.memoryMiB,
    vcpusAllocatable: info.capacity.vcpusAllocatable,
    memoryMibAllocatable: info.capacity.memoryMiBAllocatable,
    dedicatedCores: JSON.stringify(info.dedicatedCores ?? []),
    tunnelIp: info.tunnelIp ?? null,
    lastSeenAt: now,
  };
  await db
    .insertInto('hosts')
    .values({ id: info.hostId, createdAt: now, maintenance: 0, ...values })
    .onConflict((oc) => oc.column('id').doUpdateSet(values))
    .execute();
}

export async function hostAllocations(db: Db): Promise<Map<string, HostAllocation>> {
  const rows = await db
    .selectFrom('vms')
    .select(['hostId', 'vcpus', 'memoryMib', 'pinnedCpus'])
    .where('hostId', 'is not', null)
    .execute();
  const allocations = new Map<string, Required<HostAllocation>>();
  for (const row of rows) {
    const entry = allocations.get(row.hostId!) ?? {
      vcpus: 0,
      memoryMiB: 0,
      vms: 0,
      sharedVcpus: 0,
      pinnedCpus: [],
    };
    entry.vcpus += row.vcpus;
    entry.memoryMiB += row.memoryMib;
    entry.vms += 1;
    if (row.pinnedCpus) entry.pinnedCpus.push(...(JSON.parse(row.pinnedCpus) as number[]));
    else entry.sharedVcpus += row.vcpus;
    allocations.set(row.hostId!, entry);
  }
  return allocations;
}

/** Tenants per host (from the VMs placed there) and which of them have dedicated hosts. */
export async function hostOccupancy(db: Db): Promise<HostOccupancy> {
  const rows = await db
    .selectFrom('vms')
    .innerJoin('tenants', 'tenants.id', 'vms.tenantId')
    .select(['vms.hostId', 'vms.tenantId', 'tenants.dedicatedHosts'])
    .distinct()
    .where('vms.hostId', 'is not', null)
    .execute();
  const occupancy: HostOccupancy = new Map();
  for (const row of rows) {
    const entry = occupancy.get(row.hostId!) ?? { tenants: new Set<string>(), dedicated: new Set<string>() };
    entry.tenants.add(row.tenantId);
    if (row.dedicatedHosts === 1) entry.dedicated.add(row.tenantId);
    occupancy.set(row.hostId!, entry);
  }
  return occupancy;
}

export function hostToApi(
  row: HostsTable,
  allocation: HostAllocation | undefined,
  overcommit: Overcommit = DEFAULT_OVERCOMMIT,
): Host {
  const capacity = hostCapacity(row, overcommit);
  return {
    id: row.id,
    hostname: row.hostname,
    state: row.state,
    accelerator: row.accelerator,
    acceleratorReason: row.acceleratorReason,
    qemuVersion: row.qemuVersion,
    agentVersion: row.agentVersion,
    capacity: {
      cpus: row.cpus,
      memoryMiB: row.memoryMib,
      vcpusAllocatable: capacity.vcpus,
      memoryMiBAllocatable: capacity.memoryMiB,
    },
    overcommit: { cpu: overcommit.cpu, memory: overcommit.memory },
    maintenance: row.maintenance === 1,
    tunnelIp: row.tunnelIp ?? null,
    dedicatedCores: dedicatedCoresOf(row),
    allocated: {
      vcpus: allocation?.vcpus ?? 0,
      memoryMiB: allocation?.memoryMiB ?? 0,
      vms: allocation?.vms ?? 0,
      pinnedCpus: [...(allocation?.pinnedCpus ?? [])].sort((a, b) => a - b),
    },
    lastSeenAt: row.lastSeenAt,
    createdAt: row.createdAt,
  };
}

export async function listHosts(db: Db, overcommit: Overcommit = DEFAULT_OVERCOMMIT): Promise<Host[]> {
  const [rows, allocations] = await Promise.all([
    db.selectFrom('hosts').selectAll().orderBy('hostname').execute(),
    hostAllocations(db),
  ]);
  return rows.map((row) => hostToApi(row, allocations.get(row.id), overcommit));
}

/** Puts a host into maintenance (no new VMs) or takes it out. */
export async function setHostMaintenance(
  db: Db,
  id: string,
  maintenance: boolean,
  overcommit: Overcommit = DEFAULT_OVERCOMMIT,
): Promise<Host> {
  if (!isUuid(id)) throw new NotFoundError('host');
  const result = await db
    .updateTable('hosts')
    .set({ maintenance: maintenance ? 1 : 0 })
    .where('id', '=', id)
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) === 0) throw new NotFoundError('host');
  return getHost(db, id, overcommit);
}

export async function getHost(
  db: Db,
  id: string,
  overcommit: Overcommit = DEFAULT_OVERCOMMIT,
): Promise<Host> {
  if (!isUuid(id)) throw new NotFoundError('host');
  const row = await db.selectFrom('hosts').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw new NotFoundError('host');
  return hostToApi(row, (await hostAllocations(db)).get(id), overcommit);
}

/** Hypervisor hosts as the API shows them: capacity, accelerator, connection state. */
import { Type, type Static } from 'typebox';
import { Id, Timestamp } from './common.js';

export const Accelerator = Type.Union([Type.Literal('kvm'), Type.Literal('tcg')]);
export type Accelerator = Static<typeof Accelerator>;

export const HostState = Type.Union([Type.Literal('online'), Type.Literal('offline')]);

export const HostCapacity = Type.Object({
  cpus: Type.Integer({ minimum: 0 }),
  memoryMiB: Type.Integer({ minimum: 0 }),
  vcpusAllocatable: Type.Integer({ minimum: 0 }),
  memoryMiBAllocatable: Type.Integer({ minimum: 0 }),
});
export type HostCapacity = Static<typeof HostCapacity>;

export const Host = Type.Object(
  {
    id: Id,
    hostname: Type.String(),
    state: HostState,
    accelerator: Accelerator,
    acceleratorReason: Type.String(),
    qemuVersion: Type.String(),
    capacity: HostCapacity,
    allocated: Type.Object({
      vcpus: Type.Integer(),
      memoryMiB: Type.Integer(),
      vms: Type.Integer(),
      /** Host CPUs held by dedicated-CPU VMs (never shared with another VM). */
      pinnedCpus: Type.Array(Type.Integer()),
    }),
    /** Cores dedicated-CPU VMs may get, each the logical CPUs (SMT siblings) of one physical core. */
    dedicatedCores: Type.Array(Type.Array(Type.Integer())),
    /** The platform's ratios behind capacity.*Allocatable: vCPUs per CPU, memory per MiB. */
    overcommit: Type.Object({ cpu: Type.Number(), memory: Type.Number() }),
    /** In maintenance: the scheduler places no new VM here; running VMs stay. */
    maintenance: Type.Boolean(),
    agentVersion: Type.String(),
    lastSeenAt: Timestamp,
    createdAt: Timestamp,
  },
  { $id: 'Host' },
);
export type Host = Static<typeof Host>;

export const HostUpdate = Type.Object({ maintenance: Type.Boolean() }, { additionalProperties: false });
export type HostUpdate = Static<typeof HostUpdate>;

/** What `POST /v1/hosts/{id}/evacuate` did: stopped VMs moved elsewhere, the others and why. */
export const HostEvacuation = Type.Object(
  {
    hostId: Id,
    moved: Type.Array(
      Type.Object({ vmId: Id, name: Type.String(), toHostId: Id, toHostname: Type.String() }),
    ),
    skipped: Type.Array(Type.Object({ vmId: Id, name: Type.String(), reason: Type.String() })),
  },
  { $id: 'HostEvacuation' },
);
export type HostEvacuation = Static<typeof HostEvacuation>;

/**
 * Virtual machines: the API shape, the create body, actions, and the state names. The state machine
 * itself lives in the server (compute/vm-state-machine.ts); these are only the words.
 */
import { Type, type Static } from 'typebox';
import { Id, Name, Ref, SSH_PUBLIC_KEY_PATTERN, Timestamp } from './common.js';
import { Accelerator } from './host.js';
import { TenantQuery } from './iam.js';

export const VM_STATES = [
  'pending',
  'starting',
  'running',
  'paused',
  'stopping',
  'stopped',
  'error',
  'deleting',
] as const;
export type VmState = (typeof VM_STATES)[number];
export const VmStateSchema = Type.Union([
  Type.Literal('pending'),
  Type.Literal('starting'),
  Type.Literal('running'),
  Type.Literal('paused'),
  Type.Literal('stopping'),
  Type.Literal('stopped'),
  Type.Literal('error'),
  Type.Literal('deleting'),
]);

export const RESTART_POLICIES = ['never', 'on-failure', 'always'] as const;
export type RestartPolicy = (typeof RESTART_POLICIES)[number];
export const RestartPolicySchema = Type.Union([
  Type.Literal('never'),
  Type.Literal('on-failure'),
  Type.Literal('always'),
]);

export const VM_ACTIONS = ['start', 'stop', 'reboot', 'pause', 'resume'] as const;
export type VmAction = (typeof VM_ACTIONS)[number];

export const Vm = Type.Object(
  {
    id: Id,
    tenantId: Id,
    name: Name,
    state: VmStateSchema,
    image: Type.Object({ id: Id, name: Name }),
    flavor: Type.Object({ id: Id, name: Name }),
    /** The volume it boots from (disk images: an encrypted copy-on-write overlay of the image). */
    rootVolume: Type.Union([Type.Object({ id: Id, name: Name }), Type.Null()]),
    /** Its VM generation id (vmgenid): new for every VM, and after its root disk is restored. */
    generationId: Type.Union([Type.String(), Type.Null()]),
    vcpus: Type.Integer(),
    memoryMiB: Type.Integer(),
    diskGiB: Type.Integer(),
    /** Runtime limits (from the flavor): CPU cap in % of one host CPU (null: vcpus x 100), weight, tasks. */
    cpuLimitPercent: Type.Union([Type.Integer(), Type.Null()]),
    cpuWeight: Type.Integer(),
    pidsMax: Type.Integer(),
    /** Rate limit of each network port per direction (Mbit/s); null: unshaped. */
    networkMbps: Type.Union([Type.Integer(), Type.Null()]),
    /** I/O limits of each of its disks (from the flavor); null: unlimited. */
    diskIops: Type.Union([Type.Integer(), Type.Null()]),
    diskMiBps: Type.Union([Type.Integer(), Type.Null()]),
    /** Host CPUs the VM has to itself (dedicated CPU policy); null: it runs on the shared pool. */
    pinnedCpus: Type.Union([Type.Array(Type.Integer()), Type.Null()]),
    restartPolicy: RestartPolicySchema,
    restartCount: Type.Integer(),
    hostId: Type.Union([Id, Type.Null()]),
    accelerator: Type.Union([Accelerator, Type.Null()]),
    pid: Type.Union([Type.Integer(), Type.Null()]),
    guestIps: Type.Array(Type.String()),
    lastHeartbeatAt: Type.Union([Timestamp, Type.Null()]),
    guestUptimeSeconds: Type.Union([Type.Number(), Type.Null()]),
    bootMs: Type.Union([Type.Integer(), Type.Null()]),
    error: Type.Union([Type.String(), Type.Null()]),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { $id: 'Vm' },
);
export type Vm = Static<typeof Vm>;

export const VmCreate = Type.Object(
  {
    name: Name,
    /**
     * The image (name or id). A kernel+initrd image is booted directly; a disk image (raw/qcow2) gets a
     * root volume of the flavor's disk size: an encrypted copy-on-write overlay of the image.
     */
    image: Type.Optional(Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]{0,62}$' })),
    /**
     * Boot from an existing volume of the tenant instead (made from a disk image: a clone of a root
     * disk's snapshot, a restored backup). The VM is placed on the volume's host. Not with `image`.
     */
    bootVolume: Type.Optional(Ref),
    /** OpenSSH public keys for root, written into the VM's NoCloud seed (disk images). */
    sshKeys: Type.Optional(
      Type.Array(Type.String({ pattern: SSH_PUBLIC_KEY_PATTERN, maxLength: 16_384 }), { maxItems: 16 }),
    ),
    flavor: Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }),
    restartPolicy: Type.Optional(RestartPolicySchema),
    start: Type.Optional(Type.Boolean({ default: true })),
    /** A placement group of the tenant (affinity: its members' host; anti-affinity: another host). */
    placementGroup: Type.Optional(
      Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }),
    ),
    /** A network of the tenant: the VM gets a port on it (an address from its subnet). */
    network: Type.Optional(
      Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }),
    ),
    /** The port's security groups (default: `default`, which allows all egress and no ingress). */
    securityGroups: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }), {
        maxItems: 16,
        uniqueItems: true,
      }),
    ),
  },
  { additionalProperties: false },
);
export type VmCreate = Static<typeof VmCreate>;

export const VmStopBody = Type.Object(
  {
    force: Type.Optional(Type.Boolean()),
    timeoutSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })),
  },
  { additionalProperties: false },
);
export type VmStopBody = Static<typeof VmStopBody>;

export const VmResizeBody = Type.Object(
  { flavor: Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }) },
  { additionalProperties: false },
);
export type VmResizeBody = Static<typeof VmResizeBody>;

export const ConsoleTail = Type.Object({
  vmId: Id,
  bytes: Type.Integer(),
  capBytes: Type.Integer(),
  data: Type.String(),
});
export type ConsoleTail = Static<typeof ConsoleTail>;

/** One resource sample of a running VM (agent telemetry, every RAMPART_TELEMETRY_SECONDS). */
export const VmSample = Type.Object(
  {
    vmId: Id,
    /** When the server received it. */
    at: Timestamp,
    hostId: Type.String(),
    /** Seconds the counters cover. */
    intervalSeconds: Type.Number(),
    /** CPU time over the interval as a share of the VM's vCPUs (0-100). */
    cpuPercent: Type.Number(),
    memoryBytes: Type.Union([Type.Integer(), Type.Null()]),
    /** Sent and received by the guest over the interval, all ports. */
    txPackets: Type.Integer(),
    txBytes: Type.Integer(),
    rxPackets: Type.Integer(),
    rxBytes: Type.Integer(),
    txPps: Type.Number(),
    txBps: Type.Number(),
    rxPps: Type.Number(),
    rxBps: Type.Number(),
    /** Read and written by the guest on all its disks over the interval. */
    diskReadBytes: Type.Integer(),
    diskWriteBytes: Type.Integer(),
    diskReadOps: Type.Integer(),
    diskWriteOps: Type.Integer(),
    diskReadBps: Type.Number(),
    diskWriteBps: Type.Number(),
  },
  { $id: 'VmSample' },
);
export type VmSample = Static<typeof VmSample>;

export const VmSamplesQuery = Type.Object(
  {
    tenant: TenantQuery.properties.tenant,
    /** Only samples received after this time. */
    after: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);
export type VmSamplesQuery = Static<typeof VmSamplesQuery>;

/** Query strings arrive as text: `bytes` is a decimal count from 1 to 1 MiB. */
export const CONSOLE_TAIL_MAX_BYTES = 1_048_576;
export const ConsoleQuery = Type.Object(
  {
    bytes: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,6}$' })),
    tenant: TenantQuery.properties.tenant,
  },
  { additionalProperties: false },
);

/** Flavors: named sizes for VMs (vCPUs, memory, disk). */
import { Type, type Static } from 'typebox';
import { Id, Name, Timestamp } from './common.js';

export const LIMITS = {
  vcpus: { minimum: 1, maximum: 64 },
  memoryMiB: { minimum: 64, maximum: 262_144 },
  diskGiB: { minimum: 0, maximum: 65_536 },
  /** CPU time the whole VM may use, in percent of one host CPU (cgroup CPU quota). */
  cpuLimitPercent: { minimum: 1, maximum: 6_400 },
  /** Relative CPU share under contention (cgroup v2 cpu.weight scale). */
  cpuWeight: { minimum: 1, maximum: 10_000 },
  /** Tasks (threads) the VM's QEMU may have. */
  pidsMax: { minimum: 16, maximum: 65_536 },
  /** Network rate limit of each of the VM's ports, per direction, in Mbit/s. */
  networkMbps: { minimum: 1, maximum: 100_000 },
  /** I/O operations per second of each of the VM's disks (reads and writes together). */
  diskIops: { minimum: 1, maximum: 1_000_000 },
  /** MiB per second of each of the VM's disks (reads and writes together). */
  diskMiBps: { minimum: 1, maximum: 102_400 },
} as const;

/**
 * `shared`: vCPUs float over the host's shared CPUs (overcommitted). `dedicated`: the VM gets whole
 * physical cores of its own (SMT siblings together), pinned, never shared with any other VM.
 */
export const CpuPolicy = Type.Union([Type.Literal('shared'), Type.Literal('dedicated')]);
export type CpuPolicy = Static<typeof CpuPolicy>;

export const DEFAULT_CPU_WEIGHT = 100;
export const DEFAULT_PIDS_MAX = 512;

export const Flavor = Type.Object(
  {
    id: Id,
    name: Name,
    vcpus: Type.Integer(LIMITS.vcpus),
    memoryMiB: Type.Integer(LIMITS.memoryMiB),
    diskGiB: Type.Integer(LIMITS.diskGiB),
    /** null: no cap beyond the vCPUs (vcpus x 100%). */
    cpuLimitPercent: Type.Union([Type.Integer(LIMITS.cpuLimitPercent), Type.Null()]),
    cpuWeight: Type.Integer(LIMITS.cpuWeight),
    pidsMax: Type.Integer(LIMITS.pidsMax),
    /** null: the VM's network is not rate limited. */
    networkMbps: Type.Union([Type.Integer(LIMITS.networkMbps), Type.Null()]),
    /** null: the VM's disks are not throttled. */
    diskIops: Type.Union([Type.Integer(LIMITS.diskIops), Type.Null()]),
    diskMiBps: Type.Union([Type.Integer(LIMITS.diskMiBps), Type.Null()]),
    cpuPolicy: CpuPolicy,
    createdAt: Timestamp,
  },
  { $id: 'Flavor' },
);
export type Flavor = Static<typeof Flavor>;

export const FlavorCreate = Type.Object(
  {
    name: Name,
    vcpus: Type.Integer(LIMITS.vcpus),
    memoryMiB: Type.Integer(LIMITS.memoryMiB),
    diskGiB: Type.Integer(LIMITS.diskGiB),
    cpuLimitPercent: Type.Optional(Type.Integer(LIMITS.cpuLimitPercent)),
    cpuWeight: Type.Optional(Type.Integer(LIMITS.cpuWeight)),
    pidsMax: Type.Optional(Type.Integer(LIMITS.pidsMax)),
    networkMbps: Type.Optional(Type.Integer(LIMITS.networkMbps)),
    diskIops: Type.Optional(Type.Integer(LIMITS.diskIops)),
    diskMiBps: Type.Optional(Type.Integer(LIMITS.diskMiBps)),
    cpuPolicy: Type.Optional(CpuPolicy),
  },
  { additionalProperties: false },
);
export type FlavorCreate = Static<typeof FlavorCreate>;

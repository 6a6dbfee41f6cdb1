/** Flavors: named sizes for VMs (vCPUs, memory, disk). */
import { Type, type Static } from 'typebox';
import { Id, Name, Timestamp } from './common.js';

export const LIMITS = {
  vcpus: { minimum: 1, maximum: 64 },
  memoryMiB: { minimum: 64, maximum: 262_144 },
  diskGiB: { minimum: 0, maximum: 65_536 },
} as const;

export const Flavor = Type.Object(
  {
    id: Id,
    name: Name,
    vcpus: Type.Integer(LIMITS.vcpus),
    memoryMiB: Type.Integer(LIMITS.memoryMiB),
    diskGiB: Type.Integer(LIMITS.diskGiB),
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
  },
  { additionalProperties: false },
);
export type FlavorCreate = Static<typeof FlavorCreate>;

/**
 * Volumes: block devices of a tenant that outlive the VMs they are attached to. Each is a QEMU LUKS
 * file on one host (created there when first attached), encrypted with a key of its own that is stored
 * only wrapped by the tenant's data key.
 */
import { Type, type Static } from 'typebox';
import { Id, Name, Ref, Timestamp } from './common.js';

export const VOLUME_SIZE = { minimum: 1, maximum: 16_384 } as const;

export const VolumeStatus = Type.Union([
  /** Not attached to a VM. */
  Type.Literal('available'),
  Type.Literal('attached'),
  /** Being erased on its host (zeros over every block, then removed). */
  Type.Literal('deleting'),
]);
export type VolumeStatus = Static<typeof VolumeStatus>;

export const Volume = Type.Object(
  {
    id: Id,
    name: Name,
    sizeGiB: Type.Integer(VOLUME_SIZE),
    status: VolumeStatus,
    /** The VM it is attached to (its disk order in the guest: /dev/vda for the first attached). */
    vm: Type.Union([Type.Object({ id: Id, name: Name }), Type.Null()]),
    /** The host holding its file (null until first attached: it lives where its first VM runs). */
    hostId: Type.Union([Id, Type.Null()]),
    encryption: Type.Literal('luks'),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { $id: 'Volume' },
);
export type Volume = Static<typeof Volume>;

export const VolumeCreate = Type.Object(
  { name: Name, sizeGiB: Type.Integer(VOLUME_SIZE) },
  { additionalProperties: false },
);
export type VolumeCreate = Static<typeof VolumeCreate>;

/** Grow a volume (never shrink). An attached volume's VM must be stopped. */
export const VolumeUpdate = Type.Object(
  { sizeGiB: Type.Integer(VOLUME_SIZE) },
  { additionalProperties: false },
);
export type VolumeUpdate = Static<typeof VolumeUpdate>;

export const VolumeAttach = Type.Object({ volume: Ref }, { additionalProperties: false });
export type VolumeAttach = Static<typeof VolumeAttach>;

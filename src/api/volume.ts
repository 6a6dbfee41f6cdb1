/**
 * Volumes: block devices of a tenant that outlive the VMs they are attached to. Each is a QEMU LUKS
 * file on one host (created there when first attached), encrypted with a key of its own that is stored
 * only wrapped by the tenant's data key.
 */
import { Type, type Static } from 'typebox';
import { Id, Name, Ref, Timestamp } from './common.js';

export const VOLUME_SIZE = { minimum: 1, maximum: 16_384 } as const;

export const VolumeStatus = Type.Union([
  /** Being cloned from a snapshot on its host. */
  Type.Literal('creating'),
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
    /** luks: a raw LUKS file; qcow2: qcow2 with LUKS encryption (root disks: an overlay of their image). */
    format: Type.Union([Type.Literal('luks'), Type.Literal('qcow2')]),
    /** The disk image it was made from: a VM can boot from it. null: created empty (data only). */
    image: Type.Union([Type.Object({ id: Id, name: Type.String() }), Type.Null()]),
    /** A VM's root disk made with the VM from its image: counted in the VM's diskGiB, erased with it. */
    rootDisk: Type.Boolean(),
    /** Lineage: the volume it was made from, through a snapshot (clone) or a backup (restore). */
    origin: Type.Union([
      Type.Object({
        volumeId: Id,
        snapshotId: Type.Union([Id, Type.Null()]),
        backupId: Type.Union([Id, Type.Null()]),
      }),
      Type.Null(),
    ]),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { $id: 'Volume' },
);
export type Volume = Static<typeof Volume>;

export const VolumeCreate = Type.Object(
  {
    name: Name,
    /** Optional for a clone (default: the snapshot's size; never smaller). */
    sizeGiB: Type.Optional(Type.Integer(VOLUME_SIZE)),
    /** Clone: the id of a snapshot (of any of the tenant's volumes) to copy, re-encrypted under a new key. */
    snapshot: Type.Optional(Id),
    /** Restore: the id of a backup (verified first), re-encrypted under a new key. */
    backup: Type.Optional(Id),
    /** Where a restored backup goes (platform admins only; default: the online host with fewest volumes). */
    host: Type.Optional(Id),
  },
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

export const VolumeSnapshot = Type.Object(
  {
    id: Id,
    name: Name,
    volume: Type.Object({ id: Id, name: Name }),
    sizeGiB: Type.Integer(VOLUME_SIZE),
    status: Type.Union([Type.Literal('available'), Type.Literal('deleting')]),
    hostId: Id,
    /** Who took it. */
    createdBy: Type.String(),
    createdAt: Timestamp,
  },
  { $id: 'VolumeSnapshot' },
);
export type VolumeSnapshot = Static<typeof VolumeSnapshot>;

export const VolumeSnapshotCreate = Type.Object({ name: Name }, { additionalProperties: false });
export type VolumeSnapshotCreate = Static<typeof VolumeSnapshotCreate>;

/** Put a snapshot's content back into its volume (its VM stopped; the volume's size unchanged since). */
export const VolumeRestore = Type.Object({ snapshot: Ref }, { additionalProperties: false });
export type VolumeRestore = Static<typeof VolumeRestore>;

export const VolumeBackup = Type.Object(
  {
    id: Id,
    name: Name,
    /** The volume it was taken from (it may be gone since). */
    volume: Type.Object({ id: Id, name: Name }),
    sizeGiB: Type.Integer(VOLUME_SIZE),
    status: Type.Union([Type.Literal('creating'), Type.Literal('available')]),
    bytes: Type.Union([Type.Integer(), Type.Null()]),
    /** SHA-256 of the backup file, covered by the platform's signature over the manifest. */
    sha256: Type.Union([Type.String(), Type.Null()]),
    createdBy: Type.String(),
    createdAt: Timestamp,
  },
  { $id: 'VolumeBackup' },
);
export type VolumeBackup = Static<typeof VolumeBackup>;

export const VolumeBackupCreate = Type.Object({ name: Name }, { additionalProperties: false });

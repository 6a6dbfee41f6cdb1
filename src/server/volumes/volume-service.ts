/**
 * Volumes of a tenant: create (quota-admitted, a fresh key wrapped by the tenant's data key), grow,
 * attach to and detach from a stopped VM, and delete with a secure erase on the host holding the file.
 *
 * A volume lives on one host: none until it is first attached, then the host of that VM (the agent
 * creates the LUKS file at the VM's next start). It can only be attached to VMs on that host. Deletion
 * answers at once (status `deleting`); the host overwrites the file with zeros and removes it, and only
 * then is the row deleted and the erase written to the audit log. A host that is away finishes the erase
 * when it reconnects.
 */
import type { BackingImage, VolumeIntent } from '../../api/agent-protocol.js';
import type { AgentChannel } from '../cluster/agent-forwarding.js';
import {
  ConflictError,
  ForbiddenError,
  HostUnavailableError,
  IllegalStateError,
  InvalidInputError,
  NotFoundError,
} from '../../api/errors.js';
import type { Volume, VolumeCreate } from '../../api/volume.js';
import { isUuid, newId } from '../../common/ids.js';
import type { Logger } from '../../common/logger.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { AgentDirectory } from '../compute/vm-service.js';
import type { TenantKeyring } from '../images/crypto/envelope-keys.js';
import type { QuotaService } from '../quota/quota-service.js';
import { nowIso, type Db } from '../store/database.js';
import type { VmsTable, VolumesTable } from '../store/schema.js';
import { newWrappedVolumeKey, volumePassphrase } from './volume-keys.js';

/** Volumes per VM (virtio-blk devices beside its other PCI devices). */
export const MAX_VOLUMES_PER_VM = 16;

export interface VolumeServiceDeps {
  db: Db;
  keyring: TenantKeyring;
  quotas: QuotaService;
  agents: AgentDirectory;
  audit: AuditLog;
  log: Logger;
  /** The plaintext file of a disk image on the hosts (materialized in the cache), for overlays. */
  imageBacking: (imageId: string) => Promise<BackingImage>;
}

export type JoinedVolume = VolumesTable & { vmName: string | null; imageName: string | null };

/** The name of a VM's root disk: `<vm>-root` (a DNS label: the VM name shortened when needed). */
export function rootDiskName(vmName: string): string {
  return `${vmName.slice(0, 58).replace(/-+$/, '')}-root`;
}

function toApi(row: JoinedVolume): Volume {
  return {
    id: row.id,
    name: row.name,
    sizeGiB: row.sizeGib,
    status: row.status,
    vm: row.vmId && row.vmName ? { id: row.vmId, name: row.vmName } : null,
    hostId: row.hostId,
    encryption: 'luks',
    format: row.format ?? 'luks',
    image: row.imageId ? { id: row.imageId, name: row.imageName ?? row.imageId } : null,
    rootDisk: row.vmRoot === 1,
    origin: row.sourceVolumeId
      ? {
          volumeId: row.sourceVolumeId,
          snapshotId: row.sourceSnapshotId ?? null,
          backupId: row.sourceBackupId ?? null,
        }
      : null,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

export class VolumeService {
  private readonly erasing = new Set<string>();

  constructor(private readonly deps: VolumeServiceDeps) {}

  async list(tenantId: string): Promise<Volume[]> {
    const rows = await this.select()
      .where('volumes.tenantId', '=', tenantId)
      .orderBy('volumes.name')
      .execute();
    return rows.map(toApi);
  }

  async get(ref: string, tenantId: string): Promise<Volume> {
    return toApi(await this.find(ref, tenantId));
  }

  async create(input: VolumeCreate, tenantId: string): Promise<Volume> {
    if (input.snapshot !== undefined) return this.clone(input, input.snapshot, tenantId);
    if (input.sizeGiB === undefined)
      throw new InvalidInputError('sizeGiB is required (or a snapshot to clone)');
    const { id } = await this.insertVolume(tenantId, input.name, input.sizeGiB, {
      status: 'available',
      hostId: null,
    });
    return this.get(id, tenantId);
  }

  /**
   * A new volume from a snapshot, on the snapshot's host, with a key of its own: the host decrypts the
   * snapshot with its volume's key and writes the clone under the new one. Lineage is recorded. A tenant
   * can forbid clones.
   */
  private async clone(input: VolumeCreate, snapshotId: string, tenantId: string): Promise<Volume> {
    const tenant = await this.deps.db
      .selectFrom('tenants')
      .select('allowClones')
      .where('id', '=', tenantId)
      .executeTakeFirstOrThrow();
    if (tenant.allowClones === 0)
      throw new ForbiddenError("the tenant's policy forbids clones (tenant set --clones on to allow them)");
    const snapshot = await this.deps.db
      .selectFrom('volumeSnapshots')
      .innerJoin('volumes', 'volumes.id', 'volumeSnapshots.volumeId')
      .select([
        'volumeSnapshots.id',
        'volumeSnapshots.sizeGib',
        'volumeSnapshots.hostId',
        'volumeSnapshots.status',
        'volumes.id as volumeId',
        'volumes.wrappedKey',
        'volumes.keyVersion',
        'volumes.format',
        'volumes.imageId',
        'volumes.imageBacked',
      ])
      .where('volumeSnapshots.id', '=', snapshotId)
      .where('volumeSnapshots.tenantId', '=', tenantId)
      .executeTakeFirst();
    if (!snapshot || snapshot.status !== 'available')
      throw new InvalidInputError(`snapshot ${JSON.stringify(snapshotId)} not found`);
    const sizeGiB = input.sizeGiB ?? snapshot.sizeGib;
    if (sizeGiB < snapshot.sizeGib)
      throw new InvalidInputError(`a clone is at least as large as its snapshot (${snapshot.sizeGib} GiB)`);
    return this.createFilled({
      tenantId,
      name: input.name,
      sizeGiB,
      hostId: snapshot.hostId,
      source: { ...snapshot, snapshotId: snapshot.id },
      // A clone of an overlay stays an overlay of the same image (only what differs is copied).
      file: {
        format: snapshot.format ?? 'luks',
        imageId: snapshot.imageId ?? null,
        imageBacked: snapshot.imageBacked ?? 0,
      },
      fill: (agent, sourceKey, volume) =>
        agent.request('volume.clone', { snapshotId: snapshot.id, sourceKey, volume }, 3_600_000),
    });
  }

  /**
   * A new volume filled on `hostId` from existing encrypted data (a snapshot's or a backup's), under a
   * key of its own: `fill` asks the host to decrypt with the source volume's key and write with the new
   * one. The row is `creating` meanwhile and removed again if the host fails.
   */
  async createFilled(spec: {
    tenantId: string;
    name: string;
    sizeGiB: number;
    hostId: string;
    source: {
      volumeId: string;
      wrappedKey: string;
      keyVersion: number;
      snapshotId?: string;
      backupId?: string;
    };
    /** The new volume's file: its format, the image it comes from, whether it overlays that image. */
    file: Pick<Required<VolumesTable>, 'format' | 'imageId' | 'imageBacked'>;
    fill: (agent: AgentChannel, sourceKey: string, volume: VolumeIntent) => Promise<unknown>;
  }): Promise<Volume> {
    const agent = this.deps.agents.connectionFor(spec.hostId);
    if (!agent) throw new HostUnavailableError(`host ${spec.hostId} is not connected`);
    const sourceDataKey = await this.deps.keyring.dataKey(spec.tenantId, spec.source.keyVersion);
    let sourceKey: string;
    try {
      sourceKey = volumePassphrase(spec.source.volumeId, spec.source.wrappedKey, sourceDataKey);
    } finally {
      sourceDataKey.key.fill(0);
    }
    const { id, key } = await this.insertVolume(spec.tenantId, spec.name, spec.sizeGiB, {
      status: 'creating',
      hostId: spec.hostId,
      sourceVolumeId: spec.source.volumeId,
      sourceSnapshotId: spec.source.snapshotId ?? null,
      sourceBackupId: spec.source.backupId ?? null,
      ...spec.file,
    });
    try {
      await spec.fill(agent, sourceKey, {
        id,
        sizeGiB: spec.sizeGiB,
        key,
        ...(await this.fileIntent(spec.file)),
      });
    } catch (error) {
      await this.deps.db.deleteFrom('volumes').where('id', '=', id).execute();
      throw error;
    }
    await this.deps.db
      .updateTable('volumes')
      .set({ status: 'available', updatedAt: nowIso() })
      .where('id', '=', id)
      .execute();
    return this.get(id, spec.tenantId);
  }

  /** Admits and inserts a volume row with a fresh wrapped key; answers its id and passphrase. */
  private async insertVolume(
    tenantId: string,
    name: string,
    sizeGiB: number,
    placement: Pick<
      VolumesTable,
      | 'status'
      | 'hostId'
      | 'sourceVolumeId'
      | 'sourceSnapshotId'
      | 'sourceBackupId'
      | 'format'
      | 'imageId'
      | 'imageBacked'
    >,
  ): Promise<{ id: string; key: string }> {
    const id = newId();
    const dataKey = await this.deps.keyring.dataKey(tenantId);
    let wrappedKey: string;
    let key: string;
    try {
      wrappedKey = newWrappedVolumeKey(id, dataKey);
      key = volumePassphrase(id, wrappedKey, dataKey);
    } finally {
      dataKey.key.fill(0);
    }
    const now = nowIso();
    await this.deps.db.transaction().execute(async (trx) => {
      await this.deps.quotas.admit(trx, tenantId, { volumes: 1, volumeGiB: sizeGiB });
      await this.assertNameFree(trx, tenantId, name);
      await trx
        .insertInto('volumes')
        .values({
          id,
          tenantId,
          name,
          sizeGib: sizeGiB,
          vmId: null,
          attachedAt: null,
          wrappedKey,
          keyVersion: dataKey.version,
          createdAt: now,
          updatedAt: now,
          ...placement,
        })
        .execute();
    });
    return { id, key };
  }

  private async assertNameFree(db: Db, tenantId: string, name: string): Promise<void> {
    const taken = await db
      .selectFrom('volumes')
      .select('id')
      .where('tenantId', '=', tenantId)
      .where('name', '=', name)
      .executeTakeFirst();
    if (taken) throw new ConflictError(`a volume named ${name} already exists`);
  }

  /** Grows a volume; its file grows at the next start of its VM. */
  async resize(ref: string, sizeGiB: number, tenantId: string): Promise<Volume> {
    await this.deps.db.transaction().execute(async (trx) => {
      const row = await this.find(ref, tenantId, trx);
      if (row.status === 'deleting' || row.status === 'creating')
        throw new IllegalStateError('resize', row.status);
      if (sizeGiB < row.sizeGib)
        throw new InvalidInputError(`a volume only grows (it has ${row.sizeGib} GiB; shrinking loses data)`);
      if (row.vmId) await this.requireStopped(trx, row.vmId, 'resized');
      await this.deps.quotas.admit(trx, tenantId, { volumeGiB: sizeGiB - row.sizeGib });
      await trx
        .updateTable('volumes')
        .set({ sizeGib: sizeGiB, updatedAt: nowIso() })
        .where('id', '=', row.id)
        .execute();
    });
    return this.get(ref, tenantId);
  }

  async attach(vm: VmsTable, volumeRef: string, tenantId: string): Promise<Volume> {
    let id = '';
    await this.deps.db.transaction().execute(async (trx) => {
      const row = await this.find(volumeRef, tenantId, trx).catch((error: unknown) => {
        if (error instanceof NotFoundError)
          throw new InvalidInputError(`volume ${JSON.stringify(volumeRef)} not found`);
        throw error;
      });
      id = row.id;
      const current = await this.requireStopped(trx, vm.id, 'attached');
      if (row.status !== 'available')
        throw new ConflictError(
          row.vmId
            ? `volume ${row.name} is attached to another VM; detach it first`
            : `volume ${row.name} is ${row.status}`,
        );
      if (row.hostId && row.hostId !== current.hostId)
        throw new ConflictError(
          `volume ${row.name} lives on another host than VM ${current.name}: volumes are local to their host`,
        );
      const attached = await trx
        .selectFrom('volumes')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('vmId', '=', vm.id)
        .executeTakeFirstOrThrow();
      if (Number(attached.n) >= MAX_VOLUMES_PER_VM)
        throw new ConflictError(`a VM has at most ${MAX_VOLUMES_PER_VM} volumes`);
      const now = nowIso();
      await trx
        .updateTable('volumes')
        .set({ status: 'attached', vmId: vm.id, hostId: current.hostId, attachedAt: now, updatedAt: now })
        .where('id', '=', row.id)
        .where('status', '=', 'available')
        .execute();
    });
    return this.get(id, tenantId);
  }

  async detach(vm: VmsTable, volumeRef: string, tenantId: string): Promise<Volume> {
    let id = '';
    await this.deps.db.transaction().execute(async (trx) => {
      const row = await this.find(volumeRef, tenantId, trx);
      id = row.id;
      if (row.vmId !== vm.id) throw new NotFoundError('volume attachment');
      if (vm.rootVolumeId === row.id)
        throw new ConflictError(
          `volume ${row.name} is the root disk of VM ${vm.name}: it cannot be detached`,
        );
      await this.requireStopped(trx, vm.id, 'detached');
      await trx
        .updateTable('volumes')
        .set({ status: 'available', vmId: null, attachedAt: null, updatedAt: nowIso() })
        .where('id', '=', row.id)
        .execute();
    });
    return this.get(id, tenantId);
  }

  /**
   * A deleted VM lets go of its volumes: they stay, available, on its host; except the root disk made
   * with it from its image, which is erased like a deleted volume.
   */
  async releaseVm(vmId: string): Promise<void> {
    const now = nowIso();
    const roots = await this.deps.db
      .updateTable('volumes')
      .set({ status: 'deleting', vmId: null, attachedAt: null, updatedAt: now })
      .where('vmId', '=', vmId)
      .where('vmRoot', '=', 1)
      .returning('id')
      .execute();
    await this.deps.db
      .updateTable('volumes')
      .set({ status: 'available', vmId: null, attachedAt: null, updatedAt: now })
      .where('vmId', '=', vmId)
      .execute();
    for (const root of roots) void this.finishDelete(root.id);
  }

  /**
   * A new root disk for a VM being created from a disk image: its key (wrapped) made now, outside the
   * create transaction; the row is written by insertRootDisk inside it.
   */
  async newRootDisk(tenantId: string): Promise<{ id: string; wrappedKey: string; keyVersion: number }> {
    const id = newId();
    const dataKey = await this.deps.keyring.dataKey(tenantId);
    try {
      return { id, wrappedKey: newWrappedVolumeKey(id, dataKey), keyVersion: dataKey.version };
    } finally {
      dataKey.key.fill(0);
    }
  }

  /**
   * Writes the root disk row (in the VM's create transaction): attached to the VM on its host, a qcow2
   * overlay of the image (created by the host at the first start), counted in the VM's diskGiB.
   */
  async insertRootDisk(
    trx: Db,
    disk: { id: string; wrappedKey: string; keyVersion: number },
    vm: { id: string; tenantId: string; name: string; hostId: string; imageId: string; sizeGiB: number },
  ): Promise<void> {
    const name = rootDiskName(vm.name);
    await this.assertNameFree(trx, vm.tenantId, name);
    const now = nowIso();
    await trx
      .insertInto('volumes')
      .values({
        id: disk.id,
        tenantId: vm.tenantId,
        name,
        sizeGib: vm.sizeGiB,
        status: 'attached',
        hostId: vm.hostId,
        vmId: vm.id,
        attachedAt: now,
        wrappedKey: disk.wrappedKey,
        keyVersion: disk.keyVersion,
        format: 'qcow2',
        imageId: vm.imageId,
        imageBacked: 1,
        vmRoot: 1,
        createdAt: now,
        updatedAt: now,
      })
      .execute();
  }

  /**
   * A volume a new VM boots from (`bootVolume`): the tenant's, available, made from a disk image. Its
   * host (if it has a file already) is where the VM must go.
   */
  async bootable(ref: string, tenantId: string): Promise<JoinedVolume> {
    const row = await this.find(ref, tenantId).catch((error: unknown) => {
      if (error instanceof NotFoundError)
        throw new InvalidInputError(`volume ${JSON.stringify(ref)} not found`);
      throw error;
    });
    if (!row.imageId)
      throw new InvalidInputError(
        `volume ${row.name} was created empty: only a volume made from a disk image boots`,
      );
    if (row.status !== 'available')
      throw new ConflictError(
        row.vmId
          ? `volume ${row.name} is attached to VM ${row.vmName ?? row.vmId}`
          : `volume ${row.name} is ${row.status}`,
      );
    return row;
  }

  /** Attaches the boot volume to the VM being created (in its transaction); refused if it was taken. */
  async attachBoot(trx: Db, volumeId: string, vm: { id: string; hostId: string }): Promise<void> {
    const now = nowIso();
    const result = await trx
      .updateTable('volumes')
      .set({ status: 'attached', vmId: vm.id, hostId: vm.hostId, attachedAt: now, updatedAt: now })
      .where('id', '=', volumeId)
      .where('status', '=', 'available')
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1)
      throw new ConflictError('the boot volume was taken concurrently');
  }

  /** How a host opens a volume's file beyond its key: its format, and the image below an overlay. */
  async fileIntent(
    file: Pick<VolumesTable, 'format' | 'imageId' | 'imageBacked'>,
  ): Promise<Pick<VolumeIntent, 'format' | 'backing'>> {
    if ((file.format ?? 'luks') === 'luks') return {};
    if (file.imageBacked !== 1 || !file.imageId) return { format: 'qcow2' };
    return { format: 'qcow2', backing: await this.deps.imageBacking(file.imageId) };
  }

  /** The volume's passphrase (for host operations that decrypt it: a qcow2 backup is flattened). */
  async passphrase(
    row: Pick<VolumesTable, 'id' | 'tenantId' | 'wrappedKey' | 'keyVersion'>,
  ): Promise<string> {
    const dataKey = await this.deps.keyring.dataKey(row.tenantId, row.keyVersion);
    try {
      return volumePassphrase(row.id, row.wrappedKey, dataKey);
    } finally {
      dataKey.key.fill(0);
    }
  }

  /** Whether a VM has volumes (they pin it to its host). */
  async hasVolumes(vmId: string): Promise<boolean> {
    const row = await this.deps.db
      .selectFrom('volumes')
      .select('id')
      .where('vmId', '=', vmId)
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Starts the delete: `deleting` now, the erase on the host in the background. */
  async delete(ref: string, tenantId: string): Promise<Volume> {
    const row = await this.find(ref, tenantId);
    if (row.status === 'attached')
      throw new ConflictError(`volume ${row.name} is attached to a VM; detach it first`);
    if (row.status === 'creating') throw new IllegalStateError('delete', 'creating');
    const snapshot = await this.deps.db
      .selectFrom('volumeSnapshots')
      .select('name')
      .where('volumeId', '=', row.id)
      .executeTakeFirst();
    if (snapshot)
      throw new ConflictError(`volume ${row.name} has snapshots (${snapshot.name}); delete them first`);
    if (row.status !== 'deleting') {
      const result = await this.deps.db
        .updateTable('volumes')
        .set({ status: 'deleting', updatedAt: nowIso() })
        .where('id', '=', row.id)
        .where('status', '=', 'available')
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) !== 1)
        throw new ConflictError('the volume changed concurrently; try again');
    }
    const deleting = await this.get(row.id, tenantId);
    void this.finishDelete(row.id);
    return deleting;
  }

  /** Finishes every pending delete whose host is reachable (at start and when a host reconnects). */
  async resumeDeletes(hostId?: string): Promise<void> {
    let query = this.deps.db.selectFrom('volumes').select('id').where('status', '=', 'deleting');
    if (hostId !== undefined) query = query.where('hostId', '=', hostId);
    for (const row of await query.execute()) await this.finishDelete(row.id);
  }

  /**
   * The volumes of a VM for its intent, each with its passphrase: the root disk first (the firmware
   * boots it), then the others in attachment order.
   */
  async intentsFor(vm: VmsTable): Promise<VolumeIntent[]> {
    const rows = await this.deps.db
      .selectFrom('volumes')
      .selectAll()
      .where('vmId', '=', vm.id)
      .orderBy('attachedAt')
      .orderBy('id')
      .execute();
    rows.sort((a, b) => Number(b.id === vm.rootVolumeId) - Number(a.id === vm.rootVolumeId));
    const intents: VolumeIntent[] = [];
    for (const row of rows) {
      intents.push({
        id: row.id,
        sizeGiB: row.sizeGib,
        key: await this.passphrase(row),
        ...(await this.fileIntent(row)),
        ...(row.id === vm.rootVolumeId ? { boot: true } : {}),
      });
    }
    return intents;
  }

  private async finishDelete(id: string): Promise<void> {
    if (this.erasing.has(id)) return;
    this.erasing.add(id);
    try {
      const row = await this.deps.db
        .selectFrom('volumes')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirst();
      if (!row || row.status !== 'deleting') return;
      let detail = 'never attached: no file was created';
      if (row.hostId) {
        const agent = this.deps.agents.connectionFor(row.hostId);
        if (!agent) {
          this.deps.log.warn({ volumeId: id, hostId: row.hostId }, 'volume host away; erase when it returns');
          return;
        }
        const erased = await agent.request('volume.erase', { volumeId: id }, 3_600_000);
        detail = erased.existed
          ? `${erased.bytes} bytes overwritten with zeros, then removed on host ${row.hostId}`
          : `no file on host ${row.hostId} (never started)`;
      }
      await this.deps.db
        .deleteFrom('volumes')
        .where('id', '=', id)
        .where('status', '=', 'deleting')
        .execute();
      await this.deps.audit.append({
        actorId: null,
        actor: 'system:agent',
        tenantId: row.tenantId,
        action: 'volume:erase',
        target: id,
        outcome: 'success',
        status: 0,
        source: row.hostId ?? 'server',
        requestId: newId(),
        detail: `${row.name}: ${detail}`,
      });
      this.deps.log.info({ volumeId: id }, 'volume erased and deleted');
    } catch (error) {
      this.deps.log.error(
        { volumeId: id, err: (error as Error).message },
        'volume erase failed; retried later',
      );
    } finally {
      this.erasing.delete(id);
    }
  }

  /**
   * The volume with its data settled for a whole-file operation (snapshot, restore): it has a file on a
   * host and no running VM writes to it.
   */
  async quietRow(ref: string, tenantId: string, what: string, db: Db = this.deps.db): Promise<JoinedVolume> {
    const row = await this.find(ref, tenantId, db);
    if (row.status !== 'available' && row.status !== 'attached')
      throw new IllegalStateError(what, row.status);
    if (row.vmId) await this.requireStopped(db, row.vmId, what === 'snapshot' ? 'snapshotted' : 'restored');
    return row;
  }

  private async requireStopped(db: Db, vmId: string, what: string): Promise<VmsTable> {
    const vm = await db.selectFrom('vms').selectAll().where('id', '=', vmId).executeTakeFirstOrThrow();
    if (vm.state !== 'stopped')
      throw new ConflictError(
        `VM ${vm.name} is ${vm.state}: a volume is ${what} while its VM is stopped (hot-plug is not supported yet)`,
      );
    return vm;
  }

  private select(db: Db = this.deps.db) {
    return db
      .selectFrom('volumes')
      .leftJoin('vms', 'vms.id', 'volumes.vmId')
      .leftJoin('images', 'images.id', 'volumes.imageId')
      .selectAll('volumes')
      .select(['vms.name as vmName', 'images.name as imageName']);
  }

  private async find(ref: string, tenantId: string, db: Db = this.deps.db): Promise<JoinedVolume> {
    const row = await this.select(db)
      .where('volumes.tenantId', '=', tenantId)
      .where(isUuid(ref) ? 'volumes.id' : 'volumes.name', '=', ref)
      .executeTakeFirst();
    if (!row) throw new NotFoundError('volume');
    return row;
  }
}

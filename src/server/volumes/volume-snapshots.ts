/**
 * Snapshots of volumes: a point-in-time copy of the volume's encrypted file on its host (still under
 * the volume's key), taken while no running VM writes to it; restored in place (the volume's VM
 * stopped, its size unchanged since); cloned into new volumes with keys of their own (volume-service);
 * deleted with the same secure erase as volumes, audited as snapshot:erase. They count in the tenant's
 * `snapshots` quota, and record who took them.
 */
import { ConflictError, HostUnavailableError, NotFoundError } from '../../api/errors.js';
import type { VolumeSnapshot } from '../../api/volume.js';
import { isUuid, newId } from '../../common/ids.js';
import { nowIso, type Db } from '../store/database.js';
import type { VolumeSnapshotsTable } from '../store/schema.js';
import type { VolumeService, VolumeServiceDeps } from './volume-service.js';

type JoinedSnapshot = VolumeSnapshotsTable & { volumeName: string };

function toApi(row: JoinedSnapshot): VolumeSnapshot {
  return {
    id: row.id,
    name: row.name,
    volume: { id: row.volumeId, name: row.volumeName },
    sizeGiB: row.sizeGib,
    status: row.status,
    hostId: row.hostId,
    createdBy: row.createdBy,
    createdAt: row.createdAt,
  };
}

export class VolumeSnapshotService {
  private readonly erasing = new Set<string>();

  constructor(
    private readonly deps: VolumeServiceDeps,
    private readonly volumes: VolumeService,
  ) {}

  async list(volumeRef: string, tenantId: string): Promise<VolumeSnapshot[]> {
    const volume = await this.volumes.get(volumeRef, tenantId);
    const rows = await this.select()
      .where('volumeSnapshots.volumeId', '=', volume.id)
      .orderBy('volumeSnapshots.createdAt')
      .execute();
    return rows.map(toApi);
  }

  async get(volumeRef: string, ref: string, tenantId: string): Promise<VolumeSnapshot> {
    return toApi(await this.find(volumeRef, ref, tenantId));
  }

  /** Copies the volume's file on its host; answers once the copy is complete. */
  async create(volumeRef: string, name: string, tenantId: string, actor: string): Promise<VolumeSnapshot> {
    const id = newId();
    let hostId = '';
    let volumeId = '';
    await this.deps.db.transaction().execute(async (trx) => {
      const volume = await this.volumes.quietRow(volumeRef, tenantId, 'snapshot', trx);
      if (!volume.hostId)
        throw new ConflictError(
          `volume ${volume.name} has never been attached: it holds no data to snapshot`,
        );
      await this.deps.quotas.admit(trx, tenantId, { snapshots: 1 });
      const taken = await trx
        .selectFrom('volumeSnapshots')
        .select('id')
        .where('volumeId', '=', volume.id)
        .where('name', '=', name)
        .executeTakeFirst();
      if (taken) throw new ConflictError(`volume ${volume.name} already has a snapshot named ${name}`);
      hostId = volume.hostId;
      volumeId = volume.id;
      await trx
        .insertInto('volumeSnapshots')
        .values({
          id,
          tenantId,
          volumeId: volume.id,
          name,
          sizeGib: volume.sizeGib,
          hostId: volume.hostId,
          status: 'available',
          createdBy: actor,
          createdAt: nowIso(),
        })
        .execute();
    });
    try {
      await this.agentFor(hostId).request('volume.snapshot', { volumeId, snapshotId: id }, 3_600_000);
    } catch (error) {
      await this.deps.db.deleteFrom('volumeSnapshots').where('id', '=', id).execute();
      throw error;
    }
    return this.get(volumeId, id, tenantId);
  }

  /** Puts the snapshot's content back into its volume (same key; same size as when it was taken). */
  async restore(volumeRef: string, snapshotRef: string, tenantId: string): Promise<VolumeSnapshot> {
    const snapshot = await this.find(volumeRef, snapshotRef, tenantId);
    const volume = await this.volumes.quietRow(snapshot.volumeId, tenantId, 'restore');
    if (snapshot.status !== 'available')
      throw new ConflictError(`snapshot ${snapshot.name} is being deleted`);
    if (volume.sizeGib !== snapshot.sizeGib)
      throw new ConflictError(
        `volume ${volume.name} was resized since snapshot ${snapshot.name} (${snapshot.sizeGib} GiB then, ${volume.sizeGib} GiB now)`,
      );
    await this.agentFor(snapshot.hostId).request(
      'volume.restore',
      { volumeId: volume.id, snapshotId: snapshot.id },
      3_600_000,
    );
    // A VM whose root disk went back in time is told so: a new generation id (vmgenid) at its next boot.
    await this.deps.db
      .updateTable('vms')
      .set({ generationId: newId(), updatedAt: nowIso() })
      .where('rootVolumeId', '=', volume.id)
      .execute();
    return toApi(snapshot);
  }

  async delete(volumeRef: string, ref: string, tenantId: string): Promise<VolumeSnapshot> {
    const snapshot = await this.find(volumeRef, ref, tenantId);
    if (snapshot.status === 'available')
      await this.deps.db
        .updateTable('volumeSnapshots')
        .set({ status: 'deleting' })
        .where('id', '=', snapshot.id)
        .execute();
    const deleting = await this.get(volumeRef, snapshot.id, tenantId);
    void this.finishDelete(snapshot.id);
    return deleting;
  }

  /** Finishes pending deletes whose host is reachable (when a host reconnects). */
  async resumeDeletes(hostId: string): Promise<void> {
    const rows = await this.deps.db
      .selectFrom('volumeSnapshots')
      .select('id')
      .where('status', '=', 'deleting')
      .where('hostId', '=', hostId)
      .execute();
    for (const row of rows) await this.finishDelete(row.id);
  }

  private async finishDelete(id: string): Promise<void> {
    if (this.erasing.has(id)) return;
    this.erasing.add(id);
    try {
      const row = await this.deps.db
        .selectFrom('volumeSnapshots')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirst();
      if (!row || row.status !== 'deleting') return;
      const agent = this.deps.agents.connectionFor(row.hostId);
      if (!agent) {
        this.deps.log.warn(
          { snapshotId: id, hostId: row.hostId },
          'snapshot host away; erase when it returns',
        );
        return;
      }
      const erased = await agent.request('snapshot.erase', { snapshotId: id }, 3_600_000);
      await this.deps.db.deleteFrom('volumeSnapshots').where('id', '=', id).execute();
      await this.deps.audit.append({
        actorId: null,
        actor: 'system:agent',
        tenantId: row.tenantId,
        action: 'snapshot:erase',
        target: id,
        outcome: 'success',
        status: 0,
        source: row.hostId,
        requestId: newId(),
        detail: `${row.name}: ${
          erased.existed
            ? `${erased.bytes} bytes overwritten with zeros, then removed on host ${row.hostId}`
            : `no file on host ${row.hostId}`
        }`,
      });
    } catch (error) {
      this.deps.log.error(
        { snapshotId: id, err: (error as Error).message },
        'snapshot erase failed; retried later',
      );
    } finally {
      this.erasing.delete(id);
    }
  }

  private agentFor(hostId: string) {
    const agent = this.deps.agents.connectionFor(hostId);
    if (!agent) throw new HostUnavailableError("the volume's host is not connected");
    return agent;
  }

  private select(db: Db = this.deps.db) {
    return db
      .selectFrom('volumeSnapshots')
      .innerJoin('volumes', 'volumes.id', 'volumeSnapshots.volumeId')
      .selectAll('volumeSnapshots')
      .select('volumes.name as volumeName');
  }

  private async find(volumeRef: string, ref: string, tenantId: string): Promise<JoinedSnapshot> {
    const volume = await this.volumes.get(volumeRef, tenantId);
    const row = await this.select()
      .where('volumeSnapshots.volumeId', '=', volume.id)
      .where(isUuid(ref) ? 'volumeSnapshots.id' : 'volumeSnapshots.name', '=', ref)
      .executeTakeFirst();
    if (!row) throw new NotFoundError('snapshot');
    return row;
  }
}

/**
 * Backups of volumes: the volume's encrypted LUKS file copied into the server's backup store
 * (`<data>/backups/<id>.luks`, root 0600, in a root-only directory) with a manifest — backup and tenant
 * ids, source volume, size, byte length and SHA-256 of the file — signed by the platform key (DSSE).
 * The data never leaves its encryption: the backup is ciphertext under the volume's key, and that key
 * is kept only wrapped by the tenant's data key.
 *
 * A restore (a new volume, on any host) first verifies the signature and then the file's length and
 * digest against the manifest: a flipped byte or an altered manifest is refused (422) before any host
 * reads it. The host then re-encrypts it under the new volume's own key. Deleting a backup erases its
 * file in place (zeros) before removing it.
 */
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, mkdirSync, chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  ConflictError,
  ForbiddenError,
  HostUnavailableError,
  InvalidInputError,
  NoCapacityError,
  NotFoundError,
  RampartError,
} from '../../api/errors.js';
import type { Volume, VolumeBackup, VolumeCreate } from '../../api/volume.js';
import { verifyDsse } from '../../common/dsse.js';
import { isUuid, newId } from '../../common/ids.js';
import { eraseFileInPlace } from '../../common/secure-erase.js';
import type { PlatformSigner } from '../images/platform-signer.js';
import { nowIso, type Db } from '../store/database.js';
import type { VolumeBackupsTable } from '../store/schema.js';
import type { JoinedVolume, VolumeService, VolumeServiceDeps } from './volume-service.js';

export const BACKUP_PAYLOAD_TYPE = 'application/vnd.rampart.volume-backup+json';

interface BackupManifest {
  backupId: string;
  tenantId: string;
  volumeId: string;
  volumeName: string;
  sizeGiB: number;
  bytes: number;
  sha256: string;
  createdAt: string;
}

export class BackupIntegrityError extends RampartError {
  constructor(message: string) {
    super('RAMPART_BACKUP_INTEGRITY', message);
    this.name = 'BackupIntegrityError';
  }
}

function toApi(row: VolumeBackupsTable): VolumeBackup {
  return {
    id: row.id,
    name: row.name,
    volume: { id: row.volumeId, name: row.volumeName },
    sizeGiB: row.sizeGib,
    status: row.status,
    bytes: row.bytes,
    sha256: row.sha256,
    createdBy: row.createdBy,
    createdAt: row.createdAt,
  };
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export class VolumeBackupService {
  readonly dir: string;

  constructor(
    private readonly deps: VolumeServiceDeps & { signer: PlatformSigner; dataDir: string },
    private readonly volumes: VolumeService,
  ) {
    this.dir = join(deps.dataDir, 'backups');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    chmodSync(this.dir, 0o700);
  }

  path(id: string): string {
    if (!isUuid(id)) throw new InvalidInputError('bad backup id');
    return join(this.dir, `${id}.luks`);
  }

  async list(tenantId: string): Promise<VolumeBackup[]> {
    const rows = await this.deps.db
      .selectFrom('volumeBackups')
      .selectAll()
      .where('tenantId', '=', tenantId)
      .orderBy('createdAt')
      .execute();
    return rows.map(toApi);
  }

  async get(ref: string, tenantId: string): Promise<VolumeBackup> {
    return toApi(await this.find(ref, tenantId));
  }

  /** Copies the (stopped) volume's file into the backup store and signs its manifest. */
  async create(volumeRef: string, name: string, tenantId: string, actor: string): Promise<VolumeBackup> {
    const id = newId();
    let hostId = '';
    let manifestBase: Omit<BackupManifest, 'bytes' | 'sha256'> | null = null;
    let source: JoinedVolume | null = null;
    await this.deps.db.transaction().execute(async (trx) => {
      const volume = await this.volumes.quietRow(volumeRef, tenantId, 'back up', trx);
      if (!volume.hostId)
        throw new ConflictError(`volume ${volume.name} has never been attached: it holds no data to back up`);
      await this.deps.quotas.admit(trx, tenantId, { backups: 1 });
      const taken = await trx
        .selectFrom('volumeBackups')
        .select('id')
        .where('tenantId', '=', tenantId)
        .where('name', '=', name)
        .executeTakeFirst();
      if (taken) throw new ConflictError(`a backup named ${name} already exists`);
      hostId = volume.hostId;
      const createdAt = nowIso();
      manifestBase = {
        backupId: id,
        tenantId,
        volumeId: volume.id,
        volumeName: volume.name,
        sizeGiB: volume.sizeGib,
        createdAt,
      };
      await trx
        .insertInto('volumeBackups')
        .values({
          id,
          tenantId,
          name,
          volumeId: volume.id,
          volumeName: volume.name,
          sizeGib: volume.sizeGib,
          status: 'creating',
          bytes: null,
          sha256: null,
          manifest: null,
          wrappedKey: volume.wrappedKey,
          keyVersion: volume.keyVersion,
          createdBy: actor,
          createdAt,
          imageId: volume.imageId ?? null,
          format: volume.format ?? 'luks',
        })
        .execute();
      source = volume;
    });
    const path = this.path(id);
    try {
      const agent = this.deps.agents.connectionFor(hostId);
      if (!agent) throw new HostUnavailableError("the volume's host is not connected");
      // A qcow2 volume is flattened under its own key (the host needs the key and the image for that).
      const file = await this.volumes.fileIntent(source!);
      const access =
        file.format === 'qcow2'
          ? {
              key: await this.volumes.passphrase(source!),
              ...(file.backing ? { backing: file.backing } : {}),
            }
          : {};
      await agent.request('volume.export', { volumeId: manifestBase!.volumeId, path, ...access }, 3_600_000);
      chmodSync(path, 0o600);
      const manifest: BackupManifest = {
        ...manifestBase!,
        bytes: lstatSync(path).size,
        sha256: await sha256Of(path),
      };
      const envelope = this.deps.signer.sign(BACKUP_PAYLOAD_TYPE, Buffer.from(JSON.stringify(manifest)));
      await this.deps.db
        .updateTable('volumeBackups')
        .set({ status: 'available', bytes: manifest.bytes, sha256: manifest.sha256, manifest: envelope })
        .where('id', '=', id)
        .execute();
    } catch (error) {
      rmSync(path, { force: true });
      await this.deps.db.deleteFrom('volumeBackups').where('id', '=', id).execute();
      throw error;
    }
    return this.get(id, tenantId);
  }

  /**
   * A new volume from a backup, after the backup verifies: on `hostId` (platform admins choose) or the
   * online host holding the fewest volumes. Re-encrypted under the new volume's own key.
   */
  async restore(
    input: VolumeCreate,
    backupId: string,
    tenantId: string,
    mayChooseHost: boolean,
  ): Promise<Volume> {
    if (input.host !== undefined && !mayChooseHost)
      throw new ForbiddenError('only a platform admin chooses the host of a restored volume');
    const backup = await this.find(backupId, tenantId).catch((error: unknown) => {
      if (error instanceof NotFoundError)
        throw new InvalidInputError(`backup ${JSON.stringify(backupId)} not found`);
      throw error;
    });
    const path = await this.verify(backup);
    const sizeGiB = input.sizeGiB ?? backup.sizeGib;
    if (sizeGiB < backup.sizeGib)
      throw new InvalidInputError(
        `a restored volume is at least as large as its backup (${backup.sizeGib} GiB)`,
      );
    return this.volumes.createFilled({
      tenantId,
      name: input.name,
      sizeGiB,
      hostId: input.host ?? (await this.leastUsedHost()),
      source: { ...backup, backupId: backup.id },
      // A backup is standalone (an overlay is flattened when backed up): no base image below it.
      file: { format: backup.format ?? 'luks', imageId: backup.imageId ?? null, imageBacked: 0 },
      fill: (agent, sourceKey, volume) =>
        agent.request('volume.import', { path, sourceKey, volume }, 3_600_000),
    });
  }

  /** Erases the backup's file (zeros in place), then forgets it. */
  async delete(ref: string, tenantId: string): Promise<{ backup: VolumeBackup; bytes: number }> {
    const row = await this.find(ref, tenantId);
    if (row.status !== 'available') throw new ConflictError(`backup ${row.name} is still being made`);
    const erased = await eraseFileInPlace(this.path(row.id), `backup ${row.id}`);
    await this.deps.db.deleteFrom('volumeBackups').where('id', '=', row.id).execute();
    return { backup: toApi(row), bytes: erased.bytes };
  }

  /** The signature over the manifest, then the file against it; the verified file's path. */
  private async verify(row: VolumeBackupsTable): Promise<string> {
    if (row.status !== 'available' || !row.manifest)
      throw new ConflictError(`backup ${row.name} is still being made`);
    const checked = verifyDsse(row.manifest, BACKUP_PAYLOAD_TYPE, [this.deps.signer.trustedKey()]);
    if (!checked.ok)
      throw new BackupIntegrityError(`backup ${row.name}: manifest signature: ${checked.reason}`);
    const manifest = JSON.parse(Buffer.from(checked.payload).toString('utf8')) as BackupManifest;
    if (
      manifest.backupId !== row.id ||
      manifest.tenantId !== row.tenantId ||
      manifest.volumeId !== row.volumeId
    )
      throw new BackupIntegrityError(`backup ${row.name}: the signed manifest belongs to another backup`);
    const path = this.path(row.id);
    const stat = lstatSync(path, { throwIfNoEntry: false });
    if (!stat?.isFile()) throw new BackupIntegrityError(`backup ${row.name}: its file is missing`);
    if (stat.size !== manifest.bytes)
      throw new BackupIntegrityError(
        `backup ${row.name}: ${stat.size} bytes, the manifest says ${manifest.bytes}`,
      );
    if ((await sha256Of(path)) !== manifest.sha256)
      throw new BackupIntegrityError(
        `backup ${row.name}: its content does not match the signed digest (tampered)`,
      );
    return path;
  }

  private async leastUsedHost(): Promise<string> {
    const hosts = await this.deps.db
      .selectFrom('hosts')
      .leftJoin('volumes', 'volumes.hostId', 'hosts.id')
      .select((eb) => ['hosts.id', eb.fn.count<number>('volumes.id').as('n')])
      .where('hosts.state', '=', 'online')
      .where('hosts.maintenance', '=', 0)
      .groupBy('hosts.id')
      .orderBy('n')
      .orderBy('hosts.id')
      .execute();
    const host = hosts[0];
    if (!host) throw new NoCapacityError('no online host can take the restored volume');
    return host.id;
  }

  private async find(ref: string, tenantId: string, db: Db = this.deps.db): Promise<VolumeBackupsTable> {
    const row = await db
      .selectFrom('volumeBackups')
      .selectAll()
      .where('tenantId', '=', tenantId)
      .where(isUuid(ref) ? 'id' : 'name', '=', ref)
      .executeTakeFirst();
    if (!row) throw new NotFoundError('backup');
    return row;
  }
}

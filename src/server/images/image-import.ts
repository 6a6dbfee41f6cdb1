/**
 * The import pipeline of images: create (status `queued`) -> one upload per file (kernel + initrd for a
 * bundle, `disk` for raw/qcow2) -> per file: stream into staging while hashing (size limit) -> disk
 * images checked with qemu-img (declared format, no backing or data file) -> scanned with ClamAV ->
 * compressed and encrypted into the store -> staging removed. When every file is in, the image gets its
 * identity (the disk's SHA-256, or the bundle digest) and becomes `active`; the platform's own images
 * are signed with the platform key.
 *
 * A scan hit quarantines the image at once (it stays visible with the verdict, cannot boot, cannot be
 * downloaded) and raises a security event. A scan that could not run fails closed: the import ends in
 * `error` (a re-scan that comes back clean makes it `active`). Re-scans run on demand and whenever the
 * scanner's databases changed since an image was last scanned.
 */
import type { Readable } from 'node:stream';
import { rm } from 'node:fs/promises';
import { sql } from 'kysely';
import { ConflictError, ImageUnavailableError, InvalidInputError, NotFoundError } from '../../api/errors.js';
import { bundleDigest } from '../../common/image-digest.js';
import { newId } from '../../common/ids.js';
import { KeyedMutex } from '../../common/keyed-mutex.js';
import type { Logger } from '../../common/logger.js';
import type { QuotaService } from '../quota/quota-service.js';
import { isUniqueError, nowIso, type Db } from '../store/database.js';
import type { ImageStatus, ImagesTable } from '../store/schema.js';
import { DiskImageRejected, type DiskFormat, type DiskInspection } from './disk-inspection.js';
import { keyDomainOf, type ImageStore, type StagedFile } from './image-store.js';
import type { ScanResult } from './scanner.js';

export type ImageFormat = ImagesTable['format'];
export type ImagePart = 'kernel' | 'initrd' | 'disk';
const GIB = 1024 ** 3;

export function partsOf(format: ImageFormat): ImagePart[] {
  return format === 'kernel-initrd' ? ['kernel', 'initrd'] : ['disk'];
}

/** The SHA-256 of one file of an image, or null when it has not been uploaded. */
export function partSha(image: ImagesTable, part: ImagePart): string | null {
  const value =
    part === 'kernel' ? image.kernelSha256 : part === 'initrd' ? image.initrdSha256 : image.diskSha256;
  return value ? value : null;
}

function partColumn(part: ImagePart): 'kernelSha256' | 'initrdSha256' | 'diskSha256' {
  return part === 'kernel' ? 'kernelSha256' : part === 'initrd' ? 'initrdSha256' : 'diskSha256';
}

export interface ImageCreateInput {
  name: string;
  format: ImageFormat;
  description?: string;
}

export interface ImageImportDeps {
  db: Db;
  store: ImageStore;
  quotas: QuotaService;
  log: Logger;
  /** Largest file accepted (bytes). */
  maxFileBytes: number;
  scan: (path: string) => Promise<ScanResult>;
  /** The fingerprint of the scanner databases in use now (a change triggers re-scans). */
  scanDatabaseVersion: () => Promise<string>;
  inspectDisk: (path: string, format: DiskFormat) => Promise<DiskInspection>;
  /** Signs a platform image's identity with the platform key (serialized DSSE envelope). */
  signPlatformImage: (image: {
    sha256: string;
    format: ImageFormat;
    name: string;
    sizeBytes: number;
  }) => string;
  /** Audit record + security event for a quarantine (or a scan that failed); never throws. */
  onVerdict: (image: ImagesTable, scan: ScanResult, trigger: 'import' | 'rescan') => Promise<void>;
}

/** The combined verdict of several files: any hit wins, then any failure, else clean. */
function combine(previous: ImagesTable, scan: ScanResult): Partial<ImagesTable> {
  const order = { infected: 2, error: 1, clean: 0 } as const;
  const before = previous.scanVerdict;
  const verdict = before !== null && order[before] > order[scan.verdict] ? before : scan.verdict;
  const signatures = [...new Set([...(JSON.parse(previous.scanSignatures) as string[]), ...scan.signatures])];
  return {
    scanVerdict: verdict,
    scanSignatures: JSON.stringify(signatures),
    scanEngine: scan.engineVersion || previous.scanEngine,
    scanDatabase: scan.databaseVersion || previous.scanDatabase,
    scannedAt: scan.scannedAt,
  };
}

export class ImageImporter {
  private readonly mutex = new KeyedMutex();

  constructor(private readonly deps: ImageImportDeps) {}

  /** A new image record awaiting its files; counted against the tenant's image quota. */
  async create(tenantId: string | null, input: ImageCreateInput): Promise<ImagesTable> {
    const row: ImagesTable = {
      id: newId(),
      name: input.name,
      format: input.format,
      sha256: '',
      sizeBytes: 0,
      kernelPath: '',
      initrdPath: '',
      kernelSha256: '',
      initrdSha256: '',
      description: input.description ?? '',
      createdAt: nowIso(),
      tenantId,
      visibility: tenantId === null ? 'public' : 'private',
      status: 'queued',
      statusReason: '',
      diskSha256: null,
      scanVerdict: null,
      scanSignatures: '[]',
      scanEngine: null,
      scanDatabase: null,
      scannedAt: null,
      platformSignature: null,
    };
    await this.deps.db.transaction().execute(async (trx) => {
      if (tenantId !== null) await this.deps.quotas.admit(trx, tenantId, { images: 1 });
      await trx
        .insertInto('images')
        .values(row)
        .execute()
        .catch((error: unknown) => {
          if (isUniqueError(error)) throw new ConflictError(`an image named ${input.name} already exists`);
          throw error;
        });
    });
    return row;
  }

  /** Receives one file of a queued image from a stream (an HTTP body) and runs it through the pipeline. */
  async upload(
    image: ImagesTable,
    part: ImagePart,
    source: Readable,
    onBytes?: (total: number) => void,
  ): Promise<ImagesTable> {
    return this.mutex.run(image.id, async () => {
      const current = await this.reload(image.id);
      this.checkUploadable(current, part);
      const staged = await this.deps.store.stage(source, { maxBytes: this.deps.maxFileBytes, onBytes });
      return this.ingest(current, part, staged);
    });
  }

  /** Admin import of a file on the server's host (read, never moved or changed). */
  async uploadLocal(image: ImagesTable, part: ImagePart, path: string): Promise<ImagesTable> {
    return this.mutex.run(image.id, async () => {
      const current = await this.reload(image.id);
      this.checkUploadable(current, part);
      const staged = await this.deps.store.stageLocalFile(path, { maxBytes: this.deps.maxFileBytes });
      return this.ingest(current, part, staged);
    });
  }

  private checkUploadable(image: ImagesTable, part: ImagePart): void {
    if (!partsOf(image.format).includes(part))
      throw new InvalidInputError(
        `a ${image.format} image has no "${part}" file (it takes: ${partsOf(image.format).join(', ')})`,
      );
    if (image.status !== 'queued')
      throw new ConflictError(`image ${image.name} is ${image.status}: its files cannot be uploaded again`);
    if (partSha(image, part) !== null)
      throw new ConflictError(`the ${part} file of image ${image.name} was already uploaded`);
  }

  private async ingest(image: ImagesTable, part: ImagePart, staged: StagedFile): Promise<ImagesTable> {
    const { db, store, log } = this.deps;
    let virtualSizeBytes: number | null = image.virtualSizeBytes ?? null;
    try {
      if (staged.sizeBytes === 0) throw new InvalidInputError(`the ${part} file is empty`);
      if (part === 'disk') {
        const inspection = await this.deps
          .inspectDisk(staged.path, image.format as DiskFormat)
          .catch((error: unknown) => {
            if (error instanceof DiskImageRejected)
              throw new InvalidInputError(`disk image refused: ${error.reason}`);
            throw error;
          });
        virtualSizeBytes = inspection.virtualSizeBytes;
      }
      const tenantId = image.tenantId;
      if (tenantId !== null) {
        await db.transaction().execute(async (trx) => {
          const used = await imageBytesOf(trx, tenantId);
          const delta = Math.ceil((used + staged.sizeBytes) / GIB) - Math.ceil(used / GIB);
          await this.deps.quotas.admit(trx, tenantId, { imageStorageGiB: delta });
        });
      }
      const scan = await this.deps.scan(staged.path);
      const stored = await store.store(keyDomainOf(tenantId), staged);
      log.info(
        {
          imageId: image.id,
          part,
          sha256: staged.sha256,
          bytes: staged.sizeBytes,
          storedBytes: stored.storedBytes,
          deduplicated: stored.deduplicated,
          verdict: scan.verdict,
        },
        'image file stored',
      );
      let next: ImagesTable = {
        ...image,
        [partColumn(part)]: staged.sha256,
        sizeBytes: image.sizeBytes + staged.sizeBytes,
        virtualSizeBytes,
        ...combine(image, scan),
      };
      const complete = partsOf(image.format).every((p) => partSha(next, p) !== null);
      if (next.scanVerdict === 'infected') {
        next = { ...next, status: 'quarantined', statusReason: quarantineReason(next) };
      } else if (complete) next = this.finish(next);
      if (complete || next.status === 'quarantined') next = this.identify(next);
      await db
        .updateTable('images')
        .set(pickMutable(next))
        .where('id', '=', image.id)
        .where('status', '=', 'queued')
        .execute();
      if (scan.verdict !== 'clean') await this.deps.onVerdict(next, scan, 'import');
      return next;
    } finally {
      await rm(staged.path, { force: true });
    }
  }

  /** All files in: `active` after a clean scan, `error` when a scan could not run (fails closed). */
  private finish(image: ImagesTable): ImagesTable {
    if (image.scanVerdict === 'clean') return { ...image, status: 'active', statusReason: '' };
    return {
      ...image,
      status: 'error',
      statusReason: 'the malware scan could not complete; re-scan the image to approve it',
    };
  }

  /** Sets the identity once every file is known, and the platform signature for platform images. */
  private identify(image: ImagesTable): ImagesTable {
    const complete = partsOf(image.format).every((p) => partSha(image, p) !== null);
    if (!complete) return image;
    const sha256 =
      image.format === 'kernel-initrd'
        ? bundleDigest(image.kernelSha256, image.initrdSha256)
        : image.diskSha256!;
    const platformSignature =
      image.tenantId === null
        ? this.deps.signPlatformImage({
            sha256,
            format: image.format,
            name: image.name,
            sizeBytes: image.sizeBytes,
          })
        : null;
    return { ...image, sha256, platformSignature };
  }

  /**
   * Scans every stored file again (decrypted into staging, one at a time). A hit quarantines; a clean
   * result releases a quarantined or scan-failed image; a failed scan leaves an active image active but
   * records the verdict (a scanner outage must not stop every VM), and never approves anything.
   */
  async rescan(imageId: string): Promise<ImagesTable> {
    return this.mutex.run(imageId, async () => {
      const image = await this.reload(imageId);
      if (image.status === 'queued' || image.status === 'importing')
        throw new ConflictError(`image ${image.name} is still being uploaded`);
      let verdict: Partial<ImagesTable> = { scanVerdict: null, scanSignatures: '[]' };
      let last: ScanResult | null = null;
      for (const part of partsOf(image.format)) {
        const sha = partSha(image, part);
        if (!sha) continue;
        const staged = await this.deps.store.stageFromStore(keyDomainOf(image.tenantId), sha);
        try {
          last = await this.deps.scan(staged.path);
        } finally {
          await rm(staged.path, { force: true });
        }
        verdict = combine({ ...image, ...verdict }, last);
      }
      let next: ImagesTable = { ...image, ...verdict };
      if (next.scanVerdict === 'infected') {
        next = { ...next, status: 'quarantined', statusReason: quarantineReason(next) };
      } else if (next.scanVerdict === 'clean' && image.status !== 'active') {
        next = { ...next, status: 'active', statusReason: '' };
      }
      await this.deps.db.updateTable('images').set(pickMutable(next)).where('id', '=', image.id).execute();
      if (last && next.scanVerdict !== 'clean') await this.deps.onVerdict(next, last, 'rescan');
      return next;
    });
  }

  /** Re-scans every image scanned with other databases than the current ones; returns how many. */
  async rescanStale(): Promise<number> {
    const current = await this.deps.scanDatabaseVersion();
    const stale = await this.deps.db
      .selectFrom('images')
      .select('id')
      .where('status', 'in', ['active', 'quarantined', 'error'] satisfies ImageStatus[])
      .where((eb) => eb.or([eb('scanDatabase', 'is', null), eb('scanDatabase', '!=', current)]))
      .execute();
    let count = 0;
    for (const { id } of stale) {
      try {
        await this.rescan(id);
        count += 1;
      } catch (error) {
        this.deps.log.warn({ imageId: id, err: (error as Error).message }, 're-scan failed');
      }
    }
    return count;
  }

  /** Deletes an image no VM uses; its blobs go when no other image of the owner holds the content. */
  async delete(image: ImagesTable): Promise<void> {
    await this.mutex.run(image.id, async () => {
      const user = await this.deps.db
        .selectFrom('vms')
        .select('name')
        .where('imageId', '=', image.id)
        .executeTakeFirst();
      if (user)
        throw new ConflictError(`image ${image.name} is used by VM ${user.name}; delete the VM first`);
      // Volumes made from it: overlays need its file; the others would lose their bootable origin.
      const volume = await this.deps.db
        .selectFrom('volumes')
        .select('name')
        .where('imageId', '=', image.id)
        .executeTakeFirst();
      if (volume)
        throw new ConflictError(
          `image ${image.name} is the base of volume ${volume.name}; delete the volume first`,
        );
      await this.deps.db.transaction().execute(async (trx) => {
        await trx.deleteFrom('imageShares').where('imageId', '=', image.id).execute();
        await trx.deleteFrom('imageSignatures').where('imageId', '=', image.id).execute();
        await trx.deleteFrom('images').where('id', '=', image.id).execute();
      });
      for (const part of partsOf(image.format)) {
        const sha = partSha(image, part);
        if (sha) await this.deps.store.releaseIfUnused(keyDomainOf(image.tenantId), sha);
      }
    });
  }

  private async reload(id: string): Promise<ImagesTable> {
    const row = await this.deps.db.selectFrom('images').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFoundError('image');
    return row;
  }
}

/** Refuses use of an image that is not `active` (quarantined, importing, failed). */
export function assertImageUsable(image: ImagesTable): void {
  if (image.status === 'active') return;
  const why =
    image.status === 'quarantined'
      ? `it is quarantined (${image.statusReason})`
      : image.status === 'error'
        ? `its import failed (${image.statusReason})`
        : 'its files are not all uploaded yet';
  throw new ImageUnavailableError(`image ${image.name} cannot be used: ${why}`);
}

function quarantineReason(image: ImagesTable): string {
  const names = JSON.parse(image.scanSignatures) as string[];
  return `malware scan hit: ${names.join(', ')}`;
}

function pickMutable(image: ImagesTable): Partial<ImagesTable> {
  return {
    sha256: image.sha256,
    sizeBytes: image.sizeBytes,
    kernelSha256: image.kernelSha256,
    initrdSha256: image.initrdSha256,
    diskSha256: image.diskSha256,
    status: image.status,
    statusReason: image.statusReason,
    scanVerdict: image.scanVerdict,
    scanSignatures: image.scanSignatures,
    scanEngine: image.scanEngine,
    scanDatabase: image.scanDatabase,
    scannedAt: image.scannedAt,
    platformSignature: image.platformSignature,
    virtualSizeBytes: image.virtualSizeBytes ?? null,
  };
}

/** Plaintext bytes of the tenant's images (quota usage). */
export async function imageBytesOf(db: Db, tenantId: string): Promise<number> {
  const row = await db
    .selectFrom('images')
    .select(sql<number>`COALESCE(SUM(size_bytes), 0)`.as('bytes'))
    .where('tenantId', '=', tenantId)
    .executeTakeFirstOrThrow();
  return Number(row.bytes);
}

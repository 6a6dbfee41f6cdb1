/**
 * The image catalog. For now it holds the default `tiny` guest (a kernel+initrd bundle built by
 * guest/build.sh), registered on first start: its files are copied into the data directory under their
 * SHA-256 and verified against the build manifest. Signed, encrypted, scanned images come later.
 */
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Image } from '../../api/image.js';
import { NotFoundError } from '../../api/errors.js';
import { isUuid, newId } from '../../common/ids.js';
import { nowIso, type Db } from '../store/database.js';
import type { ImagesTable } from '../store/schema.js';

interface GuestManifest {
  name: string;
  format: 'kernel-initrd';
  kernelVersion: string;
  kernel: string;
  initrd: string;
  sha256: Record<string, string>;
}

export function imageToApi(row: ImagesTable): Image {
  return {
    id: row.id,
    name: row.name,
    format: row.format,
    sha256: row.sha256,
    sizeBytes: row.sizeBytes,
    description: row.description,
    visibility: row.visibility,
    platform: row.tenantId === null,
    createdAt: row.createdAt,
  };
}

function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Copies `source` into the store as `<sha256>` (content-addressed, world-readable for QEMU's uid). */
function storeBlob(storeDir: string, source: string, expectedSha256: string): string {
  const actual = sha256File(source);
  if (actual !== expectedSha256) throw new Error(`${source}: sha256 ${actual} does not match the manifest`);
  const target = join(storeDir, actual);
  if (!existsSync(target) || sha256File(target) !== actual) {
    const tmp = `${target}.tmp-${process.pid}`;
    copyFileSync(source, tmp);
    chmodSync(tmp, 0o644);
    renameSync(tmp, target);
  }
  return target;
}

/** Registers the tiny guest once; a no-op when an image named `tiny` exists. */
export async function registerDefaultImage(
  db: Db,
  guestImageDir: string,
  dataDir: string,
): Promise<ImagesTable | null> {
  const existing = await db.selectFrom('images').selectAll().where('name', '=', 'tiny').executeTakeFirst();
  if (existing) return existing;
  const manifestPath = join(guestImageDir, 'manifest.json');
  if (!existsSync(manifestPath)) return null;
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as GuestManifest;
  const storeDir = join(dataDir, 'images');
  mkdirSync(storeDir, { recursive: true, mode: 0o755 });
  const kernelPath = storeBlob(
    storeDir,
    join(guestImageDir, manifest.kernel),
    manifest.sha256[manifest.kernel] ?? '',
  );
  const initrdPath = storeBlob(
    storeDir,
    join(guestImageDir, manifest.initrd),
    manifest.sha256[manifest.initrd] ?? '',
  );
  // The bundle's identity: the digest of its parts' digests, in a fixed order.
  const bundleSha = createHash('sha256')
    .update(`kernel-initrd\n${manifest.sha256[manifest.kernel]}\n${manifest.sha256[manifest.initrd]}\n`)
    .digest('hex');
  const row: ImagesTable = {
    id: newId(),
    name: 'tiny',
    format: 'kernel-initrd',
    sha256: bundleSha,
    sizeBytes: statSync(kernelPath).size + statSync(initrdPath).size,
    kernelPath,
    initrdPath,
    kernelSha256: manifest.sha256[manifest.kernel] ?? '',
    initrdSha256: manifest.sha256[manifest.initrd] ?? '',
    description: `Rampart tiny guest (Debian cloud kernel ${manifest.kernelVersion}, busybox initramfs, guest agent)`,
    createdAt: nowIso(),
    tenantId: null,
    visibility: 'public',
  };
  await db.insertInto('images').values(row).execute();
  return row;
}

/**
 * The images `tenantId` may see: platform-published public images, its own (any visibility), and
 * images shared with it. Everything else answers exactly like an image that does not exist.
 */
function visibleImages(db: Db, tenantId: string) {
  return db
    .selectFrom('images')
    .selectAll()
    .where((eb) =>
      eb.or([
        eb.and([eb('images.tenantId', 'is', null), eb('images.visibility', '=', 'public')]),
        eb('images.tenantId', '=', tenantId),
        eb.and([
          eb('images.visibility', '=', 'shared'),
          eb(
            'images.id',
            'in',
            eb
              .selectFrom('imageShares')
              .select('imageShares.imageId')
              .where('imageShares.tenantId', '=', tenantId),
          ),
        ]),
      ]),
    );
}

export async function listImages(db: Db, tenantId: string): Promise<Image[]> {
  const rows = await visibleImages(db, tenantId).orderBy('name').execute();
  return rows.map(imageToApi);
}

/** An image by id or name, if `tenantId` may see it (NotFoundError('image') otherwise, as for absent). */
export async function findImage(db: Db, ref: string, tenantId: string): Promise<ImagesTable> {
  const row = await visibleImages(db, tenantId)
    .where(isUuid(ref) ? 'images.id' : 'images.name', '=', ref)
    .executeTakeFirst();
  if (!row) throw new NotFoundError('image');
  return row;
}

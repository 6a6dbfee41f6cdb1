/**
 * The image catalog. For now it holds the default `tiny` guest (a kernel+initrd bundle built by
 * guest/build.sh), registered on first start: its files are copied into the data directory under their
 * SHA-256 and verified against the build manifest. Signed, encrypted, scanned images come later.
 */
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import type { Image } from '../../api/image.js';
import { ConflictError, InvalidInputError, NotFoundError } from '../../api/errors.js';
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
  const existing = await db
    .selectFrom('images')
    .selectAll()
    .where('name', '=', 'tiny')
    .where('tenantId', 'is', null)
    .executeTakeFirst();
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
 * The images `tenantId` may see: public images (published by the platform), its own (any visibility),
 * and images shared with it. Everything else answers exactly like an image that does not exist.
 */
function visibleImages(db: Db, tenantId: string) {
  return db
    .selectFrom('images')
    .selectAll()
    .where((eb) =>
      eb.or([
        eb('images.visibility', '=', 'public'),
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
    // Names are unique per owner only: the tenant's own image wins, then the platform's, then others'.
    .orderBy(sql`CASE WHEN tenant_id = ${tenantId} THEN 0 WHEN tenant_id IS NULL THEN 1 ELSE 2 END`)
    .orderBy('images.createdAt')
    .executeTakeFirst();
  if (!row) throw new NotFoundError('image');
  return row;
}

/**
 * An image `tenantId` owns, by id or name. Images it merely sees (platform, shared with it) answer
 * NotFoundError('image'), exactly like absent ones: only the owner manages an image.
 */
export async function findOwnedImage(db: Db, ref: string, tenantId: string): Promise<ImagesTable> {
  const row = await db
    .selectFrom('images')
    .selectAll()
    .where('tenantId', '=', tenantId)
    .where(isUuid(ref) ? 'id' : 'name', '=', ref)
    .executeTakeFirst();
  if (!row) throw new NotFoundError('image');
  return row;
}

/** The owner changes who sees its image: private or shared (public is the platform's to decide). */
export async function setImageVisibility(
  db: Db,
  image: ImagesTable,
  visibility: 'private' | 'shared',
): Promise<ImagesTable> {
  await db.updateTable('images').set({ visibility }).where('id', '=', image.id).execute();
  return { ...image, visibility };
}

/**
 * Shares an owned image with another tenant (idempotent). A private image becomes shared; sharing
 * with the owner itself is refused.
 */
export async function shareImage(db: Db, image: ImagesTable, targetTenantId: string): Promise<ImagesTable> {
  if (image.tenantId === targetTenantId)
    throw new InvalidInputError('an image cannot be shared with its owner');
  return db.transaction().execute(async (trx) => {
    await trx
      .insertInto('imageShares')
      .values({ imageId: image.id, tenantId: targetTenantId })
      .onConflict((oc) => oc.doNothing())
      .execute();
    if (image.visibility !== 'private') return image;
    await trx.updateTable('images').set({ visibility: 'shared' }).where('id', '=', image.id).execute();
    return { ...image, visibility: 'shared' as const };
  });
}

/** Stops sharing an owned image with a tenant; NotFoundError('share') when it was not shared. */
export async function unshareImage(db: Db, image: ImagesTable, targetTenantId: string): Promise<void> {
  if (image.tenantId === targetTenantId)
    throw new InvalidInputError('an image cannot be shared with its owner');
  const result = await db
    .deleteFrom('imageShares')
    .where('imageId', '=', image.id)
    .where('tenantId', '=', targetTenantId)
    .executeTakeFirst();
  if (result.numDeletedRows === 0n) throw new NotFoundError('share');
}

/**
 * Publishes an image to every tenant (platform action). By id, or by name when exactly one image has
 * it. The owner stays the owner: a published tenant image is visible to all, but still has to pass
 * each tenant's trust policy like any non-platform image.
 */
export async function publishImage(db: Db, ref: string): Promise<ImagesTable> {
  const rows = await db
    .selectFrom('images')
    .selectAll()
    .where(isUuid(ref) ? 'id' : 'name', '=', ref)
    .limit(2)
    .execute();
  if (rows.length === 0) throw new NotFoundError('image');
  if (rows.length > 1) throw new ConflictError(`several images are named "${ref}": publish by id`);
  const image = rows[0]!;
  await db.updateTable('images').set({ visibility: 'public' }).where('id', '=', image.id).execute();
  return { ...image, visibility: 'public' };
}

/**
 * The image catalog: what each tenant may see and manage. The default `tiny` guest (a kernel+initrd
 * bundle built by guest/build.sh) is imported on first start through the same pipeline as any upload
 * (scanned, compressed, encrypted, signed with the platform key), checked against the build manifest.
 */
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from 'kysely';
import type { BackingImage } from '../../api/agent-protocol.js';
import type { Image } from '../../api/image.js';
import { ConflictError, InvalidInputError, NotFoundError } from '../../api/errors.js';
import { isUuid } from '../../common/ids.js';
import type { Db } from '../store/database.js';
import type { ImagesTable } from '../store/schema.js';
import { partSha, partsOf, type ImageImporter } from './image-import.js';
import { keyDomainOf, sha256OfFile, type ImageStore } from './image-store.js';

interface GuestManifest {
  name: string;
  format: 'kernel-initrd';
  kernelVersion: string;
  kernel: string;
  initrd: string;
  sha256: Record<string, string>;
}

export function imageToApi(row: ImagesTable): Image {
  const files: Image['files'] = {};
  for (const part of partsOf(row.format)) {
    const sha = partSha(row, part);
    if (sha) files[part] = sha;
  }
  return {
    id: row.id,
    name: row.name,
    format: row.format,
    sha256: row.sha256 === '' ? null : row.sha256,
    sizeBytes: row.sizeBytes,
    status: row.status,
    statusReason: row.statusReason,
    files,
    scan: {
      verdict: row.scanVerdict,
      signatures: JSON.parse(row.scanSignatures) as string[],
      engine: row.scanEngine,
      database: row.scanDatabase,
      scannedAt: row.scannedAt,
    },
    platformSigned: row.platformSignature !== null,
    description: row.description,
    visibility: row.visibility,
    platform: row.tenantId === null,
    createdAt: row.createdAt,
  };
}

/**
 * Imports the tiny guest once as a platform image; a no-op when a platform image named `tiny` exists
 * and its files are in the store. A `tiny` registered by an older version (plaintext files, no blobs)
 * has its files adopted into the encrypted store (only when they still hash right) and is re-scanned.
 */
export async function registerDefaultImage(
  db: Db,
  importer: ImageImporter,
  store: ImageStore,
  guestImageDir: string,
): Promise<ImagesTable | null> {
  const manifestPath = join(guestImageDir, 'manifest.json');
  const manifest = existsSync(manifestPath)
    ? (JSON.parse(readFileSync(manifestPath, 'utf8')) as GuestManifest)
    : null;
  const existing = await db
    .selectFrom('images')
    .selectAll()
    .where('name', '=', 'tiny')
    .where('tenantId', 'is', null)
    .executeTakeFirst();
  if (existing && existing.status !== 'queued') {
    await adoptLegacyFiles(existing, store, guestImageDir, manifest);
    if (existing.scanVerdict === null) return importer.rescan(existing.id);
    return existing;
  }
  if (!manifest) return null;
  const image =
    existing ??
    (await importer.create(null, {
      name: 'tiny',
      format: 'kernel-initrd',
      description: `Rampart tiny guest (Debian cloud kernel ${manifest.kernelVersion}, busybox initramfs, guest agent)`,
    }));
  let current = image;
  for (const [part, file] of [
    ['kernel', manifest.kernel],
    ['initrd', manifest.initrd],
  ] as const) {
    if (partSha(current, part)) continue;
    const path = join(guestImageDir, file);
    const actual = await sha256OfFile(path);
    if (actual !== manifest.sha256[file])
      throw new Error(`${path}: sha256 ${actual} does not match the guest manifest`);
    current = await importer.uploadLocal(current, part, path);
  }
  return current;
}

/** Stores the files of an image registered before the encrypted store existed. */
async function adoptLegacyFiles(
  image: ImagesTable,
  store: ImageStore,
  guestImageDir: string,
  manifest: GuestManifest | null,
): Promise<void> {
  const domain = keyDomainOf(image.tenantId);
  for (const [part, legacyPath] of [
    ['kernel', image.kernelPath],
    ['initrd', image.initrdPath],
  ] as const) {
    const sha = partSha(image, part);
    if (!sha || (await store.hasBlob(domain, sha))) continue;
    const candidates = [legacyPath, ...(manifest ? [join(guestImageDir, manifest[part])] : [])];
    let adopted = false;
    for (const path of candidates) {
      if (!path || !existsSync(path) || (await sha256OfFile(path)) !== sha) continue;
      const staged = await store.stageLocalFile(path, { maxBytes: Number.MAX_SAFE_INTEGER });
      try {
        if (staged.sha256 !== sha) continue;
        await store.store(domain, staged);
        adopted = true;
      } finally {
        await rm(staged.path, { force: true });
      }
      break;
    }
    if (!adopted) throw new Error(`image ${image.name}: no copy of its ${part} (sha256 ${sha}) to store`);
    // The old store kept plaintext at rest: once the encrypted blob exists, the plaintext copy goes.
    if (legacyPath && legacyPath.startsWith(`${store.legacyDir}/`)) await rm(legacyPath, { force: true });
  }
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

/**
 * The plaintext file of a disk image on the hosts, rebuilt in the cache from the encrypted store when
 * missing or altered: the read-only base of the root-disk overlays made from it.
 */
export function diskImageBacking(db: Db, store: ImageStore): (imageId: string) => Promise<BackingImage> {
  return async (imageId) => {
    const image = await db.selectFrom('images').selectAll().where('id', '=', imageId).executeTakeFirst();
    if (!image) throw new NotFoundError('image');
    if (image.format === 'kernel-initrd' || !image.diskSha256)
      throw new InvalidInputError(`image ${image.name} is not a disk image`);
    const path = await store.materialize(keyDomainOf(image.tenantId), image.diskSha256);
    return { path, format: image.format, sha256: image.diskSha256 };
  };
}

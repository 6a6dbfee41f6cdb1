/**
 * The image store: every image file at rest is compressed (zstd) and then encrypted (chunked AES-256-GCM)
 * under a data key of its key domain — the owning tenant, or `platform` for the platform's own images.
 *
 * Layout under the data directory:
 *   images/staging/<random>          plaintext being received or checked (0600, removed when done)
 *   images/blobs/<domain>/<sha>.rpb   the encrypted blob of the file whose plaintext SHA-256 is <sha>
 *   image-cache/<sha>                 verified plaintext handed to QEMU; never trusted (re-hashed per boot)
 *
 * Identity is the SHA-256 of the plaintext. Blobs are content-addressed per key domain: identical
 * uploads by one tenant share one blob; identical uploads by two tenants do not (a shared blob would
 * tell tenant B that tenant A holds the same file, and deleting A would have to keep B's copy readable,
 * which breaks crypto-shredding). Sharing an image with another tenant shares its blob, not a copy.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InvalidInputError, PayloadTooLargeError, RampartError } from '../../api/errors.js';
import { nowIso, type Db } from '../store/database.js';
import { createCompressStream, createDecompressStream } from './compression.js';
import { createDecryptStream, createEncryptStream } from './crypto/chunked-aead.js';
import { PLATFORM_KEY_OWNER, type TenantKeyring } from './crypto/envelope-keys.js';

/** The key domain of the platform's own images. */
export const PLATFORM_KEY_DOMAIN = PLATFORM_KEY_OWNER;
const SHA256 = /^[0-9a-f]{64}$/;

export function keyDomainOf(tenantId: string | null): string {
  return tenantId ?? PLATFORM_KEY_DOMAIN;
}

/** A plaintext file received into staging, with its digest and size. */
export interface StagedFile {
  path: string;
  sha256: string;
  sizeBytes: number;
}

export interface StageOptions {
  /** Refuse (413-style InvalidInputError) once more than this many bytes arrived. */
  maxBytes: number;
  /** Called as bytes arrive (for progress and metrics). */
  onBytes?: (total: number) => void;
}

/** A stored blob could not be read back: the reason names what failed (for the VM error and audit). */
export class ImageIntegrityError extends RampartError {
  constructor(message: string) {
    super('RAMPART_IMAGE_INTEGRITY', message);
    this.name = 'ImageIntegrityError';
  }
}

/** Hashes and counts what flows through, failing once `maxBytes` is exceeded. */
class DigestMeter extends Transform {
  readonly hash = createHash('sha256');
  total = 0;
  constructor(
    private readonly maxBytes: number,
    private readonly onBytes?: (total: number) => void,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.total += chunk.length;
    if (this.total > this.maxBytes) {
      callback(new ImageTooLargeError(this.maxBytes));
      return;
    }
    this.hash.update(chunk);
    this.onBytes?.(this.total);
    callback(null, chunk);
  }
}

export class ImageTooLargeError extends PayloadTooLargeError {
  constructor(readonly maxBytes: number) {
    super(`the image file is larger than the limit of ${maxBytes} bytes`);
  }
}

export class ImageStore {
  readonly stagingDir: string;
  readonly blobDir: string;
  readonly cacheDir: string;
  /** Where versions before the encrypted store kept plaintext image files (adopted, then removed). */
  readonly legacyDir: string;
  /**
   * Cached files this process hashed right, by digest: the file's identity then (device, inode, size,
   * mtime and ctime; any write changes the ctime, which no caller can set back). A file still the same
   * is not hashed again at every VM start; the agent re-hashes what it boots anyway.
   */
  private readonly verified = new Map<string, string>();

  constructor(
    private readonly db: Db,
    private readonly keyring: TenantKeyring,
    dataDir: string,
  ) {
    this.stagingDir = join(dataDir, 'images', 'staging');
    this.blobDir = join(dataDir, 'images', 'blobs');
    this.cacheDir = join(dataDir, 'image-cache');
    this.legacyDir = join(dataDir, 'images');
  }

  /** Creates the directories; clears staging (leftovers of a crash are plaintext nobody needs). */
  async init(): Promise<void> {
    await rm(this.stagingDir, { recursive: true, force: true });
    await mkdir(this.stagingDir, { recursive: true, mode: 0o700 });
    await mkdir(this.blobDir, { recursive: true, mode: 0o700 });
    await mkdir(this.cacheDir, { recursive: true, mode: 0o755 });
  }

  blobPath(domain: string, sha256: string): string {
    if (!SHA256.test(sha256)) throw new Error(`not a SHA-256: ${sha256}`);
    return join(this.blobDir, domain, `${sha256}.rpb`);
  }

  cachePath(sha256: string): string {
    if (!SHA256.test(sha256)) throw new Error(`not a SHA-256: ${sha256}`);
    return join(this.cacheDir, sha256);
  }

  /** A fresh staging path (0600 file created by the writer). */
  stagingPath(): string {
    return join(this.stagingDir, randomBytes(12).toString('hex'));
  }

  /** Receives a plaintext stream into staging while hashing it; removes the file on any failure. */
  async stage(source: Readable, options: StageOptions): Promise<StagedFile> {
    const path = this.stagingPath();
    const meter = new DigestMeter(options.maxBytes, options.onBytes);
    try {
      await pipeline(source, meter, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
    } catch (error) {
      await rm(path, { force: true });
      throw error;
    }
    return { path, sha256: meter.hash.digest('hex'), sizeBytes: meter.total };
  }

  /** Stages a copy of a file on this host (admin import from a local path). */
  async stageLocalFile(path: string, options: StageOptions): Promise<StagedFile> {
    const info = await stat(path).catch((error: unknown) => {
      throw new InvalidInputError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
    });
    if (!info.isFile()) throw new InvalidInputError(`${path} is not a regular file`);
    return this.stage(createReadStream(path, { highWaterMark: 1024 * 1024 }), options);
  }

  async hasBlob(domain: string, sha256: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('imageBlobs')
      .select('sha256')
      .where('keyDomain', '=', domain)
      .where('sha256', '=', sha256)
      .executeTakeFirst();
    if (!row) return false;
    return stat(this.blobPath(domain, sha256)).then(
      () => true,
      () => false,
    );
  }

  /**
   * Compresses and encrypts a staged file into the domain's store (skipped when the domain already
   * holds that content). Returns whether the content was already stored.
   */
  async store(domain: string, staged: StagedFile): Promise<{ deduplicated: boolean; storedBytes: number }> {
    const target = this.blobPath(domain, staged.sha256);
    if (await this.hasBlob(domain, staged.sha256)) {
      return { deduplicated: true, storedBytes: (await stat(target)).size };
    }
    await mkdir(join(this.blobDir, domain), { recursive: true, mode: 0o700 });
    const dataKey = await this.keyring.dataKey(domain);
    const tmp = `${target}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      await pipeline(
        createReadStream(staged.path, { highWaterMark: 1024 * 1024 }),
        createCompressStream(),
        createEncryptStream(dataKey.key, { keyId: dataKey.keyId }),
        createWriteStream(tmp, { flags: 'wx', mode: 0o600 }),
      );
      await rename(tmp, target);
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    } finally {
      dataKey.key.fill(0);
    }
    const storedBytes = (await stat(target)).size;
    await this.db
      .insertInto('imageBlobs')
      .values({
        keyDomain: domain,
        sha256: staged.sha256,
        sizeBytes: staged.sizeBytes,
        storedBytes,
        keyId: dataKey.keyId,
        createdAt: nowIso(),
      })
      .onConflict((oc) => oc.columns(['keyDomain', 'sha256']).doNothing())
      .execute();
    return { deduplicated: false, storedBytes };
  }

  /**
   * The plaintext of a stored blob as a stream: each chunk is authenticated before it is released, the
   * zstd frame checksum is checked, and the plaintext's SHA-256 must equal `sha256` at the end —
   * otherwise the stream errors with an ImageIntegrityError (consumers must discard what they got).
   */
  openPlaintext(domain: string, sha256: string): Readable {
    const out = new PassThrough({ highWaterMark: 1024 * 1024 });
    const hash = createHash('sha256');
    const verify = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        hash.update(chunk);
        callback(null, chunk);
      },
      flush(callback) {
        const actual = hash.digest('hex');
        callback(
          actual === sha256
            ? null
            : new ImageIntegrityError(
                `the stored image content does not match its digest (expected ${sha256.slice(0, 12)}…, found ${actual.slice(0, 12)}…)`,
              ),
        );
      },
    });
    const source = createReadStream(this.blobPath(domain, sha256), { highWaterMark: 1024 * 1024 });
    // `out` stays outside the pipeline: pipeline() would destroy it with the raw error first, and the
    // reader must see an ImageIntegrityError (422), whatever failed (header, chunk, key, digest).
    verify.pipe(out);
    pipeline(
      source,
      createDecryptStream(this.keyring.keyLookup(domain)),
      createDecompressStream(),
      verify,
    ).catch((error: unknown) => {
      verify.unpipe(out);
      out.destroy(asIntegrityError(error));
    });
    return out;
  }

  /** Decrypts a blob into a staging file (for a re-scan), verified; the caller removes it. */
  async stageFromStore(domain: string, sha256: string): Promise<StagedFile> {
    const path = this.stagingPath();
    let size = 0;
    try {
      await pipeline(
        this.openPlaintext(domain, sha256),
        new Transform({
          transform(chunk: Buffer, _enc, callback) {
            size += chunk.length;
            callback(null, chunk);
          },
        }),
        createWriteStream(path, { flags: 'wx', mode: 0o600 }),
      );
    } catch (error) {
      await rm(path, { force: true });
      throw asIntegrityError(error);
    }
    return { path, sha256, sizeBytes: size };
  }

  /**
   * Makes sure the verified plaintext of `sha256` is in the cache and returns its path. A cached file
   * is only reused when it still hashes right; an altered one is removed and reported (ImageIntegrityError);
   * a missing one is rebuilt from the encrypted store (every chunk authenticated, the digest checked)
   * into a temporary file and renamed into place.
   */
  async materialize(domain: string, sha256: string): Promise<string> {
    const target = this.cachePath(sha256);
    const identity = await fileIdentity(target);
    if (identity !== null && this.verified.get(sha256) === identity) return target;
    this.verified.delete(sha256);
    const cached = await sha256OfFile(target).catch(() => null);
    if (cached === sha256) {
      if (identity !== null && identity === (await fileIdentity(target))) this.verified.set(sha256, identity);
      return target;
    }
    if (cached !== null) {
      // Someone changed a file on this host that only Rampart writes: refuse this boot (the caller
      // records it), drop the altered copy so the next boot rebuilds it from the encrypted store.
      await rm(target, { force: true });
      throw new ImageIntegrityError(
        `the cached copy of file sha256:${sha256.slice(0, 12)}… was altered on the host (found sha256:${cached.slice(0, 12)}…); it was removed and is rebuilt from the encrypted store on the next start`,
      );
    }
    const tmp = `${target}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      await pipeline(
        this.openPlaintext(domain, sha256),
        createWriteStream(tmp, { flags: 'wx', mode: 0o600 }),
      );
      await chmod(tmp, 0o644);
      await rename(tmp, target);
    } catch (error) {
      await rm(tmp, { force: true });
      throw asIntegrityError(error);
    }
    return target;
  }

  /** Removes a blob (and its cached plaintext) unless an image of the domain still uses the content. */
  async releaseIfUnused(domain: string, sha256: string): Promise<boolean> {
    const tenantFilter = domain === PLATFORM_KEY_DOMAIN ? null : domain;
    const users = await this.db
      .selectFrom('images')
      .select('id')
      .where((eb) => (tenantFilter === null ? eb('tenantId', 'is', null) : eb('tenantId', '=', tenantFilter)))
      .where((eb) =>
        eb.or([
          eb('kernelSha256', '=', sha256),
          eb('initrdSha256', '=', sha256),
          eb('diskSha256', '=', sha256),
        ]),
      )
      .limit(1)
      .execute();
    if (users.length > 0) return false;
    await this.db
      .deleteFrom('imageBlobs')
      .where('keyDomain', '=', domain)
      .where('sha256', '=', sha256)
      .execute();
    await rm(this.blobPath(domain, sha256), { force: true });
    // The cache is shared by content: drop it only when no domain stores that content any more.
    const elsewhere = await this.db
      .selectFrom('imageBlobs')
      .select('sha256')
      .where('sha256', '=', sha256)
      .executeTakeFirst();
    if (!elsewhere) await rm(this.cachePath(sha256), { force: true });
    return true;
  }

  /** Deletes every blob of a domain (tenant deletion, after its keys were destroyed). */
  async removeDomain(domain: string): Promise<void> {
    const rows = await this.db
      .selectFrom('imageBlobs')
      .select('sha256')
      .where('keyDomain', '=', domain)
      .execute();
    await this.db.deleteFrom('imageBlobs').where('keyDomain', '=', domain).execute();
    await rm(join(this.blobDir, domain), { recursive: true, force: true });
    for (const { sha256 } of rows) {
      const elsewhere = await this.db
        .selectFrom('imageBlobs')
        .select('sha256')
        .where('sha256', '=', sha256)
        .executeTakeFirst();
      if (!elsewhere) await rm(this.cachePath(sha256), { force: true });
    }
  }
}

function asIntegrityError(error: unknown): Error {
  if (error instanceof ImageIntegrityError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ImageIntegrityError(`the stored image cannot be read back: ${message}`);
}

/** What changes when a file is written, replaced or touched (null: no such file). */
async function fileIdentity(path: string): Promise<string | null> {
  const info = await stat(path, { bigint: true }).catch(() => null);
  return info ? `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}` : null;
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(
    createReadStream(path, { highWaterMark: 1024 * 1024 }),
    new Writable({
      write(chunk: Buffer, _enc, callback) {
        hash.update(chunk);
        callback();
      },
    }),
  );
  return hash.digest('hex');
}

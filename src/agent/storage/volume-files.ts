/**
 * The host's volume files, in a directory only root can enter (0700), in one of two formats (both
 * encrypted by QEMU itself: the host never sees the plaintext):
 *
 * - `luks`: `<agentDataDir>/volumes/<id>.luks`, a raw LUKS file (QEMU's native LUKS format).
 * - `qcow2`: `<agentDataDir>/volumes/<id>.qcow2`, qcow2 with QEMU's LUKS encryption
 *   (`encrypt.format=luks`), used for VM root disks as copy-on-write overlays of a read-only, plaintext,
 *   verified disk image (raw or qcow2: the "backing image"). The overlay holds only what the guest
 *   wrote, encrypted; what it never wrote reads through from the backing image.
 *
 * - A volume is created on first use with the passphrase the server sent (never on a command line and
 *   never logged: qemu-img reads it from a 0600 file in a root-only temporary directory, removed right
 *   after), grown when the intent asks for more (never shrunk), and refused if the file there is not
 *   what it should be (a planted file never reaches QEMU): never a link (O_NOFOLLOW, lstat); a `.luks`
 *   file starts with the LUKS magic; a `.qcow2` file starts with the qcow2 magic and `qemu-img info`
 *   (which reads the header only: it opens no backing or data file) shows it LUKS-encrypted, with no
 *   external data file, and with exactly the expected backing file (or none).
 * - Every qemu-img call that opens a qcow2 volume with its key names the backing image explicitly
 *   (`backing.driver=…,backing.file.driver=file,backing.file.filename=…`): the path in the header is
 *   checked, but never what decides which file is opened. Backing images are absolute paths of regular
 *   files (no link), raw or qcow2 without a backing or data file of their own, and never larger than the
 *   volume.
 * - While a VM may use it, the file belongs to that VM's uid (0600); otherwise to root.
 * - Erasing overwrites the file in place with zeros (same inode, no O_TRUNC), fsyncs, then unlinks it;
 *   a link or anything but a regular file in its place is refused.
 *
 * - Snapshots are copies of a volume's encrypted file in `<agentDataDir>/snapshots/<id>.<format>` (root
 *   0700 directory, files 0600): taken and restored while no VM runs on the volume, erased like volumes;
 *   a qcow2 snapshot is an overlay of the same backing image as its volume. A clone is re-encrypted
 *   (qemu-img convert, decrypting with the origin's passphrase and writing under the clone's own), so it
 *   shares no key material with its origin: luks to luks; qcow2 to qcow2, either an overlay of the same
 *   backing image (only what differs from it is written) or flattened into a standalone file.
 * - An export is a backup the server keeps: a luks volume's file copied as it is; a qcow2 volume
 *   flattened into a standalone qcow2+LUKS file under the same key, so it restores on a host without
 *   the backing image.
 *
 * The passphrase is the base64 text itself (QEMU reads the secret file as raw bytes), the same at
 * creation and at every start. It is 32 random bytes: the PBKDF iteration time adds no strength to
 * such a key, so a short one (200 ms) keeps starts quick on busy hosts.
 */
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readSync,
  readdirSync,
  rmSync,
  renameSync,
  chmodSync,
  writeSync,
} from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { assertSafeId } from '../../common/ids.js';
import { KeyedMutex } from '../../common/keyed-mutex.js';
import { eraseFileInPlace, type ErasedFile } from '../../common/secure-erase.js';
import { CommandError, run } from '../../common/subprocess.js';

/** The first bytes of every LUKS (v1 and v2) header. */
export const LUKS_MAGIC = Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]);
/** The first bytes of every qcow2 (and qcow) header: `QFI\xfb`. */
export const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]);
const GiB = 1024 ** 3;
const KEY = /^[A-Za-z0-9+/]{43}=$/;
const KEY_DIR_PREFIX = '.key-';
const QEMU_IMG_TIMEOUT_MS = 120_000;
/** Converting (cloning, importing, exporting) a large volume takes a while. */
const QEMU_IMG_CONVERT_TIMEOUT_MS = 3_600_000;
/**
 * The hash of a new LUKS header's PBKDF2 (and anti-forensic splitter). qemu-img sizes the PBKDF2 from a
 * benchmark whose first round is 2^15 iterations, timed by the thread's user CPU time, and it gives up
 * ("Unable to get accurate CPU usage") when that round measures 0 ms. With SHA-256 on a CPU with SHA
 * instructions the round takes a few milliseconds, often inside one scheduler tick on a host with
 * tick-based CPU accounting (as in a VM): measured on such a host, 62 of 100 creations failed with
 * SHA-256, 0 of 60 with SHA-512 (no such instructions, the round lasts tens of milliseconds). A CI run
 * once failed 20 attempts in a row with SHA-256. Existing volumes keep whatever hash their header names
 * (opening reads it from the header).
 */
const LUKS_PBKDF_HASH = 'sha512';
/** The PBKDF benchmark can still fail now and then on a busy host ("Unable to get accurate CPU usage"). */
const PBKDF_ATTEMPTS = 20;
const FORMATS: readonly VolumeFormat[] = ['qcow2', 'luks'];

export type VolumeFormat = 'luks' | 'qcow2';

/** A read-only, plaintext, verified disk image a qcow2 volume is an overlay of. */
export interface BackingImage {
  path: string;
  format: 'raw' | 'qcow2';
}

export interface VolumeFilesOptions {
  /** `<agentDataDir>/volumes`: created root 0700. */
  dir: string;
  qemuImg: string;
  /** LUKS PBKDF iteration time at creation (qemu-img's `iter-time`), milliseconds. */
  iterTimeMs?: number;
  /** `<agentDataDir>/snapshots` (default: `snapshots` beside `dir`): created root 0700. */
  snapshotsDir?: string;
  /** coreutils cp (sparse, reflink when the filesystem can). */
  cp?: string;
}

export interface EnsuredVolume {
  path: string;
  created: boolean;
  grown: boolean;
}

export interface EnsureVolumeOptions {
  /** Default: the format of the file there, else `luks`. */
  format?: VolumeFormat;
  /** qcow2 only: the image the volume is an overlay of (none: a standalone qcow2 volume). */
  backing?: BackingImage;
}

export type ErasedVolume = ErasedFile;

/** What `qemu-img info` says of a qcow2 volume file's header (verified). */
interface Qcow2Header {
  virtualSize: number;
  backing: BackingImage | null;
}

/** The expected backing of a qcow2 file: an image, none (`null`), or not checked (`undefined`). */
type ExpectedBacking = BackingImage | null | undefined;

function assertKey(key: string): void {
  if (!KEY.test(key)) throw new Error('the volume key is not a base64 32-byte passphrase');
}

function assertSize(sizeGiB: number): void {
  if (!Number.isInteger(sizeGiB) || sizeGiB < 1 || sizeGiB > 65_536)
    throw new Error(`bad volume size ${sizeGiB} GiB`);
}

function assertFormat(format: string): asserts format is VolumeFormat {
  if (format !== 'luks' && format !== 'qcow2') throw new Error(`bad volume format ${format}`);
}

/**
 * A backing image's path is absolute and normalised, and holds nothing QEMU could read as an option
 * separator (`,`) or a protocol prefix (`nbd:`, `json:`…).
 */
function assertBacking(backing: BackingImage): void {
  if (backing.format !== 'raw' && backing.format !== 'qcow2')
    throw new Error(`bad backing image format ${String(backing.format)}`);
  const path = backing.path;
  if (
    typeof path !== 'string' ||
    !isAbsolute(path) ||
    normalize(path) !== path ||
    path.endsWith('/') ||
    /[,:\p{Cc}]/u.test(path)
  )
    throw new Error(`bad backing image path ${JSON.stringify(String(path).slice(0, 200))}`);
}

function sameBacking(a: BackingImage | null, b: BackingImage | null): boolean {
  return a === null || b === null ? a === b : a.path === b.path && a.format === b.format;
}

function describeBacking(backing: BackingImage | null): string {
  return backing ? `${backing.path} (${backing.format})` : 'none';
}

/** A value inside a QEMU option string (`a=b,c=d`): commas doubled. */
function opt(value: string): string {
  return value.replaceAll(',', ',,');
}

/** `--image-opts` for a qcow2+LUKS file, its backing image named explicitly (or none opened). */
function qcow2ImageOpts(path: string, secretId: string, backing: BackingImage | null): string {
  const base = `driver=qcow2,encrypt.key-secret=${secretId},file.driver=file,file.filename=${opt(path)}`;
  return backing
    ? `${base},backing.driver=${backing.format},backing.file.driver=file,backing.file.filename=${opt(backing.path)}`
    : base;
}

function luksImageOpts(path: string, secretId: string): string {
  return `driver=luks,key-secret=${secretId},file.driver=file,file.filename=${opt(path)}`;
}

function secretObject(id: string, keyFile: string): string[] {
  return ['--object', `secret,id=${id},file=${opt(keyFile)},format=raw`];
}

/** Reads the first bytes of a regular file without following a link. */
function readHead(path: string, length: number, what: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    throw new Error(`${what} ${path} cannot be opened: ${(error as Error).message}`, { cause: error });
  }
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`${what} ${path} is not a regular file`);
    const head = Buffer.alloc(length);
    return head.subarray(0, readSync(fd, head, 0, length, 0));
  } finally {
    closeSync(fd);
  }
}

function isPbkdfFlake(error: unknown): boolean {
  return error instanceof CommandError && /accurate CPU usage/i.test(error.stderr);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class VolumeFiles {
  readonly dir: string;
  readonly snapshotsDir: string;
  private readonly cp: string;
  private readonly qemuImg: string;
  private readonly iterTimeMs: number;
  /** One operation per volume at a time (create/grow, erase, ownership). */
  private readonly mutex = new KeyedMutex();

  constructor(options: VolumeFilesOptions) {
    this.dir = options.dir;
    this.qemuImg = options.qemuImg;
    this.iterTimeMs = options.iterTimeMs ?? 200;
    this.snapshotsDir = options.snapshotsDir ?? join(dirname(this.dir), 'snapshots');
    this.cp = options.cp ?? '/usr/bin/cp';
    for (const dir of [this.dir, this.snapshotsDir]) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (!lstatSync(dir).isDirectory()) throw new Error(`${dir} is not a directory`);
      chmodSync(dir, 0o700);
    }
    // Temporary key directories left behind by a crash mid-creation.
    for (const entry of readdirSync(this.dir))
      if (entry.startsWith(KEY_DIR_PREFIX)) rmSync(join(this.dir, entry), { recursive: true, force: true });
  }

  /** The host path of a volume's file: `<id>.qcow2` if there is one (even a link: never followed), else `<id>.luks`. */
  path(id: string): string {
    return this.pathFor(id, this.formatOf(id) ?? 'luks');
  }

  /** The host path of a volume's file in the given format. */
  pathFor(id: string, format: VolumeFormat): string {
    assertFormat(format);
    return join(this.dir, `${assertSafeId(id)}.${format}`);
  }

  /** The volume's format, by which file is there (lstat: a link is not followed); null: neither. */
  formatOf(id: string): VolumeFormat | null {
    return this.existingFormat((format) => this.pathFor(id, format));
  }

  /** The host path of a snapshot's file: `<id>.qcow2` if there is one, else `<id>.luks`. */
  snapshotPath(id: string): string {
    return this.snapshotPathFor(id, this.snapshotFormatOf(id) ?? 'luks');
  }

  /** The host path of a snapshot's file in the given format. */
  snapshotPathFor(id: string, format: VolumeFormat): string {
    assertFormat(format);
    return join(this.snapshotsDir, `${assertSafeId(id)}.${format}`);
  }

  /** The snapshot's format, by which file is there (null: neither). */
  snapshotFormatOf(id: string): VolumeFormat | null {
    return this.existingFormat((format) => this.snapshotPathFor(id, format));
  }

  /** Copies the volume's encrypted file into a new snapshot file (sparse; a reflink where possible). */
  snapshot(volumeId: string, snapshotId: string): Promise<{ bytes: number }> {
    assertSafeId(volumeId);
    assertSafeId(snapshotId);
    return this.mutex.run(volumeId, async () => {
      const format = this.formatOf(volumeId) ?? 'luks';
      const source = this.pathFor(volumeId, format);
      const target = this.snapshotPathFor(snapshotId, format);
      await this.verify(source, format, undefined);
      if (this.snapshotFormatOf(snapshotId) !== null)
        throw new Error(`snapshot ${snapshotId} exists already`);
      await this.copyFile(source, target);
      return { bytes: lstatSync(target).size };
    });
  }

  /**
   * Replaces the volume's content with the snapshot's: copied beside it, then renamed over it (a crash
   * leaves either the old or the new content, never a mix). The copy belongs to root until the next
   * start hands it to the VM's uid. The snapshot must be of the volume's format (and, for qcow2, an
   * overlay of the same backing image).
   */
  restore(volumeId: string, snapshotId: string): Promise<{ bytes: number }> {
    assertSafeId(volumeId);
    assertSafeId(snapshotId);
    return this.mutex.run(volumeId, async () => {
      const format = this.formatOf(volumeId) ?? 'luks';
      const volume = this.pathFor(volumeId, format);
      const snapshotFormat = this.snapshotFormatOf(snapshotId);
      if (snapshotFormat !== null && snapshotFormat !== format)
        throw new Error(
          `snapshot ${snapshotId} is a ${snapshotFormat} file, volume ${volumeId} a ${format} one`,
        );
      const snapshot = this.snapshotPathFor(snapshotId, format);
      const header = await this.verify(volume, format, undefined);
      await this.verify(snapshot, format, header ? header.backing : undefined);
      const staged = join(this.dir, `.restore-${volumeId}`);
      rmSync(staged, { force: true });
      try {
        await this.copyFile(snapshot, staged);
        renameSync(staged, volume);
      } finally {
        rmSync(staged, { force: true });
      }
      return { bytes: lstatSync(volume).size };
    });
  }

  /**
   * A new volume from a snapshot, re-encrypted: decrypted with the origin's passphrase, written under
   * the clone's own (fresh LUKS header, salt and master key), then grown to `sizeGiB` if larger. A
   * qcow2 snapshot gives a qcow2 volume: an overlay of `options.backing` if given, else standalone.
   */
  clone(
    snapshotId: string,
    sourceKey: string,
    volume: { id: string; sizeGiB: number; key: string },
    options: { backing?: BackingImage } = {},
  ): Promise<{ bytes: number }> {
    return this.importFrom(this.snapshotPath(snapshotId), sourceKey, volume, options);
  }

  /**
   * A new volume from any volume file of the platform's (a snapshot, a verified backup), re-encrypted
   * under the new volume's own key; grown to `sizeGiB` if larger. The source's format is told by its
   * magic: a LUKS file gives a luks volume; a qcow2+LUKS file a qcow2 volume, an overlay of
   * `options.backing` (only what differs from it is written) if given, else standalone (flattened).
   *
   * A qcow2 source that is an overlay is opened with its backing image named explicitly: the one given
   * (its header must name that one), or else the one its (verified) header names.
   */
  importFrom(
    source: string,
    sourceKey: string,
    volume: { id: string; sizeGiB: number; key: string },
    options: { backing?: BackingImage } = {},
  ): Promise<{ bytes: number }> {
    assertKey(sourceKey);
    assertKey(volume.key);
    assertSize(volume.sizeGiB);
    assertSafeId(volume.id);
    const backing = options.backing ?? null;
    if (backing) assertBacking(backing);
    let format: VolumeFormat = 'luks';
    return this.mutex
      .run(volume.id, async () => {
        format = this.sourceFormat(source);
        if (format === 'luks' && backing)
          throw new Error(`${source} is a LUKS file: it cannot become an overlay of a backing image`);
        const target = this.pathFor(volume.id, format);
        if (this.formatOf(volume.id) !== null) throw new Error(`volume ${volume.id} exists already`);
        if (format === 'luks') this.checkLuks(source);
        const sourceBacking =
          format === 'qcow2' ? await this.sourceBacking(source, backing ?? undefined) : null;
        if (backing) await this.checkBackingImage(backing, volume.sizeGiB);
        try {
          await this.withKeyFile(sourceKey, (sourceFile) =>
            this.withKeyFile(volume.key, (targetFile) =>
              this.qemuImgRetried(
                [
                  'convert',
                  '-q',
                  ...secretObject('src', sourceFile),
                  ...secretObject('dst', targetFile),
                  '--image-opts',
                  format === 'luks'
                    ? luksImageOpts(source, 'src')
                    : qcow2ImageOpts(source, 'src', sourceBacking),
                  ...(format === 'luks'
                    ? ['-O', 'luks', '-o', this.luksHeaderOptions('dst')]
                    : [
                        '-O',
                        'qcow2',
                        '-o',
                        this.qcow2EncryptionOptions('dst'),
                        ...(backing ? ['-B', backing.path, '-F', backing.format] : []),
                      ]),
                  target,
                ],
                QEMU_IMG_CONVERT_TIMEOUT_MS,
              ),
            ),
          );
          chmodSync(target, 0o600);
          await this.verify(target, format, backing);
        } catch (error) {
          rmSync(target, { force: true }); // a half-made volume is never used
          throw error;
        }
        return { bytes: lstatSync(target).size };
      })
      .then(async (result) => {
        // Larger than its source: grown like any volume (ensureVolume takes the lock itself).
        const grown = await this.ensureVolume(volume.id, volume.sizeGiB, volume.key, {
          format,
          ...(backing ? { backing } : {}),
        });
        return grown.grown ? { bytes: lstatSync(grown.path).size } : result;
      });
  }

  /**
   * A backup the server keeps, at `target` (a new file, never a link or an existing one, 0600): a luks
   * volume's encrypted file copied as it is; a qcow2 volume flattened (its backing image's content
   * included) into a standalone qcow2+LUKS file under the same key, which needs `options.key`. The
   * backing image is named explicitly: `options.backing` (the header must name that one), or else the
   * one the volume's verified header names.
   */
  exportTo(
    volumeId: string,
    target: string,
    options: { key?: string; backing?: BackingImage } = {},
  ): Promise<{ bytes: number }> {
    assertSafeId(volumeId);
    if (options.key !== undefined) assertKey(options.key);
    if (options.backing) assertBacking(options.backing);
    return this.mutex.run(volumeId, async () => {
      const format = this.formatOf(volumeId) ?? 'luks';
      const source = this.pathFor(volumeId, format);
      if (format === 'luks') {
        this.checkLuks(source);
        if (lstatSync(target, { throwIfNoEntry: false })) throw new Error(`${target} exists already`);
        await this.copyFile(source, target);
        return { bytes: lstatSync(target).size };
      }
      const key = options.key;
      if (key === undefined)
        throw new Error(`volume ${volumeId} is a qcow2 volume: its export needs its key (to flatten it)`);
      const sourceBacking = await this.sourceBacking(source, options.backing);
      // The name claimed first (O_EXCL, no link followed, 0600): qemu-img then writes into that file.
      let fd: number;
      try {
        fd = openSync(
          target,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o600,
        );
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST')
          throw new Error(`${target} exists already`, { cause: error });
        throw error;
      }
      closeSync(fd);
      try {
        await this.withKeyFile(key, (keyFile) =>
          this.qemuImgRetried(
            [
              'convert',
              '-q',
              ...secretObject('src', keyFile),
              '--image-opts',
              qcow2ImageOpts(source, 'src', sourceBacking),
              '-O',
              'qcow2',
              '-o',
              this.qcow2EncryptionOptions('src'),
              target,
            ],
            QEMU_IMG_CONVERT_TIMEOUT_MS,
          ),
        );
        chmodSync(target, 0o600);
        await this.verify(target, 'qcow2', null);
      } catch (error) {
        rmSync(target, { force: true }); // a half-made backup is never kept
        throw error;
      }
      return { bytes: lstatSync(target).size };
    });
  }

  /** Secure erase of a snapshot's file (as for volumes; whichever format is there). */
  eraseSnapshot(snapshotId: string): Promise<ErasedVolume> {
    assertSafeId(snapshotId);
    return this.mutex.run(`snapshot:${snapshotId}`, () =>
      this.eraseAll((format) => this.snapshotPathFor(snapshotId, format), `snapshot ${snapshotId}`),
    );
  }

  private async copyFile(source: string, target: string): Promise<void> {
    await run(this.cp, ['--sparse=always', '--reflink=auto', '--no-dereference', '--', source, target], {
      timeoutMs: 3_600_000,
      env: {},
    });
    chmodSync(target, 0o600);
  }

  /**
   * Creates the volume if missing, grows it if smaller than `sizeGiB` (never shrinks), and checks that
   * what is there is a volume file of the format (for qcow2: LUKS-encrypted, an overlay of exactly
   * `options.backing`, or standalone without it). The key only travels through a root-only temporary
   * file.
   */
  ensureVolume(
    id: string,
    sizeGiB: number,
    key: string,
    options: EnsureVolumeOptions = {},
  ): Promise<EnsuredVolume> {
    assertSafeId(id);
    assertSize(sizeGiB);
    assertKey(key);
    if (options.format !== undefined) assertFormat(options.format);
    const backing = options.backing ?? null;
    if (backing) assertBacking(backing);
    if (backing && options.format === 'luks') throw new Error('a luks volume has no backing image');
    return this.mutex.run(id, async () => {
      const existingFormat = this.formatOf(id);
      const format = options.format ?? existingFormat ?? (backing ? 'qcow2' : 'luks');
      if (existingFormat !== null && existingFormat !== format)
        throw new Error(`volume ${id} is a ${existingFormat} volume, not a ${format} one`);
      if (format === 'luks' && backing) throw new Error('a luks volume has no backing image');
      const path = this.pathFor(id, format);
      if (existingFormat === null) {
        if (backing) await this.checkBackingImage(backing, sizeGiB);
        const created = this.withKeyFile(key, (keyFile) =>
          this.qemuImgRetried(
            format === 'luks'
              ? [
                  'create',
                  '-q',
                  '-f',
                  'luks',
                  ...secretObject('sec0', keyFile),
                  '-o',
                  this.luksHeaderOptions('sec0'),
                  path,
                  `${sizeGiB}G`,
                ]
              : [
                  'create',
                  '-q',
                  '-f',
                  'qcow2',
                  ...secretObject('sec0', keyFile),
                  '-o',
                  this.qcow2EncryptionOptions('sec0') +
                    (backing ? `,backing_file=${opt(backing.path)},backing_fmt=${backing.format}` : ''),
                  // The backing image is not opened (its size was checked above).
                  ...(backing ? ['-u'] : []),
                  path,
                  `${sizeGiB}G`,
                ],
          ),
        );
        await created.catch((error: unknown) => {
          rmSync(path, { force: true }); // a half-made file is never reused
          throw error;
        });
        try {
          chmodSync(path, 0o600);
          await this.verify(path, format, backing);
        } catch (error) {
          rmSync(path, { force: true }); // half-made by this call: never reused
          throw error;
        }
        return { path, created: true, grown: false };
      }
      const header = await this.verify(path, format, backing);
      const virtualSize = header
        ? header.virtualSize
        : await this.withKeyFile(key, (keyFile) => this.luksVirtualSize(path, keyFile));
      if (virtualSize >= sizeGiB * GiB) return { path, created: false, grown: false };
      if (backing) await this.checkBackingImage(backing, sizeGiB);
      await this.withKeyFile(key, (keyFile) =>
        this.qemuImgRetried([
          'resize',
          '-q',
          ...secretObject('sec0', keyFile),
          '--image-opts',
          format === 'luks' ? luksImageOpts(path, 'sec0') : qcow2ImageOpts(path, 'sec0', backing),
          `${sizeGiB}G`,
        ]),
      );
      return { path, created: false, grown: true };
    });
  }

  /**
   * The volume's size as the guest sees it (bytes): a luks volume's read with its key; a qcow2
   * volume's from its verified header (which names `backing`, if given, as its backing image).
   */
  async virtualSizeOf(id: string, key: string, backing?: BackingImage): Promise<number> {
    assertKey(key);
    if (backing) assertBacking(backing);
    const format = this.formatOf(id) ?? 'luks';
    const path = this.pathFor(id, format);
    if (format === 'luks') return this.withKeyFile(key, (keyFile) => this.luksVirtualSize(path, keyFile));
    const header = await this.verify(path, 'qcow2', backing);
    return header!.virtualSize;
  }

  /**
   * Secure erase (src/common/secure-erase.ts) of the volume's file, whichever format is there: every
   * byte zeroed in place, fsynced, then removed; holes stay holes, so a mostly empty 1 TiB volume never
   * fills the host's disk.
   */
  eraseVolume(id: string): Promise<ErasedVolume> {
    assertSafeId(id);
    return this.mutex.run(id, () => this.eraseAll((format) => this.pathFor(id, format), `volume ${id}`));
  }

  /** Gives the volume's file to a VM's uid (uid:uid, 0600), before that VM's QEMU starts. */
  assignTo(id: string, uid: number): Promise<void> {
    if (!Number.isInteger(uid) || uid <= 0) throw new Error('a volume is never handed to root this way');
    return this.mutex.run(id, async () => this.chown(id, uid, null));
  }

  /**
   * Gives the volume's file back to root (0600): the VM with `fromUid` no longer has it. Left alone if
   * another VM's uid holds it meanwhile (or it is gone).
   */
  reclaim(id: string, fromUid: number): Promise<void> {
    return this.mutex.run(id, async () => this.chown(id, 0, fromUid));
  }

  // ------------------------------------------------------------------ helpers

  private existingFormat(pathOf: (format: VolumeFormat) => string): VolumeFormat | null {
    for (const format of FORMATS) if (lstatSync(pathOf(format), { throwIfNoEntry: false })) return format;
    return null;
  }

  private async eraseAll(pathOf: (format: VolumeFormat) => string, what: string): Promise<ErasedVolume> {
    const result: ErasedVolume = { existed: false, bytes: 0 };
    for (const format of FORMATS) {
      const erased = await eraseFileInPlace(pathOf(format), what);
      result.existed ||= erased.existed;
      result.bytes += erased.bytes;
    }
    return result;
  }

  private chown(id: string, uid: number, onlyFrom: number | null): void {
    let fd: number;
    try {
      fd = openSync(this.path(id), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' && onlyFrom !== null) return;
      throw new Error(`volume ${id}: ${(error as Error).message}`, { cause: error });
    }
    try {
      const stat = fstatSync(fd);
      if (!stat.isFile()) throw new Error(`volume ${id}: not a regular file`);
      if (onlyFrom !== null && stat.uid !== onlyFrom) return;
      fchownSync(fd, uid, uid);
      fchmodSync(fd, 0o600);
    } finally {
      closeSync(fd);
    }
  }

  /** A source file's format, by its magic (never following a link). */
  private sourceFormat(path: string): VolumeFormat {
    const head = readHead(path, LUKS_MAGIC.length, 'volume file');
    if (head.length >= LUKS_MAGIC.length && head.equals(LUKS_MAGIC)) return 'luks';
    if (head.length >= QCOW2_MAGIC.length && head.subarray(0, QCOW2_MAGIC.length).equals(QCOW2_MAGIC))
      return 'qcow2';
    throw new Error(`volume file ${path} is neither a LUKS nor a qcow2 volume: refused`);
  }

  /**
   * The backing image a qcow2 source is opened with: `given` (its header must name exactly that one or
   * none), or else the one its verified header names (checked like any backing image).
   */
  private async sourceBacking(path: string, given: BackingImage | undefined): Promise<BackingImage | null> {
    const header = (await this.verify(path, 'qcow2', undefined))!;
    if (header.backing === null) return null;
    if (given) {
      if (!sameBacking(header.backing, given))
        throw new Error(
          `volume file ${path} is an overlay of ${describeBacking(header.backing)}, not of ${describeBacking(given)}: refused`,
        );
      return given;
    }
    assertBacking(header.backing);
    await this.checkBackingImage(header.backing, null);
    return header.backing;
  }

  /** Verifies a volume file of the format; for qcow2, returns what its header says. */
  private async verify(
    path: string,
    format: VolumeFormat,
    backing: ExpectedBacking,
  ): Promise<Qcow2Header | null> {
    if (format === 'luks') {
      this.checkLuks(path);
      return null;
    }
    return this.checkQcow2(path, backing);
  }

  /** Refuses anything but a regular file that starts with the LUKS magic (never follows a link). */
  private checkLuks(path: string): void {
    const head = readHead(path, LUKS_MAGIC.length, 'volume file');
    if (head.length !== LUKS_MAGIC.length || !head.equals(LUKS_MAGIC))
      throw new Error(`volume file ${path} is not a LUKS volume: refused`);
  }

  /**
   * Refuses anything but a regular file (never following a link) with the qcow2 magic whose header
   * (`qemu-img info -f qcow2`, which opens neither backing nor data file, and needs no key) says: LUKS
   * encryption, no external data file, and the expected backing file.
   */
  private async checkQcow2(path: string, expected: ExpectedBacking): Promise<Qcow2Header> {
    const head = readHead(path, QCOW2_MAGIC.length, 'volume file');
    if (!head.equals(QCOW2_MAGIC)) throw new Error(`volume file ${path} is not a qcow2 volume: refused`);
    const { stdout } = await this.qemuImgRetried([
      'info',
      '--output=json',
      '--image-opts',
      `driver=qcow2,file.driver=file,file.filename=${opt(path)}`,
    ]);
    const info = JSON.parse(stdout) as {
      format?: unknown;
      'virtual-size'?: unknown;
      encrypted?: unknown;
      'backing-filename'?: unknown;
      'backing-filename-format'?: unknown;
      'format-specific'?: {
        type?: unknown;
        data?: { encrypt?: { format?: unknown }; 'data-file'?: unknown };
      };
    };
    const specific = info['format-specific'];
    if (
      info.format !== 'qcow2' ||
      info.encrypted !== true ||
      specific?.type !== 'qcow2' ||
      specific.data?.encrypt?.format !== 'luks'
    )
      throw new Error(`volume file ${path} is not a LUKS-encrypted qcow2 volume: refused`);
    if (specific.data['data-file'] !== undefined)
      throw new Error(`volume file ${path} has an external data file: refused`);
    const size = info['virtual-size'];
    if (typeof size !== 'number') throw new Error(`qemu-img info gave no virtual size for ${path}`);
    const backingPath = info['backing-filename'];
    const backingFormat = info['backing-filename-format'];
    let backing: BackingImage | null = null;
    if (backingPath !== undefined) {
      if (typeof backingPath !== 'string' || (backingFormat !== 'raw' && backingFormat !== 'qcow2'))
        throw new Error(`volume file ${path} names a backing file of no known format: refused`);
      backing = { path: backingPath, format: backingFormat };
    }
    if (expected !== undefined && !sameBacking(backing, expected))
      throw new Error(
        `volume file ${path} has backing file ${describeBacking(backing)}, expected ${describeBacking(expected)}: refused`,
      );
    return { virtualSize: size, backing };
  }

  /**
   * A backing image is a regular file (not a link), of its declared format, with no backing or data
   * file of its own, and (when `sizeGiB` is given) no larger than the volume.
   */
  private async checkBackingImage(backing: BackingImage, sizeGiB: number | null): Promise<void> {
    const stat = lstatSync(backing.path, { throwIfNoEntry: false });
    if (!stat) throw new Error(`backing image ${backing.path} does not exist`);
    if (!stat.isFile()) throw new Error(`backing image ${backing.path} is not a regular file (or is a link)`);
    const { stdout } = await this.qemuImgRetried([
      'info',
      '--output=json',
      '--image-opts',
      `driver=${backing.format},file.driver=file,file.filename=${opt(backing.path)}`,
    ]);
    const info = JSON.parse(stdout) as {
      'virtual-size'?: unknown;
      'backing-filename'?: unknown;
      encrypted?: unknown;
      'format-specific'?: { data?: { 'data-file'?: unknown } };
    };
    if (info['backing-filename'] !== undefined || info['format-specific']?.data?.['data-file'] !== undefined)
      throw new Error(`backing image ${backing.path} has a backing or data file of its own: refused`);
    if (info.encrypted === true) throw new Error(`backing image ${backing.path} is encrypted: refused`);
    const size = info['virtual-size'];
    if (typeof size !== 'number') throw new Error(`qemu-img info gave no virtual size for ${backing.path}`);
    if (sizeGiB !== null && size > sizeGiB * GiB)
      throw new Error(
        `backing image ${backing.path} (${size} bytes) is larger than the volume (${sizeGiB} GiB)`,
      );
  }

  private async luksVirtualSize(path: string, keyFile: string): Promise<number> {
    const { stdout } = await this.qemuImgRetried([
      'info',
      '--output=json',
      ...secretObject('sec0', keyFile),
      '--image-opts',
      luksImageOpts(path, 'sec0'),
    ]);
    const size = (JSON.parse(stdout) as { 'virtual-size'?: unknown })['virtual-size'];
    if (typeof size !== 'number') throw new Error(`qemu-img info gave no virtual size for ${path}`);
    return size;
  }

  /**
   * Runs `work` with the key in a 0600 file inside a fresh root-only (0700) directory of the volume
   * directory; both are removed afterwards, whatever happens.
   */
  private async withKeyFile<T>(key: string, work: (keyFile: string) => Promise<T>): Promise<T> {
    const keyDir = mkdtempSync(join(this.dir, KEY_DIR_PREFIX));
    try {
      chmodSync(keyDir, 0o700);
      const keyFile = join(keyDir, 'key');
      const fd = openSync(
        keyFile,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o600,
      );
      try {
        writeSync(fd, key);
      } finally {
        closeSync(fd);
      }
      return await work(keyFile);
    } finally {
      rmSync(keyDir, { recursive: true, force: true });
    }
  }

  /** qemu-img `-o` options for a new LUKS file's header, its key read from secret `secretId`. */
  private luksHeaderOptions(secretId: string): string {
    return `key-secret=${secretId},iter-time=${this.iterTimeMs},hash-alg=${LUKS_PBKDF_HASH}`;
  }

  /** qemu-img `-o` options for a new qcow2 file's LUKS encryption, its key read from secret `secretId`. */
  private qcow2EncryptionOptions(secretId: string): string {
    return (
      `encrypt.format=luks,encrypt.key-secret=${secretId},` +
      `encrypt.iter-time=${this.iterTimeMs},encrypt.hash-alg=${LUKS_PBKDF_HASH}`
    );
  }

  private async qemuImgRetried(args: string[], timeoutMs = QEMU_IMG_TIMEOUT_MS): Promise<{ stdout: string }> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await run(this.qemuImg, args, { timeoutMs, env: {} });
      } catch (error) {
        if (attempt >= PBKDF_ATTEMPTS || !isPbkdfFlake(error)) throw error;
        await sleep(50);
      }
    }
  }
}

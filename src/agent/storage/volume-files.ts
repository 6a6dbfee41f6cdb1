/**
 * The host's volume files: one LUKS-encrypted file per volume (QEMU's native LUKS format, opened by
 * QEMU itself: the host never sees the plaintext), `<agentDataDir>/volumes/<id>.luks`, in a directory
 * only root can enter (0700).
 *
 * - A volume is created on first use with the passphrase the server sent (never on a command line and
 *   never logged: qemu-img reads it from a 0600 file in a root-only temporary directory, removed right
 *   after), grown when the intent asks for more (never shrunk), and refused if the file there is not a
 *   LUKS file (a planted file never reaches QEMU).
 * - While a VM may use it, the file belongs to that VM's uid (0600); otherwise to root.
 * - Erasing overwrites the file in place with zeros (same inode, no O_TRUNC), fsyncs, then unlinks it;
 *   a link or anything but a regular file in its place is refused.
 *
 * - Snapshots are copies of a volume's encrypted file in `<agentDataDir>/snapshots/<id>.luks` (root
 *   0700 directory, files 0600): taken and restored while no VM runs on the volume, erased like volumes.
 *   A clone is re-encrypted (qemu-img convert, decrypting with the origin's passphrase and writing under
 *   the clone's own), so it shares no key material with its origin.
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
import { dirname, join } from 'node:path';
import { assertSafeId } from '../../common/ids.js';
import { KeyedMutex } from '../../common/keyed-mutex.js';
import { eraseFileInPlace, type ErasedFile } from '../../common/secure-erase.js';
import { CommandError, run } from '../../common/subprocess.js';

/** The first bytes of every LUKS (v1 and v2) header. */
export const LUKS_MAGIC = Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]);
const GiB = 1024 ** 3;
const KEY = /^[A-Za-z0-9+/]{43}=$/;
const KEY_DIR_PREFIX = '.key-';
const QEMU_IMG_TIMEOUT_MS = 120_000;
/** qemu-img's PBKDF benchmark fails now and then on a busy host ("Unable to get accurate CPU usage"). */
const PBKDF_ATTEMPTS = 20;

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

export type ErasedVolume = ErasedFile;

function assertKey(key: string): void {
  if (!KEY.test(key)) throw new Error('the volume key is not a base64 32-byte passphrase');
}

function assertSize(sizeGiB: number): void {
  if (!Number.isInteger(sizeGiB) || sizeGiB < 1 || sizeGiB > 65_536)
    throw new Error(`bad volume size ${sizeGiB} GiB`);
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

  /** The host path of a volume's file. */
  path(id: string): string {
    return join(this.dir, `${assertSafeId(id)}.luks`);
  }

  /** The host path of a snapshot's file. */
  snapshotPath(id: string): string {
    return join(this.snapshotsDir, `${assertSafeId(id)}.luks`);
  }

  /** Copies the volume's encrypted file into a new snapshot file (sparse; a reflink where possible). */
  snapshot(volumeId: string, snapshotId: string): Promise<{ bytes: number }> {
    const source = this.path(volumeId);
    const target = this.snapshotPath(snapshotId);
    return this.mutex.run(volumeId, async () => {
      this.checkLuks(source);
      if (lstatSync(target, { throwIfNoEntry: false }))
        throw new Error(`snapshot ${snapshotId} exists already`);
      await this.copyFile(source, target);
      return { bytes: lstatSync(target).size };
    });
  }

  /**
   * Replaces the volume's content with the snapshot's: copied beside it, then renamed over it (a crash
   * leaves either the old or the new content, never a mix). The copy belongs to root until the next
   * start hands it to the VM's uid.
   */
  restore(volumeId: string, snapshotId: string): Promise<{ bytes: number }> {
    const volume = this.path(volumeId);
    const snapshot = this.snapshotPath(snapshotId);
    return this.mutex.run(volumeId, async () => {
      this.checkLuks(volume);
      this.checkLuks(snapshot);
      const staged = join(this.dir, `.restore-${assertSafeId(volumeId)}`);
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
   * the clone's own (fresh LUKS header, salt and master key), then grown to `sizeGiB` if larger.
   */
  clone(
    snapshotId: string,
    sourceKey: string,
    volume: { id: string; sizeGiB: number; key: string },
  ): Promise<{ bytes: number }> {
    return this.importFrom(this.snapshotPath(snapshotId), sourceKey, volume);
  }

  /**
   * A new volume from any LUKS file of the platform's (a snapshot, a verified backup), re-encrypted
   * under the new volume's own key; grown to `sizeGiB` if larger.
   */
  importFrom(
    source: string,
    sourceKey: string,
    volume: { id: string; sizeGiB: number; key: string },
  ): Promise<{ bytes: number }> {
    const target = this.path(volume.id);
    assertKey(sourceKey);
    assertKey(volume.key);
    assertSize(volume.sizeGiB);
    return this.mutex
      .run(volume.id, async () => {
        this.checkLuks(source);
        if (lstatSync(target, { throwIfNoEntry: false }))
          throw new Error(`volume ${volume.id} exists already`);
        try {
          await this.withKeyFile(sourceKey, (sourceFile) =>
            this.withKeyFile(volume.key, (targetFile) =>
              this.qemuImgRetried([
                'convert',
                '-q',
                '--object',
                `secret,id=src,file=${sourceFile},format=raw`,
                '--object',
                `secret,id=dst,file=${targetFile},format=raw`,
                '--image-opts',
                `driver=luks,key-secret=src,file.filename=${source}`,
                '-O',
                'luks',
                '-o',
                `key-secret=dst,iter-time=${this.iterTimeMs}`,
                target,
              ]),
            ),
          );
          chmodSync(target, 0o600);
          this.checkLuks(target);
        } catch (error) {
          rmSync(target, { force: true }); // a half-made volume is never used
          throw error;
        }
        return { bytes: lstatSync(target).size };
      })
      .then(async (result) => {
        // Larger than its source: grown like any volume (ensureVolume takes the lock itself).
        const grown = await this.ensureVolume(volume.id, volume.sizeGiB, volume.key);
        return grown.grown ? { bytes: lstatSync(target).size } : result;
      });
  }

  /**
   * Copies the volume's encrypted file to `target` (a backup the server keeps): a new file, never a
   * link or an existing one.
   */
  exportTo(volumeId: string, target: string): Promise<{ bytes: number }> {
    const source = this.path(volumeId);
    return this.mutex.run(volumeId, async () => {
      this.checkLuks(source);
      if (lstatSync(target, { throwIfNoEntry: false })) throw new Error(`${target} exists already`);
      await this.copyFile(source, target);
      return { bytes: lstatSync(target).size };
    });
  }

  /** Secure erase of a snapshot's file (as for volumes). */
  eraseSnapshot(snapshotId: string): Promise<ErasedVolume> {
    const path = this.snapshotPath(snapshotId);
    return this.mutex.run(`snapshot:${snapshotId}`, () => eraseFileInPlace(path, `snapshot ${snapshotId}`));
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
   * what is there is a LUKS file. The key only travels through a root-only temporary file.
   */
  ensureVolume(id: string, sizeGiB: number, key: string): Promise<EnsuredVolume> {
    const path = this.path(id);
    assertSize(sizeGiB);
    assertKey(key);
    return this.mutex.run(id, async () => {
      const existing = lstatSync(path, { throwIfNoEntry: false });
      if (!existing) {
        const created = this.withKeyFile(key, (keyFile) =>
          this.qemuImgRetried([
            'create',
            '-q',
            '-f',
            'luks',
            '--object',
            `secret,id=sec0,file=${keyFile},format=raw`,
            '-o',
            `key-secret=sec0,iter-time=${this.iterTimeMs}`,
            path,
            `${sizeGiB}G`,
          ]),
        );
        await created.catch((error: unknown) => {
          rmSync(path, { force: true }); // a half-made file is never reused
          throw error;
        });
        try {
          chmodSync(path, 0o600);
          this.checkLuks(path);
        } catch (error) {
          rmSync(path, { force: true }); // half-made by this call: never reused
          throw error;
        }
        return { path, created: true, grown: false };
      }
      this.checkLuks(path);
      const virtualSize = await this.withKeyFile(key, (keyFile) => this.virtualSize(path, keyFile));
      if (virtualSize >= sizeGiB * GiB) return { path, created: false, grown: false };
      await this.withKeyFile(key, (keyFile) =>
        this.qemuImgRetried([
          'resize',
          '-q',
          '--object',
          `secret,id=sec0,file=${keyFile},format=raw`,
          '--image-opts',
          `driver=luks,key-secret=sec0,file.filename=${path}`,
          `${sizeGiB}G`,
        ]),
      );
      return { path, created: false, grown: true };
    });
  }

  /** The volume's size as the guest sees it (bytes), read with its key. */
  virtualSizeOf(id: string, key: string): Promise<number> {
    const path = this.path(id);
    assertKey(key);
    return this.withKeyFile(key, (keyFile) => this.virtualSize(path, keyFile));
  }

  /**
   * Secure erase (src/common/secure-erase.ts): every byte zeroed in place, fsynced, then removed; holes
   * stay holes, so a mostly empty 1 TiB volume never fills the host's disk.
   */
  eraseVolume(id: string): Promise<ErasedVolume> {
    const path = this.path(id);
    return this.mutex.run(id, () => eraseFileInPlace(path, `volume ${id}`));
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

  /** Refuses anything but a regular file that starts with the LUKS magic (never follows a link). */
  private checkLuks(path: string): void {
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (error) {
      throw new Error(`volume file ${path} cannot be opened: ${(error as Error).message}`, { cause: error });
    }
    try {
      if (!fstatSync(fd).isFile()) throw new Error(`volume file ${path} is not a regular file`);
      const head = Buffer.alloc(LUKS_MAGIC.length);
      const read = readSync(fd, head, 0, head.length, 0);
      if (read !== head.length || !head.equals(LUKS_MAGIC))
        throw new Error(`volume file ${path} is not a LUKS volume: refused`);
    } finally {
      closeSync(fd);
    }
  }

  private async virtualSize(path: string, keyFile: string): Promise<number> {
    const { stdout } = await this.qemuImgRetried([
      'info',
      '--output=json',
      '--object',
      `secret,id=sec0,file=${keyFile},format=raw`,
      '--image-opts',
      `driver=luks,key-secret=sec0,file.filename=${path}`,
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

  private async qemuImgRetried(args: string[]): Promise<{ stdout: string }> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await run(this.qemuImg, args, { timeoutMs: QEMU_IMG_TIMEOUT_MS, env: {} });
      } catch (error) {
        if (attempt >= PBKDF_ATTEMPTS || !isPbkdfFlake(error)) throw error;
        await sleep(50);
      }
    }
  }
}

/**
 * Volume files with the real qemu-img (and qemu-io to look through the decrypted view): LUKS creation,
 * growth, refusal of planted files, ownership, and the secure erase; qcow2+LUKS overlays of a backing
 * image: reads through, copy-on-write, growth, snapshots, clones, flattened exports and imports.
 */
import assert from 'node:assert/strict';
import { execFileSync, type ExecFileSyncOptions } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  linkSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { LUKS_MAGIC, QCOW2_MAGIC, VolumeFiles, type BackingImage } from './volume-files.js';
import { allZero, fileContains, head } from '../../../test/helpers/file-bytes.js';

const QEMU_IMG = '/usr/bin/qemu-img';

/**
 * qemu-img, synchronously, retried when its PBKDF benchmark flakes on a busy host ("Unable to get
 * accurate CPU usage", more likely with the short iteration times used here).
 */
function qemuImgSync(args: readonly string[], options: ExecFileSyncOptions = {}): string {
  for (let attempt = 1; ; attempt++) {
    try {
      return execFileSync(QEMU_IMG, args, { stdio: 'pipe', encoding: 'utf8', ...options }).toString();
    } catch (error) {
      const raw = (error as { stderr?: Buffer | string }).stderr;
      const stderr = raw === undefined ? '' : raw.toString();
      if (attempt >= 20 || !/accurate CPU usage/i.test(stderr)) throw error;
    }
  }
}
const QEMU_IO = '/usr/bin/qemu-io';
const GiB = 1024 ** 3;

const root = mkdtempSync(join(tmpdir(), 'rampart-volume-files-test-'));
after(() => rmSync(root, { recursive: true, force: true }));
const volumes = new VolumeFiles({ dir: join(root, 'volumes'), qemuImg: QEMU_IMG });

function newKey(): string {
  return randomBytes(32).toString('base64');
}

function newId(): string {
  return crypto.randomUUID();
}

/** The key in a file of the test's own (outside the volume directory), for qemu-io/qemu-img. */
function keyFile(key: string): string {
  const file = join(root, `key-${randomBytes(4).toString('hex')}`);
  writeFileSync(file, key, { mode: 0o600 });
  return file;
}

function openArgs(path: string, key: string): string[] {
  return [
    '--object',
    `secret,id=sec0,file=${keyFile(key)},format=raw`,
    '--image-opts',
    `driver=luks,key-secret=sec0,file.filename=${path}`,
  ];
}

/** Writes `data` at offset 0 of the decrypted view (qemu-img convert -n into the existing volume). */
function writeDecrypted(path: string, key: string, data: Buffer): void {
  const source = join(root, `marker-${randomBytes(4).toString('hex')}.raw`);
  writeFileSync(source, Buffer.concat([data, Buffer.alloc(512 - (data.length % 512))]));
  execFileSync(
    QEMU_IMG,
    [
      'convert',
      '-n',
      '-f',
      'raw',
      source,
      '--object',
      `secret,id=sec0,file=${keyFile(key)},format=raw`,
      '--target-image-opts',
      `driver=luks,key-secret=sec0,file.filename=${path}`,
    ],
    { stdio: 'pipe' },
  );
}

/** The first `length` bytes of a `qemu-io read -v` hex dump. */
function parseHexDump(out: string, length: number): Buffer {
  const bytes: number[] = [];
  for (const line of out.split('\n')) {
    const match = /^[0-9a-f]{8}:\s+((?:[0-9a-f]{2} ?)+)/.exec(line);
    if (match)
      bytes.push(
        ...match[1]!
          .trim()
          .split(/\s+/)
          .map((h) => parseInt(h, 16)),
      );
  }
  return Buffer.from(bytes.slice(0, length));
}

/** Reads `length` bytes at offset 0 of the decrypted view (qemu-io's hex dump). */
function readDecrypted(path: string, key: string, length: number): Buffer {
  const out = execFileSync(QEMU_IO, [...openArgs(path, key), '-c', `read -v 0 ${length}`], {
    encoding: 'utf8',
    stdio: 'pipe',
  });
  return parseHexDump(out, length);
}

function virtualSize(path: string, key: string): number {
  const out = qemuImgSync(['info', '--output=json', ...openArgs(path, key)], { encoding: 'utf8' });
  return (JSON.parse(out) as { 'virtual-size': number })['virtual-size'];
}

/** The PBKDF hash a LUKS (or qcow2+LUKS) header names, as `qemu-img info` reads it (no key needed). */
function pbkdfHash(path: string, format: 'luks' | 'qcow2'): unknown {
  const info = JSON.parse(
    qemuImgSync(['info', '--output=json', '-f', format, path], { encoding: 'utf8' }),
  ) as { 'format-specific'?: { data?: { 'hash-alg'?: unknown; encrypt?: { 'hash-alg'?: unknown } } } };
  const data = info['format-specific']?.data;
  return format === 'luks' ? data?.['hash-alg'] : data?.encrypt?.['hash-alg'];
}

test('the volume directory is root-only', () => {
  assert.equal(statSync(volumes.dir).mode & 0o777, 0o700);
});

test('a new volume is a LUKS file of the asked size; data written through it is not in the clear', async () => {
  const id = newId();
  const key = newKey();
  const started = Date.now();
  const made = await volumes.ensureVolume(id, 1, key);
  const createMs = Date.now() - started;
  assert.deepEqual(made, { path: join(volumes.dir, `${id}.luks`), created: true, grown: false });
  const stat = lstatSync(made.path);
  assert.ok(stat.isFile());
  assert.equal(stat.mode & 0o777, 0o600);
  assert.equal(stat.uid, 0);
  assert.ok(readFileSync(made.path).subarray(0, 6).equals(LUKS_MAGIC));
  assert.equal(virtualSize(made.path, key), GiB);
  // SHA-512 PBKDF: qemu-img can time its benchmark on hosts where SHA-256 is too quick to measure.
  assert.equal(pbkdfHash(made.path, 'luks'), 'sha512');
  // No key material left behind in the volume directory.
  assert.deepEqual(readdirSync(volumes.dir), [`${id}.luks`]);

  const marker = Buffer.from(`RAMPART-VOLUME-MARKER-${randomBytes(8).toString('hex')}`);
  writeDecrypted(made.path, key, marker);
  assert.ok(readDecrypted(made.path, key, marker.length).equals(marker), 'the marker reads back');
  assert.equal(fileContains(made.path, marker), false, 'the marker is not in the raw file');

  // The wrong key does not open it.
  assert.throws(() => readDecrypted(made.path, newKey(), 16), /Invalid password|cannot unlock/i);
  // Ensuring again changes nothing.
  assert.deepEqual(await volumes.ensureVolume(id, 1, key), { path: made.path, created: false, grown: false });
  assert.ok(readDecrypted(made.path, key, marker.length).equals(marker));
  console.log(`LUKS creation of a 1 GiB volume: ${createMs} ms`);
});

test('a volume grows (its data kept) and never shrinks', async () => {
  const id = newId();
  const key = newKey();
  const { path } = await volumes.ensureVolume(id, 1, key);
  const marker = Buffer.from(`GROW-${randomBytes(8).toString('hex')}`);
  writeDecrypted(path, key, marker);
  assert.deepEqual(await volumes.ensureVolume(id, 3, key), { path, created: false, grown: true });
  assert.equal(virtualSize(path, key), 3 * GiB);
  assert.equal(await volumes.virtualSizeOf(id, key), 3 * GiB);
  assert.ok(readDecrypted(path, key, marker.length).equals(marker));
  assert.deepEqual(await volumes.ensureVolume(id, 2, key), { path, created: false, grown: false });
  assert.equal(virtualSize(path, key), 3 * GiB);
});

test('a planted file or link in place of a volume is refused', async () => {
  const id = newId();
  writeFileSync(volumes.path(id), 'not a LUKS header, just data');
  await assert.rejects(volumes.ensureVolume(id, 1, newKey()), /not a LUKS volume/);
  assert.equal(readFileSync(volumes.path(id), 'utf8'), 'not a LUKS header, just data');

  // A link to a real LUKS file elsewhere (e.g. another host directory's volume) is not followed.
  const other = newId();
  await new VolumeFiles({ dir: join(root, 'other'), qemuImg: QEMU_IMG }).ensureVolume(other, 1, newKey());
  symlinkSync(join(root, 'other', `${other}.luks`), volumes.path(other));
  await assert.rejects(volumes.ensureVolume(other, 1, newKey()), /cannot be opened/);
  await assert.rejects(volumes.assignTo(other, 4242), /volume/);
});

test('ownership: handed to a VM uid, and back to root only from that uid', async () => {
  const id = newId();
  const { path } = await volumes.ensureVolume(id, 1, newKey());
  await volumes.assignTo(id, 4242);
  assert.deepEqual(
    [lstatSync(path).uid, lstatSync(path).gid, lstatSync(path).mode & 0o777],
    [4242, 4242, 0o600],
  );
  await volumes.reclaim(id, 4343); // another VM's uid: not its to give back
  assert.equal(lstatSync(path).uid, 4242);
  await volumes.reclaim(id, 4242);
  assert.deepEqual([lstatSync(path).uid, lstatSync(path).gid], [0, 0]);
  await volumes.reclaim(newId(), 4242); // no file: nothing to do
  assert.throws(() => volumes.assignTo(id, 0), /never handed to root/);
});

test('erase overwrites the file in place with zeros, then removes it', async () => {
  const id = newId();
  const key = newKey();
  const { path } = await volumes.ensureVolume(id, 1, key);
  writeDecrypted(path, key, Buffer.from('SOME-DATA-TO-ERASE'));
  // Data in the middle and at the very end of the volume too (the rest stays sparse).
  execFileSync(
    QEMU_IO,
    [...openArgs(path, key), '-c', 'write -P 0x5a 512M 64k', '-c', 'write -P 0xa5 1048572k 4k'],
    {
      stdio: 'pipe',
    },
  );
  const size = statSync(path).size;
  const allocatedBefore = statSync(path).blocks * 512;
  assert.ok(allocatedBefore < 64 * 1024 * 1024, 'the volume is sparse');
  const keep = join(root, `hardlink-${id}`);
  linkSync(path, keep); // the same inode, still reachable after the name is gone
  const started = Date.now();
  assert.deepEqual(await volumes.eraseVolume(id), { existed: true, bytes: size });
  const eraseMs = Date.now() - started;
  assert.equal(existsSync(path), false);
  assert.equal(statSync(keep).size, size);
  assert.ok(allZero(keep), 'every byte of the inode is zero');
  // Holes were not filled in: erasing a mostly empty volume does not allocate its whole size.
  assert.ok(statSync(keep).blocks * 512 <= allocatedBefore + 8 * 1024 * 1024, 'no hole was allocated');
  rmSync(keep);
  assert.deepEqual(await volumes.eraseVolume(id), { existed: false, bytes: 0 });
  console.log(`erase of a 1 GiB volume (${size} bytes): ${eraseMs} ms`);
});

test('erase refuses a link in place of the file and leaves its target alone', async () => {
  const id = newId();
  const target = join(root, `victim-${id}`);
  writeFileSync(target, 'precious');
  symlinkSync(target, volumes.path(id));
  await assert.rejects(volumes.eraseVolume(id), /link in place/);
  assert.equal(readFileSync(target, 'utf8'), 'precious');
  assert.ok(lstatSync(volumes.path(id)).isSymbolicLink());
  rmSync(volumes.path(id));
});

test('erase refuses anything but a regular file', async () => {
  const id = newId();
  execFileSync('mkfifo', [volumes.path(id)]);
  await assert.rejects(volumes.eraseVolume(id), /not a regular file/);
  rmSync(volumes.path(id));
});

test('bad ids, sizes and keys never reach a path or qemu-img', async () => {
  assert.throws(() => volumes.path('../etc/passwd'), /not a valid id/);
  assert.throws(() => volumes.ensureVolume(newId(), 0, newKey()), /bad volume size/);
  assert.throws(() => volumes.ensureVolume(newId(), 1, 'short'), /not a base64/);
  await assert.rejects(async () => volumes.eraseVolume('x,y'), /not a valid id/);
});

test('snapshots copy the encrypted file; restore brings its content back; the copy is erased like a volume', async () => {
  const id = newId();
  const key = newKey();
  await volumes.ensureVolume(id, 1, key);
  const before = Buffer.from(`before-${randomBytes(6).toString('hex')}`);
  writeDecrypted(volumes.path(id), key, before);
  const snapshotId = newId();
  const taken = await volumes.snapshot(id, snapshotId);
  assert.equal(taken.bytes, statSync(volumes.path(id)).size);
  assert.equal(statSync(volumes.snapshotPath(snapshotId)).mode & 0o777, 0o600);
  assert.equal(fileContains(volumes.snapshotPath(snapshotId), before), false, 'still encrypted');
  await assert.rejects(volumes.snapshot(id, snapshotId), /exists already/);

  const after = Buffer.from(`after--${randomBytes(6).toString('hex')}`);
  writeDecrypted(volumes.path(id), key, after);
  assert.deepEqual(readDecrypted(volumes.path(id), key, after.length), after);
  await volumes.restore(id, snapshotId);
  assert.deepEqual(readDecrypted(volumes.path(id), key, before.length), before, 'the change is gone');

  const erased = await volumes.eraseSnapshot(snapshotId);
  assert.equal(erased.existed, true);
  assert.equal(existsSync(volumes.snapshotPath(snapshotId)), false);
  assert.deepEqual(await volumes.eraseSnapshot(snapshotId), { existed: false, bytes: 0 });
  await assert.rejects(volumes.restore(id, snapshotId), /cannot be opened/);
});

test('a clone is re-encrypted under its own key: same data, nothing shared with its origin', async () => {
  const id = newId();
  const key = newKey();
  await volumes.ensureVolume(id, 1, key);
  const data = Buffer.from(`cloned-${randomBytes(6).toString('hex')}`);
  writeDecrypted(volumes.path(id), key, data);
  const snapshotId = newId();
  await volumes.snapshot(id, snapshotId);
  const clone = { id: newId(), sizeGiB: 2, key: newKey() };
  await volumes.clone(snapshotId, key, clone);
  const clonePath = volumes.path(clone.id);
  assert.deepEqual(readDecrypted(clonePath, clone.key, data.length), data);
  assert.equal(virtualSize(clonePath, clone.key), 2 * 1024 ** 3, 'grown to the size asked for');
  assert.throws(() => readDecrypted(clonePath, key, data.length), 'the origin key does not open it');
  assert.equal(fileContains(clonePath, data), false);
  assert.equal(pbkdfHash(clonePath, 'luks'), 'sha512');
  assert.notDeepEqual(head(clonePath, 4096), head(volumes.path(id), 4096), 'own LUKS header');
  await assert.rejects(
    volumes.clone(snapshotId, newKey(), { ...clone, id: newId() }),
    /./,
    'wrong origin key',
  );
  await assert.rejects(volumes.clone(snapshotId, key, clone), /exists already/);
});

// ------------------------------------------------------------------ qcow2 overlays of a backing image

const MiB = 1024 ** 2;
/** A short PBKDF iteration time: these tests open many volumes (the 200 ms default is tested above). */
const qv = new VolumeFiles({ dir: join(root, 'qcow2-volumes'), qemuImg: QEMU_IMG, iterTimeMs: 20 });

/** Two small plaintext backing images (raw and qcow2) with 0x5a in their first MiB. */
function makeBacking(format: 'raw' | 'qcow2', sizeMiB = 64): BackingImage {
  const path = join(root, `backing-${randomBytes(4).toString('hex')}.${format}`);
  qemuImgSync(['create', '-q', '-f', format, path, `${sizeMiB}M`], { stdio: 'pipe' });
  execFileSync(QEMU_IO, ['-f', format, '-c', 'write -P 0x5a 0 1M', path], { stdio: 'pipe' });
  return { path, format };
}
const rawBacking = makeBacking('raw');
const qcow2Backing = makeBacking('qcow2');

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** qemu-io/qemu-img arguments opening a qcow2+LUKS file, its backing named explicitly (or none). */
function qcow2Args(path: string, key: string, backing: BackingImage | null): string[] {
  const backingOpts = backing
    ? `,backing.driver=${backing.format},backing.file.filename=${backing.path}`
    : '';
  return [
    '--object',
    `secret,id=sec0,file=${keyFile(key)},format=raw`,
    '--image-opts',
    `driver=qcow2,encrypt.key-secret=sec0,file.filename=${path}${backingOpts}`,
  ];
}

/** Runs qemu-io commands on a qcow2+LUKS file (throws if one fails, e.g. a `read -P` mismatch). */
function qio(path: string, key: string, backing: BackingImage | null, ...commands: string[]): string {
  const out = execFileSync(
    QEMU_IO,
    [...qcow2Args(path, key, backing), ...commands.flatMap((c) => ['-c', c])],
    {
      encoding: 'utf8',
      stdio: 'pipe',
    },
  );
  assert.doesNotMatch(out, /fail|error|Pattern verification/i, out);
  return out;
}

/** The header as qemu-img info reads it (no key, no backing opened). */
function qcow2Info(path: string): Record<string, unknown> {
  return JSON.parse(
    qemuImgSync(['info', '--output=json', '-f', 'qcow2', path], { encoding: 'utf8' }),
  ) as Record<string, unknown>;
}

/** Writes a distinctive marker (64 KiB of a repeated text) at `offset` of the decrypted view. */
function writeMarker(path: string, key: string, backing: BackingImage | null, offset: number): Buffer {
  const text = Buffer.from(`RAMPART-OVERLAY-MARKER-${randomBytes(8).toString('hex')}-`);
  const data = Buffer.alloc(64 * 1024);
  for (let at = 0; at < data.length; at += text.length) text.copy(data, at);
  const file = join(root, `marker-${randomBytes(4).toString('hex')}.bin`);
  writeFileSync(file, data);
  qio(path, key, backing, `write -s ${file} ${offset} ${data.length}`);
  return text;
}

/** Reads `length` bytes at `offset` of a qcow2+LUKS file's decrypted view. */
function readQcow2(
  path: string,
  key: string,
  backing: BackingImage | null,
  offset: number,
  length: number,
): Buffer {
  const out = qio(path, key, backing, `read -v ${offset} ${length}`);
  return parseHexDump(out, length);
}

test('a qcow2 overlay reads through to its backing image, writes only into itself, encrypted', async () => {
  const id = newId();
  const key = newKey();
  const backingHash = sha256(rawBacking.path);
  const made = await qv.ensureVolume(id, 1, key, { format: 'qcow2', backing: rawBacking });
  assert.deepEqual(made, { path: join(qv.dir, `${id}.qcow2`), created: true, grown: false });
  assert.equal(qv.formatOf(id), 'qcow2');
  assert.equal(qv.path(id), made.path);
  assert.equal(qv.pathFor(id, 'luks'), join(qv.dir, `${id}.luks`));
  const stat = lstatSync(made.path);
  assert.equal(stat.mode & 0o777, 0o600);
  assert.ok(head(made.path, 4).equals(QCOW2_MAGIC));
  const info = qcow2Info(made.path);
  assert.equal(info['encrypted'], true);
  assert.equal(pbkdfHash(made.path, 'qcow2'), 'sha512');
  assert.equal(info['backing-filename'], rawBacking.path);
  assert.equal(info['virtual-size'], GiB);
  assert.equal(await qv.virtualSizeOf(id, key, rawBacking), GiB);
  assert.deepEqual(
    readdirSync(qv.dir).filter((f) => f.startsWith(id)),
    [`${id}.qcow2`],
  );

  qio(made.path, key, rawBacking, 'read -P 0x5a 0 1M', 'read -P 0 1M 1M');
  qio(made.path, key, rawBacking, 'write -P 0xa5 2M 1M');
  const marker = writeMarker(made.path, key, rawBacking, 4 * MiB);
  qio(made.path, key, rawBacking, 'read -P 0x5a 0 1M', 'read -P 0xa5 2M 1M');
  assert.ok(readQcow2(made.path, key, rawBacking, 4 * MiB, marker.length).equals(marker));
  assert.equal(sha256(rawBacking.path), backingHash, 'the backing image is unchanged');
  assert.equal(fileContains(made.path, marker), false, 'the marker is not in the overlay file');
  assert.equal(fileContains(made.path, Buffer.alloc(4096, 0xa5)), false, 'nor the pattern');
  assert.ok(statSync(made.path).size < 16 * MiB, 'only what was written is in the overlay');
  assert.throws(() => qio(made.path, newKey(), rawBacking, 'read 0 512'), /Invalid password|cannot unlock/i);

  // Ensuring again changes nothing; the wrong backing, none, or the other format is refused.
  assert.deepEqual(await qv.ensureVolume(id, 1, key, { format: 'qcow2', backing: rawBacking }), {
    path: made.path,
    created: false,
    grown: false,
  });
  await assert.rejects(qv.ensureVolume(id, 1, key, { format: 'qcow2' }), /expected none/);
  await assert.rejects(qv.ensureVolume(id, 1, key, { backing: qcow2Backing }), /backing file/);
  await assert.rejects(qv.ensureVolume(id, 1, key), /expected none/);
  await assert.rejects(qv.ensureVolume(id, 1, key, { format: 'luks' }), /qcow2 volume, not a luks/);

  // A qcow2 backing image works the same.
  const other = newId();
  const { path } = await qv.ensureVolume(other, 1, key, { format: 'qcow2', backing: qcow2Backing });
  qio(path, key, qcow2Backing, 'read -P 0x5a 0 1M');
  assert.equal(qcow2Info(path)['backing-filename'], qcow2Backing.path);
});

test('a qcow2 overlay grows (its data kept), never shrinks; a backing larger than the volume is refused', async () => {
  const id = newId();
  const key = newKey();
  const { path } = await qv.ensureVolume(id, 1, key, { format: 'qcow2', backing: rawBacking });
  qio(path, key, rawBacking, 'write -P 0xa5 2M 1M');
  assert.deepEqual(await qv.ensureVolume(id, 2, key, { format: 'qcow2', backing: rawBacking }), {
    path,
    created: false,
    grown: true,
  });
  assert.equal(qcow2Info(path)['virtual-size'], 2 * GiB);
  assert.equal(qcow2Info(path)['backing-filename'], rawBacking.path);
  qio(path, key, rawBacking, 'read -P 0x5a 0 1M', 'read -P 0xa5 2M 1M');
  assert.deepEqual(await qv.ensureVolume(id, 1, key, { format: 'qcow2', backing: rawBacking }), {
    path,
    created: false,
    grown: false,
  });
  assert.equal(qcow2Info(path)['virtual-size'], 2 * GiB);

  const big = makeBacking('raw', 1536);
  await assert.rejects(
    qv.ensureVolume(newId(), 1, key, { format: 'qcow2', backing: big }),
    /larger than the volume/,
  );
  for (const path of ['relative.raw', '/a/../b.raw', '/images/a,b.raw', '/images/nbd:x.raw'])
    assert.throws(
      () => qv.ensureVolume(newId(), 1, key, { format: 'qcow2', backing: { path, format: 'raw' } }),
      /bad backing image path/,
    );
  const link = join(root, `backing-link-${randomBytes(4).toString('hex')}.raw`);
  symlinkSync(rawBacking.path, link);
  await assert.rejects(
    qv.ensureVolume(newId(), 1, key, { format: 'qcow2', backing: { path: link, format: 'raw' } }),
    /not a regular file/,
  );
  assert.deepEqual(
    readdirSync(qv.dir).filter((f) => f.startsWith('.key-')),
    [],
  );
});

test('qcow2 snapshots keep their format; restore brings the old data back and refuses a format mismatch', async () => {
  const id = newId();
  const key = newKey();
  const { path } = await qv.ensureVolume(id, 1, key, { format: 'qcow2', backing: rawBacking });
  qio(path, key, rawBacking, 'write -P 0x11 2M 64k');
  const snapshotId = newId();
  await qv.snapshot(id, snapshotId);
  assert.equal(qv.snapshotPath(snapshotId), join(qv.snapshotsDir, `${snapshotId}.qcow2`));
  assert.equal(statSync(qv.snapshotPath(snapshotId)).mode & 0o777, 0o600);
  qio(path, key, rawBacking, 'write -P 0x22 2M 64k', 'write -P 0x33 0 64k');
  await qv.restore(id, snapshotId);
  qio(path, key, rawBacking, 'read -P 0x11 2M 64k', 'read -P 0x5a 0 1M');

  const luksId = newId();
  await qv.ensureVolume(luksId, 1, newKey());
  const luksSnapshot = newId();
  await qv.snapshot(luksId, luksSnapshot);
  await assert.rejects(qv.restore(id, luksSnapshot), /is a luks file/);
  await assert.rejects(qv.restore(luksId, snapshotId), /is a qcow2 file/);

  assert.equal((await qv.eraseSnapshot(snapshotId)).existed, true);
  assert.equal(existsSync(qv.snapshotPathFor(snapshotId, 'qcow2')), false);
});

test('qcow2 clones: an overlay of the same backing under its own key, or standalone', async () => {
  const id = newId();
  const key = newKey();
  const { path } = await qv.ensureVolume(id, 1, key, { format: 'qcow2', backing: rawBacking });
  qio(path, key, rawBacking, 'write -P 0xa5 2M 1M');
  const snapshotId = newId();
  await qv.snapshot(id, snapshotId);

  const overlay = { id: newId(), sizeGiB: 2, key: newKey() };
  await qv.clone(snapshotId, key, overlay, { backing: rawBacking });
  const overlayPath = qv.path(overlay.id);
  assert.equal(overlayPath, join(qv.dir, `${overlay.id}.qcow2`));
  assert.equal(statSync(overlayPath).mode & 0o777, 0o600);
  qio(overlayPath, overlay.key, rawBacking, 'read -P 0x5a 0 1M', 'read -P 0xa5 2M 1M');
  assert.throws(() => qio(overlayPath, key, rawBacking, 'read 0 512'), /Invalid password|cannot unlock/i);
  const info = qcow2Info(overlayPath);
  assert.equal(info['backing-filename'], rawBacking.path, 'still an overlay');
  assert.equal(info['virtual-size'], 2 * GiB, 'grown to the size asked for');
  assert.ok(statSync(overlayPath).size < 8 * MiB, 'only what differs from the backing is written');

  const standalone = { id: newId(), sizeGiB: 1, key: newKey() };
  await qv.clone(snapshotId, key, standalone);
  const standalonePath = qv.path(standalone.id);
  assert.equal(qcow2Info(standalonePath)['backing-filename'], undefined, 'standalone');
  assert.equal(pbkdfHash(overlayPath, 'qcow2'), 'sha512');
  assert.equal(pbkdfHash(standalonePath, 'qcow2'), 'sha512');
  qio(standalonePath, standalone.key, null, 'read -P 0x5a 0 1M', 'read -P 0xa5 2M 1M');

  await assert.rejects(qv.clone(snapshotId, key, overlay, { backing: rawBacking }), /exists already/);
  await assert.rejects(
    qv.clone(snapshotId, newKey(), { ...overlay, id: newId() }, { backing: rawBacking }),
    /./,
    'wrong origin key',
  );
  await assert.rejects(
    qv.clone(snapshotId, key, { ...overlay, id: newId() }, { backing: qcow2Backing }),
    /is an overlay of/,
  );
  assert.deepEqual(
    readdirSync(qv.dir).filter((f) => f.startsWith('.')),
    [],
    'no half-made clone or key left',
  );
});

test('a qcow2 export is flattened under the same key; importing it gives a volume under a new key', async () => {
  const id = newId();
  const key = newKey();
  const { path } = await qv.ensureVolume(id, 1, key, { format: 'qcow2', backing: rawBacking });
  qio(path, key, rawBacking, 'write -P 0xa5 2M 1M');
  const target = join(root, `export-${id}.qcow2`);
  await assert.rejects(qv.exportTo(id, target), /needs its key/);
  assert.equal(existsSync(target), false);
  const exported = await qv.exportTo(id, target, { key, backing: rawBacking });
  assert.equal(exported.bytes, statSync(target).size);
  assert.equal(statSync(target).mode & 0o777, 0o600);
  assert.equal(qcow2Info(target)['backing-filename'], undefined, 'standalone');
  assert.equal(qcow2Info(target)['encrypted'], true);
  assert.equal(pbkdfHash(target, 'qcow2'), 'sha512');
  qio(target, key, null, 'read -P 0x5a 0 1M', 'read -P 0xa5 2M 1M', 'read -P 0 4M 1M');
  await assert.rejects(qv.exportTo(id, target, { key, backing: rawBacking }), /exists already/);
  await assert.rejects(
    qv.exportTo(id, join(root, `x-${id}`), { key, backing: qcow2Backing }),
    /is an overlay of/,
  );

  const imported = { id: newId(), sizeGiB: 2, key: newKey() };
  await qv.importFrom(target, key, imported);
  const importedPath = qv.path(imported.id);
  assert.equal(qv.formatOf(imported.id), 'qcow2');
  assert.equal(qcow2Info(importedPath)['virtual-size'], 2 * GiB);
  qio(importedPath, imported.key, null, 'read -P 0x5a 0 1M', 'read -P 0xa5 2M 1M');
  assert.throws(() => qio(importedPath, key, null, 'read 0 512'), /Invalid password|cannot unlock/i);

  // Imported back onto the image: an overlay again, holding only what differs from it.
  const rebased = { id: newId(), sizeGiB: 1, key: newKey() };
  await qv.importFrom(target, key, rebased, { backing: rawBacking });
  assert.equal(qcow2Info(qv.path(rebased.id))['backing-filename'], rawBacking.path);
  qio(qv.path(rebased.id), rebased.key, rawBacking, 'read -P 0x5a 0 1M', 'read -P 0xa5 2M 1M');
});

test('planted qcow2 files are refused: unencrypted, another backing, a link', async () => {
  const key = newKey();
  const plain = newId();
  qemuImgSync(['create', '-q', '-f', 'qcow2', qv.pathFor(plain, 'qcow2'), '1G']);
  await assert.rejects(qv.ensureVolume(plain, 1, key, { format: 'qcow2' }), /not a LUKS-encrypted qcow2/);
  await assert.rejects(qv.ensureVolume(plain, 1, key), /not a LUKS-encrypted qcow2/);
  await assert.rejects(
    qv.importFrom(qv.pathFor(plain, 'qcow2'), key, { id: newId(), sizeGiB: 1, key: newKey() }),
    /not a LUKS-encrypted qcow2/,
  );

  const elsewhere = newId();
  qemuImgSync([
    'create',
    '-q',
    '-f',
    'qcow2',
    '--object',
    `secret,id=sec0,file=${keyFile(key)},format=raw`,
    '-o',
    `encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,encrypt.hash-alg=sha512,backing_file=${qcow2Backing.path},backing_fmt=qcow2`,
    '-u',
    qv.pathFor(elsewhere, 'qcow2'),
    '1G',
  ]);
  await assert.rejects(
    qv.ensureVolume(elsewhere, 1, key, { format: 'qcow2', backing: rawBacking }),
    /has backing file .* expected/,
  );
  await assert.rejects(qv.virtualSizeOf(elsewhere, key, rawBacking), /has backing file/);

  const other = new VolumeFiles({ dir: join(root, 'other-qcow2'), qemuImg: QEMU_IMG });
  const real = newId();
  await other.ensureVolume(real, 1, key, { format: 'qcow2', backing: rawBacking });
  symlinkSync(other.path(real), qv.pathFor(real, 'qcow2'));
  assert.equal(qv.formatOf(real), 'qcow2', 'the link is seen, not followed');
  await assert.rejects(
    qv.ensureVolume(real, 1, key, { format: 'qcow2', backing: rawBacking }),
    /cannot be opened/,
  );
  await assert.rejects(qv.snapshot(real, newId()), /cannot be opened/);
  await assert.rejects(
    qv.importFrom(qv.pathFor(real, 'qcow2'), key, { id: newId(), sizeGiB: 1, key: newKey() }),
    /cannot be opened/,
  );
  await assert.rejects(qv.assignTo(real, 4242), /volume/);
  await assert.rejects(qv.eraseVolume(real), /link in place/);
  assert.ok(existsSync(other.path(real)));
});

test('a qcow2 volume changes hands and is erased like a luks one', async () => {
  const id = newId();
  const key = newKey();
  const { path } = await qv.ensureVolume(id, 1, key, { format: 'qcow2', backing: rawBacking });
  await qv.assignTo(id, 4242);
  assert.deepEqual([lstatSync(path).uid, lstatSync(path).mode & 0o777], [4242, 0o600]);
  await qv.reclaim(id, 4242);
  assert.equal(lstatSync(path).uid, 0);

  qio(path, key, rawBacking, 'write -P 0xa5 2M 1M', 'write -P 0x5a 1020M 4M');
  const size = statSync(path).size;
  const keep = join(root, `hardlink-${id}`);
  linkSync(path, keep);
  assert.deepEqual(await qv.eraseVolume(id), { existed: true, bytes: size });
  assert.equal(existsSync(path), false);
  assert.equal(qv.formatOf(id), null);
  assert.ok(allZero(keep), 'every byte of the inode is zero');
  rmSync(keep);
  assert.deepEqual(await qv.eraseVolume(id), { existed: false, bytes: 0 });
});

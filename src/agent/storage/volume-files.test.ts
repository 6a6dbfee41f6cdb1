/**
 * Volume files with the real qemu-img (and qemu-io to look through the decrypted view): LUKS creation,
 * growth, refusal of planted files, ownership, and the secure erase.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
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
import { LUKS_MAGIC, VolumeFiles } from './volume-files.js';
import { allZero, fileContains, head } from '../../../test/helpers/file-bytes.js';

const QEMU_IMG = '/usr/bin/qemu-img';
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

/** Reads `length` bytes at offset 0 of the decrypted view (qemu-io's hex dump). */
function readDecrypted(path: string, key: string, length: number): Buffer {
  const out = execFileSync(QEMU_IO, [...openArgs(path, key), '-c', `read -v 0 ${length}`], {
    encoding: 'utf8',
    stdio: 'pipe',
  });
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

function virtualSize(path: string, key: string): number {
  const out = execFileSync(QEMU_IMG, ['info', '--output=json', ...openArgs(path, key)], { encoding: 'utf8' });
  return (JSON.parse(out) as { 'virtual-size': number })['virtual-size'];
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
  assert.notDeepEqual(head(clonePath, 4096), head(volumes.path(id), 4096), 'own LUKS header');
  await assert.rejects(
    volumes.clone(snapshotId, newKey(), { ...clone, id: newId() }),
    /./,
    'wrong origin key',
  );
  await assert.rejects(volumes.clone(snapshotId, key, clone), /exists already/);
});

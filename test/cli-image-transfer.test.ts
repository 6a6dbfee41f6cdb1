/**
 * `rampart image upload|download|delete` against a real server: a streamed bundle upload with progress
 * on stderr, a verified download, and a refused disk image (a qcow2 with a backing file) that leaves no
 * queued record behind and exits with the usage code.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Image } from '../src/api/image.js';
import { runCli, type CliResult } from './helpers/cli-runner.js';
import { RampartHarness } from './helpers/rampart-harness.js';
import { GUEST_IMAGE_DIR } from './helpers/repo.js';

let rampart: RampartHarness;
let work: string;

const cli = (args: string[]): Promise<CliResult> => runCli(rampart, args);

const manifest = JSON.parse(readFileSync(join(GUEST_IMAGE_DIR, 'manifest.json'), 'utf8')) as {
  kernel: string;
  initrd: string;
};
const kernel = join(GUEST_IMAGE_DIR, manifest.kernel);
const initrd = join(GUEST_IMAGE_DIR, manifest.initrd);

before(async () => {
  rampart = await RampartHarness.start();
  work = mkdtempSync(join(tmpdir(), 'rampart-cli-images-'));
});

after(async () => {
  await rampart?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('image upload streams a bundle with progress; the result is scanned and active', async () => {
  const up = await cli(['image', 'upload', 'mybundle', '--kernel', kernel, '--initrd', initrd, '-o', 'json']);
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stderr, /uploading kernel: [\d.]+\/[\d.]+ MiB \(100%\)/);
  assert.match(up.stderr, /uploading initrd: [\d.]+\/[\d.]+ MiB \(100%\)/);
  const image = JSON.parse(up.stdout) as Image;
  assert.equal(image.status, 'active');
  assert.equal(image.scan.verdict, 'clean');
  assert.equal(image.platform, false);
  const tiny = await rampart.api<Image>('GET', '/v1/images/tiny');
  assert.equal(image.sha256, tiny.body.sha256, 'same files, same identity');

  const table = await cli(['image', 'list']);
  assert.match(table.stdout, /mybundle\s+kernel-initrd\s+active\s+clean/);
});

test('image download writes the verified file; an existing target is refused', async () => {
  const target = join(work, 'kernel');
  const down = await cli(['image', 'download', 'mybundle', '--part', 'kernel', '-f', target]);
  assert.equal(down.code, 0, down.stderr);
  assert.ok(readFileSync(target).equals(readFileSync(kernel)));
  const again = await cli(['image', 'download', 'mybundle', '--part', 'kernel', '-f', target]);
  assert.notEqual(again.code, 0, 'the file exists: not overwritten');
});

test('a qcow2 with a backing file is refused (exit 2) and leaves no image behind', async () => {
  const base = join(work, 'base.raw');
  const top = join(work, 'top.qcow2');
  for (const args of [
    ['create', '-f', 'raw', base, '16M'],
    ['create', '-f', 'qcow2', '-F', 'raw', '-b', base, top],
  ]) {
    const made = spawnSync('qemu-img', args);
    assert.equal(made.status, 0, made.stderr.toString());
  }
  const up = await cli(['image', 'upload', 'sneaky', '--disk', top, '--format', 'qcow2']);
  assert.equal(up.code, 2, up.stderr);
  assert.match(up.stderr, /backing/);
  const listed = await rampart.api<{ items: Image[] }>('GET', '/v1/images');
  assert.equal(
    listed.body.items.some((i) => i.name === 'sneaky'),
    false,
  );
});

test('image delete removes an unused image', async () => {
  const del = await cli(['image', 'delete', 'mybundle']);
  assert.equal(del.code, 0, del.stderr);
  assert.equal((await rampart.api('GET', '/v1/images/mybundle')).status, 404);
});

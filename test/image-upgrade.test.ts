/**
 * Upgrade from the plaintext image store: a data directory written by a version before encrypted images
 * (the image row points at plaintext files under images/, no blobs, never scanned) is adopted at start:
 * the files are encrypted into the store, the plaintext copies removed, the image scanned and usable.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import type { Image } from '../src/api/image.js';
import { RampartHarness } from './helpers/rampart-harness.js';
import { GUEST_IMAGE_DIR } from './helpers/repo.js';

let harness: RampartHarness;

before(async () => {
  harness = await RampartHarness.start();
});

after(async () => {
  await harness?.cleanup();
});

test('a plaintext image of an older version is encrypted into the store and its plaintext removed', async () => {
  const tiny = (await harness.api<Image>('GET', '/v1/images/tiny')).body;
  const { kernel, initrd } = tiny.files as { kernel: string; initrd: string };
  await harness.killServer('SIGTERM');

  // Rewind to the old layout: plaintext files at images/<sha>, no blob rows or files, no scan verdict.
  const manifest = JSON.parse(readFileSync(join(GUEST_IMAGE_DIR, 'manifest.json'), 'utf8')) as {
    kernel: string;
    initrd: string;
  };
  const legacyKernel = join(harness.dataDir, 'images', kernel);
  const legacyInitrd = join(harness.dataDir, 'images', initrd);
  copyFileSync(join(GUEST_IMAGE_DIR, manifest.kernel), legacyKernel);
  copyFileSync(join(GUEST_IMAGE_DIR, manifest.initrd), legacyInitrd);
  rmSync(join(harness.dataDir, 'images', 'blobs', 'platform'), { recursive: true, force: true });
  rmSync(join(harness.dataDir, 'image-cache'), { recursive: true, force: true });
  const db = new Database(join(harness.dataDir, 'db', 'rampart.db'));
  try {
    db.prepare(`DELETE FROM image_blobs WHERE key_domain = 'platform'`).run();
    db.prepare(
      `UPDATE images SET kernel_path = ?, initrd_path = ?, scan_verdict = NULL, scan_database = NULL
       WHERE name = 'tiny' AND tenant_id IS NULL`,
    ).run(legacyKernel, legacyInitrd);
  } finally {
    db.close();
  }

  await harness.startServer();
  const adopted = (await harness.api<Image>('GET', '/v1/images/tiny')).body;
  assert.equal(adopted.status, 'active');
  assert.equal(adopted.scan.verdict, 'clean', 'scanned at adoption');
  assert.equal(adopted.sha256, tiny.sha256);
  const blobs = readdirSync(join(harness.dataDir, 'images', 'blobs', 'platform')).sort();
  assert.deepEqual(blobs, [`${initrd}.rpb`, `${kernel}.rpb`].sort());
  assert.equal(existsSync(legacyKernel), false, 'the plaintext kernel is gone');
  assert.equal(existsSync(legacyInitrd), false, 'the plaintext initrd is gone');
  // And it still boots (the cache is rebuilt from the new blobs).
  const created = await harness.api('POST', '/v1/vms', {
    name: 'after-upgrade',
    image: 'tiny',
    flavor: 'tiny',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await harness.waitForState('after-upgrade', 'running');
  assert.equal((await harness.api('POST', '/v1/vms/after-upgrade/stop', { force: true })).status, 202);
  await harness.waitForState('after-upgrade', 'stopped');
});

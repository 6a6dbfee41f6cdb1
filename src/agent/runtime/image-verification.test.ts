/** verifyImage: good files pass; a flipped byte, a missing file or inconsistent digests are named. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bundleDigest } from '../../common/image-digest.js';
import { verifyImage } from './image-verification.js';

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

test('verifies kernel and initrd against their digests and the bundle digest', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-verify-'));
  try {
    const kernel = Buffer.from('kernel bytes');
    const initrd = Buffer.from('initrd bytes');
    writeFileSync(join(dir, 'k'), kernel);
    writeFileSync(join(dir, 'i'), initrd);
    const image = {
      format: 'kernel-initrd' as const,
      sha256: bundleDigest(sha(kernel), sha(initrd)),
      kernelPath: join(dir, 'k'),
      initrdPath: join(dir, 'i'),
      kernelSha256: sha(kernel),
      initrdSha256: sha(initrd),
    };
    assert.equal(await verifyImage(image), null);
    writeFileSync(join(dir, 'i'), Buffer.from('initrd bytez'));
    assert.match((await verifyImage(image)) ?? '', /the initrd does not match its digest/);
    assert.match(
      (await verifyImage({ ...image, initrdPath: join(dir, 'absent') })) ?? '',
      /initrd cannot be read \(ENOENT\)/,
    );
    // Digests that do not make up the image's identity are refused before any file is read.
    assert.match(
      (await verifyImage({ ...image, sha256: 'f'.repeat(64) })) ?? '',
      /do not make up the image digest/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

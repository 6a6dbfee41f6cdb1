/**
 * Verification before every boot: the agent never trusts the files it is about to hand to QEMU. It
 * re-hashes the kernel and the initrd (streaming, bounded memory) and checks them against the digests
 * the server sent, and checks that those digests make up the image's identity (the bundle digest); a
 * disk image's file is its identity. A flipped byte anywhere means the VM does not start; the reason is
 * reported to the server.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { VmIntent } from '../../api/agent-protocol.js';
import { bundleDigest } from '../../common/image-digest.js';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }))
    hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** null when the image verifies; otherwise why not (for the VM's error and the audit log). */
export async function verifyImage(
  image: DistributiveOmit<VmIntent['image'], 'trust'>,
): Promise<string | null> {
  if (image.format !== 'kernel-initrd') {
    const actual = await sha256File(image.diskPath).catch((error: unknown) => error as NodeJS.ErrnoException);
    if (typeof actual !== 'string')
      return `image verification failed: the disk cannot be read (${actual.code ?? 'error'})`;
    return actual === image.sha256
      ? null
      : `image verification failed: the disk does not match its digest (expected ${image.sha256.slice(0, 12)}…, found ${actual.slice(0, 12)}…)`;
  }
  if (bundleDigest(image.kernelSha256, image.initrdSha256) !== image.sha256)
    return 'image verification failed: the file digests do not make up the image digest';
  for (const [part, path, expected] of [
    ['kernel', image.kernelPath, image.kernelSha256],
    ['initrd', image.initrdPath, image.initrdSha256],
  ] as const) {
    let actual: string;
    try {
      actual = await sha256File(path);
    } catch (error) {
      return `image verification failed: the ${part} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`;
    }
    if (actual !== expected)
      return `image verification failed: the ${part} does not match its digest (expected ${expected.slice(0, 12)}…, found ${actual.slice(0, 12)}…)`;
  }
  return null;
}

/** Image identities, computed the same way by the server (at import) and the agent (before a boot). */
import { createHash } from 'node:crypto';

/** The identity of a kernel+initrd bundle: the digest of its parts' digests in a fixed order. */
export function bundleDigest(kernelSha256: string, initrdSha256: string): string {
  return createHash('sha256').update(`kernel-initrd\n${kernelSha256}\n${initrdSha256}\n`).digest('hex');
}

/**
 * The image trust decision: may this tenant use this image under its trust policy? Pure (no I/O), so the
 * boot-time check on the agent and the server can share it. The server enforces it at VM create and
 * start (images/image-signatures.ts checkImageTrust); the agent does not re-check before boot yet.
 *
 * - Platform-published images (no owning tenant) are accepted when the policy accepts platform images.
 * - Otherwise, with signatures required, the image needs a DSSE envelope carrying an in-toto statement
 *   whose subject is the image's SHA-256, signed by one of the tenant's trusted keys.
 * - With signatures not required (a tenant-admin decision, audited), the image is accepted; the reason
 *   says whether a signature vouched for it.
 */
import type { TrustedKey } from '../../common/dsse.js';
import { verifyImageSignature } from '../../common/in-toto.js';

export interface TrustPolicyRules {
  requireSignatures: boolean;
  acceptPlatformImages: boolean;
}

export const DEFAULT_TRUST_POLICY: Readonly<TrustPolicyRules> = Object.freeze({
  requireSignatures: true,
  acceptPlatformImages: true,
});

export interface TrustSubject {
  /** The owning tenant; null = published by the platform. */
  tenantId: string | null;
  /** Lowercase hex SHA-256 of the image (computed by the caller from the bytes it is about to use). */
  sha256: string;
  /** The image's DSSE envelope (parsed JSON or its serialised text; parsed by dsse.ts), if it has one. */
  signatureEnvelope?: unknown;
}

export interface TrustDecision {
  allowed: boolean;
  reason: string;
}

export function evaluateTrust(
  policy: TrustPolicyRules,
  image: TrustSubject,
  trustedKeys: readonly TrustedKey[],
): TrustDecision {
  if (image.tenantId === null && policy.acceptPlatformImages) {
    return { allowed: true, reason: 'a platform-published image, and the policy accepts those' };
  }
  let verdict: string;
  if (image.signatureEnvelope === undefined || image.signatureEnvelope === null) {
    verdict = 'the image is not signed';
  } else if (trustedKeys.length === 0) {
    verdict = 'the tenant trusts no signing keys';
  } else {
    const verified = verifyImageSignature(image.signatureEnvelope, image.sha256, trustedKeys);
    if (verified.ok) return { allowed: true, reason: `signed by trusted key ${verified.keyid}` };
    verdict = `the signature is not valid: ${verified.reason}`;
  }
  if (policy.requireSignatures) return { allowed: false, reason: `signatures are required and ${verdict}` };
  return { allowed: true, reason: `signatures are not required by the tenant's policy (${verdict})` };
}

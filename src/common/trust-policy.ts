/**
 * The image trust decision: may this tenant use this image under its trust policy? Pure (no I/O), so the
 * server (images/image-signatures.ts checkImageTrust, at VM create and start) and the agent (before every
 * boot, agent/runtime/image-trust-check.ts) take the very same decision from the same material.
 *
 * - A platform-published image (no owning tenant) is accepted when the policy accepts platform images
 *   AND its platform signature (a DSSE envelope by the platform signing key, images.platformSignature)
 *   verifies for the image's SHA-256 with one of the platform keys. Without a valid platform signature it
 *   is judged like any other image below (so a tenant that trusts the platform key itself, or does not
 *   require signatures, can still use it).
 * - Otherwise, with signatures required, the image needs a DSSE envelope carrying an in-toto statement
 *   whose subject is the image's SHA-256, signed by one of the tenant's trusted keys.
 * - With signatures not required (a tenant-admin decision, audited), the image is accepted; the reason
 *   says whether a signature vouched for it.
 */
import type { TrustedKey } from './dsse.js';
import { verifyImageSignature } from './in-toto.js';

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
  /** The platform's DSSE envelope for a platform image (images.platformSignature), if it has one. */
  platformSignature?: unknown;
}

export interface TrustDecision {
  allowed: boolean;
  reason: string;
}

const SIGNED_BY = 'signed by trusted key ';

function absent(value: unknown): boolean {
  return value === undefined || value === null;
}

/** Whether a platform image's platform signature vouches for it (by which key), or why not. */
function checkPlatformSignature(
  image: TrustSubject,
  platformKeys: readonly TrustedKey[],
): { ok: true; keyid: string } | { ok: false; reason: string } {
  if (absent(image.platformSignature))
    return { ok: false, reason: 'the platform image has no platform signature' };
  if (platformKeys.length === 0) {
    return {
      ok: false,
      reason: 'the platform signature cannot be checked: no platform signing key is known',
    };
  }
  const verified = verifyImageSignature(image.platformSignature, image.sha256, platformKeys);
  if (!verified.ok) return { ok: false, reason: `the platform signature is not valid: ${verified.reason}` };
  return { ok: true, keyid: verified.keyid };
}

/**
 * The decision for one image and (at most) one tenant signature envelope. `trustedKeys` are the
 * tenant's; `platformKeys` the platform's signing keys (the only keys a platform signature may be by).
 */
export function evaluateTrust(
  policy: TrustPolicyRules,
  image: TrustSubject,
  trustedKeys: readonly TrustedKey[],
  platformKeys: readonly TrustedKey[],
): TrustDecision {
  let platformVerdict = '';
  if (image.tenantId === null && policy.acceptPlatformImages) {
    const platform = checkPlatformSignature(image, platformKeys);
    if (platform.ok) {
      return {
        allowed: true,
        reason: `a platform-published image signed by platform key ${platform.keyid}, and the policy accepts those`,
      };
    }
    platformVerdict = `; ${platform.reason}`;
  }
  let verdict: string;
  if (absent(image.signatureEnvelope)) {
    verdict = 'the image is not signed';
  } else if (trustedKeys.length === 0) {
    verdict = 'the tenant trusts no signing keys';
  } else {
    const verified = verifyImageSignature(image.signatureEnvelope, image.sha256, trustedKeys);
    if (verified.ok) return { allowed: true, reason: `${SIGNED_BY}${verified.keyid}` };
    verdict = `the signature is not valid: ${verified.reason}`;
  }
  if (policy.requireSignatures) {
    return { allowed: false, reason: `signatures are required and ${verdict}${platformVerdict}` };
  }
  return {
    allowed: true,
    reason: `signatures are not required by the tenant's policy (${verdict}${platformVerdict})`,
  };
}

/**
 * The decision for an image and all of the tenant's attestations (signature envelopes) for it: a
 * signature by a trusted key wins, else an acceptance on other grounds (platform signature, policy off),
 * else the first refusal. Without attestations, the image is judged unsigned.
 */
export function evaluateImageTrust(
  policy: TrustPolicyRules,
  image: Omit<TrustSubject, 'signatureEnvelope'>,
  attestations: readonly unknown[],
  trustedKeys: readonly TrustedKey[],
  platformKeys: readonly TrustedKey[],
): TrustDecision {
  const subject: TrustSubject = {
    tenantId: image.tenantId,
    sha256: image.sha256,
    platformSignature: image.platformSignature,
  };
  if (attestations.length === 0) return evaluateTrust(policy, subject, trustedKeys, platformKeys);
  let refusal: TrustDecision | undefined;
  let permitted: TrustDecision | undefined;
  for (const envelope of attestations) {
    const decision = evaluateTrust(
      policy,
      { ...subject, signatureEnvelope: envelope },
      trustedKeys,
      platformKeys,
    );
    if (decision.allowed && decision.reason.startsWith(SIGNED_BY)) return decision;
    if (decision.allowed) permitted ??= decision;
    else refusal ??= decision;
  }
  return permitted ?? refusal!;
}

/**
 * The image trust decision, taken again on the host before every boot: the agent does not take the
 * server's word that an image is trusted, it re-verifies the signatures itself from the material in the
 * intent (the tenant's policy, trusted keys and attestations, the platform's keys and signature) with
 * the same pure decision the server uses (common/trust-policy.ts). The image's sha256 it checks against
 * is the one verifyImage has just re-computed from the files, so a signature vouches for the bytes QEMU
 * is about to read. Missing or malformed material fails closed.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { ImageTrustKey, VmIntent } from '../../api/agent-protocol.js';
import { trustedKey, type TrustedKey } from '../../common/dsse.js';
import { evaluateImageTrust, type TrustDecision } from '../../common/trust-policy.js';

function parseKeys(keys: readonly ImageTrustKey[], what: string): TrustedKey[] | string {
  const parsed: TrustedKey[] = [];
  for (const key of keys) {
    if (!key.publicKeyPem.trimStart().startsWith('-----BEGIN PUBLIC KEY-----')) {
      return `a ${what} is not a public key PEM`;
    }
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey({ key: key.publicKeyPem, format: 'pem' });
    } catch {
      return `a ${what} is not a valid public key PEM`;
    }
    if (publicKey.type !== 'public' || publicKey.asymmetricKeyType !== 'ed25519') {
      return `a ${what} is not an Ed25519 public key`;
    }
    const entry = trustedKey(publicKey);
    if (entry.keyid !== key.keyid) return `a ${what} does not match its key id ${key.keyid}`;
    parsed.push(entry);
  }
  return parsed;
}

/**
 * The decision with its reason (for logs and tests); `allowed: false` when the material is missing or
 * malformed. The reason of a refusal is what checkImageTrustOnAgent reports.
 */
export function imageTrustDecisionOnAgent(image: VmIntent['image']): TrustDecision {
  const trust = image.trust;
  if (trust === undefined) return { allowed: false, reason: 'image trust material missing from the intent' };
  const fail = (reason: string): TrustDecision => ({
    allowed: false,
    reason: `image trust check failed on the host: ${reason}`,
  });
  const trustedKeys = parseKeys(trust.trustedKeys, 'trusted key');
  if (typeof trustedKeys === 'string') return fail(trustedKeys);
  const platformKeys = parseKeys(trust.platformKeys, 'platform key');
  if (typeof platformKeys === 'string') return fail(platformKeys);
  const decision = evaluateImageTrust(
    trust.rules,
    {
      // Only whether the image is the platform's matters to the decision, not which tenant owns it.
      tenantId: trust.platformImage ? null : 'tenant',
      sha256: image.sha256,
      platformSignature: trust.platformSignature,
    },
    trust.attestations,
    trustedKeys,
    platformKeys,
  );
  return decision.allowed ? decision : fail(decision.reason);
}

/** null when the tenant may boot the image; otherwise why not (the VM's error, fatal). */
export function checkImageTrustOnAgent(image: VmIntent['image']): string | null {
  const decision = imageTrustDecisionOnAgent(image);
  return decision.allowed ? null : decision.reason;
}

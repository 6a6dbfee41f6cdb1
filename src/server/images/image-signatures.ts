/**
 * Image signatures as attestations: a tenant attaches a DSSE envelope (an in-toto statement whose
 * subject is the image's SHA-256, signed with Ed25519) to an image it can see. The envelope must verify
 * with one of the tenant's trusted keys when attached, and it counts for that tenant only: another
 * tenant's attestation never vouches for an image here. checkImageTrust is the decision VM create and
 * start enforce: the tenant's current policy and keys against the tenant's attestations, every time;
 * imageTrustMaterial is the same material for the agent, which takes the same decision before each boot.
 */
import { ConflictError, InvalidInputError, NotFoundError, UntrustedImageError } from '../../api/errors.js';
import {
  MAX_INTENT_ATTESTATIONS,
  MAX_INTENT_TRUST_KEYS,
  type ImageTrustKey,
  type ImageTrustMaterial,
} from '../../api/agent-protocol.js';
import type { ImageSignature } from '../../api/image.js';
import { DSSE_MAX_ENVELOPE_BYTES, parseEnvelope, type TrustedKey } from '../../common/dsse.js';
import { subjectDigest, verifyEnvelope } from '../../common/in-toto.js';
import { newId } from '../../common/ids.js';
import { evaluateImageTrust, type TrustDecision } from '../../common/trust-policy.js';
import { isUniqueError, nowIso, type Db } from '../store/database.js';
import type { ImagesTable, ImageSignaturesTable } from '../store/schema.js';
import { trustRulesOf, trustedKeysOf } from './trust-store.js';

function toApi(row: ImageSignaturesTable, names: ReadonlyMap<string, string>): ImageSignature {
  return {
    id: row.id,
    imageId: row.imageId,
    keyid: row.keyid,
    keyName: names.get(row.keyid) ?? null,
    createdAt: row.createdAt,
  };
}

async function keyNames(db: Db, tenantId: string): Promise<Map<string, string>> {
  const rows = await db
    .selectFrom('trustedKeys')
    .select(['keyid', 'name'])
    .where('tenantId', '=', tenantId)
    .execute();
  return new Map(rows.map((r) => [r.keyid, r.name]));
}

/**
 * Verifies `envelope` against the image's digest and the tenant's trusted keys, then stores it.
 * InvalidInputError with the reason when it does not verify; ConflictError when that key already
 * has an attestation for this image in this tenant.
 */
export async function attachSignature(
  db: Db,
  image: ImagesTable,
  tenantId: string,
  envelope: unknown,
): Promise<ImageSignature> {
  const parsed = parseEnvelope(envelope);
  if (!parsed.ok) throw new InvalidInputError(parsed.reason);
  const keys = await trustedKeysOf(db, tenantId);
  if (keys.length === 0) {
    throw new InvalidInputError(
      'signature does not verify with any trusted key: the tenant trusts no signing keys',
    );
  }
  const verified = verifyEnvelope(parsed.envelope, keys);
  if (!verified.ok) {
    throw new InvalidInputError(`signature does not verify with any trusted key: ${verified.reason}`);
  }
  const signed = subjectDigest(verified.statement);
  if (signed !== image.sha256) {
    throw new InvalidInputError(
      `the signature is for another image (sha256:${signed}, not sha256:${image.sha256})`,
    );
  }
  const text = JSON.stringify(parsed.envelope);
  if (Buffer.byteLength(text, 'utf8') > DSSE_MAX_ENVELOPE_BYTES) {
    throw new InvalidInputError(`envelope is larger than ${DSSE_MAX_ENVELOPE_BYTES} bytes`);
  }
  const row: ImageSignaturesTable = {
    id: newId(),
    imageId: image.id,
    tenantId,
    keyid: verified.keyid,
    envelope: text,
    createdAt: nowIso(),
  };
  try {
    await db.insertInto('imageSignatures').values(row).execute();
  } catch (error) {
    if (isUniqueError(error))
      throw new ConflictError(`key ${row.keyid} has already signed this image in this tenant`);
    throw error;
  }
  return toApi(row, await keyNames(db, tenantId));
}

export async function listSignatures(db: Db, imageId: string, tenantId: string): Promise<ImageSignature[]> {
  const rows = await db
    .selectFrom('imageSignatures')
    .selectAll()
    .where('imageId', '=', imageId)
    .where('tenantId', '=', tenantId)
    .orderBy('createdAt')
    .orderBy('id')
    .execute();
  const names = await keyNames(db, tenantId);
  return rows.map((r) => toApi(r, names));
}

export async function deleteSignature(
  db: Db,
  imageId: string,
  tenantId: string,
  id: string,
): Promise<ImageSignaturesTable> {
  const row = await db
    .deleteFrom('imageSignatures')
    .where('id', '=', id)
    .where('imageId', '=', imageId)
    .where('tenantId', '=', tenantId)
    .returningAll()
    .executeTakeFirst();
  if (!row) throw new NotFoundError('image signature');
  return row;
}

/** The tenant's attestations (signature envelopes, JSON text) for the image, oldest first. */
async function attestationsOf(db: Db, imageId: string, tenantId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('imageSignatures')
    .select('envelope')
    .where('imageId', '=', imageId)
    .where('tenantId', '=', tenantId)
    .orderBy('createdAt')
    .orderBy('id')
    .execute();
  return rows.map((r) => r.envelope);
}

/**
 * May `tenantId` boot `image` now? Its current trust policy and trusted keys against its own
 * attestations for the image (any one that verifies is enough), and for a platform image its platform
 * signature against `platformKeys` (common/trust-policy.ts).
 */
export async function checkImageTrust(
  db: Db,
  image: ImagesTable,
  tenantId: string,
  platformKeys: readonly TrustedKey[],
): Promise<TrustDecision> {
  const [rules, keys, attestations] = await Promise.all([
    trustRulesOf(db, tenantId),
    trustedKeysOf(db, tenantId),
    attestationsOf(db, image.id, tenantId),
  ]);
  return evaluateImageTrust(
    rules,
    { tenantId: image.tenantId, sha256: image.sha256, platformSignature: image.platformSignature },
    attestations,
    keys,
    platformKeys,
  );
}

/** checkImageTrust, throwing UntrustedImageError (403 RAMPART_UNTRUSTED_IMAGE) with the reason. */
export async function assertImageTrusted(
  db: Db,
  image: ImagesTable,
  tenantId: string,
  platformKeys: readonly TrustedKey[] = [],
): Promise<void> {
  const decision = await checkImageTrust(db, image, tenantId, platformKeys);
  if (!decision.allowed) {
    throw new UntrustedImageError(`image ${image.name} is not trusted by this tenant: ${decision.reason}`);
  }
}

function keyMaterial(key: TrustedKey): ImageTrustKey {
  return { keyid: key.keyid, publicKeyPem: key.publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

/** The key ids that sign an envelope (none when it does not parse). */
function signerIds(envelope: string): string[] {
  const parsed = parseEnvelope(envelope);
  return parsed.ok ? parsed.envelope.signatures.map((s) => s.keyid) : [];
}

/**
 * Everything the agent needs to re-run checkImageTrust's decision by itself before a boot (the intent's
 * image.trust). Normally all of the tenant's trusted keys and attestations; only when they exceed the
 * protocol's bounds (MAX_INTENT_TRUST_KEYS, MAX_INTENT_ATTESTATIONS) are they reduced to what can change
 * the decision: attestations with a signature by a currently trusted key, and the trusted keys that sign
 * one of those (a key that signs none, or an attestation no trusted key signs, can only change the
 * wording of a refusal). Throws when even that exceeds the bounds.
 */
export async function imageTrustMaterial(
  db: Db,
  image: ImagesTable,
  tenantId: string,
  platformKeys: readonly TrustedKey[],
): Promise<ImageTrustMaterial> {
  const [rules, allKeys, allAttestations] = await Promise.all([
    trustRulesOf(db, tenantId),
    trustedKeysOf(db, tenantId),
    attestationsOf(db, image.id, tenantId),
  ]);
  let keys = allKeys;
  let attestations = allAttestations;
  if (keys.length > MAX_INTENT_TRUST_KEYS || attestations.length > MAX_INTENT_ATTESTATIONS) {
    const trusted = new Set(keys.map((k) => k.keyid));
    attestations = attestations.filter((a) => signerIds(a).some((id) => trusted.has(id)));
    const signing = new Set(attestations.flatMap(signerIds));
    keys = keys.filter((k) => signing.has(k.keyid));
  }
  if (keys.length > MAX_INTENT_TRUST_KEYS || platformKeys.length > MAX_INTENT_TRUST_KEYS) {
    throw new Error(`image trust material: more than ${MAX_INTENT_TRUST_KEYS} trusted keys`);
  }
  if (attestations.length > MAX_INTENT_ATTESTATIONS) {
    throw new Error(
      `image trust material: image ${image.id} has more than ${MAX_INTENT_ATTESTATIONS} attestations in tenant ${tenantId}`,
    );
  }
  return {
    rules: { requireSignatures: rules.requireSignatures, acceptPlatformImages: rules.acceptPlatformImages },
    trustedKeys: keys.map(keyMaterial),
    attestations,
    platformKeys: platformKeys.map(keyMaterial),
    platformSignature: image.platformSignature,
    platformImage: image.tenantId === null,
  };
}

/**
 * Image signatures as attestations: a tenant attaches a DSSE envelope (an in-toto statement whose
 * subject is the image's SHA-256, signed with Ed25519) to an image it can see. The envelope must verify
 * with one of the tenant's trusted keys when attached, and it counts for that tenant only: another
 * tenant's attestation never vouches for an image here. checkImageTrust is the decision VM create and
 * start enforce: the tenant's current policy and keys against the tenant's attestations, every time.
 */
import { ConflictError, InvalidInputError, NotFoundError, UntrustedImageError } from '../../api/errors.js';
import type { ImageSignature } from '../../api/image.js';
import { DSSE_MAX_ENVELOPE_BYTES, parseEnvelope } from '../../common/dsse.js';
import { subjectDigest, verifyEnvelope } from '../../common/in-toto.js';
import { newId } from '../../common/ids.js';
import { nowIso, type Db } from '../store/database.js';
import type { ImagesTable, ImageSignaturesTable } from '../store/schema.js';
import { evaluateTrust, type TrustDecision } from './trust-policy.js';
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
    if (/UNIQUE/.test((error as Error).message))
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

/**
 * May `tenantId` boot `image` now? Its current trust policy and trusted keys against its own
 * attestations for the image (any one that verifies is enough).
 */
export async function checkImageTrust(db: Db, image: ImagesTable, tenantId: string): Promise<TrustDecision> {
  const [rules, keys, attestations] = await Promise.all([
    trustRulesOf(db, tenantId),
    trustedKeysOf(db, tenantId),
    db
      .selectFrom('imageSignatures')
      .select('envelope')
      .where('imageId', '=', image.id)
      .where('tenantId', '=', tenantId)
      .orderBy('createdAt')
      .execute(),
  ]);
  const subject = { tenantId: image.tenantId, sha256: image.sha256 };
  if (attestations.length === 0) return evaluateTrust(rules, subject, keys);
  let refusal: TrustDecision | undefined;
  let permitted: TrustDecision | undefined;
  for (const { envelope } of attestations) {
    const decision = evaluateTrust(rules, { ...subject, signatureEnvelope: envelope }, keys);
    if (decision.allowed && decision.reason.startsWith('signed by')) return decision;
    if (decision.allowed) permitted ??= decision;
    else refusal ??= decision;
  }
  return permitted ?? refusal!;
}

/** checkImageTrust, throwing UntrustedImageError (403 RAMPART_UNTRUSTED_IMAGE) with the reason. */
export async function assertImageTrusted(db: Db, image: ImagesTable, tenantId: string): Promise<void> {
  const decision = await checkImageTrust(db, image, tenantId);
  if (!decision.allowed) {
    throw new UntrustedImageError(`image ${image.name} is not trusted by this tenant: ${decision.reason}`);
  }
}

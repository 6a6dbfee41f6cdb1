/** A tenant's trusted image-signing keys and trust policy, in the control-plane database. */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { ConflictError, InvalidInputError, NotFoundError } from '../../api/errors.js';
import {
  MAX_PUBLIC_KEY_PEM_BYTES,
  type TrustPolicy,
  type TrustPolicyUpdate,
  type TrustedKey as TrustedKeyApi,
  type TrustedKeyCreate,
} from '../../api/trust.js';
import { keyIdOf, trustedKey, type TrustedKey } from '../../common/dsse.js';
import { newId } from '../../common/ids.js';
import { isUniqueError, nowIso, type Db } from '../store/database.js';
import type { TrustedKeysTable } from '../store/schema.js';
import { DEFAULT_TRUST_POLICY, type TrustPolicyRules } from '../../common/trust-policy.js';

/** Exactly one PEM block of type PUBLIC KEY (a private key PEM would otherwise yield its public half). */
const PUBLIC_KEY_PEM_RE =
  /^-----BEGIN PUBLIC KEY-----\r?\n(?:[A-Za-z0-9+/=]{1,76}\r?\n)+-----END PUBLIC KEY-----\r?\n?$/;

/**
 * Parses an Ed25519 public key in SPKI PEM; anything else (another key type, a private key, a
 * certificate, several blocks, garbage) is an InvalidInputError.
 */
export function parseEd25519PublicKeyPem(pem: string): KeyObject {
  if (Buffer.byteLength(pem, 'utf8') > MAX_PUBLIC_KEY_PEM_BYTES)
    throw new InvalidInputError(`publicKeyPem is larger than ${MAX_PUBLIC_KEY_PEM_BYTES} bytes`);
  const text = pem.trim() + '\n';
  if (!PUBLIC_KEY_PEM_RE.test(text))
    throw new InvalidInputError('publicKeyPem must be one "-----BEGIN PUBLIC KEY-----" PEM block (SPKI)');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: text, format: 'pem', type: 'spki' });
  } catch {
    throw new InvalidInputError('publicKeyPem is not a valid SPKI public key');
  }
  if (key.type !== 'public' || key.asymmetricKeyType !== 'ed25519')
    throw new InvalidInputError(
      `publicKeyPem must be an Ed25519 key, not ${key.asymmetricKeyType ?? 'an unknown type'}`,
    );
  return key;
}

export function trustedKeyToApi(row: TrustedKeysTable): TrustedKeyApi {
  return {
    id: row.id,
    name: row.name,
    keyid: row.keyid,
    publicKeyPem: row.publicKeyPem,
    createdAt: row.createdAt,
  };
}

export async function listTrustedKeys(db: Db, tenantId: string): Promise<TrustedKeyApi[]> {
  const rows = await db
    .selectFrom('trustedKeys')
    .selectAll()
    .where('tenantId', '=', tenantId)
    .orderBy('name')
    .execute();
  return rows.map(trustedKeyToApi);
}

export async function addTrustedKey(
  db: Db,
  tenantId: string,
  input: TrustedKeyCreate,
): Promise<TrustedKeyApi> {
  const key = parseEd25519PublicKeyPem(input.publicKeyPem);
  const row: TrustedKeysTable = {
    id: newId(),
    tenantId,
    name: input.name,
    keyid: keyIdOf(key),
    // Stored canonical: the server's own re-encoding, not the caller's text.
    publicKeyPem: key.export({ type: 'spki', format: 'pem' }).toString(),
    createdAt: nowIso(),
  };
  try {
    await db.insertInto('trustedKeys').values(row).execute();
  } catch (error) {
    const message = (error as Error).message;
    if (isUniqueError(error) && /keyid/.test(message))
      throw new ConflictError(`key ${row.keyid} is already trusted`);
    if (isUniqueError(error)) throw new ConflictError(`a trusted key named ${input.name} already exists`);
    throw error;
  }
  return trustedKeyToApi(row);
}

export async function deleteTrustedKey(db: Db, tenantId: string, id: string): Promise<TrustedKeysTable> {
  const row = await db
    .deleteFrom('trustedKeys')
    .where('id', '=', id)
    .where('tenantId', '=', tenantId)
    .returningAll()
    .executeTakeFirst();
  if (!row) throw new NotFoundError('trusted key');
  return row;
}

/** The tenant's trusted keys, ready for verifyImageSignature / evaluateTrust. */
export async function trustedKeysOf(db: Db, tenantId: string): Promise<TrustedKey[]> {
  const rows = await db
    .selectFrom('trustedKeys')
    .select('publicKeyPem')
    .where('tenantId', '=', tenantId)
    .execute();
  return rows.map((r) => trustedKey(createPublicKey(r.publicKeyPem)));
}

export async function getTrustPolicy(db: Db, tenantId: string): Promise<TrustPolicy> {
  const row = await db
    .selectFrom('trustPolicies')
    .selectAll()
    .where('tenantId', '=', tenantId)
    .executeTakeFirst();
  if (!row) return { ...DEFAULT_TRUST_POLICY, updatedAt: null };
  return {
    requireSignatures: row.requireSignatures === 1,
    acceptPlatformImages: row.acceptPlatformImages === 1,
    updatedAt: row.updatedAt,
  };
}

/** The rules of a tenant's policy (the defaults when it never changed them). */
export async function trustRulesOf(db: Db, tenantId: string): Promise<TrustPolicyRules> {
  const { requireSignatures, acceptPlatformImages } = await getTrustPolicy(db, tenantId);
  return { requireSignatures, acceptPlatformImages };
}

/** Applies a partial update; answers the previous and the new policy. */
export async function updateTrustPolicy(
  db: Db,
  tenantId: string,
  update: TrustPolicyUpdate,
): Promise<{ before: TrustPolicy; after: TrustPolicy }> {
  return db.transaction().execute(async (trx) => {
    const before = await getTrustPolicy(trx, tenantId);
    const values = {
      tenantId,
      requireSignatures: (update.requireSignatures ?? before.requireSignatures) ? 1 : 0,
      acceptPlatformImages: (update.acceptPlatformImages ?? before.acceptPlatformImages) ? 1 : 0,
      updatedAt: nowIso(),
    };
    await trx
      .insertInto('trustPolicies')
      .values(values)
      .onConflict((oc) =>
        oc.column('tenantId').doUpdateSet({
          requireSignatures: values.requireSignatures,
          acceptPlatformImages: values.acceptPlatformImages,
          updatedAt: values.updatedAt,
        }),
      )
      .execute();
    return { before, after: await getTrustPolicy(trx, tenantId) };
  });
}

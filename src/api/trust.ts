/** Image trust: the public keys a tenant trusts to sign images, and its trust policy. */
import { Type, type Static } from 'typebox';
import { Id, Name, Timestamp } from './common.js';

/** An Ed25519 public key in SPKI PEM ("-----BEGIN PUBLIC KEY-----"); checked further by the server. */
export const MAX_PUBLIC_KEY_PEM_BYTES = 4096;

export const TrustedKey = Type.Object(
  {
    id: Id,
    name: Name,
    /** Lowercase hex SHA-256 of the key's SPKI DER encoding (the DSSE keyid). */
    keyid: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    publicKeyPem: Type.String(),
    createdAt: Timestamp,
  },
  { $id: 'TrustedKey' },
);
export type TrustedKey = Static<typeof TrustedKey>;

export const TrustedKeyCreate = Type.Object(
  {
    name: Name,
    publicKeyPem: Type.String({ minLength: 1, maxLength: MAX_PUBLIC_KEY_PEM_BYTES }),
  },
  { additionalProperties: false },
);
export type TrustedKeyCreate = Static<typeof TrustedKeyCreate>;

export const TrustPolicy = Type.Object(
  {
    /** Images must carry a valid signature by one of the tenant's trusted keys (default on). */
    requireSignatures: Type.Boolean(),
    /** Images published by the platform are accepted without a tenant-trusted signature (default on). */
    acceptPlatformImages: Type.Boolean(),
    /** When the policy was last changed; null while the defaults apply. */
    updatedAt: Type.Union([Timestamp, Type.Null()]),
  },
  { $id: 'TrustPolicy' },
);
export type TrustPolicy = Static<typeof TrustPolicy>;

export const TrustPolicyUpdate = Type.Object(
  {
    requireSignatures: Type.Optional(Type.Boolean()),
    acceptPlatformImages: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type TrustPolicyUpdate = Static<typeof TrustPolicyUpdate>;

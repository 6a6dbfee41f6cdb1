/** Images as the API shows them. The tiny guest is a kernel+initrd bundle. */
import { Type, type Static } from 'typebox';
import { Id, Name, Timestamp } from './common.js';

/** private: the owning tenant only; shared: also named tenants; public: everyone (platform images). */
export const ImageVisibility = Type.Union([
  Type.Literal('private'),
  Type.Literal('shared'),
  Type.Literal('public'),
]);

/** What an image's owner may set: `public` is decided by the platform (POST /v1/images/{ref}/publish). */
export const ImageUpdate = Type.Object(
  { visibility: Type.Union([Type.Literal('private'), Type.Literal('shared')]) },
  { additionalProperties: false },
);
export type ImageUpdate = Static<typeof ImageUpdate>;

export const ImageFormat = Type.Union([Type.Literal('kernel-initrd')]);

export const Image = Type.Object(
  {
    id: Id,
    name: Name,
    format: ImageFormat,
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    sizeBytes: Type.Integer({ minimum: 0 }),
    description: Type.String(),
    visibility: ImageVisibility,
    /** True for images published by the platform (no owning tenant). */
    platform: Type.Boolean(),
    createdAt: Timestamp,
  },
  { $id: 'Image' },
);
export type Image = Static<typeof Image>;

/** A DSSE envelope as sent by `rampart image attach-signature` (checked strictly by the server). */
export const DsseEnvelopeBody = Type.Object(
  {
    payloadType: Type.String({ minLength: 1, maxLength: 128 }),
    payload: Type.String({ maxLength: 64 * 1024 }),
    signatures: Type.Array(
      Type.Object(
        {
          keyid: Type.String({ maxLength: 64 }),
          sig: Type.String({ maxLength: 1024 }),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 8 },
    ),
  },
  { additionalProperties: false },
);

export const ImageSignatureCreate = Type.Object(
  { envelope: DsseEnvelopeBody },
  { additionalProperties: false },
);
export type ImageSignatureCreate = Static<typeof ImageSignatureCreate>;

/** An attestation: a signature a tenant attached to an image (counted only for that tenant). */
export const ImageSignature = Type.Object(
  {
    id: Id,
    imageId: Id,
    /** The key id of the trusted key that vouched for the image when the signature was attached. */
    keyid: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    /** The name of the tenant's trusted key with that key id; null when it is no longer trusted. */
    keyName: Type.Union([Name, Type.Null()]),
    createdAt: Timestamp,
  },
  { $id: 'ImageSignature' },
);
export type ImageSignature = Static<typeof ImageSignature>;

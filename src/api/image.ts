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

/** kernel-initrd: a bundle of a Linux kernel and an initramfs (direct boot); raw/qcow2: disk images. */
export const ImageFormat = Type.Union([
  Type.Literal('kernel-initrd'),
  Type.Literal('raw'),
  Type.Literal('qcow2'),
]);

/** queued: awaiting its files; active: usable; quarantined: a scan hit; error: the import failed. */
export const ImageStatus = Type.Union([
  Type.Literal('queued'),
  Type.Literal('importing'),
  Type.Literal('active'),
  Type.Literal('quarantined'),
  Type.Literal('error'),
]);

const Sha256Hex = Type.String({ pattern: '^[0-9a-f]{64}$' });

/** The files an image is made of: a bundle has a kernel and an initrd; a disk image has one disk. */
export const ImagePart = Type.Union([Type.Literal('kernel'), Type.Literal('initrd'), Type.Literal('disk')]);
export type ImagePart = Static<typeof ImagePart>;

export const ImageScan = Type.Object({
  verdict: Type.Union([Type.Literal('clean'), Type.Literal('infected'), Type.Literal('error'), Type.Null()]),
  /** Signature names that matched (ClamAV's names). */
  signatures: Type.Array(Type.String()),
  /** e.g. "ClamAV 1.4.3"; null before the first scan. */
  engine: Type.Union([Type.String(), Type.Null()]),
  /** Fingerprint of the signature databases used. */
  database: Type.Union([Type.String(), Type.Null()]),
  scannedAt: Type.Union([Type.String(), Type.Null()]),
});

export const ImageCreate = Type.Object(
  {
    name: Name,
    format: ImageFormat,
    description: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false },
);
export type ImageCreate = Static<typeof ImageCreate>;

/** Platform import of files already on the server's host (absolute paths). */
export const ImageImport = Type.Object(
  {
    name: Name,
    format: ImageFormat,
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    /** Make it a platform image (every tenant sees it) instead of one owned by the acting tenant. */
    platform: Type.Optional(Type.Boolean()),
    files: Type.Object(
      {
        kernel: Type.Optional(Type.String({ pattern: '^/', maxLength: 4096 })),
        initrd: Type.Optional(Type.String({ pattern: '^/', maxLength: 4096 })),
        disk: Type.Optional(Type.String({ pattern: '^/', maxLength: 4096 })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type ImageImport = Static<typeof ImageImport>;

export const Image = Type.Object(
  {
    id: Id,
    name: Name,
    format: ImageFormat,
    /** The image's identity: SHA-256 of the disk, or the bundle digest; null until every file is in. */
    sha256: Type.Union([Sha256Hex, Type.Null()]),
    /** Plaintext bytes of the files uploaded so far. */
    sizeBytes: Type.Integer({ minimum: 0 }),
    status: ImageStatus,
    /** Why the image is quarantined or failed ('' otherwise). */
    statusReason: Type.String(),
    /** SHA-256 of each uploaded file. */
    files: Type.Object({
      kernel: Type.Optional(Sha256Hex),
      initrd: Type.Optional(Sha256Hex),
      disk: Type.Optional(Sha256Hex),
    }),
    scan: ImageScan,
    /** True when the platform key signed the image (platform images). */
    platformSigned: Type.Boolean(),
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

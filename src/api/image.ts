/** Images as the API shows them. The tiny guest is a kernel+initrd bundle. */
import { Type, type Static } from 'typebox';
import { Id, Name, Timestamp } from './common.js';

/** private: the owning tenant only; shared: also named tenants; public: everyone (platform images). */
export const ImageVisibility = Type.Union([
  Type.Literal('private'),
  Type.Literal('shared'),
  Type.Literal('public'),
]);

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

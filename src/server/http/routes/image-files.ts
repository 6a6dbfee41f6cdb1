/**
 * Image import and export: create an image record, upload its files as streamed bodies (never held in
 * memory), download them (decrypted, verified), re-scan, delete; platform import from local paths and
 * master-key rotation.
 */
import type { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema, NoContent, Ref, RefParams } from '../../../api/common.js';
import { InvalidInputError, NotFoundError } from '../../../api/errors.js';
import { TenantQuery } from '../../../api/iam.js';
import { Image, ImageCreate, ImageImport, ImagePart } from '../../../api/image.js';
import { isUuid } from '../../../common/ids.js';
import { findImage, findOwnedImage, imageToApi } from '../../images/image-catalog.js';
import { assertImageUsable, partSha, partsOf, type ImagePart as Part } from '../../images/image-import.js';
import { keyDomainOf } from '../../images/image-store.js';
import { requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';

const FileParams = Type.Object({ ref: Ref, part: ImagePart }, { additionalProperties: false });

const errors = {
  400: ErrorSchema,
  401: ErrorSchema,
  403: ErrorSchema,
  404: ErrorSchema,
  409: ErrorSchema,
  413: ErrorSchema,
  422: ErrorSchema,
};

const MasterKeyRotation = Type.Object({
  masterKeyId: Type.String(),
  rewrapped: Type.Integer({ minimum: 0 }),
});

export async function imageFileRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const { importer, store } = ctx.images;

  // Uploads arrive as raw bytes; the handler streams them (the body limit does not apply: the
  // importer enforces its own per-file limit while it reads).
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));

  app.post(
    '/v1/images',
    {
      schema: {
        tags: ['images'],
        summary:
          'Create an image (status queued); then upload its files with PUT /v1/images/{ref}/files/{part}',
        querystring: TenantQuery,
        body: ImageCreate,
        response: { 201: Image, ...errors },
      },
    },
    async (request, reply) => {
      const image = await importer.create(requireTenant(request).id, request.body);
      request.auditInfo!.target = image.id;
      request.auditInfo!.detail = `${image.format} image ${image.name}`;
      return reply.status(201).send(imageToApi(image));
    },
  );

  app.put(
    '/v1/images/:ref/files/:part',
    {
      schema: {
        tags: ['images'],
        summary:
          'Upload one file of a queued image (application/octet-stream, streamed): kernel and initrd for a kernel-initrd bundle, disk for raw/qcow2. It is size-checked, inspected (qemu-img), scanned, compressed and encrypted; the answer shows the image with its scan verdict',
        params: FileParams,
        querystring: TenantQuery,
        response: { 200: Image, ...errors },
      },
    },
    async (request) => {
      const body = request.body as Readable | undefined;
      if (!body || typeof body.pipe !== 'function')
        throw new InvalidInputError('send the file as the body with content-type application/octet-stream');
      const image = await findOwnedImage(ctx.db, request.params.ref, requireTenant(request).id);
      request.auditInfo!.target = image.id;
      const updated = await importer.upload(image, request.params.part, body);
      const sha = partSha(updated, request.params.part);
      request.auditInfo!.detail = `${request.params.part} sha256:${sha ?? '?'}; image ${updated.status}`;
      return imageToApi(updated);
    },
  );

  app.get(
    '/v1/images/:ref/files/:part',
    {
      schema: {
        tags: ['images'],
        summary:
          'Download one file of an image you can see (decrypted; every chunk authenticated and the digest checked — a tampered store aborts the transfer). Quarantined images cannot be downloaded',
        params: FileParams,
        querystring: TenantQuery,
        response: { 200: Type.Unsafe<Readable>({ type: 'string', format: 'binary' }), ...errors },
      },
    },
    async (request, reply) => {
      const image = await findImage(ctx.db, request.params.ref, requireTenant(request).id);
      request.auditInfo!.target = image.id;
      request.auditInfo!.detail = request.params.part;
      assertImageUsable(image);
      const part: Part = request.params.part;
      const sha = partsOf(image.format).includes(part) ? partSha(image, part) : null;
      if (!sha) throw new NotFoundError('image file');
      const size = await ctx.db
        .selectFrom('imageBlobs')
        .select('sizeBytes')
        .where('keyDomain', '=', keyDomainOf(image.tenantId))
        .where('sha256', '=', sha)
        .executeTakeFirst();
      if (!size) throw new NotFoundError('image file');
      reply.header('content-type', 'application/octet-stream');
      reply.header('content-length', String(size.sizeBytes));
      reply.header('x-rampart-sha256', sha);
      reply.header('content-disposition', `attachment; filename="${image.name}.${part}"`);
      return reply.send(store.openPlaintext(keyDomainOf(image.tenantId), sha));
    },
  );

  app.delete(
    '/v1/images/:ref',
    {
      schema: {
        tags: ['images'],
        summary:
          'Delete an own image that no VM uses (its encrypted files go when no other image holds them)',
        params: RefParams,
        querystring: TenantQuery,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      const image = await findOwnedImage(ctx.db, request.params.ref, requireTenant(request).id);
      request.auditInfo!.target = image.id;
      request.auditInfo!.detail = image.name;
      await importer.delete(image);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/images/:ref/scan',
    {
      schema: {
        tags: ['images'],
        summary:
          'Re-scan an own image with the current scanner databases (a hit quarantines it; a clean result releases it)',
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: Image, ...errors },
      },
    },
    async (request) => {
      const image = await findOwnedImage(ctx.db, request.params.ref, requireTenant(request).id);
      request.auditInfo!.target = image.id;
      const scanned = await importer.rescan(image.id);
      request.auditInfo!.detail = `verdict ${scanned.scanVerdict ?? 'none'}; image ${scanned.status}`;
      return imageToApi(scanned);
    },
  );

  app.post(
    '/v1/platform/images/import',
    {
      schema: {
        tags: ['images'],
        summary:
          "Import a platform image from files on the server's host (absolute paths; read, never changed). It goes through the same checks as an upload and is signed with the platform key",
        body: ImageImport,
        response: { 201: Image, ...errors },
      },
    },
    async (request, reply) => {
      const parts = partsOf(request.body.format);
      const files = request.body.files;
      const given = Object.keys(files);
      const missing = parts.filter((p) => !files[p]);
      const extra = given.filter((p) => !parts.includes(p as Part));
      if (missing.length > 0 || extra.length > 0)
        throw new InvalidInputError(`a ${request.body.format} image takes the files: ${parts.join(', ')}`);
      let image = await importer.create(null, request.body);
      request.auditInfo!.target = image.id;
      try {
        for (const part of parts) image = await importer.uploadLocal(image, part, files[part]!);
      } catch (error) {
        await importer.delete(image).catch(() => undefined);
        throw error;
      }
      request.auditInfo!.detail = `${image.format} image ${image.name} from ${parts.map((p) => files[p]).join(', ')}; ${image.status}`;
      return reply.status(201).send(imageToApi(image));
    },
  );

  app.post(
    '/v1/platform/images/:ref/scan',
    {
      schema: {
        tags: ['images'],
        summary: 'Re-scan any image (by id; platform images also by name)',
        params: RefParams,
        response: { 200: Image, ...errors },
      },
    },
    async (request) => {
      const ref = request.params.ref;
      const row = await ctx.db
        .selectFrom('images')
        .select('id')
        .where(isUuid(ref) ? 'id' : 'name', '=', ref)
        .$if(!isUuid(ref), (q) => q.where('tenantId', 'is', null))
        .executeTakeFirst();
      if (!row) throw new NotFoundError('image');
      request.auditInfo!.target = row.id;
      const scanned = await importer.rescan(row.id);
      request.auditInfo!.detail = `verdict ${scanned.scanVerdict ?? 'none'}; image ${scanned.status}`;
      return imageToApi(scanned);
    },
  );

  app.post(
    '/v1/platform/keys/rotate-master',
    {
      schema: {
        tags: ['images'],
        summary:
          'Rotate the master key: a new key is written to the key file and every data key is re-wrapped under it in one transaction; no image is re-encrypted',
        response: { 200: MasterKeyRotation, ...errors },
      },
    },
    async (request) => {
      const result = await ctx.images.rotateMasterKey();
      request.auditInfo!.detail = `master key now ${result.masterKeyId}; ${result.rewrapped} data keys re-wrapped`;
      return result;
    },
  );
}

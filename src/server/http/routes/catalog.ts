/** /v1/images, /v1/flavors and /v1/hosts: the catalog a VM is made from and placed on. */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema, NoContent, Ref, RefParams, listOf } from '../../../api/common.js';
import { Flavor, FlavorCreate } from '../../../api/flavor.js';
import { Host, HostEvacuation, HostUpdate } from '../../../api/host.js';
import { isUuid } from '../../../common/ids.js';
import { TenantQuery } from '../../../api/iam.js';
import { Image, ImageUpdate } from '../../../api/image.js';
import { createFlavor, findFlavor, flavorToApi, listFlavors } from '../../compute/flavor-catalog.js';
import { getHost, listHosts, setHostMaintenance } from '../../compute/host-registry.js';
import { NotFoundError } from '../../../api/errors.js';
import {
  findImage,
  findOwnedImage,
  imageToApi,
  listImages,
  publishImage,
  setImageVisibility,
  shareImage,
  unshareImage,
} from '../../images/image-catalog.js';
import { requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';
import { TenantParams } from './tenants.js';

const ShareParams = Type.Object(
  { ref: Ref, tenant: TenantParams.properties.tenant },
  { additionalProperties: false },
);

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema };

export async function catalogRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/v1/images',
    {
      schema: {
        tags: ['images'],
        summary: 'List images',
        querystring: TenantQuery,
        response: { 200: listOf(Image), ...errors },
      },
    },
    async (request) => ({
      items: await listImages(ctx.db, requireTenant(request).id),
    }),
  );
  app.get(
    '/v1/images/:ref',
    {
      schema: {
        tags: ['images'],
        summary: 'Show an image by id or name',
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: Image, ...errors },
      },
    },
    async (request) => imageToApi(await findImage(ctx.db, request.params.ref, requireTenant(request).id)),
  );

  app.patch(
    '/v1/images/:ref',
    {
      schema: {
        tags: ['images'],
        summary: "Change an own image's visibility (private or shared; public is the platform's)",
        params: RefParams,
        querystring: TenantQuery,
        body: ImageUpdate,
        response: { 200: Image, ...errors },
      },
    },
    async (request) => {
      const image = await findOwnedImage(ctx.db, request.params.ref, requireTenant(request).id);
      request.auditInfo!.target = image.id;
      request.auditInfo!.detail = `visibility ${image.visibility} -> ${request.body.visibility}`;
      return imageToApi(await setImageVisibility(ctx.db, image, request.body.visibility));
    },
  );

  /** The tenant an own image is shared with (by name or id); NotFoundError('tenant') when absent. */
  const shareTarget = async (ref: string) => {
    const target = await ctx.tenants.find(ref);
    if (!target) throw new NotFoundError('tenant');
    return target;
  };

  app.put(
    '/v1/images/:ref/shares/:tenant',
    {
      schema: {
        tags: ['images'],
        summary: 'Share an own image with another tenant (a private image becomes shared)',
        params: ShareParams,
        querystring: TenantQuery,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      const image = await findOwnedImage(ctx.db, request.params.ref, requireTenant(request).id);
      request.auditInfo!.target = image.id;
      const target = await shareTarget(request.params.tenant);
      request.auditInfo!.detail = `shared with tenant ${target.name} (${target.id})`;
      await shareImage(ctx.db, image, target.id);
      return reply.status(204).send(null);
    },
  );

  app.delete(
    '/v1/images/:ref/shares/:tenant',
    {
      schema: {
        tags: ['images'],
        summary: 'Stop sharing an own image with a tenant',
        params: ShareParams,
        querystring: TenantQuery,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      const image = await findOwnedImage(ctx.db, request.params.ref, requireTenant(request).id);
      request.auditInfo!.target = image.id;
      const target = await shareTarget(request.params.tenant);
      request.auditInfo!.detail = `no longer shared with tenant ${target.name} (${target.id})`;
      await unshareImage(ctx.db, image, target.id);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/images/:ref/publish',
    {
      schema: {
        tags: ['images'],
        summary: 'Publish an image to every tenant (platform only; by id, or by name when unambiguous)',
        params: RefParams,
        response: { 200: Image, ...errors },
      },
    },
    async (request) => {
      const image = await publishImage(ctx.db, request.params.ref);
      request.auditInfo!.target = image.id;
      return imageToApi(image);
    },
  );

  app.get(
    '/v1/flavors',
    {
      schema: {
        tags: ['flavors'],
        summary: 'List flavors',
        querystring: TenantQuery,
        response: { 200: listOf(Flavor), ...errors },
      },
    },
    async () => ({
      items: await listFlavors(ctx.db),
    }),
  );
  app.get(
    '/v1/flavors/:ref',
    {
      schema: {
        tags: ['flavors'],
        summary: 'Show a flavor by id or name',
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: Flavor, ...errors },
      },
    },
    async (request) => flavorToApi(await findFlavor(ctx.db, request.params.ref)),
  );
  app.post(
    '/v1/flavors',
    {
      schema: {
        tags: ['flavors'],
        summary: 'Create a flavor',
        body: FlavorCreate,
        response: { 201: Flavor, ...errors },
      },
    },
    async (request, reply) => reply.status(201).send(await createFlavor(ctx.db, request.body)),
  );

  app.get(
    '/v1/hosts',
    {
      schema: {
        tags: ['hosts'],
        summary: 'List hypervisor hosts',
        response: { 200: listOf(Host), ...errors },
      },
    },
    async () => ({
      items: await listHosts(ctx.db, ctx.overcommit),
    }),
  );
  app.get(
    '/v1/hosts/:id',
    {
      schema: {
        tags: ['hosts'],
        summary: 'Show a host',
        params: Type.Object({ id: Type.String({ maxLength: 36 }) }, { additionalProperties: false }),
        response: { 200: Host, ...errors },
      },
    },
    async (request) => getHost(ctx.db, request.params.id, ctx.overcommit),
  );
  app.patch(
    '/v1/hosts/:id',
    {
      schema: {
        tags: ['hosts'],
        summary: 'Put a host into maintenance (no new VMs are placed there; running VMs stay) or take it out',
        params: Type.Object({ id: Type.String({ maxLength: 36 }) }, { additionalProperties: false }),
        body: HostUpdate,
        response: { 200: Host, ...errors },
      },
    },
    async (request) => {
      request.auditInfo!.target = request.params.id;
      request.auditInfo!.detail = `maintenance ${request.body.maintenance ? 'on' : 'off'}`;
      return setHostMaintenance(ctx.db, request.params.id, request.body.maintenance, ctx.overcommit);
    },
  );
  app.post(
    '/v1/hosts/:id/evacuate',
    {
      schema: {
        tags: ['hosts'],
        summary:
          'Move the stopped VMs of a host to other hosts (placed again under every constraint); running VMs stay and are listed with the reason',
        params: Type.Object({ id: Type.String({ maxLength: 36 }) }, { additionalProperties: false }),
        response: { 200: HostEvacuation, ...errors },
      },
    },
    async (request) => {
      request.auditInfo!.target = request.params.id;
      if (!isUuid(request.params.id)) throw new NotFoundError('host');
      const result = await ctx.vms.evacuateHost(request.params.id);
      request.auditInfo!.detail = `moved ${result.moved.length}, skipped ${result.skipped.length}`;
      return result;
    },
  );
}

/** /v1/images, /v1/flavors and /v1/hosts: the catalog a VM is made from and placed on. */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema, RefParams, listOf } from '../../../api/common.js';
import { Flavor, FlavorCreate } from '../../../api/flavor.js';
import { Host } from '../../../api/host.js';
import { TenantQuery } from '../../../api/iam.js';
import { Image } from '../../../api/image.js';
import { createFlavor, findFlavor, flavorToApi, listFlavors } from '../../compute/flavor-catalog.js';
import { getHost, listHosts } from '../../compute/host-registry.js';
import { findImage, imageToApi, listImages } from '../../images/image-catalog.js';
import { requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';

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
}

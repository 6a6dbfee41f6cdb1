/** /v1/volumes and /v1/vms/{vm}/volumes: a tenant's encrypted volumes and their attachments. */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema, Ref, RefParams, listOf } from '../../../api/common.js';
import { TenantQuery } from '../../../api/iam.js';
import { Volume, VolumeAttach, VolumeCreate, VolumeUpdate } from '../../../api/volume.js';
import { requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';

const errors = {
  400: ErrorSchema,
  401: ErrorSchema,
  403: ErrorSchema,
  404: ErrorSchema,
  409: ErrorSchema,
  503: ErrorSchema,
};
const AttachmentParams = Type.Object({ ref: Ref, volume: Ref }, { additionalProperties: false });

export async function volumeRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/v1/volumes',
    {
      schema: {
        tags: ['volumes'],
        summary: "List the tenant's volumes",
        querystring: TenantQuery,
        response: { 200: listOf(Volume), ...errors },
      },
    },
    async (request) => ({ items: await ctx.volumes.list(requireTenant(request).id) }),
  );

  app.post(
    '/v1/volumes',
    {
      schema: {
        tags: ['volumes'],
        summary:
          'Create a volume (LUKS-encrypted with a key of its own, wrapped by the tenant key; its file is made on the host of the first VM it is attached to)',
        querystring: TenantQuery,
        body: VolumeCreate,
        response: { 201: Volume, ...errors },
      },
    },
    async (request, reply) => {
      const created = await ctx.volumes.create(request.body, requireTenant(request).id);
      request.auditInfo!.target = created.id;
      request.auditInfo!.detail = `${created.name} (${created.sizeGiB} GiB)`;
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/v1/volumes/:ref',
    {
      schema: {
        tags: ['volumes'],
        summary: 'Show a volume',
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: Volume, ...errors },
      },
    },
    async (request) => ctx.volumes.get(request.params.ref, requireTenant(request).id),
  );

  app.patch(
    '/v1/volumes/:ref',
    {
      schema: {
        tags: ['volumes'],
        summary: 'Grow a volume (never shrink; an attached volume’s VM must be stopped)',
        params: RefParams,
        querystring: TenantQuery,
        body: VolumeUpdate,
        response: { 200: Volume, ...errors },
      },
    },
    async (request) => {
      const resized = await ctx.volumes.resize(
        request.params.ref,
        request.body.sizeGiB,
        requireTenant(request).id,
      );
      request.auditInfo!.target = resized.id;
      request.auditInfo!.detail = `size ${resized.sizeGiB} GiB`;
      return resized;
    },
  );

  app.delete(
    '/v1/volumes/:ref',
    {
      schema: {
        tags: ['volumes'],
        summary:
          'Delete a detached volume: its host overwrites the file with zeros and removes it (status deleting until then; the erase is audited as volume:erase)',
        params: RefParams,
        querystring: TenantQuery,
        response: { 202: Volume, ...errors },
      },
    },
    async (request, reply) => {
      const deleting = await ctx.volumes.delete(request.params.ref, requireTenant(request).id);
      request.auditInfo!.target = deleting.id;
      return reply.status(202).send(deleting);
    },
  );

  app.post(
    '/v1/vms/:ref/volumes',
    {
      schema: {
        tags: ['volumes'],
        summary: 'Attach a volume to a stopped VM (it appears as the next virtio disk at the next start)',
        params: RefParams,
        querystring: TenantQuery,
        body: VolumeAttach,
        response: { 200: Volume, ...errors },
      },
    },
    async (request) => {
      const tenantId = requireTenant(request).id;
      const vm = await ctx.vms.findRow(request.params.ref, tenantId);
      const attached = await ctx.volumes.attach(vm, request.body.volume, tenantId);
      request.auditInfo!.target = attached.id;
      request.auditInfo!.detail = `attached to ${vm.name}`;
      await ctx.vms.republish(vm.id);
      return attached;
    },
  );

  app.delete(
    '/v1/vms/:ref/volumes/:volume',
    {
      schema: {
        tags: ['volumes'],
        summary: 'Detach a volume from a stopped VM (it stays, available, on the same host)',
        params: AttachmentParams,
        querystring: TenantQuery,
        response: { 200: Volume, ...errors },
      },
    },
    async (request) => {
      const tenantId = requireTenant(request).id;
      const vm = await ctx.vms.findRow(request.params.ref, tenantId);
      const detached = await ctx.volumes.detach(vm, request.params.volume, tenantId);
      request.auditInfo!.target = detached.id;
      request.auditInfo!.detail = `detached from ${vm.name}`;
      await ctx.vms.republish(vm.id);
      return detached;
    },
  );
}

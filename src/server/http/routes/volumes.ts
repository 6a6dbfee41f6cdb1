/** /v1/volumes and /v1/vms/{vm}/volumes: a tenant's encrypted volumes and their attachments. */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema, Ref, RefParams, listOf } from '../../../api/common.js';
import { TenantQuery } from '../../../api/iam.js';
import {
  Volume,
  VolumeAttach,
  VolumeBackup,
  VolumeBackupCreate,
  VolumeCreate,
  VolumeRestore,
  VolumeSnapshot,
  VolumeSnapshotCreate,
  VolumeUpdate,
} from '../../../api/volume.js';
import { auditActor, type Principal } from '../../iam/principal.js';
import { volumeCopyEvent, type VolumeCopy } from '../../security/event-producers.js';
import { requirePrincipal, requireTenant } from '../access-control.js';
import { InvalidInputError } from '../../../api/errors.js';
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
const SnapshotParams = Type.Object({ ref: Ref, snapshot: Ref }, { additionalProperties: false });

export async function volumeRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  /** A copy of a tenant's disk, for the volume-copy rules (a failure to record does not undo it). */
  const recordCopy = (copy: VolumeCopy, principal: Principal) =>
    ctx.securityEvents
      .record(
        volumeCopyEvent(
          copy,
          principal,
          ctx.roles.policy.rolesOf(principal.userId, copy.tenantId).length > 0,
        ),
      )
      .catch((error: unknown) => base.log.error({ err: (error as Error).message }, 'security event failed'));

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
      const tenantId = requireTenant(request).id;
      const principal = requirePrincipal(request);
      // Choosing where a restored volume goes is a platform decision (it places data on a host).
      const platformHosts =
        ctx.roles.policy.platformPermissions(principal.userId).has('platform:host:update') &&
        (!principal.token || principal.token.permissions.has('platform:host:update'));
      if (request.body.host !== undefined && request.body.backup === undefined)
        throw new InvalidInputError('host is only given with backup (where the restored volume goes)');
      if (request.body.backup !== undefined && request.body.snapshot !== undefined)
        throw new InvalidInputError('give a snapshot (clone) or a backup (restore), not both');
      const created =
        request.body.backup !== undefined
          ? await ctx.backups.restore(request.body, request.body.backup, tenantId, platformHosts)
          : await ctx.volumes.create(request.body, tenantId);
      const origin = created.origin;
      if (origin?.snapshotId && origin.volumeId)
        await recordCopy(
          {
            kind: 'volume.cloned',
            tenantId,
            volumeId: origin.volumeId,
            volumeName: await ctx.volumes.get(origin.volumeId, tenantId).then(
              (v) => v.name,
              () => origin.volumeId,
            ),
            newId: created.id,
            vmId: null,
          },
          principal,
        );
      request.auditInfo!.target = created.id;
      request.auditInfo!.detail = `${created.name} (${created.sizeGiB} GiB)${
        created.origin?.snapshotId
          ? `, cloned from snapshot ${created.origin.snapshotId}`
          : created.origin?.backupId
            ? `, restored from backup ${created.origin.backupId} on host ${created.hostId}`
            : ''
      }`;
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

  app.get(
    '/v1/volumes/:ref/snapshots',
    {
      schema: {
        tags: ['volumes'],
        summary: "List a volume's snapshots",
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: listOf(VolumeSnapshot), ...errors },
      },
    },
    async (request) => ({ items: await ctx.snapshots.list(request.params.ref, requireTenant(request).id) }),
  );

  app.post(
    '/v1/volumes/:ref/snapshots',
    {
      schema: {
        tags: ['volumes'],
        summary:
          'Snapshot a volume (a copy of its encrypted file on its host; its VM, if any, must be stopped); counts in the snapshots quota',
        params: RefParams,
        querystring: TenantQuery,
        body: VolumeSnapshotCreate,
        response: { 201: VolumeSnapshot, ...errors },
      },
    },
    async (request, reply) => {
      const tenantId = requireTenant(request).id;
      const principal = requirePrincipal(request);
      const created = await ctx.snapshots.create(
        request.params.ref,
        request.body.name,
        tenantId,
        auditActor(principal),
      );
      await recordCopy(
        {
          kind: 'volume.snapshot_created',
          tenantId,
          volumeId: created.volume.id,
          volumeName: created.volume.name,
          newId: created.id,
          vmId: null,
        },
        principal,
      );
      request.auditInfo!.target = created.id;
      request.auditInfo!.detail = `${created.name} of volume ${created.volume.name}`;
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/v1/volumes/:ref/snapshots/:snapshot',
    {
      schema: {
        tags: ['volumes'],
        summary: 'Show a snapshot',
        params: SnapshotParams,
        querystring: TenantQuery,
        response: { 200: VolumeSnapshot, ...errors },
      },
    },
    async (request) =>
      ctx.snapshots.get(request.params.ref, request.params.snapshot, requireTenant(request).id),
  );

  app.delete(
    '/v1/volumes/:ref/snapshots/:snapshot',
    {
      schema: {
        tags: ['volumes'],
        summary:
          'Delete a snapshot: its host overwrites the copy with zeros and removes it (audited as snapshot:erase)',
        params: SnapshotParams,
        querystring: TenantQuery,
        response: { 202: VolumeSnapshot, ...errors },
      },
    },
    async (request, reply) => {
      const deleting = await ctx.snapshots.delete(
        request.params.ref,
        request.params.snapshot,
        requireTenant(request).id,
      );
      request.auditInfo!.target = deleting.id;
      return reply.status(202).send(deleting);
    },
  );

  app.post(
    '/v1/volumes/:ref/restore',
    {
      schema: {
        tags: ['volumes'],
        summary:
          'Restore a volume to one of its snapshots (its VM stopped; the volume not resized since): everything written after the snapshot is gone',
        params: RefParams,
        querystring: TenantQuery,
        body: VolumeRestore,
        response: { 200: VolumeSnapshot, ...errors },
      },
    },
    async (request) => {
      const restored = await ctx.snapshots.restore(
        request.params.ref,
        request.body.snapshot,
        requireTenant(request).id,
      );
      request.auditInfo!.target = restored.volume.id;
      request.auditInfo!.detail = `restored to snapshot ${restored.name}`;
      return restored;
    },
  );

  app.post(
    '/v1/volumes/:ref/backups',
    {
      schema: {
        tags: ['volumes'],
        summary:
          "Back up a volume (its VM stopped): its encrypted file into the server's backup store, with a manifest signed by the platform key",
        params: RefParams,
        querystring: TenantQuery,
        body: VolumeBackupCreate,
        response: { 201: VolumeBackup, ...errors },
      },
    },
    async (request, reply) => {
      const created = await ctx.backups.create(
        request.params.ref,
        request.body.name,
        requireTenant(request).id,
        auditActor(requirePrincipal(request)),
      );
      request.auditInfo!.target = created.id;
      request.auditInfo!.detail = `${created.name} of volume ${created.volume.name} (sha256 ${created.sha256})`;
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/v1/backups',
    {
      schema: {
        tags: ['volumes'],
        summary: "List the tenant's volume backups (restore one with POST /v1/volumes {name, backup})",
        querystring: TenantQuery,
        response: { 200: listOf(VolumeBackup), ...errors },
      },
    },
    async (request) => ({ items: await ctx.backups.list(requireTenant(request).id) }),
  );

  app.get(
    '/v1/backups/:ref',
    {
      schema: {
        tags: ['volumes'],
        summary: 'Show a backup',
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: VolumeBackup, ...errors },
      },
    },
    async (request) => ctx.backups.get(request.params.ref, requireTenant(request).id),
  );

  app.delete(
    '/v1/backups/:ref',
    {
      schema: {
        tags: ['volumes'],
        summary: 'Delete a backup: its file is overwritten with zeros, then removed',
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: VolumeBackup, ...errors },
      },
    },
    async (request) => {
      const { backup, bytes } = await ctx.backups.delete(request.params.ref, requireTenant(request).id);
      request.auditInfo!.target = backup.id;
      request.auditInfo!.detail = `${backup.name}: ${bytes} bytes overwritten with zeros, then removed`;
      return backup;
    },
  );
}

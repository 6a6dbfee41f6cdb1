/**
 * /v1/trusted-keys and /v1/tenants/{tenant}/trust-policy: which keys a tenant trusts to sign its images,
 * and whether signatures are required. Members read them; changing them needs image:trust (tenant
 * admins). Every change is audited by access control; a weakened policy says so in the record's detail.
 * Also /v1/images/{ref}/signatures: the signatures (attestations) a tenant attached to an image.
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema, Id, NoContent, Ref, RefParams, listOf } from '../../../api/common.js';
import { TenantQuery } from '../../../api/iam.js';
import { ImageSignature, ImageSignatureCreate } from '../../../api/image.js';
import { TrustPolicy, TrustPolicyUpdate, TrustedKey, TrustedKeyCreate } from '../../../api/trust.js';
import {
  addTrustedKey,
  deleteTrustedKey,
  getTrustPolicy,
  listTrustedKeys,
  updateTrustPolicy,
} from '../../images/trust-store.js';
import { findImage } from '../../images/image-catalog.js';
import { attachSignature, deleteSignature, listSignatures } from '../../images/image-signatures.js';
import { requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';
import { TenantParams } from './tenants.js';

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema };
const IdParams = Type.Object({ id: Id }, { additionalProperties: false });
const SignatureParams = Type.Object({ ref: Ref, id: Id }, { additionalProperties: false });

/** What changed, in words, for the audit record; weakening changes come first. */
function policyChange(before: TrustPolicy, after: TrustPolicy): string {
  const changes: string[] = [];
  if (before.requireSignatures && !after.requireSignatures) changes.push('signatures no longer required');
  if (!before.requireSignatures && after.requireSignatures) changes.push('signatures required');
  if (!before.acceptPlatformImages && after.acceptPlatformImages) changes.push('platform images accepted');
  if (before.acceptPlatformImages && !after.acceptPlatformImages)
    changes.push('platform images no longer accepted without a trusted signature');
  return changes.length > 0 ? changes.join('; ') : 'no change';
}

export async function trustRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/v1/trusted-keys',
    {
      schema: {
        tags: ['images'],
        summary: "List the tenant's trusted image-signing keys",
        querystring: TenantQuery,
        response: { 200: listOf(TrustedKey), ...errors },
      },
    },
    async (request) => ({ items: await listTrustedKeys(ctx.db, requireTenant(request).id) }),
  );

  app.post(
    '/v1/trusted-keys',
    {
      schema: {
        tags: ['images'],
        summary: 'Trust an Ed25519 public key (SPKI PEM) to sign images in the tenant',
        querystring: TenantQuery,
        body: TrustedKeyCreate,
        response: { 201: TrustedKey, ...errors },
      },
    },
    async (request, reply) => {
      const created = await addTrustedKey(ctx.db, requireTenant(request).id, request.body);
      request.auditInfo!.target = created.id;
      request.auditInfo!.detail = `keyid ${created.keyid}`;
      return reply.status(201).send(created);
    },
  );

  app.delete(
    '/v1/trusted-keys/:id',
    {
      schema: {
        tags: ['images'],
        summary: 'Stop trusting a key',
        params: IdParams,
        querystring: TenantQuery,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      request.auditInfo!.target = request.params.id;
      const removed = await deleteTrustedKey(ctx.db, requireTenant(request).id, request.params.id);
      request.auditInfo!.detail = `keyid ${removed.keyid}`;
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/tenants/:tenant/trust-policy',
    {
      schema: {
        tags: ['images'],
        summary: "The tenant's image trust policy (defaults: signatures required, platform images accepted)",
        params: TenantParams,
        response: { 200: TrustPolicy, ...errors },
      },
    },
    async (request) => getTrustPolicy(ctx.db, requireTenant(request).id),
  );

  app.put(
    '/v1/tenants/:tenant/trust-policy',
    {
      schema: {
        tags: ['images'],
        summary: 'Change the image trust policy (partial). Turning signatures off is audited as such.',
        params: TenantParams,
        body: TrustPolicyUpdate,
        response: { 200: TrustPolicy, ...errors },
      },
    },
    async (request) => {
      const tenant = requireTenant(request);
      const { before, after } = await updateTrustPolicy(ctx.db, tenant.id, request.body);
      request.auditInfo!.target = tenant.id;
      request.auditInfo!.detail = policyChange(before, after);
      return after;
    },
  );

  app.get(
    '/v1/images/:ref/signatures',
    {
      schema: {
        tags: ['images'],
        summary: 'The signatures the tenant attached to an image (they count for this tenant only)',
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: listOf(ImageSignature), ...errors },
      },
    },
    async (request) => {
      const tenant = requireTenant(request);
      const image = await findImage(ctx.db, request.params.ref, tenant.id);
      return { items: await listSignatures(ctx.db, image.id, tenant.id) };
    },
  );

  app.post(
    '/v1/images/:ref/signatures',
    {
      schema: {
        tags: ['images'],
        summary: "Attach a DSSE envelope (in-toto statement over the image's sha256) signed by a trusted key",
        params: RefParams,
        querystring: TenantQuery,
        body: ImageSignatureCreate,
        response: { 201: ImageSignature, ...errors },
      },
    },
    async (request, reply) => {
      const tenant = requireTenant(request);
      const image = await findImage(ctx.db, request.params.ref, tenant.id);
      request.auditInfo!.target = image.id;
      const created = await attachSignature(ctx.db, image, tenant.id, request.body.envelope);
      request.auditInfo!.detail = `signature ${created.id} by keyid ${created.keyid}`;
      return reply.status(201).send(created);
    },
  );

  app.delete(
    '/v1/images/:ref/signatures/:id',
    {
      schema: {
        tags: ['images'],
        summary: 'Remove a signature the tenant attached to an image',
        params: SignatureParams,
        querystring: TenantQuery,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      const tenant = requireTenant(request);
      const image = await findImage(ctx.db, request.params.ref, tenant.id);
      request.auditInfo!.target = image.id;
      const removed = await deleteSignature(ctx.db, image.id, tenant.id, request.params.id);
      request.auditInfo!.detail = `signature ${removed.id} by keyid ${removed.keyid}`;
      return reply.status(204).send(null);
    },
  );
}

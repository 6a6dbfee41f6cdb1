/** /v1/tokens: the caller's own API tokens (for automation), limited to one tenant and a permission subset. */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema, NoContent, Id, listOf } from '../../../api/common.js';
import { ApiToken, ApiTokenCreate, ApiTokenCreated, TenantQuery } from '../../../api/iam.js';
import type { Permission } from '../../iam/permissions.js';
import { requirePrincipal, requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema };

export async function tokenRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/v1/tokens',
    {
      schema: {
        tags: ['tokens'],
        summary: 'List your API tokens',
        response: { 200: listOf(ApiToken), ...errors },
      },
    },
    async (request) => ({ items: await ctx.authenticator.listApiTokens(requirePrincipal(request).userId) }),
  );

  app.post(
    '/v1/tokens',
    {
      schema: {
        tags: ['tokens'],
        summary:
          'Create an API token for the request tenant; the secret is in this answer only. Permissions default to all you hold there (platform ones included).',
        querystring: TenantQuery,
        body: ApiTokenCreate,
        response: { 201: ApiTokenCreated, ...errors },
      },
    },
    async (request, reply) => {
      const principal = requirePrincipal(request);
      const tenant = requireTenant(request);
      const held = new Set<Permission>([
        ...request.permissions,
        ...[...ctx.roles.policy.platformPermissions(principal.userId)].filter((p) =>
          p.startsWith('platform:'),
        ),
      ]);
      const created = await ctx.authenticator.createApiToken(principal, tenant, request.body, held);
      request.auditInfo!.target = created.apiToken.id;
      return reply.status(201).send(created);
    },
  );

  app.delete(
    '/v1/tokens/:id',
    {
      schema: {
        tags: ['tokens'],
        summary: 'Revoke one of your API tokens',
        params: Type.Object({ id: Id }, { additionalProperties: false }),
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      await ctx.authenticator.revokeApiToken(requirePrincipal(request).userId, request.params.id);
      return reply.status(204).send(null);
    },
  );
}

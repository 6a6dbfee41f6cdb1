/** /v1/roles: the built-in roles and a tenant's custom roles (no role may exceed its creator). */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema, NoContent, listOf } from '../../../api/common.js';
import { Role, RoleCreate, RoleName, TenantQuery } from '../../../api/iam.js';
import { requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema };
const RoleParams = Type.Object({ name: RoleName }, { additionalProperties: false });

export async function roleRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/v1/roles',
    {
      schema: {
        tags: ['roles'],
        summary: "List the built-in roles and the tenant's custom roles",
        querystring: TenantQuery,
        response: { 200: listOf(Role), ...errors },
      },
    },
    async (request) => ({ items: ctx.roles.listRoles(requireTenant(request).id) }),
  );

  app.post(
    '/v1/roles',
    {
      schema: {
        tags: ['roles'],
        summary: 'Create a custom role (only with permissions you hold yourself)',
        querystring: TenantQuery,
        body: RoleCreate,
        response: { 201: Role, ...errors },
      },
    },
    async (request, reply) =>
      reply
        .status(201)
        .send(await ctx.roles.createRole(requireTenant(request).id, request.body, request.permissions)),
  );

  app.get(
    '/v1/roles/:name',
    {
      schema: {
        tags: ['roles'],
        summary: 'Show a role',
        params: RoleParams,
        querystring: TenantQuery,
        response: { 200: Role, ...errors },
      },
    },
    async (request) => ctx.roles.getRole(requireTenant(request).id, request.params.name),
  );

  app.delete(
    '/v1/roles/:name',
    {
      schema: {
        tags: ['roles'],
        summary: 'Delete a custom role that nobody holds any more',
        params: RoleParams,
        querystring: TenantQuery,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      await ctx.roles.deleteRole(requireTenant(request).id, request.params.name);
      return reply.status(204).send(null);
    },
  );
}

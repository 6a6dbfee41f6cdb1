/**
 * Role bindings: /v1/tenants/{tenant}/members (tenant-wide) and /v1/platform/members (platform-wide).
 * Granting follows the no-escalation rule (RoleDirectory.bind); the last platform admin stays.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ConflictError, NotFoundError } from '../../../api/errors.js';
import { ErrorSchema, NoContent, listOf } from '../../../api/common.js';
import { Member, MemberAdd, RoleName } from '../../../api/iam.js';
import type { Permission } from '../../iam/permissions.js';
import { requirePrincipal, requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';
import { TenantParams } from './tenants.js';

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema };
const UserParam = { user: Type.String({ minLength: 1, maxLength: 64 }) };
const RoleQuery = Type.Object({ role: Type.Optional(RoleName) }, { additionalProperties: false });

export async function memberRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  /** What the caller holds platform-wide (API tokens: limited to the token). */
  function platformHeld(request: FastifyRequest): ReadonlySet<Permission> {
    const principal = requirePrincipal(request);
    const held = ctx.roles.policy.platformPermissions(principal.userId);
    if (!principal.token) return held;
    return new Set([...held].filter((p) => principal.token!.permissions.has(p)));
  }

  async function listMembers(tenantId: string | null) {
    const members = await ctx.roles.members(tenantId);
    return { items: members.map((m) => ({ user: { id: m.userId, username: m.username }, roles: m.roles })) };
  }

  async function memberView(tenantId: string | null, userId: string) {
    const user = await ctx.users.get(userId);
    return {
      user: { id: user.id, username: user.username },
      roles: [...ctx.roles.policy.rolesOf(userId, tenantId)],
    };
  }

  async function removeMember(tenantId: string | null, userRef: string, role: string | undefined) {
    const user = await ctx.users.find(userRef);
    if (!user) throw new NotFoundError('member');
    if (tenantId === null && (role === undefined || role === 'platform-admin')) {
      const isAdmin = ctx.roles.policy.rolesOf(user.id, null).includes('platform-admin');
      if (isAdmin && (await ctx.roles.platformAdminCount()) <= 1)
        throw new ConflictError('cannot remove the last platform admin');
    }
    if (!(await ctx.roles.unbind(user.id, tenantId, role))) throw new NotFoundError('member');
  }

  app.get(
    '/v1/tenants/:tenant/members',
    {
      schema: {
        tags: ['members'],
        summary: 'List the members of a tenant and their roles',
        params: TenantParams,
        response: { 200: listOf(Member), ...errors },
      },
    },
    async (request) => listMembers(requireTenant(request).id),
  );

  app.post(
    '/v1/tenants/:tenant/members',
    {
      schema: {
        tags: ['members'],
        summary: 'Give a user a role in a tenant (you must hold every permission of that role)',
        params: TenantParams,
        body: MemberAdd,
        response: { 201: Member, ...errors },
      },
    },
    async (request, reply) => {
      const tenant = requireTenant(request);
      const user = await ctx.users.get(request.body.user);
      request.auditInfo!.target = `${tenant.id}/${user.id}/${request.body.role}`;
      await ctx.roles.bind(user.id, tenant.id, request.body.role, request.permissions);
      return reply.status(201).send(await memberView(tenant.id, user.id));
    },
  );

  app.delete(
    '/v1/tenants/:tenant/members/:user',
    {
      schema: {
        tags: ['members'],
        summary: "Remove a user's role (?role=) or all of their roles from a tenant",
        params: Type.Object({ ...TenantParams.properties, ...UserParam }, { additionalProperties: false }),
        querystring: RoleQuery,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      await removeMember(requireTenant(request).id, request.params.user, request.query.role);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/platform/members',
    {
      schema: {
        tags: ['members'],
        summary: 'List platform-wide role bindings',
        response: { 200: listOf(Member), ...errors },
      },
    },
    async () => listMembers(null),
  );

  app.post(
    '/v1/platform/members',
    {
      schema: {
        tags: ['members'],
        summary: 'Bind a built-in role platform-wide (it then applies in every tenant)',
        body: MemberAdd,
        response: { 201: Member, ...errors },
      },
    },
    async (request, reply) => {
      const user = await ctx.users.get(request.body.user);
      request.auditInfo!.target = `platform/${user.id}/${request.body.role}`;
      await ctx.roles.bind(user.id, null, request.body.role, platformHeld(request));
      return reply.status(201).send(await memberView(null, user.id));
    },
  );

  app.delete(
    '/v1/platform/members/:user',
    {
      schema: {
        tags: ['members'],
        summary: "Remove a user's platform-wide role (?role=) or all of them",
        params: Type.Object(UserParam, { additionalProperties: false }),
        querystring: RoleQuery,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      await removeMember(null, request.params.user, request.query.role);
      return reply.status(204).send(null);
    },
  );
}

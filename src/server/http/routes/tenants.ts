/** /v1/tenants: tenants (platform admins create and delete them; tenant admins set their policy). */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema, NoContent, listOf } from '../../../api/common.js';
import { ForbiddenError } from '../../../api/errors.js';
import { Tenant, TenantCreate, TenantUpdate } from '../../../api/iam.js';
import { tenantToApi } from '../../iam/tenant-directory.js';
import { requirePrincipal, requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema };
export const TenantParams = Type.Object(
  { tenant: Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }) },
  { additionalProperties: false },
);

export async function tenantRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/v1/tenants',
    {
      schema: {
        tags: ['tenants'],
        summary: 'List tenants: all of them for platform readers, otherwise the ones you belong to',
        response: { 200: listOf(Tenant), ...errors },
      },
    },
    async (request) => {
      const principal = requirePrincipal(request);
      const policy = ctx.roles.policy;
      const all =
        policy.platformPermissions(principal.userId).has('platform:tenant:read') &&
        (!principal.token || principal.token.permissions.has('platform:tenant:read'));
      let ids = all ? undefined : policy.tenantsOf(principal.userId);
      if (principal.token) ids = [principal.token.tenantId];
      return { items: (await ctx.tenants.list(ids)).map(tenantToApi) };
    },
  );

  app.post(
    '/v1/tenants',
    {
      schema: {
        tags: ['tenants'],
        summary: 'Create a tenant',
        body: TenantCreate,
        response: { 201: Tenant, ...errors },
      },
    },
    async (request, reply) => {
      const row = await ctx.tenants.create(request.body);
      request.auditInfo!.target = row.id;
      return reply.status(201).send(tenantToApi(row));
    },
  );

  app.get(
    '/v1/tenants/:tenant',
    {
      schema: {
        tags: ['tenants'],
        summary: 'Show a tenant',
        params: TenantParams,
        response: { 200: Tenant, ...errors },
      },
    },
    async (request) => tenantToApi(requireTenant(request)),
  );

  app.patch(
    '/v1/tenants/:tenant',
    {
      schema: {
        tags: ['tenants'],
        summary: "Change a tenant's policy (require MFA for its admins)",
        params: TenantParams,
        body: TenantUpdate,
        response: { 200: Tenant, ...errors },
      },
    },
    async (request) => {
      const tenant = requireTenant(request);
      const isPlatformAdmin = () => {
        const principal = requirePrincipal(request);
        const platform = ctx.roles.policy.platformPermissions(principal.userId);
        const tokenAllows = !principal.token || principal.token.permissions.has('platform:tenant:update');
        return platform.has('platform:tenant:update') && tokenAllows;
      };
      // Tenant admins may tighten their policy, never loosen what the platform requires of them.
      if (
        request.body.requireMfaForAdmins === false &&
        tenant.requireMfaForAdmins === 1 &&
        !isPlatformAdmin()
      )
        throw new ForbiddenError("only a platform admin can stop requiring MFA for this tenant's admins");
      if (
        request.body.allowNestedVirtualization === true &&
        tenant.allowNestedVirtualization !== 1 &&
        !isPlatformAdmin()
      )
        throw new ForbiddenError('only a platform admin can allow nested virtualization for a tenant');
      if (request.body.dedicatedHosts !== undefined && !isPlatformAdmin())
        throw new ForbiddenError('only a platform admin can change whether a tenant has dedicated hosts');
      if (request.body.dedicatedHosts !== undefined)
        request.auditInfo!.detail = `dedicated hosts ${request.body.dedicatedHosts ? 'on' : 'off'}`;
      if (request.body.allowClones !== undefined)
        request.auditInfo!.detail = `clones ${request.body.allowClones ? 'allowed' : 'forbidden'}`;
      if (request.body.allowNestedVirtualization !== undefined)
        request.auditInfo!.detail = `nested virtualization ${request.body.allowNestedVirtualization ? 'allowed' : 'off'}`;
      return tenantToApi(await ctx.tenants.update(tenant.id, request.body));
    },
  );

  app.delete(
    '/v1/tenants/:tenant',
    {
      schema: {
        tags: ['tenants'],
        summary:
          'Delete a tenant (it must have no VMs left); its roles, members, tokens and images go with it, and its image encryption keys are destroyed',
        params: TenantParams,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      const tenant = await ctx.tenants.get(request.params.tenant);
      await ctx.tenants.delete(tenant.id);
      await ctx.roles.reload();
      // Crypto-shredding: the tenant's data keys are destroyed (overwritten in the database), so any
      // copy of its image blobs (backups, a stolen disk) stays unreadable; then the blobs go too.
      await ctx.images.keyring.destroyTenantKeys(tenant.id);
      await ctx.images.store.removeDomain(tenant.id);
      return reply.status(204).send(null);
    },
  );
}

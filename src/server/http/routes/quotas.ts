/** /v1/tenants/{tenant}/quota: limits and usage (members read it; platform admins change it). */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ErrorSchema } from '../../../api/common.js';
import { Quota, QuotaUpdate, QuotaUpdateQuery } from '../../../api/quota.js';
import { requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';
import { TenantParams } from './tenants.js';

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema };

export async function quotaRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/v1/tenants/:tenant/quota',
    {
      schema: {
        tags: ['quotas'],
        summary: "A tenant's quota: the limit (-1 = unlimited) and the current usage of every resource",
        params: TenantParams,
        response: { 200: Quota, ...errors },
      },
    },
    async (request) => ctx.quotas.show(requireTenant(request)),
  );

  app.put(
    '/v1/tenants/:tenant/quota',
    {
      schema: {
        tags: ['quotas'],
        summary:
          'Change some limits (partial, e.g. {"vms": 3}; null = back to the platform default). A limit below usage needs ?force=true.',
        params: TenantParams,
        querystring: QuotaUpdateQuery,
        body: QuotaUpdate,
        response: { 200: Quota, ...errors },
      },
    },
    async (request) => {
      const tenant = await ctx.tenants.get(request.params.tenant);
      request.auditInfo!.tenantId = tenant.id;
      await ctx.quotas.update(tenant.id, request.body, request.query.force === 'true');
      return ctx.quotas.show(tenant);
    },
  );
}

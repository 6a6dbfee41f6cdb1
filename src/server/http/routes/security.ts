/**
 * /v1/security/events: the request tenant's security events (security:read); /v1/platform/security/events:
 * every event, platform-wide ones included (platform:security:read), ?tenant= narrows to one tenant.
 * Newest first; with ?after=<seq> the events after it, oldest first (tailing).
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ErrorSchema } from '../../../api/common.js';
import { NotFoundError } from '../../../api/errors.js';
import {
  SecurityEventList,
  SecurityEventQuery,
  type SecurityEventQuery as Query,
} from '../../../api/security.js';
import { LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX } from '../../security/security-events.js';
import { requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema };

function filters(query: Query) {
  return {
    kind: query.kind,
    afterSeq: query.after === undefined ? undefined : Number(query.after),
    limit:
      query.limit === undefined
        ? LIST_LIMIT_DEFAULT
        : Math.min(Math.max(Number(query.limit), 1), LIST_LIMIT_MAX),
  };
}

export async function securityRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/v1/security/events',
    {
      schema: {
        tags: ['security'],
        summary: "The request tenant's security events: newest first, or after a seq oldest first (?after=)",
        querystring: SecurityEventQuery,
        response: { 200: SecurityEventList, ...errors },
      },
    },
    async (request) => ({
      items: await ctx.securityEvents.list({
        tenantId: requireTenant(request).id,
        ...filters(request.query),
      }),
    }),
  );

  app.get(
    '/v1/platform/security/events',
    {
      schema: {
        tags: ['security'],
        summary:
          'All security events (platform), platform-wide ones included; ?tenant= narrows to one tenant',
        querystring: SecurityEventQuery,
        response: { 200: SecurityEventList, ...errors },
      },
    },
    async (request) => {
      let tenantId: string | undefined;
      if (request.query.tenant !== undefined) {
        const tenant = await ctx.tenants.find(request.query.tenant);
        if (!tenant) throw new NotFoundError('tenant');
        tenantId = tenant.id;
      }
      return { items: await ctx.securityEvents.list({ tenantId, ...filters(request.query) }) };
    },
  );
}

/** /v1/placement-groups: affinity and anti-affinity groups of a tenant's VMs. */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ErrorSchema, NoContent, RefParams, listOf } from '../../../api/common.js';
import { TenantQuery } from '../../../api/iam.js';
import { PlacementGroup, PlacementGroupCreate } from '../../../api/placement.js';
import {
  createPlacementGroup,
  deletePlacementGroup,
  getPlacementGroup,
  listPlacementGroups,
} from '../../compute/placement-groups.js';
import { requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema };

export async function placementGroupRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/v1/placement-groups',
    {
      schema: {
        tags: ['vms'],
        summary: "List the tenant's placement groups and their members",
        querystring: TenantQuery,
        response: { 200: listOf(PlacementGroup), ...errors },
      },
    },
    async (request) => ({ items: await listPlacementGroups(ctx.db, requireTenant(request).id) }),
  );

  app.post(
    '/v1/placement-groups',
    {
      schema: {
        tags: ['vms'],
        summary:
          'Create a placement group: affinity keeps its VMs on one host, anti-affinity on different hosts (VMs join with placementGroup at create)',
        querystring: TenantQuery,
        body: PlacementGroupCreate,
        response: { 201: PlacementGroup, ...errors },
      },
    },
    async (request, reply) => {
      const created = await createPlacementGroup(ctx.db, requireTenant(request).id, request.body);
      request.auditInfo!.target = created.id;
      request.auditInfo!.detail = `${created.name} (${created.policy})`;
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/v1/placement-groups/:ref',
    {
      schema: {
        tags: ['vms'],
        summary: 'Show a placement group',
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: PlacementGroup, ...errors },
      },
    },
    async (request) => getPlacementGroup(ctx.db, request.params.ref, requireTenant(request).id),
  );

  app.delete(
    '/v1/placement-groups/:ref',
    {
      schema: {
        tags: ['vms'],
        summary: 'Delete a placement group without members',
        params: RefParams,
        querystring: TenantQuery,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      const deleted = await deletePlacementGroup(ctx.db, request.params.ref, requireTenant(request).id);
      request.auditInfo!.target = deleted.id;
      request.auditInfo!.detail = deleted.name;
      return reply.status(204).send(null);
    },
  );
}

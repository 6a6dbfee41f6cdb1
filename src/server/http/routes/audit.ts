/**
 * /v1/audit: the tenant's own records; /v1/platform/audit: all of them; verification of the whole
 * chain, the checkpoint public key and the export that verifies offline (docs/audit-verification.md).
 */
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ErrorSchema } from '../../../api/common.js';
import {
  AuditPage,
  AuditPublicKey,
  AuditQuery,
  AuditVerification,
  type AuditQuery as Query,
  type AuditRecordView,
} from '../../../api/audit.js';
import type { AuditPageResult } from '../../audit/audit-log.js';
import { requireTenant } from '../access-control.js';
import { platformTenantFilter } from '../tenant-filter.js';
import type { AppContext } from '../context.js';

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema };

function filters(query: Query) {
  return {
    actor: query.actor,
    action: query.action,
    outcome: query.outcome,
    since: query.since,
    until: query.until,
    after: query.after === undefined ? undefined : Number(query.after),
    limit: query.limit === undefined ? 100 : Math.min(Number(query.limit), 1000),
  };
}

export async function auditRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/v1/audit',
    {
      schema: {
        tags: ['audit'],
        summary:
          "The request tenant's audit records (filter by actor, action, outcome, time; page with after)",
        querystring: AuditQuery,
        response: { 200: AuditPage, ...errors },
      },
    },
    async (request) =>
      page(await ctx.audit.query({ tenantId: requireTenant(request).id, ...filters(request.query) })),
  );

  app.get(
    '/v1/platform/audit',
    {
      schema: {
        tags: ['audit'],
        summary: 'All audit records (platform); ?tenant= narrows to one tenant',
        querystring: AuditQuery,
        response: { 200: AuditPage, ...errors },
      },
    },
    async (request) => {
      const tenantId = await platformTenantFilter(ctx.tenants, request.query.tenant);
      return page(await ctx.audit.query({ tenantId, ...filters(request.query) }));
    },
  );

  app.get(
    '/v1/audit/verify',
    {
      schema: {
        tags: ['audit'],
        summary: 'Verify the whole hash chain and every signed checkpoint; names the first bad record',
        response: { 200: AuditVerification, ...errors },
      },
    },
    async () => ctx.audit.verify(),
  );

  app.get(
    '/v1/audit/public-key',
    {
      schema: {
        tags: ['audit'],
        summary: 'The Ed25519 public key that verifies audit checkpoints',
        response: { 200: AuditPublicKey, ...errors },
      },
    },
    async () => ({ algorithm: 'ed25519' as const, publicKeyPem: ctx.audit.publicKeyPem }),
  );

  app.get(
    '/v1/audit/export/records',
    {
      schema: {
        tags: ['audit'],
        summary: 'Export: every record as its canonical JSON line (records.jsonl), streamed',
      },
    },
    async (_request, reply) =>
      reply.type('application/x-ndjson').send(Readable.from(withNewlines(ctx.audit.exportRecordsAsync()))),
  );

  app.get(
    '/v1/audit/export/checkpoints',
    {
      schema: {
        tags: ['audit'],
        summary: 'Export: every signed checkpoint as a JSON line (checkpoints.jsonl)',
      },
    },
    async (_request, reply) => {
      // Sign the head first, so an export fetched checkpoints-then-records is signed up to its end.
      await ctx.audit.checkpoint();
      return reply
        .type('application/x-ndjson')
        .send(Readable.from(withNewlines(ctx.audit.exportCheckpointsAsync())));
    },
  );
}

function page(result: AuditPageResult): { items: AuditRecordView[]; next: string | null } {
  return { items: result.items, next: result.next };
}

async function* withNewlines(lines: AsyncIterable<string>): AsyncIterable<string> {
  for await (const line of lines) yield `${line}\n`;
}

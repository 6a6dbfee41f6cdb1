/**
 * /v1/security/events: the request tenant's security events (security:read); /v1/platform/security/events:
 * every event, platform-wide ones included (platform:security:read), ?tenant= narrows to one tenant.
 * Newest first; with ?after=<seq> the events after it, oldest first (tailing).
 *
 * /v1/security/alerts: the alerts the detection engine raised for the request tenant (security:read;
 * acknowledge, resolve, reopen, assign, annotate with security:respond); /v1/platform/security/alerts:
 * every alert, platform-wide ones (e.g. login brute force) included.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ErrorSchema } from '../../../api/common.js';
import { Type } from 'typebox';
import {
  SecurityAlert,
  SecurityAlertList,
  SecurityAlertQuery,
  SecurityAlertUpdate,
  SecurityEventList,
  SecurityEventQuery,
  type SecurityEvent,
  type SecurityEventQuery as Query,
} from '../../../api/security.js';
import { LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX } from '../../security/security-events.js';
import { auditActor } from '../../iam/principal.js';
import { requireTenant } from '../access-control.js';
import { platformTenantFilter } from '../tenant-filter.js';
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
      const tenantId = await platformTenantFilter(ctx.tenants, request.query.tenant);
      return { items: await ctx.securityEvents.list({ tenantId, ...filters(request.query) }) };
    },
  );

  const AlertParams = Type.Object({ id: Type.String({ maxLength: 64 }) }, { additionalProperties: false });
  const alertLimit = (limit: string | undefined) =>
    limit === undefined ? LIST_LIMIT_DEFAULT : Math.min(Math.max(Number(limit), 1), LIST_LIMIT_MAX);
  const author = (request: FastifyRequest) => (request.principal ? auditActor(request.principal) : 'unknown');

  app.get(
    '/v1/security/alerts',
    {
      schema: {
        tags: ['security'],
        summary: "The request tenant's security alerts, newest first (?status= filters)",
        querystring: SecurityAlertQuery,
        response: { 200: SecurityAlertList, ...errors },
      },
    },
    async (request) => ({
      items: await ctx.alerts.list({
        tenantId: requireTenant(request).id,
        ...(request.query.status !== undefined ? { status: request.query.status } : {}),
        limit: alertLimit(request.query.limit),
      }),
    }),
  );

  app.get(
    '/v1/security/alerts/:id',
    {
      schema: {
        tags: ['security'],
        summary: 'One alert of the request tenant, with its events, response and notes',
        params: AlertParams,
        querystring: SecurityAlertQuery,
        response: { 200: SecurityAlert, ...errors },
      },
    },
    async (request) => ctx.alerts.get(request.params.id, requireTenant(request).id),
  );

  app.patch(
    '/v1/security/alerts/:id',
    {
      schema: {
        tags: ['security'],
        summary: 'Acknowledge, resolve or reopen an alert, (un)assign it, add a note (audited)',
        params: AlertParams,
        querystring: SecurityAlertQuery,
        body: SecurityAlertUpdate,
        response: { 200: SecurityAlert, ...errors },
      },
    },
    async (request) => {
      const updated = await ctx.alerts.update(
        request.params.id,
        request.body,
        author(request),
        requireTenant(request).id,
      );
      request.auditInfo!.target = updated.id;
      request.auditInfo!.detail = `${updated.ruleId}: ${updated.status}${updated.assignee ? `, assigned to ${updated.assignee}` : ''}`;
      return updated;
    },
  );

  app.get(
    '/v1/platform/security/alerts',
    {
      schema: {
        tags: ['security'],
        summary: 'Every security alert (platform), platform-wide ones included; ?tenant= narrows',
        querystring: SecurityAlertQuery,
        response: { 200: SecurityAlertList, ...errors },
      },
    },
    async (request) => {
      const tenantId = await platformTenantFilter(ctx.tenants, request.query.tenant);
      return {
        items: await ctx.alerts.list({
          ...(tenantId !== undefined ? { tenantId } : {}),
          ...(request.query.status !== undefined ? { status: request.query.status } : {}),
          limit: alertLimit(request.query.limit),
        }),
      };
    },
  );

  app.patch(
    '/v1/platform/security/alerts/:id',
    {
      schema: {
        tags: ['security'],
        summary: 'Acknowledge, resolve, reopen, assign or annotate any alert (platform; audited)',
        params: AlertParams,
        body: SecurityAlertUpdate,
        response: { 200: SecurityAlert, ...errors },
      },
    },
    async (request) => {
      const updated = await ctx.alerts.update(request.params.id, request.body, author(request));
      request.auditInfo!.target = updated.id;
      request.auditInfo!.detail = `${updated.ruleId}: ${updated.status}${updated.assignee ? `, assigned to ${updated.assignee}` : ''}`;
      return updated;
    },
  );

  /**
   * Streams events as JSON text messages: first those after ?after= (oldest first, at most one page),
   * then every new one as it is committed; ?kind= filters. A client that does not keep up (more than
   * 1 MiB unsent) is disconnected (close code 4008) instead of buffering without bound.
   */
  const stream = async (socket: WebSocket, query: Query, tenantId: string | undefined): Promise<void> => {
    const wanted = (e: SecurityEvent) =>
      (tenantId === undefined || e.tenantId === tenantId) &&
      (query.kind === undefined || e.kind === query.kind);
    const pending: SecurityEvent[] = [];
    let lastSent = 0;
    let live = false;
    const send = (e: SecurityEvent) => {
      if (e.seq <= lastSent) return;
      if (socket.bufferedAmount > 1024 * 1024) {
        socket.close(4008, 'too slow: reconnect with ?after=<last seq>');
        return;
      }
      lastSent = e.seq;
      socket.send(JSON.stringify(e));
    };
    const listener = (e: SecurityEvent) => {
      if (!wanted(e)) return;
      if (live) send(e);
      else pending.push(e);
    };
    ctx.securityEvents.on('event', listener);
    socket.on('close', () => ctx.securityEvents.off('event', listener));
    if (query.after !== undefined) {
      const replay = await ctx.securityEvents.list({ tenantId, ...filters(query) });
      for (const e of replay) send(e);
    }
    live = true;
    for (const e of pending.splice(0)) send(e);
  };

  app.get(
    '/v1/security/events/stream',
    {
      websocket: true,
      schema: {
        tags: ['security'],
        summary:
          "WebSocket: the request tenant's security events as they happen (JSON messages); ?after=<seq> replays first, ?kind= filters",
        querystring: SecurityEventQuery,
      },
    },
    async (socket, request) => {
      await stream(socket, request.query, requireTenant(request).id);
    },
  );

  app.get(
    '/v1/platform/security/events/stream',
    {
      websocket: true,
      schema: {
        tags: ['security'],
        summary:
          'WebSocket: every security event as it happens (platform), platform-wide ones included; ?tenant= narrows, ?after= replays, ?kind= filters',
        querystring: SecurityEventQuery,
      },
    },
    async (socket, request) => {
      let tenantId: string | undefined;
      try {
        tenantId = await platformTenantFilter(ctx.tenants, request.query.tenant);
      } catch {
        socket.close(4404, 'tenant not found');
        return;
      }
      await stream(socket, request.query, tenantId);
    },
  );
}

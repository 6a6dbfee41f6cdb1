/**
 * Builds the Fastify application: strict schema validation (unknown fields rejected, no coercion of
 * bodies), request ids, the auth hook, the single error handler, metrics, OpenAPI and the routes.
 *
 * `trustProxy` comes only from configuration (trusted-proxies.ts): with no trusted proxy, request.ip
 * is the socket peer and a client's X-Forwarded-For changes nothing (audit source, login throttle,
 * rate-limit key).
 */
import { adminChangeEvent, denialEvents } from '../security/event-producers.js';
import type { SecurityEventInput } from '../security/security-events.js';
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import websocket from '@fastify/websocket';
import type { Logger } from '../../common/logger.js';
import { installAccessControl, selectSubprotocol } from './access-control.js';
import type { AppContext } from './context.js';
import { installErrorHandler } from './error-handler.js';
import { RateLimiter, type RateLimitConfig } from './rate-limit.js';
import { catalogRoutes } from './routes/catalog.js';
import { imageFileRoutes } from './routes/image-files.js';
import { networkRoutes } from './routes/networks.js';
import { placementGroupRoutes } from './routes/placement-groups.js';
import { volumeRoutes } from './routes/volumes.js';
import { metaRoutes } from './routes/meta.js';
import { vmRoutes } from './routes/vms.js';
import { auditRoutes } from './routes/audit.js';
import { authRoutes } from './routes/auth.js';
import { memberRoutes } from './routes/members.js';
import { roleRoutes } from './routes/roles.js';
import { securityRoutes } from './routes/security.js';
import { complianceRoutes } from './routes/compliance.js';
import { tenantRoutes } from './routes/tenants.js';
import { tokenRoutes } from './routes/tokens.js';
import { quotaRoutes } from './routes/quotas.js';
import { trustRoutes } from './routes/trust.js';
import { userRoutes } from './routes/users.js';
import { remoteHostRoutes } from './routes/remote-hosts.js';
import { WebConsole, webConsoleRoutes } from './web-console.js';

export const BODY_LIMIT_BYTES = 64 * 1024;

/** The HTTP-level settings of the server configuration. */
export interface HttpOptions {
  rateLimit: RateLimitConfig;
  /** IPs/CIDRs whose X-Forwarded-For is believed (validated by the configuration); empty: none. */
  trustedProxies: readonly string[];
}

export async function buildApp(ctx: AppContext, log: Logger, http: HttpOptions): Promise<FastifyInstance> {
  const app = Fastify({
    trustProxy: http.trustedProxies.length > 0 ? [...http.trustedProxies] : false,
    // The cast selects Fastify's logger generic; without it the instance type does not match the routes'.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: log as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    genReqId: () => randomUUID(),
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false },
    },
  });
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('cache-control', 'no-store');
  });
  app.addHook('onResponse', async (request, reply) => {
    const labels = {
      method: request.method,
      route: request.routeOptions.url ?? 'unmatched',
      status: String(reply.statusCode),
    };
    ctx.metrics.httpRequests.inc(labels);
    ctx.metrics.httpDuration.observe(labels, reply.elapsedTime / 1000);
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Rampart API',
        version: ctx.version,
        description: 'Security-first multi-tenant VM manager',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  // A browser offers ["rampart.v1", "bearer.<token>"]: the answer names rampart.v1, never the token.
  await app.register(websocket, {
    options: { maxPayload: 64 * 1024, handleProtocols: selectSubprotocol },
  });
  const web = WebConsole.load();
  installErrorHandler(app, (request, reply) => web.serveDeepLink(request, reply));
  const record = (event: SecurityEventInput) =>
    void ctx.securityEvents
      .record(event)
      .catch((error: unknown) => app.log.error({ err: (error as Error).message }, 'security event failed'));
  installAccessControl(app, {
    authenticator: ctx.authenticator,
    roles: ctx.roles,
    tenants: ctx.tenants,
    audit: ctx.audit,
    limiter: new RateLimiter(http.rateLimit),
    // Refusals feed the detection rules (id probing, privilege-escalation attempts).
    onDenied: (denial) => {
      for (const event of denialEvents(denial)) record(event);
    },
    // Administrative changes (members, roles, users, tenants, trust, hosts, tokens) are events too.
    onAudited: (entry) => {
      const event = adminChangeEvent(entry);
      if (event) record(event);
    },
  });
  await app.register(async (scope) => {
    await authRoutes(scope, ctx);
    await tenantRoutes(scope, ctx);
    await memberRoutes(scope, ctx);
    await userRoutes(scope, ctx);
    await roleRoutes(scope, ctx);
    await tokenRoutes(scope, ctx);
    await quotaRoutes(scope, ctx);
    await auditRoutes(scope, ctx);
    await securityRoutes(scope, ctx);
    await complianceRoutes(scope, ctx);
    await metaRoutes(scope, ctx);
    await catalogRoutes(scope, ctx);
    await remoteHostRoutes(scope, ctx);
    await imageFileRoutes(scope, ctx);
    await networkRoutes(scope, ctx);
    await placementGroupRoutes(scope, ctx);
    await volumeRoutes(scope, ctx);
    await trustRoutes(scope, ctx);
    await vmRoutes(scope, ctx);
    await webConsoleRoutes(scope, web);
  });
  return app;
}

/**
 * Authentication, tenant resolution and authorization for every route, driven by ROUTE_POLICY, plus
 * the audit record each mutating request and each denial leaves behind.
 *
 * Order for a request: (fail closed) the audit log must be writable for a mutating request -> the
 * bearer token (the Authorization header; for a browser's WebSocket, a subprotocol: bearerToken) becomes a
 * Principal (401) -> restricted sessions and API tokens are held to what they may
 * do (403) -> the tenant is resolved (a tenant the caller has no part in answers 404, exactly like one
 * that does not exist) -> the permission is checked in that tenant or platform-wide (403). This all
 * runs in onRequest, before the body is even parsed. After the handler, onSend appends exactly one
 * audit record; if that fails the answer becomes 503 (the log is never silently skipped).
 *
 * Rate limits (rate-limit.ts, 429) are checked in the same hook: a request without a principal takes
 * from its source address's bucket before any authentication work (public routes, unknown routes, a
 * missing or malformed token) or as soon as its token fails to authenticate; an authenticated request takes from
 * its principal's bucket right after authentication and from its tenant's bucket right after the
 * tenant is resolved, both before the permission check. GET /v1/health is never limited: load
 * balancers poll it, and it does no work worth protecting. The one exception to "every denial leaves a
 * record": a 429 inside its bucket's audit window is not recorded (AuditInfo.suppressed), so a flood
 * leaves one record per bucket key per window, which counts the refusals it stands for.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  ForbiddenError,
  InvalidInputError,
  NotFoundError,
  RateLimitedError,
  UnauthenticatedError,
} from '../../api/errors.js';
import type { AuditEntry, AuditLog } from '../audit/audit-log.js';
import type { Authenticator } from '../iam/authenticator.js';
import type { Permission } from '../iam/permissions.js';
import { auditActor, type Principal } from '../iam/principal.js';
import type { RoleDirectory } from '../iam/role-directory.js';
import type { TenantDirectory } from '../iam/tenant-directory.js';
import type { TenantsTable } from '../store/schema.js';
import { sourceKey, type RateLimiter, type RateLimitScope } from './rate-limit.js';
import { ROUTE_POLICY, routeKey, type RoutePolicy } from './route-policy.js';

export interface AuditInfo {
  actorId: string | null;
  actor: string;
  tenantId: string | null;
  action: string;
  target: string | null;
  detail: string | null;
  /**
   * True for a rate-limit refusal inside its bucket's audit window: onSend writes no record for it.
   * The limiter counts it instead, and the key's next recorded refusal carries the count in `detail`
   * (see rate-limit.ts). Nothing else sets this: every other denial is recorded.
   */
  suppressed: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
    tenant: TenantsTable | null;
    /** What the caller may do in `tenant` (API tokens: limited to the token's permissions). */
    permissions: ReadonlySet<Permission>;
    auditInfo: AuditInfo | null;
  }
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const DENIAL_STATUSES = new Set([401, 403, 404, 429]);
const EMPTY: ReadonlySet<Permission> = new Set();
/** Routes no rate limit applies to (load balancers poll health; it does nothing worth protecting). */
const UNLIMITED = new Set([routeKey('GET', '/v1/health')]);

export interface AccessControlDeps {
  authenticator: Authenticator;
  roles: RoleDirectory;
  tenants: TenantDirectory;
  audit: AuditLog;
  limiter: RateLimiter;
  /** Told of every request an authenticated principal was refused (403) or pointed at nothing (404). */
  onDenied?: (denial: RequestDenial) => void;
  /** Told of every audit record written for a request, once it is written. */
  onAudited?: (entry: AuditEntry) => void;
}

/** A refused request of an authenticated principal, for the security event stream. */
export interface RequestDenial {
  principalId: string;
  tokenId: string | null;
  reason: 'forbidden' | 'not-found';
  /** The permission the route needs (403), if the route has one. */
  permission: string | null;
  method: string;
  route: string;
  /** The id or name asked for in the path (`:ref`, `:id`, ...), if any. */
  resourceId: string | null;
  tenantId: string | null;
  sourceIp: string;
}

function keyFor(method: string, url: string): string {
  return routeKey(method === 'HEAD' ? 'GET' : method, url);
}

function policyFor(method: string, url: string): RoutePolicy | undefined {
  return ROUTE_POLICY[keyFor(method, url)];
}

/** The object a request is about, for the audit log: the path parameters, in order. */
function targetOf(request: FastifyRequest): string | null {
  const params = request.params as Record<string, string> | undefined;
  if (!params) return null;
  const values = Object.values(params).filter((v) => typeof v === 'string');
  return values.length > 0 ? values.join('/').slice(0, 200) : null;
}

/** The subprotocol of Rampart's WebSockets; a browser offers it next to `bearer.<token>`. */
export const WS_SUBPROTOCOL = 'rampart.v1';
const WS_BEARER_PREFIX = 'bearer.';
const TOKEN = /^[\x21-\x7e]{1,4096}$/;

/**
 * The bearer token of a request: the Authorization header (`Bearer <token>`); or, only for a real
 * WebSocket upgrade (the socket came through the server's 'upgrade' event: `request.ws`) that has no
 * Authorization header, the `bearer.<token>` subprotocol offered together with `rampart.v1` — browsers
 * cannot set headers on a WebSocket. A plain HTTP request's Sec-WebSocket-Protocol header is ignored.
 */
export function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (header !== undefined) return /^Bearer ([\x21-\x7e]{1,4096})$/.exec(header)?.[1] ?? null;
  if (request.ws !== true) return null;
  const offered = request.headers['sec-websocket-protocol'];
  if (typeof offered !== 'string') return null;
  const protocols = offered.split(',').map((p) => p.trim());
  const bearers = protocols.filter((p) => p.startsWith(WS_BEARER_PREFIX));
  if (!protocols.includes(WS_SUBPROTOCOL) || bearers.length !== 1) return null;
  const token = bearers[0]!.slice(WS_BEARER_PREFIX.length);
  return TOKEN.test(token) ? token : null;
}

/**
 * ws's handleProtocols: the negotiated subprotocol is `rampart.v1` when offered, else none — never the
 * first offered one (ws's default), which would echo a `bearer.<token>` back in the answer.
 */
export function selectSubprotocol(protocols: Set<string>): string | false {
  return protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false;
}

export function requirePrincipal(request: FastifyRequest): Principal {
  if (!request.principal) throw new UnauthenticatedError();
  return request.principal;
}

export function requireTenant(request: FastifyRequest): TenantsTable {
  if (!request.tenant) throw new InvalidInputError('this request needs a tenant: add ?tenant=<name>');
  return request.tenant;
}

export function installAccessControl(app: FastifyInstance, deps: AccessControlDeps): void {
  const { authenticator, roles, tenants, audit, limiter } = deps;
  app.decorateRequest('principal', null);
  app.decorateRequest('tenant', null);
  // A reference-type default is not allowed; onRequest sets EMPTY first thing.
  app.decorateRequest('permissions', null as never);
  app.decorateRequest('auditInfo', null);

  // Deny by default: every route must be in the table.
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (method === 'HEAD' || method === 'OPTIONS') continue;
      if (!policyFor(method, route.url))
        throw new Error(`route ${method} ${route.url} has no entry in ROUTE_POLICY (deny by default)`);
    }
  });

  /** Resolves the tenant a request acts in; foreign and absent tenants answer the same 404. */
  async function resolveTenant(principal: Principal, requested: string | undefined): Promise<TenantsTable> {
    if (principal.token) {
      const own = await tenants.find(principal.token.tenantId);
      if (!own) throw new NotFoundError('tenant');
      if (requested !== undefined && requested !== own.name && requested !== own.id)
        throw new ForbiddenError(`this API token acts only in tenant ${own.name}`);
      return own;
    }
    const policy = roles.policy;
    if (requested !== undefined) {
      const found = await tenants.find(requested);
      const member =
        found !== null &&
        (policy.hasPlatformBinding(principal.userId) ||
          policy.tenantsOf(principal.userId).includes(found.id));
      if (!found || !member) throw new NotFoundError('tenant');
      return found;
    }
    const mine = policy.tenantsOf(principal.userId);
    if (mine.length === 1) {
      const found = await tenants.find(mine[0]!);
      if (found) return found;
    }
    if (mine.length === 0 && !policy.hasPlatformBinding(principal.userId))
      throw new ForbiddenError('you are not a member of any tenant');
    throw new InvalidInputError('choose the tenant to act in with ?tenant=<name>');
  }

  /**
   * Takes a token from `key`'s bucket in `scope`, or refuses with 429. A refusal's audit record gets
   * the limiter's detail, or is suppressed when the key's last record is recent (see AuditInfo).
   */
  function enforceLimit(scope: RateLimitScope, key: string, info: AuditInfo | null): void {
    const decision = limiter.take(scope, key);
    if (decision.allowed) return;
    if (info) {
      if (decision.auditDetail === null) info.suppressed = true;
      else info.detail = decision.auditDetail;
    }
    throw new RateLimitedError(
      `too many requests (${scope} rate limit); retry in ${decision.retryAfterSeconds} s`,
      decision.retryAfterSeconds,
    );
  }

  /** The rate limit of requests without a principal: per source address. */
  function limitAnonymous(request: FastifyRequest): void {
    // ip is undefined once the socket has closed; such requests share one bucket.
    enforceLimit('source', sourceKey(request.ip ?? 'unknown'), request.auditInfo);
  }

  /** The request acts in `tenant` (so a 429 is recorded in it), charged to the tenant's bucket. */
  function actIn(request: FastifyRequest, info: AuditInfo, principal: Principal, tenant: TenantsTable): void {
    request.tenant = tenant;
    info.tenantId = tenant.id;
    enforceLimit('tenant', tenant.id, info);
    request.permissions = tenantPermissions(principal, tenant.id);
  }

  function tenantPermissions(principal: Principal, tenantId: string): ReadonlySet<Permission> {
    const held = roles.policy.tenantPermissions(principal.userId, tenantId);
    if (!principal.token) return held;
    const limited = new Set<Permission>();
    for (const p of principal.token.permissions) if (held.has(p)) limited.add(p);
    return limited;
  }

  function platformAllows(principal: Principal, permission: Permission): boolean {
    if (principal.token && !principal.token.permissions.has(permission)) return false;
    return roles.policy.platformPermissions(principal.userId).has(permission);
  }

  app.addHook('onRequest', async (request) => {
    request.permissions = EMPTY;
    const url = request.routeOptions.url;
    if (url === undefined) {
      // Unknown route: the not-found handler answers (unaudited), but a scan is still limited.
      limitAnonymous(request);
      return;
    }
    const policy = policyFor(request.method, url);
    if (!policy) throw new ForbiddenError();
    const info: AuditInfo = {
      actorId: null,
      actor: 'anonymous',
      tenantId: null,
      action: policy.action ?? policy.permission ?? url,
      target: targetOf(request),
      detail: null,
      suppressed: false,
    };
    request.auditInfo = info;
    if (policy.scope === 'public' && !UNLIMITED.has(keyFor(request.method, url))) limitAnonymous(request);
    if (MUTATING.has(request.method)) await audit.assertWritable();
    if (policy.scope === 'public') return;

    const bearer = bearerToken(request);
    if (bearer === null) {
      limitAnonymous(request);
      throw new UnauthenticatedError('missing bearer token');
    }
    let principal: Principal;
    try {
      principal = await authenticator.authenticate(bearer);
    } catch (error) {
      // A failed authentication is an anonymous request: a flood of bad tokens is limited per source.
      if (error instanceof UnauthenticatedError) limitAnonymous(request);
      throw error;
    }
    request.principal = principal;
    info.actorId = principal.userId;
    info.actor = auditActor(principal);
    enforceLimit(
      'principal',
      principal.token ? `token:${principal.token.id}` : `user:${principal.userId}`,
      info,
    );

    if (principal.restriction && !policy.restricted) {
      throw new ForbiddenError(
        principal.restriction === 'password-change'
          ? 'you must change your password first (POST /v1/auth/password)'
          : 'an administrator role here requires MFA: enrol TOTP first (POST /v1/auth/mfa/totp)',
      );
    }
    if (policy.sessionOnly && principal.token) throw new ForbiddenError('API tokens cannot do this; log in');

    const query = request.query as { tenant?: unknown } | undefined;
    const fromQuery = typeof query?.tenant === 'string' ? query.tenant : undefined;
    const fromPath = policy.tenantParam
      ? (request.params as Record<string, string> | undefined)?.[policy.tenantParam]
      : undefined;
    if (fromPath !== undefined && fromQuery !== undefined && fromPath !== fromQuery)
      throw new InvalidInputError('the tenant in the path and in ?tenant= differ');
    const requested = fromPath ?? fromQuery;

    if (policy.scope === 'tenant') {
      actIn(request, info, principal, await resolveTenant(principal, requested));
      if (!request.permissions.has(policy.permission!))
        throw new ForbiddenError(`permission denied: ${policy.permission}`);
      return;
    }
    if (policy.scope === 'platform') {
      if (!platformAllows(principal, policy.permission!))
        throw new ForbiddenError(`permission denied: ${policy.permission}`);
      return;
    }
    // self: a tenant is resolved only when one is asked for (whoami shows it).
    if (requested !== undefined) actIn(request, info, principal, await resolveTenant(principal, requested));
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const info = request.auditInfo;
    // suppressed: a repeated 429 the limiter counts instead (see AuditInfo.suppressed).
    if (!info || info.suppressed) return payload;
    const policy = policyFor(request.method, request.routeOptions.url ?? '');
    const status = reply.statusCode;
    const record = MUTATING.has(request.method) || policy?.audit === 'always' || DENIAL_STATUSES.has(status);
    if (!record) return payload;
    let detail = info.detail;
    if (status >= 400 && detail === null && typeof payload === 'string') {
      try {
        detail = (JSON.parse(payload) as { error?: { code?: string } }).error?.code ?? null;
      } catch {
        // not JSON
      }
    }
    if ((status === 403 || status === 404) && request.principal && deps.onDenied) {
      const params = (request.params ?? {}) as Record<string, unknown>;
      const resource = ['ref', 'id', 'port', 'rule', 'snapshot', 'volume', 'user', 'name']
        .map((k) => params[k])
        .find((v): v is string => typeof v === 'string');
      deps.onDenied({
        principalId: request.principal.userId,
        tokenId: request.principal.token?.id ?? null,
        reason: status === 403 ? 'forbidden' : 'not-found',
        permission: status === 403 ? (policy?.permission ?? null) : null,
        method: request.method,
        route: request.routeOptions.url ?? 'unknown',
        resourceId: resource?.slice(0, 128) ?? null,
        tenantId: info.tenantId,
        sourceIp: request.ip,
      });
    }
    try {
      const entry = auditEntry(request, status, detail);
      await audit.append(entry);
      deps.onAudited?.(entry);
      return payload;
    } catch (error) {
      request.log.error(
        { err: (error as Error).message },
        'audit record could not be written; failing the request',
      );
      reply.code(503).type('application/json');
      return JSON.stringify({
        error: {
          code: 'RAMPART_AUDIT_UNAVAILABLE',
          message: 'the audit log cannot be written; the request is refused',
          requestId: String(request.id),
        },
      });
    }
  });
}

/** The audit record of a request that ended with `status` (also used by WebSocket routes). */
export function auditEntry(
  request: FastifyRequest,
  status: number,
  detail: string | null = null,
): AuditEntry {
  const info = request.auditInfo ?? {
    actorId: null,
    actor: 'anonymous',
    tenantId: null,
    action: request.routeOptions.url ?? 'unknown',
    target: null,
    detail: null,
    suppressed: false,
  };
  return {
    actorId: info.actorId,
    actor: info.actor,
    tenantId: info.tenantId,
    action: info.action,
    target: info.target,
    outcome: status < 400 ? 'success' : DENIAL_STATUSES.has(status) ? 'denied' : 'failure',
    status,
    source: request.ip,
    requestId: String(request.id),
    detail: detail ?? info.detail,
  };
}

/**
 * Authentication, tenant resolution and authorization for every route, driven by ROUTE_POLICY, plus
 * the audit record each mutating request and each denial leaves behind.
 *
 * Order for a request: (fail closed) the audit log must be writable for a mutating request -> the
 * bearer token becomes a Principal (401) -> restricted sessions and API tokens are held to what they may
 * do (403) -> the tenant is resolved (a tenant the caller has no part in answers 404, exactly like one
 * that does not exist) -> the permission is checked in that tenant or platform-wide (403). This all
 * runs in onRequest, before the body is even parsed. After the handler, onSend appends exactly one
 * audit record; if that fails the answer becomes 503 (the log is never silently skipped).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ForbiddenError, InvalidInputError, NotFoundError, UnauthenticatedError } from '../../api/errors.js';
import type { AuditEntry, AuditLog } from '../audit/audit-log.js';
import type { Authenticator } from '../iam/authenticator.js';
import type { Permission } from '../iam/permissions.js';
import { auditActor, type Principal } from '../iam/principal.js';
import type { RoleDirectory } from '../iam/role-directory.js';
import type { TenantDirectory } from '../iam/tenant-directory.js';
import type { TenantsTable } from '../store/schema.js';
import { ROUTE_POLICY, routeKey, type RoutePolicy } from './route-policy.js';

export interface AuditInfo {
  actorId: string | null;
  actor: string;
  tenantId: string | null;
  action: string;
  target: string | null;
  detail: string | null;
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

export interface AccessControlDeps {
  authenticator: Authenticator;
  roles: RoleDirectory;
  tenants: TenantDirectory;
  audit: AuditLog;
}

function policyFor(method: string, url: string): RoutePolicy | undefined {
  return ROUTE_POLICY[routeKey(method === 'HEAD' ? 'GET' : method, url)];
}

/** The object a request is about, for the audit log: the path parameters, in order. */
function targetOf(request: FastifyRequest): string | null {
  const params = request.params as Record<string, string> | undefined;
  if (!params) return null;
  const values = Object.values(params).filter((v) => typeof v === 'string');
  return values.length > 0 ? values.join('/').slice(0, 200) : null;
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
  const { authenticator, roles, tenants, audit } = deps;
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
    if (url === undefined) return; // unknown route: the not-found handler answers
    const policy = policyFor(request.method, url);
    if (!policy) throw new ForbiddenError();
    const info: AuditInfo = {
      actorId: null,
      actor: 'anonymous',
      tenantId: null,
      action: policy.action ?? policy.permission ?? url,
      target: targetOf(request),
      detail: null,
    };
    request.auditInfo = info;
    if (MUTATING.has(request.method)) audit.assertWritable();
    if (policy.scope === 'public') return;

    const header = request.headers.authorization ?? '';
    const match = /^Bearer ([\x21-\x7e]{1,4096})$/.exec(header);
    if (!match) throw new UnauthenticatedError('missing bearer token');
    const principal = await authenticator.authenticate(match[1]!);
    request.principal = principal;
    info.actorId = principal.userId;
    info.actor = auditActor(principal);

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
      const tenant = await resolveTenant(principal, requested);
      request.tenant = tenant;
      info.tenantId = tenant.id;
      request.permissions = tenantPermissions(principal, tenant.id);
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
    if (requested !== undefined) {
      const tenant = await resolveTenant(principal, requested);
      request.tenant = tenant;
      info.tenantId = tenant.id;
      request.permissions = tenantPermissions(principal, tenant.id);
    }
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const info = request.auditInfo;
    if (!info) return payload;
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
    try {
      await audit.append(auditEntry(request, status, detail));
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

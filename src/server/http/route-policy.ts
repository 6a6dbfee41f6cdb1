/**
 * The one table that says who may call which route. Deny by default: the app refuses to start when a
 * route has no entry here (see installAccessControl), so a new route cannot ship unprotected.
 *
 * Scopes:
 * - public:   no authentication (health, the OpenAPI document, login, refresh).
 * - self:     any authenticated caller, acting on themselves (whoami, logout, own API tokens, MFA).
 * - tenant:   `permission` must be held in the request's tenant (path `:tenant`/`?tenant=`/default).
 * - platform: `permission` must be held platform-wide.
 * `restricted: true` lets a restricted session (must change password / enrol MFA) call the route.
 * `sessionOnly: true` refuses API tokens (a token cannot mint tokens or change credentials).
 * `action` names the route in the audit log (default: the permission, e.g. `vm:create`).
 * `audit: 'always'` records even successful reads (console access); otherwise mutating methods and
 * denials are recorded.
 */
import type { Permission } from '../iam/permissions.js';

export type RouteScope = 'public' | 'self' | 'tenant' | 'platform';

export interface RoutePolicy {
  scope: RouteScope;
  permission?: Permission;
  action?: string;
  restricted?: boolean;
  sessionOnly?: boolean;
  /** The tenant comes from this path parameter (name or id) instead of `?tenant=`. */
  tenantParam?: string;
  audit?: 'always';
}

const tenant = (permission: Permission, extra: Partial<RoutePolicy> = {}): RoutePolicy => ({
  scope: 'tenant',
  permission,
  ...extra,
});
const platform = (permission: Permission, extra: Partial<RoutePolicy> = {}): RoutePolicy => ({
  scope: 'platform',
  permission,
  ...extra,
});
const self = (action: string, extra: Partial<RoutePolicy> = {}): RoutePolicy => ({
  scope: 'self',
  action,
  ...extra,
});

export const ROUTE_POLICY: Readonly<Record<string, RoutePolicy>> = {
  'GET /v1/health': { scope: 'public', action: 'health' },
  'GET /v1/openapi.json': { scope: 'public', action: 'openapi' },
  // The web console's static files (web-console.ts): public, and nothing but files built into dist/web.
  'GET /': { scope: 'public', action: 'console:page' },
  'GET /assets/*': { scope: 'public', action: 'console:asset' },
  'GET /metrics': platform('platform:metrics:read'),

  'POST /v1/auth/login': { scope: 'public', action: 'auth:login' },
  'POST /v1/auth/refresh': { scope: 'public', action: 'auth:refresh' },
  'POST /v1/auth/logout': self('auth:logout', { restricted: true }),
  'GET /v1/auth/whoami': self('auth:whoami', { restricted: true }),
  'POST /v1/auth/password': self('auth:password', { restricted: true, sessionOnly: true }),
  'POST /v1/auth/mfa/totp': self('auth:mfa-enrol', { restricted: true, sessionOnly: true }),
  'POST /v1/auth/mfa/totp/verify': self('auth:mfa-verify', { restricted: true, sessionOnly: true }),
  'POST /v1/auth/mfa/totp/disable': self('auth:mfa-disable', { sessionOnly: true }),

  'GET /v1/tokens': self('token:list'),
  'POST /v1/tokens': tenant('token:create', { sessionOnly: true }),
  'DELETE /v1/tokens/:id': self('token:revoke', { sessionOnly: true }),

  'GET /v1/tenants': self('tenant:list'),
  'POST /v1/tenants': platform('platform:tenant:create'),
  'GET /v1/tenants/:tenant': tenant('tenant:read', { tenantParam: 'tenant' }),
  'PATCH /v1/tenants/:tenant': tenant('tenant:update', { tenantParam: 'tenant' }),
  'DELETE /v1/tenants/:tenant': platform('platform:tenant:delete'),
  'GET /v1/tenants/:tenant/quota': tenant('quota:read', { tenantParam: 'tenant' }),
  'PUT /v1/tenants/:tenant/quota': platform('platform:quota:update'),
  'GET /v1/tenants/:tenant/members': tenant('member:read', { tenantParam: 'tenant' }),
  'POST /v1/tenants/:tenant/members': tenant('member:create', { tenantParam: 'tenant' }),
  'DELETE /v1/tenants/:tenant/members/:user': tenant('member:delete', { tenantParam: 'tenant' }),

  'GET /v1/platform/members': platform('platform:member:read'),
  'POST /v1/platform/members': platform('platform:member:create'),
  'DELETE /v1/platform/members/:user': platform('platform:member:delete'),

  'GET /v1/users': platform('platform:user:read'),
  'POST /v1/users': platform('platform:user:create'),
  'GET /v1/users/:ref': platform('platform:user:read'),
  'PATCH /v1/users/:ref': platform('platform:user:update'),
  'POST /v1/users/:ref/password': platform('platform:user:update', {
    action: 'platform:user:reset-password',
  }),
  'DELETE /v1/users/:ref': platform('platform:user:delete'),

  'GET /v1/roles': tenant('role:read'),
  'POST /v1/roles': tenant('role:create'),
  'GET /v1/roles/:name': tenant('role:read'),
  'DELETE /v1/roles/:name': tenant('role:delete'),

  'GET /v1/audit': tenant('audit:read'),
  'GET /v1/platform/audit': platform('platform:audit:read'),
  'GET /v1/audit/verify': platform('platform:audit:read', { action: 'platform:audit:verify' }),
  'GET /v1/audit/public-key': platform('platform:audit:read'),
  'GET /v1/audit/export/records': platform('platform:audit:read', {
    action: 'platform:audit:export',
    audit: 'always',
  }),
  'GET /v1/audit/export/checkpoints': platform('platform:audit:read', { action: 'platform:audit:export' }),

  'GET /v1/security/events': tenant('security:read'),
  'GET /v1/platform/security/events': platform('platform:security:read'),
  'GET /v1/security/events/stream': tenant('security:read', { action: 'security:events:stream' }),
  'GET /v1/platform/security/events/stream': platform('platform:security:read', {
    action: 'platform:security:events:stream',
  }),
  'GET /v1/security/alerts': tenant('security:read'),
  'GET /v1/security/alerts/:id': tenant('security:read'),
  'PATCH /v1/security/alerts/:id': tenant('security:respond', { action: 'security:alert:update' }),
  'GET /v1/platform/security/alerts': platform('platform:security:read'),
  'GET /v1/platform/compliance/report': platform('platform:security:read', {
    action: 'platform:compliance:read',
  }),
  'GET /v1/platform/compliance/report.html': platform('platform:security:read', {
    action: 'platform:compliance:read',
  }),
  'GET /v1/platform/compliance/history': platform('platform:security:read', {
    action: 'platform:compliance:read',
  }),
  'POST /v1/platform/compliance/runs': platform('platform:security:read', {
    action: 'platform:compliance:run',
  }),
  'PATCH /v1/platform/security/alerts/:id': platform('platform:security:respond', {
    action: 'platform:security:alert:update',
  }),

  'GET /v1/images': tenant('image:read'),
  'GET /v1/images/:ref': tenant('image:read'),
  'PATCH /v1/images/:ref': tenant('image:create', { action: 'image:update' }),
  'PUT /v1/images/:ref/shares/:tenant': tenant('image:create', { action: 'image:share' }),
  'DELETE /v1/images/:ref/shares/:tenant': tenant('image:create', { action: 'image:unshare' }),
  'POST /v1/images/:ref/publish': platform('platform:image:publish'),
  'POST /v1/images': tenant('image:create'),
  'DELETE /v1/images/:ref': tenant('image:delete'),
  'PUT /v1/images/:ref/files/:part': tenant('image:create', { action: 'image:upload' }),
  'GET /v1/images/:ref/files/:part': tenant('image:read', { action: 'image:download', audit: 'always' }),
  'POST /v1/images/:ref/scan': tenant('image:create', { action: 'image:scan' }),
  'POST /v1/platform/images/import': platform('platform:image:import'),
  'POST /v1/platform/images/:ref/scan': platform('platform:image:import', { action: 'platform:image:scan' }),
  'POST /v1/platform/keys/rotate-master': platform('platform:keys:rotate'),
  'GET /v1/images/:ref/signatures': tenant('image:read', { action: 'image:signature:list' }),
  'POST /v1/images/:ref/signatures': tenant('image:sign', { action: 'image:signature:attach' }),
  'DELETE /v1/images/:ref/signatures/:id': tenant('image:trust', { action: 'image:signature:delete' }),
  'GET /v1/trusted-keys': tenant('image:read', { action: 'image:trusted-key:list' }),
  'POST /v1/trusted-keys': tenant('image:trust', { action: 'image:trusted-key:create', sessionOnly: true }),
  'DELETE /v1/trusted-keys/:id': tenant('image:trust', {
    action: 'image:trusted-key:delete',
    sessionOnly: true,
  }),
  'GET /v1/tenants/:tenant/trust-policy': tenant('image:read', {
    tenantParam: 'tenant',
    action: 'image:trust-policy:read',
  }),
  'PUT /v1/tenants/:tenant/trust-policy': tenant('image:trust', {
    tenantParam: 'tenant',
    action: 'image:trust-policy:update',
    // What is trusted is decided by a logged-in admin, never by an API token (a leaked one included).
    sessionOnly: true,
  }),
  'GET /v1/flavors': tenant('flavor:read'),
  'GET /v1/flavors/:ref': tenant('flavor:read'),
  'POST /v1/flavors': platform('platform:flavor:create'),
  'GET /v1/hosts': platform('platform:host:read'),
  'GET /v1/hosts/:id': platform('platform:host:read'),
  'PATCH /v1/hosts/:id': platform('platform:host:update'),
  'POST /v1/hosts/:id/evacuate': platform('platform:host:evacuate'),
  // Remote hosts: join tokens and revocation (platform); the join itself is public (the one-time
  // token is the credential; failed joins back off like logins).
  'POST /v1/platform/hosts/join-tokens': platform('platform:host:create'),
  'POST /v1/platform/hosts/:host/certificate': platform('platform:host:renew'),
  'POST /v1/platform/hosts/:host/revoke': platform('platform:host:revoke'),
  'POST /v1/hosts/join': { scope: 'public', action: 'host:join' },

  'GET /v1/vms': tenant('vm:read'),
  'POST /v1/vms': tenant('vm:create'),
  'GET /v1/placement-groups': tenant('vm:read', { action: 'placement-group:list' }),
  'POST /v1/placement-groups': tenant('vm:create', { action: 'placement-group:create' }),
  'GET /v1/placement-groups/:ref': tenant('vm:read', { action: 'placement-group:read' }),
  'DELETE /v1/placement-groups/:ref': tenant('vm:delete', { action: 'placement-group:delete' }),
  'GET /v1/networks': tenant('network:read'),
  'POST /v1/networks': tenant('network:create'),
  'GET /v1/networks/:ref': tenant('network:read'),
  'PATCH /v1/networks/:ref': tenant('network:create', { action: 'network:update' }),
  'DELETE /v1/networks/:ref': tenant('network:delete'),
  'GET /v1/security-groups': tenant('secgroup:read'),
  'POST /v1/security-groups': tenant('secgroup:create'),
  'GET /v1/security-groups/:ref': tenant('secgroup:read'),
  'DELETE /v1/security-groups/:ref': tenant('secgroup:delete'),
  'POST /v1/security-groups/:ref/rules': tenant('secgroup:update', { action: 'secgroup:rule:create' }),
  'DELETE /v1/security-groups/:ref/rules/:rule': tenant('secgroup:update', {
    action: 'secgroup:rule:delete',
  }),
  'GET /v1/vms/:ref/ports': tenant('vm:read', { action: 'vm:port:list' }),
  'PUT /v1/vms/:ref/isolation': tenant('security:respond', { action: 'vm:isolate' }),
  'GET /v1/vms/:ref/hardening': tenant('vm:read', { action: 'vm:hardening' }),
  'PUT /v1/vms/:ref/ports/:port/security-groups': tenant('secgroup:update', {
    action: 'vm:port:security-groups',
  }),
  'PUT /v1/platform/vms/:ref/ports/:port/allowed-addresses': platform('platform:port:update'),
  'GET /v1/volumes': tenant('volume:read', { action: 'volume:list' }),
  'POST /v1/volumes': tenant('volume:create'),
  'GET /v1/volumes/:ref': tenant('volume:read'),
  'PATCH /v1/volumes/:ref': tenant('volume:update'),
  'DELETE /v1/volumes/:ref': tenant('volume:delete'),
  'GET /v1/volumes/:ref/snapshots': tenant('volume:read', { action: 'snapshot:list' }),
  'POST /v1/volumes/:ref/snapshots': tenant('volume:snapshot', { action: 'snapshot:create' }),
  'GET /v1/volumes/:ref/snapshots/:snapshot': tenant('volume:read', { action: 'snapshot:read' }),
  'DELETE /v1/volumes/:ref/snapshots/:snapshot': tenant('volume:snapshot', { action: 'snapshot:delete' }),
  'POST /v1/volumes/:ref/restore': tenant('volume:snapshot', { action: 'volume:restore' }),
  'POST /v1/volumes/:ref/backups': tenant('volume:snapshot', { action: 'backup:create' }),
  'GET /v1/backups': tenant('volume:read', { action: 'backup:list' }),
  'GET /v1/backups/:ref': tenant('volume:read', { action: 'backup:read' }),
  'DELETE /v1/backups/:ref': tenant('volume:delete', { action: 'backup:delete' }),
  'POST /v1/vms/:ref/volumes': tenant('volume:update', { action: 'volume:attach' }),
  'DELETE /v1/vms/:ref/volumes/:volume': tenant('volume:update', { action: 'volume:detach' }),
  'GET /v1/vms/:ref': tenant('vm:read'),
  'DELETE /v1/vms/:ref': tenant('vm:delete'),
  'POST /v1/vms/:ref/start': tenant('vm:start'),
  'POST /v1/vms/:ref/stop': tenant('vm:stop'),
  'POST /v1/vms/:ref/reboot': tenant('vm:reboot'),
  'POST /v1/vms/:ref/pause': tenant('vm:pause'),
  'POST /v1/vms/:ref/resume': tenant('vm:resume'),
  'POST /v1/vms/:ref/resize': tenant('vm:resize'),
  'GET /v1/vms/:ref/samples': tenant('vm:read'),
  'GET /v1/vms/:ref/console': tenant('vm:console', { audit: 'always' }),
  'GET /v1/vms/:ref/console/stream': tenant('vm:console', { audit: 'always' }),
};

export function routeKey(method: string, url: string): string {
  return `${method} ${url}`;
}

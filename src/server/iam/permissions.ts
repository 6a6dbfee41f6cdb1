/**
 * Permissions are `resource:verb` strings. Each permission is either tenant-scoped (held and checked in
 * one tenant) or platform-scoped (held only through a platform-wide binding). The built-in roles are
 * defined here, in code, so every build carries exactly one policy; tenants add custom roles on top.
 */

export const TENANT_PERMISSIONS = [
  'vm:read',
  'vm:create',
  'vm:delete',
  'vm:start',
  'vm:stop',
  'vm:reboot',
  'vm:pause',
  'vm:resume',
  'vm:console',
  'vm:resize',
  'image:read',
  'image:create',
  'image:delete',
  'image:sign',
  /** Manage the tenant's trusted signing keys and image trust policy (tenant admins only, built-in). */
  'image:trust',
  'flavor:read',
  'tenant:read',
  'tenant:update',
  'quota:read',
  'member:read',
  'member:create',
  'member:delete',
  'role:read',
  'role:create',
  'role:delete',
  'token:create',
  'audit:read',
  'network:read',
  'network:create',
  'network:delete',
  /** Security groups: read them and the ports of VMs. */
  'secgroup:read',
  'secgroup:create',
  /** Add and delete rules; change which groups a VM port carries. */
  'secgroup:update',
  'secgroup:delete',
  'security:read',
  'security:respond',
  'volume:read',
  'volume:create',
  /** Grow a volume, attach it to and detach it from the tenant's VMs. */
  'volume:update',
  /** Delete a volume (its host erases it). */
  'volume:delete',
  /** Take, delete and restore snapshots of volumes (cloning one also needs volume:create). */
  'volume:snapshot',
] as const;

export const PLATFORM_PERMISSIONS = [
  'platform:tenant:create',
  'platform:tenant:read',
  'platform:tenant:update',
  'platform:tenant:delete',
  'platform:quota:update',
  'platform:user:create',
  'platform:user:read',
  'platform:user:update',
  'platform:user:delete',
  'platform:member:read',
  'platform:member:create',
  'platform:member:delete',
  'platform:flavor:create',
  /** Make an image public (visible to every tenant); tenants can only share with named tenants. */
  'platform:image:publish',
  /** Allow extra source addresses on a VM port (anti-spoofing exceptions). */
  'platform:port:update',
  /** Import image files from paths on the server's host (as platform images), re-scan any image. */
  'platform:image:import',
  /** Rotate the master key (re-wraps every data key; no image is re-encrypted). */
  'platform:keys:rotate',
  'platform:host:read',
  /** Maintenance mode of hosts. */
  'platform:host:update',
  /** Move the stopped VMs of a host to other hosts (any tenant's). */
  'platform:host:evacuate',
  /** Create join tokens for remote hosts (a token lets one host join and get a certificate). */
  'platform:host:create',
  /** Renew a remote host's certificate over its link. */
  'platform:host:renew',
  /** Revoke a remote host's certificate (cuts it off). */
  'platform:host:revoke',
  'platform:audit:read',
  /** Read the security event stream of every tenant and the platform-wide events. */
  'platform:security:read',
  /** Acknowledge, resolve, assign and annotate any alert, platform-wide ones included. */
  'platform:security:respond',
  'platform:metrics:read',
] as const;

export type TenantPermission = (typeof TENANT_PERMISSIONS)[number];
export type PlatformPermission = (typeof PLATFORM_PERMISSIONS)[number];
export type Permission = TenantPermission | PlatformPermission;

export const ALL_PERMISSIONS: readonly Permission[] = [...TENANT_PERMISSIONS, ...PLATFORM_PERMISSIONS];
const KNOWN = new Set<string>(ALL_PERMISSIONS);

export function isPermission(value: string): value is Permission {
  return KNOWN.has(value);
}

export function isPlatformPermission(value: string): value is PlatformPermission {
  return value.startsWith('platform:') && KNOWN.has(value);
}

export const BUILT_IN_ROLES = [
  'platform-admin',
  'tenant-admin',
  'operator',
  'member',
  'viewer',
  'auditor',
  'security-responder',
] as const;
export type BuiltInRole = (typeof BUILT_IN_ROLES)[number];

const READ: TenantPermission[] = [
  'vm:read',
  'image:read',
  'flavor:read',
  'tenant:read',
  'quota:read',
  'network:read',
  'secgroup:read',
  'volume:read',
];

const BUILT_IN_PERMISSIONS: Record<BuiltInRole, readonly Permission[]> = {
  'platform-admin': ALL_PERMISSIONS,
  'tenant-admin': TENANT_PERMISSIONS,
  operator: [...READ, 'vm:start', 'vm:stop', 'vm:reboot', 'vm:pause', 'vm:resume', 'vm:console'],
  member: [
    ...READ,
    'vm:create',
    'vm:delete',
    'vm:start',
    'vm:stop',
    'vm:reboot',
    'vm:pause',
    'vm:resume',
    'vm:console',
    'vm:resize',
    'image:create',
    'image:sign',
    'token:create',
    'network:create',
    'network:delete',
    'secgroup:create',
    'secgroup:update',
    'secgroup:delete',
    'volume:create',
    'volume:update',
    'volume:delete',
    'volume:snapshot',
  ],
  viewer: READ,
  auditor: [...READ, 'member:read', 'role:read', 'audit:read', 'security:read'],
  'security-responder': [
    ...READ,
    'vm:stop',
    'vm:pause',
    'vm:resume',
    'audit:read',
    'security:read',
    'security:respond',
  ],
};

/** Roles that only make sense platform-wide (bound with no tenant). */
export const PLATFORM_ONLY_ROLES: ReadonlySet<string> = new Set<BuiltInRole>(['platform-admin']);
/** Roles that count as administrative for the "MFA required for admins" policies. */
export const ADMIN_ROLES: ReadonlySet<string> = new Set<BuiltInRole>(['platform-admin', 'tenant-admin']);

export function isBuiltInRole(name: string): name is BuiltInRole {
  return (BUILT_IN_ROLES as readonly string[]).includes(name);
}

export function builtInPermissions(role: BuiltInRole): readonly Permission[] {
  return BUILT_IN_PERMISSIONS[role];
}

/**
 * In-process authorization decisions. The engine holds a compiled snapshot of all role bindings and
 * custom roles; a decision is two map look-ups and a set membership test. Every change to bindings or
 * roles replaces the snapshot (the IAM service reloads it inside the same process), so a revoked role
 * stops working on the very next request.
 *
 * Semantics:
 * - A tenant binding grants the role's tenant permissions in that tenant only.
 * - A platform binding (no tenant) grants the role's tenant permissions in every tenant, and its
 *   platform permissions; a tenant permission `x:y` held platform-wide also grants `platform:x:y`
 *   when that exists (a platform auditor reads the platform audit log).
 */
import {
  isBuiltInRole,
  builtInPermissions,
  isPermission,
  isPlatformPermission,
  type Permission,
} from './permissions.js';

export interface RoleBinding {
  userId: string;
  /** null: platform-wide. */
  tenantId: string | null;
  role: string;
}

export interface CustomRole {
  tenantId: string;
  name: string;
  permissions: readonly string[];
}

export interface PolicySnapshot {
  bindings: readonly RoleBinding[];
  customRoles: readonly CustomRole[];
}

interface UserGrants {
  /** Permissions held at platform scope (platform:* and the tenant permissions granted everywhere). */
  platform: Set<Permission>;
  /** Tenant permissions granted in every tenant through platform bindings. */
  everywhere: Set<Permission>;
  byTenant: Map<string, Set<Permission>>;
  /** Union of everywhere + byTenant[t], computed on first use. */
  effective: Map<string, ReadonlySet<Permission>>;
  roles: Map<string | null, string[]>;
}

const EMPTY: ReadonlySet<Permission> = new Set();

export class PolicyEngine {
  private users = new Map<string, UserGrants>();
  private customRoles = new Map<string, Map<string, readonly Permission[]>>();
  private generationValue = 0;

  constructor(snapshot: PolicySnapshot = { bindings: [], customRoles: [] }) {
    this.load(snapshot);
  }

  /** Incremented on every load; caches keyed on it stay coherent. */
  get generation(): number {
    return this.generationValue;
  }

  load(snapshot: PolicySnapshot): void {
    const customRoles = new Map<string, Map<string, readonly Permission[]>>();
    for (const role of snapshot.customRoles) {
      let roles = customRoles.get(role.tenantId);
      if (!roles) customRoles.set(role.tenantId, (roles = new Map<string, readonly Permission[]>()));
      roles.set(
        role.name,
        role.permissions.filter((p) => isPermission(p) && !isPlatformPermission(p)),
      );
    }
    this.customRoles = customRoles;
    const users = new Map<string, UserGrants>();
    for (const binding of snapshot.bindings) {
      let grants = users.get(binding.userId);
      if (!grants) {
        grants = {
          platform: new Set(),
          everywhere: new Set(),
          byTenant: new Map(),
          effective: new Map(),
          roles: new Map(),
        };
        users.set(binding.userId, grants);
      }
      const permissions = this.rolePermissions(binding.tenantId, binding.role) ?? [];
      const roleList = grants.roles.get(binding.tenantId) ?? [];
      roleList.push(binding.role);
      grants.roles.set(binding.tenantId, roleList);
      if (binding.tenantId === null) {
        for (const permission of permissions) {
          if (isPlatformPermission(permission)) {
            grants.platform.add(permission);
          } else {
            grants.everywhere.add(permission);
            grants.platform.add(permission);
            const lifted = `platform:${permission}`;
            if (isPermission(lifted)) grants.platform.add(lifted);
          }
        }
      } else {
        let set = grants.byTenant.get(binding.tenantId);
        if (!set) grants.byTenant.set(binding.tenantId, (set = new Set()));
        for (const permission of permissions) if (!isPlatformPermission(permission)) set.add(permission);
      }
    }
    this.users = users;
    this.generationValue += 1;
  }

  /** The permissions a role carries, or null when no such role exists in that scope. */
  rolePermissions(tenantId: string | null, role: string): readonly Permission[] | null {
    if (isBuiltInRole(role)) return builtInPermissions(role);
    if (tenantId === null) return null;
    return this.customRoles.get(tenantId)?.get(role) ?? null;
  }

  customRolesOf(tenantId: string): ReadonlyMap<string, readonly Permission[]> {
    return this.customRoles.get(tenantId) ?? new Map();
  }

  /** Everything `userId` may do in `tenantId`. */
  tenantPermissions(userId: string, tenantId: string): ReadonlySet<Permission> {
    const grants = this.users.get(userId);
    if (!grants) return EMPTY;
    const own = grants.byTenant.get(tenantId);
    if (!own) return grants.everywhere;
    if (grants.everywhere.size === 0) return own;
    // Only combined sets are cached, so the cache never outgrows the user's own tenants.
    const cached = grants.effective.get(tenantId);
    if (cached) return cached;
    const effective = new Set([...grants.everywhere, ...own]);
    grants.effective.set(tenantId, effective);
    return effective;
  }

  platformPermissions(userId: string): ReadonlySet<Permission> {
    return this.users.get(userId)?.platform ?? EMPTY;
  }

  /** The decision: may `userId` use `permission` in `tenantId` (null: at platform scope)? */
  can(userId: string, tenantId: string | null, permission: Permission): boolean {
    if (tenantId === null) return this.platformPermissions(userId).has(permission);
    return this.tenantPermissions(userId, tenantId).has(permission);
  }

  /** Tenants where the user has a binding of its own (platform bindings not counted). */
  tenantsOf(userId: string): string[] {
    const grants = this.users.get(userId);
    return grants ? [...grants.byTenant.keys()] : [];
  }

  /** True when the user holds any platform-wide binding (may act in any tenant). */
  hasPlatformBinding(userId: string): boolean {
    return (this.users.get(userId)?.roles.get(null)?.length ?? 0) > 0;
  }

  rolesOf(userId: string, tenantId: string | null): readonly string[] {
    return this.users.get(userId)?.roles.get(tenantId) ?? [];
  }
}

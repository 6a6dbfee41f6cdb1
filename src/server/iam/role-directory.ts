/**
 * Role bindings (who holds which role where) and custom roles, with the rules that keep them safe:
 * nobody creates, grants or binds a role carrying a permission they do not hold themselves, the
 * platform-only role is only bound platform-wide, custom roles never carry platform permissions.
 * Every change reloads the in-process PolicyEngine, so decisions follow at once.
 */
import { ConflictError, ForbiddenError, InvalidInputError, NotFoundError } from '../../api/errors.js';
import type { Role } from '../../api/iam.js';
import { newId } from '../../common/ids.js';
import { isUniqueError, nowIso, type Db } from '../store/database.js';
import { PolicyEngine } from './policy-engine.js';
import {
  BUILT_IN_ROLES,
  PLATFORM_ONLY_ROLES,
  builtInPermissions,
  isBuiltInRole,
  isPermission,
  isPlatformPermission,
  type Permission,
} from './permissions.js';

/** role_bindings.scope for platform-wide bindings. */
const PLATFORM_SCOPE = '';

const BUILT_IN_DESCRIPTIONS: Record<(typeof BUILT_IN_ROLES)[number], string> = {
  'platform-admin': 'everything, in every tenant and on the platform',
  'tenant-admin': 'everything inside the tenant: VMs, images, members, roles, audit, security',
  operator: 'VM lifecycle (start, stop, reboot, pause, console) and read access',
  member: 'create, use and delete VMs; upload and sign images; API tokens',
  viewer: 'read-only',
  auditor: 'read-only, plus the audit log, members, roles and security findings',
  'security-responder': 'security findings and responses: stop, pause and resume VMs',
};

/** Throws unless every permission of `wanted` is in `held` (the no-escalation rule). */
export function assertNoEscalation(
  held: ReadonlySet<Permission>,
  wanted: readonly Permission[],
  what: string,
): void {
  const missing = wanted.filter((p) => !held.has(p));
  if (missing.length > 0)
    throw new ForbiddenError(
      `${what} would grant permissions you do not hold: ${missing.slice(0, 8).join(', ')}`,
    );
}

export class RoleDirectory {
  readonly policy = new PolicyEngine();

  /**
   * Called after a change made here was loaded: announces it to the other server replicas (their
   * policy is a copy of the same tables; see cluster/change-feed.ts). Must not throw.
   */
  onChanged: (() => Promise<void>) | null = null;

  constructor(private readonly db: Db) {}

  /** Re-reads the bindings and custom roles after a change made here, and announces it. */
  async reload(): Promise<void> {
    await this.refresh();
    await this.onChanged?.();
  }

  /** Re-reads the bindings and custom roles (also when another replica announced a change). */
  async refresh(): Promise<void> {
    const [bindings, roles] = await Promise.all([
      this.db.selectFrom('roleBindings').select(['userId', 'scope', 'role']).execute(),
      this.db.selectFrom('roles').select(['tenantId', 'name', 'permissions']).execute(),
    ]);
    this.policy.load({
      bindings: bindings.map((b) => ({
        userId: b.userId,
        tenantId: b.scope === PLATFORM_SCOPE ? null : b.scope,
        role: b.role,
      })),
      customRoles: roles.map((r) => ({
        tenantId: r.tenantId,
        name: r.name,
        permissions: JSON.parse(r.permissions) as string[],
      })),
    });
  }

  listRoles(tenantId: string): Role[] {
    const builtIn: Role[] = BUILT_IN_ROLES.map((name) => ({
      name,
      builtIn: true,
      description: BUILT_IN_DESCRIPTIONS[name],
      permissions: [...builtInPermissions(name)],
    }));
    return builtIn.concat(
      [...this.policy.customRolesOf(tenantId)].map(([name, permissions]) => ({
        name,
        builtIn: false,
        description: '',
        permissions: [...permissions],
      })),
    );
  }

  async getRole(tenantId: string, name: string): Promise<Role> {
    if (isBuiltInRole(name)) return this.listRoles(tenantId).find((r) => r.name === name)!;
    const row = await this.db
      .selectFrom('roles')
      .selectAll()
      .where('tenantId', '=', tenantId)
      .where('name', '=', name)
      .executeTakeFirst();
    if (!row) throw new NotFoundError('role');
    return {
      name: row.name,
      builtIn: false,
      description: row.description,
      permissions: JSON.parse(row.permissions) as string[],
    };
  }

  async createRole(
    tenantId: string,
    input: { name: string; description?: string; permissions: string[] },
    creatorPermissions: ReadonlySet<Permission>,
  ): Promise<Role> {
    if (isBuiltInRole(input.name)) throw new ConflictError(`${input.name} is a built-in role`);
    const unknown = input.permissions.filter((p) => !isPermission(p));
    if (unknown.length > 0)
      throw new InvalidInputError(`unknown permissions: ${unknown.slice(0, 8).join(', ')}`);
    const permissions = input.permissions as Permission[];
    const platform = permissions.filter(isPlatformPermission);
    if (platform.length > 0)
      throw new InvalidInputError(`custom roles cannot carry platform permissions: ${platform.join(', ')}`);
    assertNoEscalation(creatorPermissions, permissions, `role ${input.name}`);
    try {
      await this.db
        .insertInto('roles')
        .values({
          id: newId(),
          tenantId,
          name: input.name,
          description: input.description ?? '',
          permissions: JSON.stringify([...permissions].sort()),
          createdAt: nowIso(),
        })
        .execute();
    } catch (error) {
      if (isUniqueError(error)) throw new ConflictError(`role ${input.name} already exists`);
      throw error;
    }
    await this.reload();
    return this.getRole(tenantId, input.name);
  }

  async deleteRole(tenantId: string, name: string): Promise<void> {
    if (isBuiltInRole(name)) throw new ConflictError(`${name} is a built-in role`);
    await this.getRole(tenantId, name);
    const bound = await this.db
      .selectFrom('roleBindings')
      .select('id')
      .where('scope', '=', tenantId)
      .where('role', '=', name)
      .executeTakeFirst();
    if (bound) throw new ConflictError(`role ${name} is still bound to members; remove them first`);
    await this.db.deleteFrom('roles').where('tenantId', '=', tenantId).where('name', '=', name).execute();
    await this.reload();
  }

  /**
   * Binds `role` to a user in a tenant (or platform-wide with tenantId null). The granter must hold
   * every permission of the role in that scope.
   */
  async bind(
    userId: string,
    tenantId: string | null,
    role: string,
    granterPermissions: ReadonlySet<Permission>,
  ): Promise<void> {
    const permissions = this.policy.rolePermissions(tenantId, role);
    if (!permissions) throw new NotFoundError('role');
    if (tenantId !== null && PLATFORM_ONLY_ROLES.has(role))
      throw new InvalidInputError(`${role} can only be bound platform-wide`);
    if (tenantId === null && !isBuiltInRole(role))
      throw new InvalidInputError('only built-in roles can be bound platform-wide');
    assertNoEscalation(granterPermissions, permissions, `binding ${role}`);
    await this.db
      .insertInto('roleBindings')
      .values({ id: newId(), userId, scope: tenantId ?? PLATFORM_SCOPE, role, createdAt: nowIso() })
      .onConflict((oc) => oc.columns(['userId', 'scope', 'role']).doNothing())
      .execute();
    await this.reload();
  }

  /** Removes one role (or all roles when `role` is undefined) of a user in a scope; true if any existed. */
  async unbind(userId: string, tenantId: string | null, role?: string): Promise<boolean> {
    let query = this.db
      .deleteFrom('roleBindings')
      .where('userId', '=', userId)
      .where('scope', '=', tenantId ?? PLATFORM_SCOPE);
    if (role !== undefined) query = query.where('role', '=', role);
    const result = await query.executeTakeFirst();
    await this.reload();
    return Number(result.numDeletedRows) > 0;
  }

  /** Number of platform-admin bindings (the last one may not be removed). */
  async platformAdminCount(): Promise<number> {
    const row = await this.db
      .selectFrom('roleBindings')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('scope', '=', PLATFORM_SCOPE)
      .where('role', '=', 'platform-admin')
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** Members of a scope: user ids with their roles. */
  async members(tenantId: string | null): Promise<{ userId: string; username: string; roles: string[] }[]> {
    const rows = await this.db
      .selectFrom('roleBindings')
      .innerJoin('users', 'users.id', 'roleBindings.userId')
      .select(['roleBindings.userId', 'users.username', 'roleBindings.role'])
      .where('roleBindings.scope', '=', tenantId ?? PLATFORM_SCOPE)
      .orderBy('users.username')
      .orderBy('roleBindings.role')
      .execute();
    const byUser = new Map<string, { userId: string; username: string; roles: string[] }>();
    for (const row of rows) {
      const entry = byUser.get(row.userId) ?? { userId: row.userId, username: row.username, roles: [] };
      entry.roles.push(row.role);
      byUser.set(row.userId, entry);
    }
    return [...byUser.values()];
  }
}

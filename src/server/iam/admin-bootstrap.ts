/**
 * First start: the platform admin `admin` is created with a one-time password (printed once; it must
 * be changed at the first login) or with RAMPART_ADMIN_PASSWORD for unattended installs (the operator
 * chose it, so no forced change). The admin is platform-admin and tenant-admin of the default tenant.
 * `rampart server --reset-admin-password` recovers a lost password the same way.
 */
import { DEFAULT_TENANT } from '../store/migrations.js';
import { checkPasswordPolicy, generatePassword } from './password-policy.js';
import type { RoleDirectory } from './role-directory.js';
import type { TenantDirectory } from './tenant-directory.js';
import type { UserDirectory } from './user-directory.js';
import { ALL_PERMISSIONS } from './permissions.js';

export const ADMIN_USERNAME = 'admin';

export interface AdminBootstrap {
  /** The generated one-time password, when one was generated now (print it once); null otherwise. */
  oneTimePassword: string | null;
  created: boolean;
}

export async function ensureAdmin(
  users: UserDirectory,
  roles: RoleDirectory,
  tenants: TenantDirectory,
  fromEnv: string | undefined,
): Promise<AdminBootstrap> {
  // Only a brand-new installation gets a bootstrap admin (a deleted `admin` is not resurrected).
  if ((await users.list()).length > 0) return { oneTimePassword: null, created: false };
  if (fromEnv !== undefined) checkPasswordPolicy(fromEnv, ADMIN_USERNAME);
  const password = fromEnv ?? generatePassword(ADMIN_USERNAME);
  const admin = await users.create({
    username: ADMIN_USERNAME,
    password,
    mustChangePassword: fromEnv === undefined,
  });
  const all = new Set(ALL_PERMISSIONS);
  await roles.bind(admin.id, null, 'platform-admin', all);
  const defaultTenant = await tenants
    .get(DEFAULT_TENANT)
    .catch(() => tenants.create({ name: DEFAULT_TENANT }));
  await roles.bind(admin.id, defaultTenant.id, 'tenant-admin', all);
  return { oneTimePassword: fromEnv === undefined ? password : null, created: true };
}

/** Sets a new one-time password for `admin` (revoking its sessions and tokens); returns it. */
export async function resetAdminPassword(users: UserDirectory): Promise<string> {
  const admin = await users.get(ADMIN_USERNAME);
  const password = generatePassword(ADMIN_USERNAME);
  await users.resetPassword(admin.id, password);
  return password;
}

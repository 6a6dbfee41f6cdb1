/** `?tenant=` on a platform route: narrows a platform-wide listing to one tenant. */
import { NotFoundError } from '../../api/errors.js';
import type { TenantDirectory } from '../iam/tenant-directory.js';

/** The tenant's id for `ref` (name or id); undefined when no filter is asked; 404 for an unknown one. */
export async function platformTenantFilter(
  tenants: TenantDirectory,
  ref: string | undefined,
): Promise<string | undefined> {
  if (ref === undefined) return undefined;
  const tenant = await tenants.find(ref);
  if (!tenant) throw new NotFoundError('tenant');
  return tenant.id;
}

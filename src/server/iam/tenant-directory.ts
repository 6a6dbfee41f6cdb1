/**
 * Tenants (projects): the hard boundary of every tenant-scoped object. Lookups by name or id; a
 * tenant with VMs cannot be deleted (its VMs must go first, so nothing is orphaned on a host).
 */
import { ConflictError, NotFoundError } from '../../api/errors.js';
import type { Tenant } from '../../api/iam.js';
import { isUuid, newId } from '../../common/ids.js';
import { isUniqueError, nowIso, type Db } from '../store/database.js';
import type { TenantsTable } from '../store/schema.js';

export function tenantToApi(row: TenantsTable): Tenant {
  return {
    id: row.id,
    name: row.name,
    requireMfaForAdmins: row.requireMfaForAdmins === 1,
    allowNestedVirtualization: row.allowNestedVirtualization === 1,
    dedicatedHosts: row.dedicatedHosts === 1,
    allowClones: row.allowClones !== 0,
    createdAt: row.createdAt,
  };
}

export class TenantDirectory {
  constructor(private readonly db: Db) {}

  async list(ids?: readonly string[]): Promise<TenantsTable[]> {
    if (ids && ids.length === 0) return [];
    let query = this.db.selectFrom('tenants').selectAll().orderBy('name');
    if (ids) query = query.where('id', 'in', ids);
    return query.execute();
  }

  /** By name or id; null when absent. */
  async find(ref: string): Promise<TenantsTable | null> {
    const row = await this.db
      .selectFrom('tenants')
      .selectAll()
      .where(isUuid(ref) ? 'id' : 'name', '=', ref)
      .executeTakeFirst();
    return row ?? null;
  }

  async get(ref: string): Promise<TenantsTable> {
    const row = await this.find(ref);
    if (!row) throw new NotFoundError('tenant');
    return row;
  }

  async create(input: { name: string; requireMfaForAdmins?: boolean }): Promise<TenantsTable> {
    const row: TenantsTable = {
      id: newId(),
      name: input.name,
      requireMfaForAdmins: input.requireMfaForAdmins ? 1 : 0,
      allowNestedVirtualization: 0,
      dedicatedHosts: 0,
      createdAt: nowIso(),
    };
    try {
      await this.db.insertInto('tenants').values(row).execute();
    } catch (error) {
      if (isUniqueError(error)) throw new ConflictError(`tenant ${input.name} already exists`);
      throw error;
    }
    return row;
  }

  async update(
    id: string,
    input: {
      requireMfaForAdmins?: boolean;
      allowNestedVirtualization?: boolean;
      dedicatedHosts?: boolean;
      allowClones?: boolean;
    },
  ): Promise<TenantsTable> {
    if (input.allowClones !== undefined)
      await this.db
        .updateTable('tenants')
        .set({ allowClones: input.allowClones ? 1 : 0 })
        .where('id', '=', id)
        .execute();
    if (input.requireMfaForAdmins !== undefined)
      await this.db
        .updateTable('tenants')
        .set({ requireMfaForAdmins: input.requireMfaForAdmins ? 1 : 0 })
        .where('id', '=', id)
        .execute();
    if (input.dedicatedHosts !== undefined)
      await this.db
        .updateTable('tenants')
        .set({ dedicatedHosts: input.dedicatedHosts ? 1 : 0 })
        .where('id', '=', id)
        .execute();
    if (input.allowNestedVirtualization !== undefined)
      await this.db
        .updateTable('tenants')
        .set({ allowNestedVirtualization: input.allowNestedVirtualization ? 1 : 0 })
        .where('id', '=', id)
        .execute();
    return this.get(id);
  }

  async delete(id: string): Promise<void> {
    const vm = await this.db.selectFrom('vms').select('id').where('tenantId', '=', id).executeTakeFirst();
    if (vm) throw new ConflictError('the tenant still has VMs; delete them first');
    // Volumes are erased on their hosts when deleted: they must go first, not vanish with the row.
    const volume = await this.db
      .selectFrom('volumes')
      .select('id')
      .where('tenantId', '=', id)
      .executeTakeFirst();
    if (volume) throw new ConflictError('the tenant still has volumes; delete them first');
    const backup = await this.db
      .selectFrom('volumeBackups')
      .select('id')
      .where('tenantId', '=', id)
      .executeTakeFirst();
    if (backup) throw new ConflictError('the tenant still has backups; delete them first');
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('roleBindings').where('scope', '=', id).execute();
      await trx.deleteFrom('tenants').where('id', '=', id).execute();
    });
  }
}

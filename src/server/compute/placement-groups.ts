/**
 * Placement groups (like OpenStack's server groups): `affinity` keeps the group's VMs on one host,
 * `anti-affinity` on different hosts. The scheduler reads the hosts of a group's current members; a
 * placement that cannot honour the policy fails naming the group.
 */
import { ConflictError, InvalidInputError, NotFoundError } from '../../api/errors.js';
import type { PlacementGroup, PlacementGroupCreate } from '../../api/placement.js';
import { isUuid, newId } from '../../common/ids.js';
import { isUniqueError, nowIso, type Db } from '../store/database.js';
import type { PlacementGroupsTable } from '../store/schema.js';

async function toApi(db: Db, row: PlacementGroupsTable): Promise<PlacementGroup> {
  const members = await db
    .selectFrom('vms')
    .select(['id', 'name', 'hostId'])
    .where('placementGroupId', '=', row.id)
    .orderBy('name')
    .execute();
  return { id: row.id, name: row.name, policy: row.policy, members, createdAt: row.createdAt };
}

export async function createPlacementGroup(
  db: Db,
  tenantId: string,
  input: PlacementGroupCreate,
): Promise<PlacementGroup> {
  const row: PlacementGroupsTable = {
    id: newId(),
    tenantId,
    name: input.name,
    policy: input.policy,
    createdAt: nowIso(),
  };
  await db
    .insertInto('placementGroups')
    .values(row)
    .execute()
    .catch((error: unknown) => {
      if (isUniqueError(error))
        throw new ConflictError(`a placement group named ${input.name} already exists`);
      throw error;
    });
  return toApi(db, row);
}

export async function findPlacementGroup(
  db: Db,
  ref: string,
  tenantId: string,
): Promise<PlacementGroupsTable> {
  const row = await db
    .selectFrom('placementGroups')
    .selectAll()
    .where('tenantId', '=', tenantId)
    .where(isUuid(ref) ? 'id' : 'name', '=', ref)
    .executeTakeFirst();
  if (!row) throw new NotFoundError('placement group');
  return row;
}

export async function listPlacementGroups(db: Db, tenantId: string): Promise<PlacementGroup[]> {
  const rows = await db
    .selectFrom('placementGroups')
    .selectAll()
    .where('tenantId', '=', tenantId)
    .orderBy('name')
    .execute();
  return Promise.all(rows.map((r) => toApi(db, r)));
}

export async function getPlacementGroup(db: Db, ref: string, tenantId: string): Promise<PlacementGroup> {
  return toApi(db, await findPlacementGroup(db, ref, tenantId));
}

export async function deletePlacementGroup(
  db: Db,
  ref: string,
  tenantId: string,
): Promise<PlacementGroupsTable> {
  const row = await findPlacementGroup(db, ref, tenantId);
  const member = await db
    .selectFrom('vms')
    .select('name')
    .where('placementGroupId', '=', row.id)
    .executeTakeFirst();
  if (member) throw new ConflictError(`placement group ${row.name} still has VMs (${member.name})`);
  await db.deleteFrom('placementGroups').where('id', '=', row.id).execute();
  return row;
}

/** The group a VM create names (a body error when it does not exist in the tenant). */
export async function placementForCreate(
  db: Db,
  ref: string,
  tenantId: string,
): Promise<{ group: PlacementGroupsTable; memberHosts: Set<string> }> {
  const group = await findPlacementGroup(db, ref, tenantId).catch((error: unknown) => {
    if (error instanceof NotFoundError)
      throw new InvalidInputError(`placement group ${JSON.stringify(ref)} not found`);
    throw error;
  });
  return { group, memberHosts: await groupMemberHosts(db, group.id) };
}

/** The hosts the group's VMs are on (leaving out one VM: the one being moved). */
export async function groupMemberHosts(db: Db, groupId: string, exceptVmId?: string): Promise<Set<string>> {
  let query = db
    .selectFrom('vms')
    .select('hostId')
    .where('placementGroupId', '=', groupId)
    .where('hostId', 'is not', null);
  if (exceptVmId !== undefined) query = query.where('id', '!=', exceptVmId);
  const rows = await query.execute();
  return new Set(rows.map((r) => r.hostId!));
}

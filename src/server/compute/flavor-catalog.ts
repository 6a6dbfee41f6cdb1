/** Flavors: the seeded sizes (tiny, small, medium) and admin-created ones. */
import { DEFAULT_CPU_WEIGHT, DEFAULT_PIDS_MAX, type Flavor, type FlavorCreate } from '../../api/flavor.js';
import { ConflictError, NotFoundError } from '../../api/errors.js';
import { isUuid, newId } from '../../common/ids.js';
import { nowIso, type Db } from '../store/database.js';
import type { FlavorsTable } from '../store/schema.js';

export const SEED_FLAVORS: readonly FlavorCreate[] = [
  { name: 'tiny', vcpus: 1, memoryMiB: 128, diskGiB: 1 },
  { name: 'small', vcpus: 1, memoryMiB: 512, diskGiB: 10 },
  { name: 'medium', vcpus: 2, memoryMiB: 2048, diskGiB: 20 },
];

export function flavorToApi(row: FlavorsTable): Flavor {
  return {
    id: row.id,
    name: row.name,
    vcpus: row.vcpus,
    memoryMiB: row.memoryMib,
    diskGiB: row.diskGib,
    cpuLimitPercent: row.cpuLimitPercent,
    cpuWeight: row.cpuWeight,
    pidsMax: row.pidsMax,
    networkMbps: row.networkMbps,
    diskIops: row.diskIops ?? null,
    diskMiBps: row.diskMibps ?? null,
    cpuPolicy: row.cpuPolicy ?? 'shared',
    createdAt: row.createdAt,
  };
}

export async function seedFlavors(db: Db): Promise<void> {
  for (const flavor of SEED_FLAVORS) {
    await db
      .insertInto('flavors')
      .values({
        id: newId(),
        name: flavor.name,
        vcpus: flavor.vcpus,
        memoryMib: flavor.memoryMiB,
        diskGib: flavor.diskGiB,
        cpuLimitPercent: flavor.cpuLimitPercent ?? null,
        cpuWeight: flavor.cpuWeight ?? DEFAULT_CPU_WEIGHT,
        pidsMax: flavor.pidsMax ?? DEFAULT_PIDS_MAX,
        networkMbps: flavor.networkMbps ?? null,
        createdAt: nowIso(),
      })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
  }
}

export async function listFlavors(db: Db): Promise<Flavor[]> {
  const rows = await db.selectFrom('flavors').selectAll().orderBy('memoryMib').orderBy('name').execute();
  return rows.map(flavorToApi);
}

export async function findFlavor(db: Db, ref: string): Promise<FlavorsTable> {
  const row = await db
    .selectFrom('flavors')
    .selectAll()
    .where(isUuid(ref) ? 'id' : 'name', '=', ref)
    .executeTakeFirst();
  if (!row) throw new NotFoundError('flavor');
  return row;
}

export async function createFlavor(db: Db, input: FlavorCreate): Promise<Flavor> {
  const row: FlavorsTable = {
    id: newId(),
    name: input.name,
    vcpus: input.vcpus,
    memoryMib: input.memoryMiB,
    diskGib: input.diskGiB,
    cpuLimitPercent: input.cpuLimitPercent ?? null,
    cpuWeight: input.cpuWeight ?? DEFAULT_CPU_WEIGHT,
    pidsMax: input.pidsMax ?? DEFAULT_PIDS_MAX,
    networkMbps: input.networkMbps ?? null,
    diskIops: input.diskIops ?? null,
    diskMibps: input.diskMiBps ?? null,
    cpuPolicy: input.cpuPolicy ?? 'shared',
    createdAt: nowIso(),
  };
  const inserted = await db
    .insertInto('flavors')
    .values(row)
    .onConflict((oc) => oc.column('name').doNothing())
    .executeTakeFirst();
  if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0)
    throw new ConflictError(`flavor ${input.name} already exists`);
  return flavorToApi(row);
}

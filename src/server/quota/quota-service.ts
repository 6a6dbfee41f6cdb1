/**
 * Tenant quotas: limits (platform defaults, per-tenant overrides set by platform admins) and usage,
 * and atomic admission.
 *
 * Usage is never stored: it is computed from the objects themselves (the VM rows, the API tokens, ...)
 * inside the same transaction that creates the new object, so it cannot drift. Admission first writes
 * the tenant's quota row (bumping its version): on SQLite that write takes the database write lock, on
 * PostgreSQL it is a row lock on that tenant only — either way two admissions for one tenant are
 * serialised and check-then-insert cannot overshoot under any concurrency.
 */
import { QUOTA_RESOURCES, type Quota, type QuotaResource, type QuotaUpdate } from '../../api/quota.js';
import { ConflictError, QuotaExceededError } from '../../api/errors.js';
import { nowIso, type Db } from '../store/database.js';
import type { TenantsTable } from '../store/schema.js';

export type QuotaLimits = Record<QuotaResource, number>;
export type QuotaDelta = Partial<Record<QuotaResource, number>>;
/** Any Kysely handle: the database or an open transaction. */
type Executor = Pick<Db, 'selectFrom' | 'insertInto' | 'updateTable'>;

export const UNLIMITED = -1;

export const DEFAULT_QUOTA: Readonly<QuotaLimits> = {
  vms: 20,
  vcpus: 40,
  memoryMiB: 81_920,
  diskGiB: 1_000,
  images: 20,
  imageStorageGiB: 200,
  networks: 10,
  securityGroups: 20,
  securityGroupRules: 200,
  snapshots: 50,
  apiTokens: 20,
  volumes: 20,
  volumeGiB: 1_000,
  backups: 20,
};

export interface QuotaOptions {
  defaults: QuotaLimits;
  /** false only for benchmarks that measure what admission costs. */
  enforce: boolean;
}

export class QuotaService {
  constructor(
    private readonly db: Db,
    private readonly options: QuotaOptions,
  ) {}

  get enforcing(): boolean {
    return this.options.enforce;
  }

  /** Usage of every resource, derived from the tenant's objects. */
  async usage(tenantId: string, db: Executor = this.db): Promise<QuotaLimits> {
    const vm = await db
      .selectFrom('vms')
      .select((eb) => [
        eb.fn.countAll<number>().as('vms'),
        eb.fn.coalesce(eb.fn.sum<number>('vcpus'), eb.lit(0)).as('vcpus'),
        eb.fn.coalesce(eb.fn.sum<number>('memoryMib'), eb.lit(0)).as('memoryMiB'),
        eb.fn.coalesce(eb.fn.sum<number>('diskGib'), eb.lit(0)).as('diskGiB'),
      ])
      .where('tenantId', '=', tenantId)
      .executeTakeFirstOrThrow();
    const tokens = await db
      .selectFrom('apiTokens')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('tenantId', '=', tenantId)
      .where('revokedAt', 'is', null)
      .where('expiresAt', '>', nowIso())
      .executeTakeFirstOrThrow();
    const images = await db
      .selectFrom('images')
      .select((eb) => [
        eb.fn.countAll<number>().as('n'),
        eb.fn.coalesce(eb.fn.sum<number>('sizeBytes'), eb.lit(0)).as('bytes'),
      ])
      .where('tenantId', '=', tenantId)
      .executeTakeFirstOrThrow();
    const count = async (table: 'networks' | 'securityGroups') =>
      Number(
        (
          await db
            .selectFrom(table)
            .select((eb) => eb.fn.countAll<number>().as('n'))
            .where('tenantId', '=', tenantId)
            .executeTakeFirstOrThrow()
        ).n,
      );
    const volumes = await db
      .selectFrom('volumes')
      .select((eb) => [
        eb.fn.countAll<number>().as('n'),
        eb.fn.coalesce(eb.fn.sum<number>('sizeGib'), eb.lit(0)).as('gib'),
      ])
      .where('tenantId', '=', tenantId)
      // A root disk made with its VM counts in the VM's diskGiB, not as a volume.
      .where('vmRoot', '=', 0)
      .executeTakeFirstOrThrow();
    const snapshots = await db
      .selectFrom('volumeSnapshots')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('tenantId', '=', tenantId)
      .executeTakeFirstOrThrow();
    const backups = await db
      .selectFrom('volumeBackups')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('tenantId', '=', tenantId)
      .executeTakeFirstOrThrow();
    const rules = await db
      .selectFrom('securityGroupRules')
      .innerJoin('securityGroups', 'securityGroups.id', 'securityGroupRules.groupId')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('securityGroups.tenantId', '=', tenantId)
      .executeTakeFirstOrThrow();
    return {
      vms: Number(vm.vms),
      vcpus: Number(vm.vcpus),
      memoryMiB: Number(vm.memoryMiB),
      diskGiB: Number(vm.diskGiB),
      apiTokens: Number(tokens.n),
      // The tenant's own images (platform images and images shared with it are not its usage), and their
      // plaintext size rounded up to whole GiB.
      images: Number(images.n),
      imageStorageGiB: Math.ceil(Number(images.bytes) / 1024 ** 3),
      networks: await count('networks'),
      securityGroups: await count('securityGroups'),
      securityGroupRules: Number(rules.n),
      snapshots: Number(snapshots.n),
      // Volumes being erased still hold their storage until the host has finished.
      volumes: Number(volumes.n),
      volumeGiB: Number(volumes.gib),
      backups: Number(backups.n),
    };
  }

  /** The tenant's overrides (only those set). */
  async overrides(tenantId: string, db: Executor = this.db): Promise<Partial<QuotaLimits>> {
    const row = await db
      .selectFrom('quotas')
      .select('limits')
      .where('tenantId', '=', tenantId)
      .executeTakeFirst();
    return row ? (JSON.parse(row.limits) as Partial<QuotaLimits>) : {};
  }

  async limits(tenantId: string, db: Executor = this.db): Promise<QuotaLimits> {
    return { ...this.options.defaults, ...(await this.overrides(tenantId, db)) };
  }

  async show(tenant: TenantsTable): Promise<Quota> {
    const [usage, overrides] = await Promise.all([this.usage(tenant.id), this.overrides(tenant.id)]);
    const resources = {} as Quota['resources'];
    for (const resource of QUOTA_RESOURCES) {
      const override = overrides[resource];
      resources[resource] = {
        limit: override ?? this.options.defaults[resource],
        usage: usage[resource],
        overridden: override !== undefined,
      };
    }
    return { tenant: { id: tenant.id, name: tenant.name }, resources };
  }

  /**
   * Checks that `delta` fits and serialises the tenant's admissions. Call inside the transaction that
   * creates (or grows) the objects, before writing them. Negative deltas (shrinking) always fit.
   */
  async admit(trx: Executor, tenantId: string, delta: QuotaDelta): Promise<void> {
    if (!this.options.enforce) return;
    const overrides = await this.lock(trx, tenantId);
    const usage = await this.usage(tenantId, trx);
    const limits: QuotaLimits = { ...this.options.defaults, ...overrides };
    const exceeded: { resource: QuotaResource; limit: number; usage: number; requested: number }[] = [];
    for (const resource of QUOTA_RESOURCES) {
      const requested = delta[resource] ?? 0;
      const limit = limits[resource];
      if (requested <= 0 || limit === UNLIMITED) continue;
      if (usage[resource] + requested > limit)
        exceeded.push({ resource, limit, usage: usage[resource], requested });
    }
    if (exceeded.length > 0) {
      const first = exceeded[0]!;
      throw new QuotaExceededError(
        `quota exceeded for ${first.resource}: ${first.usage} used + ${first.requested} requested > limit ${first.limit}`,
        { exceeded },
      );
    }
  }

  /**
   * The write that serialises admissions for one tenant (creates the quota row on first use); answers
   * the tenant's overrides as they are under the lock. On PostgreSQL the upsert (INSERT … ON CONFLICT DO
   * UPDATE) takes the row lock of the tenant's quota row, like SELECT … FOR UPDATE, until the transaction
   * ends, so admissions from every server replica queue on it; the usage queries that follow run at READ
   * COMMITTED (the default), each on a fresh snapshot, so they see every admission committed before the
   * lock was granted (quota-service.test.ts races two pools against it).
   */
  private async lock(trx: Executor, tenantId: string): Promise<Partial<QuotaLimits>> {
    const row = await trx
      .insertInto('quotas')
      .values({ tenantId, limits: '{}', version: 1, updatedAt: nowIso() })
      .onConflict((oc) =>
        oc.column('tenantId').doUpdateSet((eb) => ({ version: eb('quotas.version', '+', 1) })),
      )
      .returning('limits')
      .executeTakeFirstOrThrow();
    return JSON.parse(row.limits) as Partial<QuotaLimits>;
  }

  /**
   * Changes limits (null: back to the platform default). A limit below current usage is refused
   * unless `force`; then nothing new is admitted until usage drops under it.
   */
  async update(tenantId: string, update: QuotaUpdate, force: boolean): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const overrides = await this.lock(trx, tenantId);
      const usage = await this.usage(tenantId, trx);
      const below: string[] = [];
      for (const resource of QUOTA_RESOURCES) {
        if (!(resource in update)) continue;
        const value = update[resource];
        if (value === null || value === undefined) {
          delete overrides[resource];
          continue;
        }
        if (value !== UNLIMITED && value < usage[resource])
          below.push(`${resource} (${usage[resource]} used > ${value})`);
        overrides[resource] = value;
      }
      if (below.length > 0 && !force)
        throw new ConflictError(
          `a limit would be below current usage: ${below.join(', ')}; add ?force=true to set it anyway`,
        );
      await trx
        .updateTable('quotas')
        .set({ limits: JSON.stringify(overrides), updatedAt: nowIso() })
        .where('tenantId', '=', tenantId)
        .execute();
    });
  }
}

/**
 * Quota admission at the service level, on SQLite and (RAMPART_TEST_POSTGRES_URL) on PostgreSQL: many
 * concurrent transactions admit and create volumes; exactly the limit succeed. On PostgreSQL the
 * transactions come from two pools on one database (two server replicas): the upsert of the tenant's
 * quota row is a row lock that serializes admission for that tenant across replicas.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { POSTGRES_SKIP, createTestPostgres } from '../../../test/helpers/postgres.js';
import { QuotaExceededError } from '../../api/errors.js';
import { openDatabase, type Db } from '../store/database.js';
import { DEFAULT_QUOTA, QuotaService } from './quota-service.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-quota-'));
const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const close of closers) await close();
  rmSync(root, { recursive: true, force: true });
});

/** Two handles on one fresh database: two pools on PostgreSQL; the same connection twice on SQLite. */
async function twoReplicas(engine: 'sqlite' | 'postgres'): Promise<[Db, Db]> {
  if (engine === 'sqlite') {
    const db = await openDatabase(join(root, randomUUID(), 'rampart.db'));
    closers.unshift(() => db.destroy());
    return [db, db];
  }
  const target = await createTestPostgres();
  closers.push(() => target.drop());
  const a = await openDatabase(target.url, { poolSize: 8 });
  const b = await openDatabase(target.url, { poolSize: 8 });
  closers.unshift(
    () => a.destroy(),
    () => b.destroy(),
  );
  return [a, b];
}

async function createVolume(db: Db, quotas: QuotaService, tenantId: string, name: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await quotas.admit(trx, tenantId, { volumes: 1, volumeGiB: 1 });
    const now = new Date().toISOString();
    await trx
      .insertInto('volumes')
      .values({
        id: randomUUID(),
        tenantId,
        name,
        sizeGib: 1,
        status: 'available',
        hostId: null,
        vmId: null,
        attachedAt: null,
        wrappedKey: 'w',
        keyVersion: 1,
        createdAt: now,
        updatedAt: now,
      })
      .execute();
  });
}

for (const engine of ['sqlite', 'postgres'] as const)
  describe(`quota admission on ${engine}`, { skip: engine === 'postgres' && POSTGRES_SKIP }, () => {
    test('40 concurrent creates from two replicas with a limit of 7 volumes: exactly 7 succeed', async () => {
      const [a, b] = await twoReplicas(engine);
      const options = { defaults: { ...DEFAULT_QUOTA, volumes: 7 }, enforce: true };
      const quotaA = new QuotaService(a, options);
      const quotaB = new QuotaService(b, options);
      const tenant = await a.selectFrom('tenants').select('id').executeTakeFirstOrThrow();
      const results = await Promise.allSettled(
        Array.from({ length: 40 }, (_, i) =>
          i % 2 === 0
            ? createVolume(a, quotaA, tenant.id, `v${i}`)
            : createVolume(b, quotaB, tenant.id, `v${i}`),
        ),
      );
      const created = results.filter((r) => r.status === 'fulfilled').length;
      const refused = results.filter(
        (r) => r.status === 'rejected' && r.reason instanceof QuotaExceededError,
      ).length;
      const other = results.filter(
        (r) => r.status === 'rejected' && !(r.reason instanceof QuotaExceededError),
      );
      assert.deepEqual(other, []);
      assert.equal(created, 7);
      assert.equal(refused, 33);
      const usage = await quotaB.usage(tenant.id);
      assert.equal(usage.volumes, 7);
      assert.equal(usage.volumeGiB, 7);
      assert.equal(typeof usage.volumes, 'number');
    });
  });

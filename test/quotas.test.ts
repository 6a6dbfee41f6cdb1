/**
 * Quota admission against the real server and database (SECURITY-TESTS.md items 9-10): with a quota
 * of N, 10N concurrent creates admit exactly N; vCPU and memory sums and resizes likewise; usage the API
 * reports always equals usage recomputed from the VM table; limits cannot drop below usage without
 * force; API tokens count too; host capacity follows the overcommit ratios. No VM is booted. Runs on
 * SQLite and, with RAMPART_TEST_POSTGRES_URL, again on a fresh PostgreSQL database (`--database`), where
 * admission is serialized by the row lock on the tenant's quota row.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { Quota } from '../src/api/quota.js';
import type { Host } from '../src/api/host.js';
import type { Vm } from '../src/api/vm.js';
import { POSTGRES_SKIP, createTestPostgres, type TestPostgres } from './helpers/postgres.js';
import { RampartHarness } from './helpers/rampart-harness.js';

for (const engine of ['sqlite', 'postgres'] as const)
  describe(`quotas on ${engine}`, { skip: engine === 'postgres' && POSTGRES_SKIP }, () => {
    let harness: RampartHarness;
    let lite: Database.Database | undefined;
    let pgTarget: TestPostgres | undefined;
    let pgClient: pg.Client | undefined;

    before(async () => {
      const env: Record<string, string> = {
        RAMPART_CPU_OVERCOMMIT: '16',
        RAMPART_MEMORY_OVERCOMMIT: '4',
        // Bursts of concurrent creates are the point here; the API rate limits have their own test.
        RAMPART_RATE_LIMIT_PRINCIPAL: 'off',
        RAMPART_RATE_LIMIT_TENANT: 'off',
      };
      if (engine === 'postgres') {
        pgTarget = await createTestPostgres();
        env.RAMPART_DATABASE = pgTarget.url;
      }
      harness = await RampartHarness.start({ env });
      if (engine === 'postgres') {
        pgClient = new pg.Client({ connectionString: pgTarget!.url });
        await pgClient.connect();
      } else lite = new Database(join(harness.dataDir, 'db', 'rampart.db'), { readonly: true });
    });

    after(async () => {
      lite?.close();
      await pgClient?.end();
      await harness?.cleanup();
      await pgTarget?.drop();
    });

    /** One row of a read-only query on the server's database (`?` placeholders), numbers as numbers. */
    async function row<T extends Record<string, number>>(text: string, ...params: string[]): Promise<T> {
      if (lite) return lite.prepare(text).get(...params) as T;
      let n = 0;
      const result = await pgClient!.query(
        text.replace(/\?/g, () => `$${++n}`),
        params,
      );
      const out: Record<string, number> = {};
      for (const [key, value] of Object.entries(result.rows[0] as Record<string, unknown>))
        out[key] = Number(value);
      return out as T;
    }

    async function tenantWithQuota(name: string, limits: Record<string, number>): Promise<void> {
      assert.equal((await harness.api('POST', '/v1/tenants', { name })).status, 201);
      const set = await harness.api('PUT', `/v1/tenants/${name}/quota`, limits);
      assert.equal(set.status, 200, JSON.stringify(set.body));
    }

    async function quota(tenant: string): Promise<Quota> {
      const response = await harness.api<Quota>('GET', `/v1/tenants/${tenant}/quota`);
      assert.equal(response.status, 200, JSON.stringify(response.body));
      return response.body;
    }

    /** Usage recomputed straight from the VM table, for comparison with what the API reports. */
    function tableUsage(tenant: string): Promise<{ vms: number; vcpus: number; memory: number }> {
      return row(
        `SELECT COUNT(*) AS vms, COALESCE(SUM(vcpus), 0) AS vcpus, COALESCE(SUM(memory_mib), 0) AS memory
     FROM vms JOIN tenants ON tenants.id = vms.tenant_id WHERE tenants.name = ?`,
        tenant,
      );
    }

    async function createMany(tenant: string, count: number, flavor: string, prefix: string) {
      return Promise.all(
        Array.from({ length: count }, (_, i) =>
          harness.api<Vm | { error: { code: string } }>('POST', `/v1/vms?tenant=${tenant}`, {
            name: `${prefix}-${i}`,
            image: 'tiny',
            flavor,
            start: false,
          }),
        ),
      );
    }

    function outcome(responses: { status: number; body: unknown }[]) {
      const created = responses.filter((r) => r.status === 201).length;
      const refused = responses.filter(
        (r) =>
          r.status === 403 && (r.body as { error: { code: string } }).error.code === 'RAMPART_QUOTA_EXCEEDED',
      ).length;
      return { created, refused, other: responses.length - created - refused };
    }

    test('10N concurrent creates with a quota of N VMs: exactly N succeed', async () => {
      await tenantWithQuota('q-vms', { vms: 3 });
      const result = outcome(await createMany('q-vms', 30, 'tiny', 'vm'));
      assert.deepEqual(result, { created: 3, refused: 27, other: 0 });
      const reported = await quota('q-vms');
      assert.equal(reported.resources.vms.usage, 3);
      assert.equal(reported.resources.vms.limit, 3);
      assert.equal(reported.resources.vms.overridden, true);
      assert.equal((await tableUsage('q-vms')).vms, 3);
      assert.equal(reported.resources.vcpus.usage, (await tableUsage('q-vms')).vcpus);
    });

    test('vCPU and memory sums are exact under concurrency too', async () => {
      await tenantWithQuota('q-vcpus', { vcpus: 5 });
      const vcpus = outcome(await createMany('q-vcpus', 20, 'medium', 'vm'));
      assert.deepEqual(vcpus, { created: 2, refused: 18, other: 0 }, 'medium is 2 vCPUs: 2 fit in 5');
      assert.equal((await quota('q-vcpus')).resources.vcpus.usage, 4);
      assert.equal((await tableUsage('q-vcpus')).vcpus, 4);

      await tenantWithQuota('q-memory', { memoryMiB: 1200 });
      const memory = outcome(await createMany('q-memory', 20, 'small', 'vm'));
      assert.deepEqual(memory, { created: 2, refused: 18, other: 0 }, 'small is 512 MiB: 2 fit in 1200');
      assert.equal((await quota('q-memory')).resources.memoryMiB.usage, 1024);
      assert.equal((await tableUsage('q-memory')).memory, 1024);
    });

    test('resize counts the difference: concurrent growth stops exactly at the limit; shrinking frees', async () => {
      await tenantWithQuota('q-resize', { vcpus: 3 });
      assert.deepEqual(outcome(await createMany('q-resize', 2, 'tiny', 'vm')), {
        created: 2,
        refused: 0,
        other: 0,
      });
      const grows = await Promise.all(
        ['vm-0', 'vm-1', 'vm-0', 'vm-1', 'vm-0', 'vm-1'].map((vm) =>
          harness.api('POST', `/v1/vms/${vm}/resize?tenant=q-resize`, { flavor: 'medium' }),
        ),
      );
      const resized = new Set<string>();
      for (const response of grows) if (response.status === 200) resized.add((response.body as Vm).name);
      assert.equal(resized.size, 1, 'only one VM can grow to 2 vCPUs within 3');
      assert.equal((await quota('q-resize')).resources.vcpus.usage, 3);
      assert.equal((await tableUsage('q-resize')).vcpus, 3);
      const grown = [...resized][0]!;
      const other = grown === 'vm-0' ? 'vm-1' : 'vm-0';
      const refused = await harness.api<{ error: { code: string } }>(
        'POST',
        `/v1/vms/${other}/resize?tenant=q-resize`,
        { flavor: 'medium' },
      );
      assert.equal(refused.body.error.code, 'RAMPART_QUOTA_EXCEEDED');
      // Shrinking the grown one frees room for the other.
      assert.equal(
        (await harness.api('POST', `/v1/vms/${grown}/resize?tenant=q-resize`, { flavor: 'tiny' })).status,
        200,
      );
      assert.equal(
        (await harness.api('POST', `/v1/vms/${other}/resize?tenant=q-resize`, { flavor: 'medium' })).status,
        200,
      );
      assert.equal((await quota('q-resize')).resources.vcpus.usage, 3);
    });

    test('a limit below usage needs force; then nothing new is admitted until usage is under it', async () => {
      await tenantWithQuota('q-lower', { vms: 5 });
      assert.equal(outcome(await createMany('q-lower', 3, 'tiny', 'vm')).created, 3);
      const refused = await harness.api('PUT', '/v1/tenants/q-lower/quota', { vms: 1 });
      assert.equal(refused.status, 409);
      assert.equal((await quota('q-lower')).resources.vms.limit, 5, 'unchanged');
      assert.equal(
        (await harness.api('PUT', '/v1/tenants/q-lower/quota?force=true', { vms: 2 })).status,
        200,
      );
      assert.equal(outcome(await createMany('q-lower', 1, 'tiny', 'late')).refused, 1);
      // Deleting releases: down to 1, one more fits again.
      for (const vm of ['vm-0', 'vm-1']) {
        assert.equal((await harness.api('DELETE', `/v1/vms/${vm}?tenant=q-lower`)).status, 202);
      }
      await harness.waitFor(async () => (await tableUsage('q-lower')).vms === 1, 30_000, 'deletes to finish');
      assert.equal(outcome(await createMany('q-lower', 3, 'tiny', 'again')).created, 1);
      // null returns a limit to the platform default.
      const reset = await harness.api<Quota>('PUT', '/v1/tenants/q-lower/quota', { vms: null });
      assert.equal(reset.body.resources.vms.overridden, false);
    });

    test('API tokens count against the tenant quota', async () => {
      await tenantWithQuota('q-tokens', { apiTokens: 2 });
      const results = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          harness.api('POST', '/v1/tokens?tenant=q-tokens', { name: `t${i}`, expiresInDays: 1 }),
        ),
      );
      assert.equal(results.filter((r) => r.status === 201).length, 2);
      assert.equal((await quota('q-tokens')).resources.apiTokens.usage, 2);
    });

    test('bad quota input is refused with a clear error and changes nothing', async () => {
      await tenantWithQuota('q-bad', { vms: 4 });
      for (const body of [
        {},
        { vms: -2 },
        { vms: 1.5 },
        { vms: '3' },
        { bogus: 1 },
        { tenantId: 'x', vms: 1 },
      ]) {
        const response = await harness.api('PUT', '/v1/tenants/q-bad/quota', body);
        assert.equal(response.status, 400, JSON.stringify(body));
      }
      assert.equal((await quota('q-bad')).resources.vms.limit, 4);
      assert.equal((await harness.api('PUT', '/v1/tenants/no-such-tenant/quota', { vms: 1 })).status, 404);
    });

    test('host capacity follows the overcommit ratios and shows what is allocated', async () => {
      const hosts = await harness.api<{ items: Host[] }>('GET', '/v1/hosts');
      const host = hosts.body.items[0]!;
      assert.deepEqual(host.overcommit, { cpu: 16, memory: 4 });
      assert.equal(host.capacity.vcpusAllocatable, host.capacity.cpus * 16);
      assert.ok(host.allocated.vms > 0);
      const allocated = await row<{ n: number }>('SELECT COUNT(*) AS n FROM vms WHERE host_id = ?', host.id);
      assert.equal(host.allocated.vms, allocated.n);
    });
  });

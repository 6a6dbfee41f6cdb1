/**
 * VmService.failoverHost over a real (SQLite) database: the running VMs of a failed host with a
 * restart policy and no volumes move to another online host with room as a new boot ('starting');
 * restart policy never, volumes, or no room: error with the reason; stopped VMs stay; nothing moves
 * once the host is back.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { sql } from 'kysely';
import { createLogger } from '../../common/logger.js';
import { newId } from '../../common/ids.js';
import type { ServerMetrics } from '../metrics.js';
import { nowIso, openDatabase, type Db } from '../store/database.js';
import type { VmsTable } from '../store/schema.js';
import { recordHostHello } from './host-registry.js';
import { DEFAULT_OVERCOMMIT } from './scheduler.js';
import { VmService, type VmServiceOptions } from './vm-service.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-vm-failover-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function hello(db: Db, hostname: string, memoryMiB: number): Promise<string> {
  const hostId = newId();
  await recordHostHello(db, {
    hostId,
    hostname,
    accelerator: 'tcg',
    acceleratorReason: 'test',
    qemuVersion: '8',
    agentVersion: 'test',
    capacity: { cpus: 4, memoryMiB, vcpusAllocatable: 4, memoryMiBAllocatable: memoryMiB },
  });
  return hostId;
}

test('a failed host: restartable running VMs move as a new boot, the others go to error', async () => {
  const db = await openDatabase(join(root, 'rampart.db'));
  try {
    // Only the rows this needs (no images or flavors behind them).
    await sql`PRAGMA foreign_keys = OFF`.execute(db);
    const tenantId = newId();
    await db
      .insertInto('tenants')
      .values({
        id: tenantId,
        name: 't1',
        requireMfaForAdmins: 0,
        allowNestedVirtualization: 0,
        dedicatedHosts: 0,
        createdAt: nowIso(),
      })
      .execute();
    const failed = await hello(db, 'failed-1', 4096);
    const spare = await hello(db, 'spare-1', 1024);
    await db.updateTable('hosts').set({ state: 'failed' }).where('id', '=', failed).execute();
    const vm = async (name: string, patch: Partial<VmsTable> = {}): Promise<string> => {
      const id = newId();
      await db
        .insertInto('vms')
        .values({
          id,
          tenantId,
          name,
          imageId: newId(),
          flavorId: newId(),
          vcpus: 1,
          memoryMib: 512,
          diskGib: 1,
          cpuLimitPercent: null,
          networkMbps: null,
          cpuWeight: 100,
          pidsMax: 256,
          state: 'running',
          power: 'running',
          bootId: 3,
          rebootId: 0,
          stopTimeoutMs: 1000,
          restartPolicy: 'on-failure',
          restartCount: 0,
          hostId: failed,
          accelerator: 'tcg',
          pid: 1234,
          guestIps: '[]',
          lastHeartbeatAt: null,
          guestUptimeSeconds: null,
          bootMs: null,
          error: null,
          createdAt: nowIso(),
          updatedAt: nowIso(),
          ...patch,
        })
        .execute();
      return id;
    };
    const moves = await vm('moves');
    const always = await vm('always', { restartPolicy: 'always' });
    const never = await vm('never', { restartPolicy: 'never' });
    const withVolume = await vm('with-volume');
    const stopped = await vm('stopped', { state: 'stopped', power: 'stopped', pid: null });
    const noRoom = await vm('no-room'); // the spare host (1024 MiB) is full after two
    const volumeVms = new Set([withVolume]);
    const vms = new VmService(
      db,
      { connectionFor: () => null },
      { vmRestarts: { inc: () => undefined } } as unknown as ServerMetrics,
      createLogger('test', 'silent'),
      {
        defaultStopTimeoutSeconds: 1,
        overcommit: DEFAULT_OVERCOMMIT,
        volumes: { hasVolumes: (id: string) => Promise.resolve(volumeVms.has(id)) },
        networks: { hostsSharingNetworks: (ids: string[]) => Promise.resolve(ids) },
      } as unknown as VmServiceOptions,
    );
    const result = await vms.failoverHost(failed);
    assert.deepEqual(
      result.moved.map((m) => [m.name, m.toHostname]),
      [
        ['moves', 'spare-1'],
        ['always', 'spare-1'],
      ],
    );
    assert.deepEqual(
      result.stayed.map((s) => s.name),
      ['never', 'with-volume', 'no-room'],
    );
    const row = (id: string) =>
      db.selectFrom('vms').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    for (const id of [moves, always]) {
      const moved = await row(id);
      assert.equal(moved.hostId, spare);
      assert.equal(moved.state, 'starting');
      assert.equal(moved.power, 'running');
      assert.equal(moved.bootId, 4, 'a new boot');
      assert.equal(moved.pid, null);
    }
    assert.match((await row(never)).error ?? '', /restart policy never/);
    assert.equal((await row(never)).state, 'error');
    assert.equal((await row(never)).hostId, failed);
    assert.match((await row(withVolume)).error ?? '', /volumes live on that host/);
    assert.equal((await row(withVolume)).hostId, failed);
    assert.match((await row(noRoom)).error ?? '', /could not be restarted elsewhere/);
    assert.equal((await row(noRoom)).state, 'error');
    assert.equal((await row(stopped)).state, 'stopped');
    assert.equal((await row(stopped)).hostId, failed);

    // The host is back: nothing of it moves any more.
    const late = await vm('late');
    await db.updateTable('hosts').set({ state: 'online' }).where('id', '=', failed).execute();
    await db.updateTable('hosts').set({ memoryMibAllocatable: 8192 }).where('id', '=', spare).execute();
    const again = await vms.failoverHost(failed);
    assert.deepEqual(again, { moved: [], stayed: [] });
    assert.equal((await row(late)).hostId, failed);
    assert.equal((await row(late)).state, 'running');
  } finally {
    await db.destroy();
  }
});

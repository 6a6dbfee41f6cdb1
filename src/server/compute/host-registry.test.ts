/**
 * recordHostHello over a real (SQLite) database: a hello records the host online with what it
 * reported; a hello through a replica records the link to that replica in the same row write, and a
 * hello without one leaves the link as it was.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { HostInfo } from '../../api/agent-protocol.js';
import { newId } from '../../common/ids.js';
import { openDatabase, type Db } from '../store/database.js';
import { recordHostHello } from './host-registry.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-host-registry-'));
after(() => rmSync(root, { recursive: true, force: true }));

function info(hostId: string, memoryMiB = 2048): HostInfo {
  return {
    hostId,
    hostname: 'node-a',
    accelerator: 'tcg',
    acceleratorReason: 'test',
    qemuVersion: '7.2',
    agentVersion: 'test',
    capacity: { cpus: 2, memoryMiB, vcpusAllocatable: 2, memoryMiBAllocatable: memoryMiB },
  };
}

async function row(db: Db, hostId: string) {
  return db
    .selectFrom('hosts')
    .select(['state', 'linkedReplica', 'memoryMib'])
    .where('id', '=', hostId)
    .executeTakeFirstOrThrow();
}

test('a hello through a replica records the host online and linked to it in one write', async () => {
  const db = await openDatabase(join(root, 'rampart.db'));
  try {
    const hostId = newId();
    const replicaA = newId();
    const replicaB = newId();
    await recordHostHello(db, info(hostId), replicaA);
    assert.deepEqual(await row(db, hostId), { state: 'online', linkedReplica: replicaA, memoryMib: 2048 });

    // Its link closed (offline, linked nowhere), then a new hello through another replica: online and
    // linked there at once.
    await db
      .updateTable('hosts')
      .set({ state: 'offline', linkedReplica: null })
      .where('id', '=', hostId)
      .execute();
    await recordHostHello(db, info(hostId, 4096), replicaB);
    assert.deepEqual(await row(db, hostId), { state: 'online', linkedReplica: replicaB, memoryMib: 4096 });

    // A hello recorded without a replica (one server, or a test) keeps the link it had.
    await recordHostHello(db, info(hostId, 1024));
    assert.deepEqual(await row(db, hostId), { state: 'online', linkedReplica: replicaB, memoryMib: 1024 });

    // A first hello without a replica: linked nowhere.
    const other = newId();
    await recordHostHello(db, info(other));
    assert.equal((await row(db, other)).linkedReplica ?? null, null);
  } finally {
    await db.destroy();
  }
});

/**
 * The leader lease: on SQLite the only server leads at once; on PostgreSQL (RAMPART_TEST_POSTGRES_URL)
 * two replicas (two pools) compete, exactly one leads, the other takes over when the leader stops or its
 * session is killed, and confirm() answers from PostgreSQL.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { sql } from 'kysely';
import { POSTGRES_SKIP, createTestPostgres } from '../../../test/helpers/postgres.js';
import { openDatabase } from '../store/database.js';
import { LeaderLease } from './leader-lease.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-lease-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

test('on SQLite the server is always the leader', async () => {
  const db = await openDatabase(join(root, 'rampart.db'));
  try {
    const lease = new LeaderLease(db, { name: 'singletons' });
    const changes: boolean[] = [];
    lease.on('change', (leader) => changes.push(leader));
    lease.start();
    assert.equal(lease.isLeader, true);
    assert.equal(await lease.confirm(), true);
    await lease.stop();
    assert.deepEqual(changes, [true, false]);
  } finally {
    await db.destroy();
  }
});

test(
  'on PostgreSQL one of two replicas leads; the other takes over after a stop or a killed session',
  { skip: POSTGRES_SKIP },
  async () => {
    const target = await createTestPostgres();
    const a = await openDatabase(target.url, { poolSize: 3 });
    const b = await openDatabase(target.url, { poolSize: 3 });
    const leaseA = new LeaderLease(a, { name: 'singletons', retryMs: 50, checkMs: 50 });
    const leaseB = new LeaderLease(b, { name: 'singletons', retryMs: 50, checkMs: 50 });
    try {
      leaseA.start();
      await until(() => leaseA.isLeader, 5000, 'A to lead');
      leaseB.start();
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(leaseB.isLeader, false, 'never two leaders');
      assert.equal(await leaseA.confirm(), true);
      assert.equal(await leaseB.confirm(), false);
      // Another name is another lease.
      const other = new LeaderLease(b, { name: 'other', retryMs: 50 });
      other.start();
      await until(() => other.isLeader, 5000, 'the other lease');
      await other.stop();

      await leaseA.stop();
      await until(() => leaseB.isLeader, 5000, 'B to take over');
      assert.equal(await leaseB.confirm(), true);
      leaseA.start();
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(leaseA.isLeader, false);

      // B's session is killed (as when its server dies or its connection drops): A takes over and B
      // notices that it lost the lease.
      await sql`SELECT pg_terminate_backend(l.pid) FROM pg_locks l
      WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()`.execute(a);
      await until(() => leaseA.isLeader, 5000, 'A to take over after the kill');
      await until(() => !leaseB.isLeader, 5000, 'B to notice');
      assert.equal(await leaseA.confirm(), true);
    } finally {
      await leaseA.stop();
      await leaseB.stop();
      await a.destroy();
      await b.destroy();
      await target.drop();
    }
  },
);

/**
 * The change feed: on SQLite notify() is a no-op; on PostgreSQL (RAMPART_TEST_POSTGRES_URL) a topic
 * announced through one pool is heard through another, and a listener whose session is killed
 * reconnects and announces '*' (reload everything).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { sql } from 'kysely';
import { POSTGRES_SKIP, createTestPostgres } from '../../../test/helpers/postgres.js';
import { openDatabase } from '../store/database.js';
import { ChangeFeed } from './change-feed.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-feed-'));
after(() => rmSync(root, { recursive: true, force: true }));

function next(feed: ChangeFeed, ms = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no change heard')), ms);
    feed.once('change', (topic) => {
      clearTimeout(timer);
      resolve(topic);
    });
  });
}

test('on SQLite the feed is silent and notify() does nothing', async () => {
  const db = await openDatabase(join(root, 'rampart.db'));
  try {
    const feed = new ChangeFeed(db);
    await feed.start();
    await feed.notify('roles');
    await assert.rejects(feed.notify('Not A Topic'), /invalid change topic/);
    await feed.stop();
  } finally {
    await db.destroy();
  }
});

test(
  'on PostgreSQL a topic crosses replicas, and a lost listener reconnects with "*"',
  { skip: POSTGRES_SKIP },
  async () => {
    const target = await createTestPostgres();
    const a = await openDatabase(target.url, { poolSize: 3 });
    const b = await openDatabase(target.url, { poolSize: 3 });
    const feedA = new ChangeFeed(a);
    const feedB = new ChangeFeed(b, { retryMs: 50 });
    try {
      await feedA.start();
      await feedB.start();
      const heard = next(feedB);
      await feedA.notify('roles');
      assert.equal(await heard, 'roles');
      // Kill B's listening session: it comes back and asks for a full reload.
      const reconnected = next(feedB);
      await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'`.execute(a);
      assert.equal(await reconnected, '*');
      const again = next(feedB);
      await feedA.notify('roles');
      assert.equal(await again, 'roles');
    } finally {
      await feedA.stop();
      await feedB.stop();
      await a.destroy();
      await b.destroy();
      await target.drop();
    }
  },
);

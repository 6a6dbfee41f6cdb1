/**
 * One security event stream across server replicas (RAMPART_TEST_POSTGRES_URL; skipped without it):
 * two replicas, each its own pool, change feed, SecurityEventLog and delivery on one database. Events
 * recorded concurrently through both reach the listeners of both, each exactly once, in seq order, and
 * marked 'local' on the replica that recorded them and 'remote' on the other. What was recorded before a
 * replica started is not delivered to it. After stop(), events go to the local listeners directly again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../common/logger.js';
import { POSTGRES_SKIP, createTestPostgres, type TestPostgres } from '../../../test/helpers/postgres.js';
import { openDatabase, type Db } from '../store/database.js';
import {
  SecurityEventLog,
  type SecurityEvent,
  type SecurityEventInput,
  type SecurityEventOrigin,
} from '../security/security-events.js';
import { ChangeFeed } from './change-feed.js';
import { SecurityEventDelivery } from './security-event-delivery.js';

const log = createLogger('test', 'silent');

interface Replica {
  db: Db;
  feed: ChangeFeed;
  events: SecurityEventLog;
  delivery: SecurityEventDelivery;
  heard: { seq: number; summary: string; origin: SecurityEventOrigin }[];
}

function input(summary: string): SecurityEventInput {
  return {
    kind: 'auth.login_failed',
    severity: 'low',
    tenantId: null,
    subjectType: 'user',
    subjectId: null,
    summary,
    detail: { username: 'mallory', sourceIp: '192.0.2.7', reason: 'bad-password' },
  };
}

async function waitUntil(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('security events delivered across replicas', { skip: POSTGRES_SKIP }, () => {
  let target: TestPostgres;
  const replicas: Replica[] = [];

  async function replica(): Promise<Replica> {
    const db = await openDatabase(target.url, { poolSize: 4 });
    const feed = new ChangeFeed(db, { log });
    await feed.start();
    const events = new SecurityEventLog(db, { log });
    // A long poll: delivery of the other replica's events must come from its NOTIFY.
    const delivery = new SecurityEventDelivery({ events, feed, log, pollMs: 60_000 });
    const made: Replica = { db, feed, events, delivery, heard: [] };
    events.on('event', (event: SecurityEvent, origin) =>
      made.heard.push({ seq: event.seq, summary: event.summary, origin }),
    );
    replicas.push(made);
    return made;
  }

  before(async () => {
    target = await createTestPostgres();
  });

  after(async () => {
    for (const r of replicas) {
      await r.delivery.stop();
      await r.feed.stop();
      await r.db.destroy();
    }
    await target?.drop();
  });

  test('both replicas hear every event once, in seq order, local or remote', async () => {
    const a = await replica();
    await a.events.record(input('before b'));
    const b = await replica();
    assert.deepEqual(
      a.heard.map((h) => [h.summary, h.origin]),
      [['before b', 'local']],
      'without a delivery an event goes to the local listeners',
    );
    a.heard.length = 0;
    await a.delivery.start();
    await b.delivery.start();

    const recorded = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).events.record(input(`event ${i}`))),
    );
    await waitUntil(() => a.heard.length === 40 && b.heard.length === 40, 'both replicas to hear 40 events');
    const expected = recorded.map((e) => e.seq).sort((x, y) => x - y);
    for (const [name, r] of [
      ['a', a],
      ['b', b],
    ] as const) {
      assert.deepEqual(
        r.heard.map((h) => h.seq),
        expected,
        `${name}: every event once, in seq order`,
      );
      for (const heard of r.heard) {
        const index = Number(/event (\d+)/.exec(heard.summary)![1]);
        const recordedHere = (index % 2 === 0) === (name === 'a');
        assert.equal(heard.origin, recordedHere ? 'local' : 'remote', `${name}: ${heard.summary}`);
      }
    }
    assert.ok(!b.heard.some((h) => h.summary === 'before b'), 'history before the start is not delivered');
  });

  test('after stop() the events of a replica go to its listeners directly, and only its own', async () => {
    const [a, b] = replicas as [Replica, Replica];
    await a.delivery.stop();
    a.heard.length = 0;
    b.heard.length = 0;
    const own = await a.events.record(input('after stop, through a'));
    assert.deepEqual(a.heard, [{ seq: own.seq, summary: own.summary, origin: 'local' }]);
    await b.events.record(input('after stop, through b'));
    await waitUntil(() => b.heard.length === 2, 'b to hear both');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(a.heard.length, 1, 'a no longer reads the stream');
  });
});

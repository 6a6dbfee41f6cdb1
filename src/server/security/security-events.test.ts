/**
 * The security event stream on a real, migrated SQLite database: seq stays strictly increasing under
 * concurrent record() calls, tenant filters and ordering (newest first; ascending after a seq), the
 * table stays bounded, committed events are emitted, and bad input is refused. The same on PostgreSQL
 * (RAMPART_TEST_POSTGRES_URL), where two server replicas (two pools on one database) recording at once
 * still get one gap-free seq (advisory lock).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { POSTGRES_SKIP, createTestPostgres, openTestPostgres } from '../../../test/helpers/postgres.js';
import { createLogger } from '../../common/logger.js';
import { openDatabase, type Db, type Engine } from '../store/database.js';
import {
  DEFAULT_MAX_EVENTS,
  MAX_DETAIL_BYTES,
  SECURITY_EVENT_KINDS,
  SecurityEventLog,
  maxEventsFromEnv,
  type SecurityEvent,
  type SecurityEventInput,
} from './security-events.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-secevents-'));
const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const close of closers) await close();
  rmSync(root, { recursive: true, force: true });
});
let counter = 0;
const silent = createLogger('security-events-test', 'silent');

/** A fresh, migrated database on the engine (a new PostgreSQL database each time). */
async function freshDb(engine: Engine): Promise<Db> {
  if (engine === 'postgres') {
    const pg = await openTestPostgres();
    closers.push(() => pg.close());
    return pg.db;
  }
  const db = await openDatabase(join(root, `d${counter++}`, 'rampart.db'));
  closers.push(() => db.destroy());
  return db;
}

for (const engine of ['sqlite', 'postgres'] as const)
  describe(`security events on ${engine}`, { skip: engine === 'postgres' && POSTGRES_SKIP }, () => {
    function input(overrides: Partial<SecurityEventInput> = {}): SecurityEventInput {
      return {
        kind: SECURITY_EVENT_KINDS.imageQuarantined,
        severity: 'high',
        tenantId: 't-1',
        subjectType: 'image',
        subjectId: 'img-1',
        summary: 'image quarantined: scan found malware',
        detail: { reason: 'malware', findings: ['EICAR'] },
        ...overrides,
      };
    }

    test('record assigns id, seq and time, stores the detail as JSON and answers what list answers', async () => {
      const db = await freshDb(engine);
      const log = new SecurityEventLog(db, { log: silent });
      const event = await log.record(input());
      assert.equal(event.seq, 1);
      assert.match(event.id, /^[0-9a-f-]{36}$/);
      assert.ok(!Number.isNaN(Date.parse(event.occurredAt)));
      assert.deepEqual(event.detail, { reason: 'malware', findings: ['EICAR'] });
      const row = await db.selectFrom('securityEvents').selectAll().executeTakeFirstOrThrow();
      assert.equal(row.detail, JSON.stringify({ reason: 'malware', findings: ['EICAR'] }));
      assert.deepEqual(await log.list({}), [event]);
      const noDetail = await log.record(input({ detail: undefined, tenantId: null, subjectId: null }));
      assert.deepEqual(noDetail.detail, {});
      assert.equal(noDetail.tenantId, null);
      assert.equal(noDetail.seq, 2);
    });

    test('seq is strictly increasing and gap-free under concurrent record calls', async () => {
      const db = await freshDb(engine);
      const log = new SecurityEventLog(db, { log: silent });
      const events = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          log.record(input({ tenantId: `t-${i % 3}`, summary: `event ${i}` })),
        ),
      );
      // Serialized in call order: the i-th call got seq i + 1.
      assert.deepEqual(
        events.map((e) => e.seq),
        Array.from({ length: 200 }, (_, i) => i + 1),
      );
      assert.equal(new Set(events.map((e) => e.id)).size, 200);
      // A second log on the same database (as after a restart) continues after the stored maximum.
      const again = new SecurityEventLog(db, { log: silent });
      assert.equal((await again.record(input())).seq, 201);
    });

    test('a failed record does not block the ones after it', async () => {
      const db = await freshDb(engine);
      const log = new SecurityEventLog(db, { log: silent });
      const first = log.record(input());
      const bad = log.record(input({ kind: 'Not A Kind' }));
      const badSeverity = log.record(input({ severity: 'urgent' as unknown as 'high' }));
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      const badDetail = log.record(input({ detail: cyclic }));
      const last = log.record(input());
      await assert.rejects(bad, /invalid security event kind/);
      await assert.rejects(badSeverity, /invalid security event severity/);
      await assert.rejects(badDetail);
      assert.equal((await first).seq, 1);
      assert.equal((await last).seq, 2);
    });

    test('oversized details are replaced by a marker', async () => {
      const db = await freshDb(engine);
      const log = new SecurityEventLog(db, { log: silent });
      const event = await log.record(input({ detail: { blob: 'x'.repeat(MAX_DETAIL_BYTES + 1) } }));
      assert.equal(event.detail.truncated, true);
      assert.ok((event.detail.bytes as number) > MAX_DETAIL_BYTES);
    });

    test('list filters by tenant and kind; newest first, or ascending after a seq', async () => {
      const db = await freshDb(engine);
      const log = new SecurityEventLog(db, { log: silent });
      for (let i = 0; i < 12; i++) {
        await log.record(
          input({
            tenantId: i % 3 === 2 ? null : `t-${i % 3}`,
            kind: i % 2 === 0 ? SECURITY_EVENT_KINDS.imageQuarantined : SECURITY_EVENT_KINDS.imageScanError,
            summary: `event ${i}`,
          }),
        );
      }
      const seqs = (events: SecurityEvent[]) => events.map((e) => e.seq);
      assert.deepEqual(seqs(await log.list({ tenantId: 't-0' })), [10, 7, 4, 1]);
      assert.deepEqual(seqs(await log.list({ tenantId: 't-1' })), [11, 8, 5, 2]);
      assert.deepEqual(seqs(await log.list({ tenantId: null })), [12, 9, 6, 3]);
      assert.equal((await log.list({})).length, 12);
      assert.deepEqual(
        seqs(await log.list({ tenantId: 't-0', kind: SECURITY_EVENT_KINDS.imageQuarantined })),
        [7, 1],
      );
      assert.deepEqual(seqs(await log.list({ afterSeq: 4, limit: 3 })), [5, 6, 7]);
      assert.deepEqual(seqs(await log.list({ tenantId: 't-1', afterSeq: 5 })), [8, 11]);
      assert.deepEqual(seqs(await log.list({ limit: 2 })), [12, 11]);
      assert.deepEqual(await log.list({ tenantId: 'no-such-tenant' }), []);
      // Limits are clamped to 1..1000.
      assert.equal((await log.list({ limit: 0 })).length, 1);
      assert.equal((await log.list({ limit: 1_000_000 })).length, 12);
    });

    test('the table stays bounded: the oldest events are deleted', async () => {
      const db = await freshDb(engine);
      const log = new SecurityEventLog(db, { log: silent, maxEvents: 10 });
      for (let i = 0; i < 35; i++) await log.record(input({ summary: `event ${i}` }));
      const rows = await db.selectFrom('securityEvents').select('seq').orderBy('seq').execute();
      // Pruned every min(100, max) = 10 records: at seq 30 everything up to 20 went.
      assert.deepEqual(
        rows.map((r) => r.seq),
        Array.from({ length: 15 }, (_, i) => 21 + i),
      );
      for (let i = 0; i < 5; i++) await log.record(input());
      const count = await db
        .selectFrom('securityEvents')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      assert.equal(Number(count.n), 10, 'at seq 40 exactly the newest 10 remain');
      // Seq keeps increasing after pruning (never reused).
      assert.equal((await log.record(input())).seq, 41);
      // A log opened with a lower bound prunes on its first record.
      const smaller = new SecurityEventLog(db, { log: silent, maxEvents: 3 });
      await smaller.record(input());
      assert.deepEqual(
        (await db.selectFrom('securityEvents').select('seq').orderBy('seq').execute()).map((r) => r.seq),
        [40, 41, 42],
      );
    });

    test('committed events are emitted; a throwing listener does not fail record', async () => {
      const db = await freshDb(engine);
      const log = new SecurityEventLog(db, { log: silent });
      const seen: SecurityEvent[] = [];
      const listener = (e: SecurityEvent) => seen.push(e);
      log.on('event', () => {
        throw new Error('listener bug');
      });
      log.on('event', listener);
      const a = await log.record(input());
      const b = await log.record(input({ tenantId: 't-2' }));
      assert.deepEqual(seen, [a, b]);
      log.off('event', listener);
      await log.record(input());
      assert.equal(seen.length, 2);
    });

    if (engine === 'postgres')
      test('two replicas (two pools on one database) recording at once: one gap-free seq', async () => {
        const target = await createTestPostgres();
        closers.push(() => target.drop());
        const a = await openDatabase(target.url, { poolSize: 4 });
        const b = await openDatabase(target.url, { poolSize: 4 });
        closers.unshift(
          () => a.destroy(),
          () => b.destroy(),
        );
        const logA = new SecurityEventLog(a, { log: silent });
        const logB = new SecurityEventLog(b, { log: silent });
        const events = await Promise.all(
          Array.from({ length: 100 }, (_, i) =>
            (i % 2 === 0 ? logA : logB).record(input({ summary: `e${i}` })),
          ),
        );
        assert.deepEqual(
          events.map((e) => e.seq).sort((x, y) => x - y),
          Array.from({ length: 100 }, (_, i) => i + 1),
        );
      });
  });

test('the bound comes from RAMPART_SECURITY_EVENTS_MAX', () => {
  assert.equal(maxEventsFromEnv({}), DEFAULT_MAX_EVENTS);
  assert.equal(maxEventsFromEnv({ RAMPART_SECURITY_EVENTS_MAX: '500' }), 500);
  assert.throws(() => maxEventsFromEnv({ RAMPART_SECURITY_EVENTS_MAX: '0' }), /positive integer/);
  assert.throws(() => maxEventsFromEnv({ RAMPART_SECURITY_EVENTS_MAX: 'lots' }), /positive integer/);
});

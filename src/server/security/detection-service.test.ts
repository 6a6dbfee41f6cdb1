/**
 * DetectionService across restarts and leader changes, over a real database (SQLite, and PostgreSQL
 * when RAMPART_TEST_POSTGRES_URL is set, as in scripts/test.sh and CI), security event log, alert
 * store and audit log (only the responder is a recorder):
 * - a brute force spread across a restart adds up: the next engine fills its windows from the stored
 *   events up to the saved mark;
 * - events recorded while no engine ran are processed for real when the next one starts;
 * - refilling raises no alert and never runs a response again;
 * - a first start (no mark: a new installation or an upgrade) does not alert on older events, but
 *   counts them in its windows;
 * - the mark only moves forward.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { POSTGRES_SKIP, openTestPostgres } from '../../../test/helpers/postgres.js';
import { createLogger } from '../../common/logger.js';
import { AuditLog } from '../audit/audit-log.js';
import { openDatabase, type Db } from '../store/database.js';
import { AlertStore } from './alerts.js';
import { DetectionProgress } from './detection-progress.js';
import { DetectionService, type DetectionResponder } from './detection-service.js';
import { SecurityEventLog } from './security-events.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-detection-service-'));
const log = createLogger('test', process.env.DBG ? 'info' : 'silent');
let db: Db;
let events: SecurityEventLog;
let alerts: AlertStore;
let audit: AuditLog;
let progress: DetectionProgress;
const rulesFile = join(root, 'rules.json');
/** The responses run, as `action target`. */
const responses: string[] = [];

writeFileSync(
  rulesFile,
  JSON.stringify({
    version: 1,
    rules: [
      {
        id: 'guessing',
        description: '5 failed guesses for one account within 5 minutes',
        severity: 'medium',
        match: { kind: 'test.guess' },
        threshold: { count: 5, windowSeconds: 300, groupBy: ['detail.username'] },
        response: { action: 'alert' },
        cooldownSeconds: 900,
      },
      {
        id: 'bad-user',
        description: 'a user did something bad',
        severity: 'high',
        match: { kind: 'test.bad' },
        response: { action: 'disable-user', target: 'detail.userId' },
        cooldownSeconds: 900,
      },
    ],
  }),
);

const recorder: DetectionResponder = {
  pauseVm: (id) => note('pause-vm', id),
  stopVm: (id) => note('stop-vm', id),
  isolateVm: (id) => note('isolate-vm', id),
  snapshotVm: (id) => note('snapshot-vm', id),
  disableUser: (id) => note('disable-user', id),
  revokeToken: (id) => note('revoke-token', id),
};

function note(action: string, target: string): Promise<string> {
  responses.push(`${action} ${target}`);
  return Promise.resolve('done');
}

/** Every engine made (stopped after the tests, whatever failed). */
const engines: DetectionService[] = [];

function engine(): DetectionService {
  const service = new DetectionService({
    events,
    alerts,
    audit,
    log,
    responder: recorder,
    rulesFile,
    exporters: [],
    progress,
  });
  engines.push(service);
  return service;
}

async function guesses(username: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++)
    await events.record({
      kind: 'test.guess',
      severity: 'low',
      tenantId: null,
      subjectType: 'user',
      subjectId: null,
      summary: `a failed guess for ${username}`,
      detail: { username },
    });
}

async function bad(userId: string): Promise<void> {
  await events.record({
    kind: 'test.bad',
    severity: 'high',
    tenantId: null,
    subjectType: 'user',
    subjectId: userId,
    summary: `${userId} did something bad`,
    detail: { userId },
  });
}

/** Open alerts by group key, with their counts. */
async function openAlerts(): Promise<Record<string, number>> {
  const list = await alerts.list({ status: 'open', limit: 100 });
  return Object.fromEntries(list.map((a) => [a.groupKey, a.count]));
}

/** Waits until the responses run in the background have been noted. */
async function settled(service: DetectionService): Promise<void> {
  await service.idle();
  await new Promise((resolve) => setTimeout(resolve, 50));
  await events.flush();
}

const ENGINES: {
  name: string;
  skip: string | false;
  open: () => Promise<{ db: Db; close(): Promise<void> }>;
}[] = [
  {
    name: 'SQLite',
    skip: false,
    open: async () => {
      const sqlite = await openDatabase(join(root, 'rampart.db'));
      return { db: sqlite, close: () => sqlite.destroy() };
    },
  },
  { name: 'PostgreSQL', skip: POSTGRES_SKIP, open: openTestPostgres },
];

after(() => rmSync(root, { recursive: true, force: true }));

for (const store of ENGINES)
  describe(`on ${store.name}`, { skip: store.skip }, () => {
    let close: () => Promise<void>;

    before(async () => {
      const opened = await store.open();
      db = opened.db;
      close = () => opened.close();
      responses.length = 0;
      engines.length = 0;
      events = new SecurityEventLog(db, { log });
      alerts = new AlertStore(db);
      audit = await AuditLog.open(db, mkdtempSync(join(root, 'audit-')));
      progress = new DetectionProgress(db);
    });

    after(async () => {
      await Promise.all(engines.map((e) => e.stop()));
      await audit.close();
      await close();
    });

    test('a first start does not alert on older events, but counts them in its windows', async () => {
      // Before any engine ran: an installation upgraded with history.
      await guesses('carol', 5);
      await guesses('dave', 4);
      await bad('mallory');
      const first = engine();
      first.start();
      await settled(first);
      assert.deepEqual(await openAlerts(), {});
      assert.deepEqual(responses, []);
      // dave's 4 older guesses are in the window: a fifth alerts.
      await guesses('dave', 1);
      await settled(first);
      assert.deepEqual(await openAlerts(), { 'detail.username=dave': 5 });
      await first.stop();
      assert.equal(await progress.load(), await events.lastSeq());
    });

    test('a brute force spread across a restart adds up; refilling repeats no alert or response', async () => {
      const a = engine();
      a.start();
      await settled(a);
      await guesses('alice', 3);
      await bad('eve');
      await settled(a);
      assert.deepEqual(await openAlerts(), {
        'detail.username=dave': 5,
        'subjectType=user,subjectId=eve': 1,
      });
      assert.deepEqual(responses, ['disable-user eve']);
      await a.stop();

      const b = engine(); // the next leader, or this server restarted
      b.start();
      await settled(b);
      assert.deepEqual(responses, ['disable-user eve'], 'not run again');
      assert.deepEqual(
        await openAlerts(),
        { 'detail.username=dave': 5, 'subjectType=user,subjectId=eve': 1 },
        'no alert raised or counted again',
      );
      await guesses('alice', 2); // 3 before the restart + 2 after
      await settled(b);
      assert.deepEqual(await openAlerts(), {
        'detail.username=dave': 5,
        'subjectType=user,subjectId=eve': 1,
        'detail.username=alice': 5,
      });
      await b.stop();
    });

    test('events recorded while no engine ran are processed when the next one starts', async () => {
      await guesses('bob', 5);
      await bad('trudy');
      const c = engine();
      c.start();
      await settled(c);
      const open = await openAlerts();
      assert.equal(open['detail.username=bob'], 5);
      assert.equal(open['subjectType=user,subjectId=trudy'], 1);
      assert.deepEqual(responses, ['disable-user eve', 'disable-user trudy']);
      // Live events after the catch-up are processed once each.
      await bad('walter');
      await settled(c);
      assert.deepEqual(responses, ['disable-user eve', 'disable-user trudy', 'disable-user walter']);
      await c.stop();
      assert.equal(await progress.load(), await events.lastSeq());
    });

    test('a stopped engine drops its queue; the mark only moves forward', async () => {
      const d = engine();
      d.start();
      await settled(d);
      const stopped = d.stop();
      await bad('oscar'); // recorded after the stop: for the next engine
      await stopped;
      await settled(d);
      assert.ok(!responses.includes('disable-user oscar'));
      const mark = await progress.load();
      assert.equal(mark, (await events.lastSeq()) - 1);

      await progress.save(mark + 1000);
      await progress.save(mark + 1); // a deposed leader saving late
      assert.equal(await progress.load(), mark + 1000);
      await progress.save(mark);
      await assert.rejects(progress.save(-1), /invalid event seq/);
      assert.equal(await progress.load(), mark + 1000);
    });
  });

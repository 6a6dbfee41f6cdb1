import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../../common/logger.js';
import type { Db } from '../store/database.js';
import { HeartbeatWatch, heartbeatLostAfterMs } from './heartbeat-watch.js';
import type { SecurityEventInput } from './security-events.js';

interface Row {
  id: string;
  name: string;
  tenantId: string;
  hostId: string | null;
  lastHeartbeatAt: string | null;
}

/** The one query the watch makes (running VMs with a heartbeat), answered from `rows`. */
function fakeDb(rows: () => Row[]): Db {
  const chain = {
    selectFrom: () => chain,
    select: () => chain,
    where: () => chain,
    execute: () => Promise.resolve(rows()),
  };
  return chain as unknown as Db;
}

test('a silent guest agent is reported once per silence; a new beat re-arms it', async () => {
  let now = Date.parse('2026-11-27T10:00:00.000Z');
  let rows: Row[] = [
    { id: 'vm-1', name: 'web', tenantId: 't1', hostId: 'h1', lastHeartbeatAt: '2026-11-27T09:59:50.000Z' },
  ];
  const events: SecurityEventInput[] = [];
  const watch = new HeartbeatWatch({
    db: fakeDb(() => rows),
    record: (event) => Promise.resolve(events.push(event)),
    log: createLogger('test', 'silent'),
    lostAfterMs: 15_000,
    now: () => now,
  });
  assert.equal(await watch.check(), 0, '10 s of silence is not lost');
  now += 10_000;
  assert.equal(await watch.check(), 1);
  assert.equal(events[0]!.kind, 'vm.heartbeat_lost');
  assert.equal(events[0]!.tenantId, 't1');
  assert.equal(events[0]!.detail?.['missed'], 20);
  now += 30_000;
  assert.equal(await watch.check(), 0, 'the same silence is reported once');
  rows = [{ ...rows[0]!, lastHeartbeatAt: new Date(now).toISOString() }];
  assert.equal(await watch.check(), 0, 'it beats again');
  now += 20_000;
  assert.equal(await watch.check(), 1, 'a new silence is a new event');
});

test('RAMPART_HEARTBEAT_LOST_SECONDS: 15..3600, default 60', () => {
  assert.equal(heartbeatLostAfterMs({}), 60_000);
  assert.equal(heartbeatLostAfterMs({ RAMPART_HEARTBEAT_LOST_SECONDS: '15' }), 15_000);
  assert.throws(() => heartbeatLostAfterMs({ RAMPART_HEARTBEAT_LOST_SECONDS: '5' }), /15 to 3600/);
  assert.throws(() => heartbeatLostAfterMs({ RAMPART_HEARTBEAT_LOST_SECONDS: 'x' }), /15 to 3600/);
});

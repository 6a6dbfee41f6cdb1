import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../../common/logger.js';
import { ConsoleWatch, MAX_PER_MINUTE, cleanLine } from './console-watch.js';
import type { SecurityEventInput } from './security-events.js';

const VM = { id: '11111111-2222-4333-8444-555555555555', name: 'web', tenantId: 'tenant-1' };

function watch(now = () => 0) {
  const events: SecurityEventInput[] = [];
  const w = new ConsoleWatch({
    vmOf: (id) => Promise.resolve(id === VM.id ? VM : undefined),
    record: (event) => {
      events.push(event);
      return Promise.resolve();
    },
    log: createLogger('test', 'silent'),
    now,
  });
  return { w, events };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

test('only kernel-trouble lines become guest.console events, split across chunks, cleaned', async () => {
  const { w, events } = watch();
  w.feed(VM.id, Buffer.from('login: root\r\n[   12.3] BUG: unable to handle page fa'));
  await settle();
  assert.equal(events.length, 0, 'nothing before the line is complete');
  w.feed(VM.id, Buffer.from('ult for address: 0000\r\n\u001b[0;32m  OK  \u001b[0m] Started x\r\n'));
  w.feed(VM.id, Buffer.from('[   13.0] a.out[99]: segfault at 0 ip 00 sp 00 error 4\n'));
  await settle();
  assert.deepEqual(
    events.map((e) => e.detail?.['line']),
    [
      '[   12.3] BUG: unable to handle page fault for address: 0000',
      '[   13.0] a.out[99]: segfault at 0 ip 00 sp 00 error 4',
    ],
  );
  assert.equal(events[0]!.kind, 'guest.console');
  assert.equal(events[0]!.tenantId, 'tenant-1');
  assert.equal(events[0]!.subjectId, VM.id);
  w.feed('99999999-2222-4333-8444-555555555555', Buffer.from('Kernel panic - not syncing: x\n'));
  await settle();
  assert.equal(events.length, 2, 'an unknown VM records nothing');
});

test('escape sequences and control characters are removed, lines are cut to 1 KiB', () => {
  assert.equal(cleanLine('\u001b[1;31mOops: 0002\u0007 [#1]\u0000'), 'Oops: 0002 [#1]');
  assert.equal(cleanLine(`Oops: ${'x'.repeat(5000)}`).length, 1024);
});

test('at most MAX_PER_MINUTE events per VM per minute', async () => {
  let now = 0;
  const { w, events } = watch(() => now);
  w.feed(VM.id, Buffer.from('Oops: 0000 [#1]\n'.repeat(MAX_PER_MINUTE + 10)));
  await settle();
  assert.equal(events.length, MAX_PER_MINUTE);
  now = 61_000;
  w.feed(VM.id, Buffer.from('Oops: 0000 [#2]\n'));
  await settle();
  assert.equal(events.length, MAX_PER_MINUTE + 1, 'a new minute, a new budget');
});

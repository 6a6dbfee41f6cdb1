/** The agent's self-fencing timer, on a fake clock: fences once the echoed lease minus 5 s ran out. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../../common/logger.js';
import { FENCE_MARGIN_MS, LeaseFence } from './lease-fence.js';

function setup() {
  const clock = { now: 1_000_000 };
  const fenced: number[] = [];
  const fence = new LeaseFence({
    fence: () => {
      fenced.push(clock.now);
      return Promise.resolve(['vm-1', 'vm-2']);
    },
    log: createLogger('test', 'silent'),
    now: () => clock.now,
  });
  return { clock, fenced, fence };
}

test('no lease, no fence: an agent that never heard a renewal keeps its VMs', async () => {
  const { clock, fenced, fence } = setup();
  clock.now += 3_600_000;
  assert.equal(await fence.check(), false);
  // A first renewal without an echo tells the lease but starts nothing.
  assert.equal(fence.renew(10), null);
  assert.equal(fence.deadline(), null);
  clock.now += 60_000;
  assert.equal(await fence.check(), false);
  assert.deepEqual(fenced, []);
});

test('fences at echo + lease - margin, once, and reports it with the next renewal', async () => {
  const { clock, fenced, fence } = setup();
  const echo = clock.now;
  clock.now += 300;
  fence.renew(10, echo);
  assert.equal(fence.deadline(), echo + 10_000 - FENCE_MARGIN_MS);
  clock.now = echo + 10_000 - FENCE_MARGIN_MS - 1;
  assert.equal(await fence.check(), false);
  clock.now += 1;
  assert.equal(await fence.check(), true);
  assert.deepEqual(fenced, [echo + 5000]);
  clock.now += 10_000;
  assert.equal(await fence.check(), false, 'once per outage');
  assert.equal(fenced.length, 1);
  // A dead link's renewals delivered late (stale echoes) and a new link's first one (no echo) do not
  // take the record; a renewal echoing a new instant re-arms the fence and carries it, once.
  assert.equal(fence.renew(10, echo + 1000), null);
  assert.equal(fence.renew(10), null);
  const record = fence.renew(10, clock.now - 100);
  assert.deepEqual(record?.vmIds, ['vm-1', 'vm-2']);
  assert.equal(fence.renew(10, clock.now - 50), null);
  clock.now += 4000;
  assert.equal(await fence.check(), false);
  clock.now += 2000;
  assert.equal(await fence.check(), true, 'armed again');
});

test('renewals keep it from fencing; a late renewal extends nothing beyond its echo', async () => {
  const { clock, fenced, fence } = setup();
  for (let i = 0; i < 20; i++) {
    fence.renew(10, clock.now);
    clock.now += 2000;
    assert.equal(await fence.check(), false);
  }
  assert.deepEqual(fenced, []);
  // A frozen host reads a renewal that echoes an instant long gone: it fences first.
  const old = clock.now;
  clock.now += 30_000;
  assert.equal(fence.renew(10, old), null);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(fenced.length, 1);
  // An echo from the future (clock stepped back) counts as now, not later.
  fence.renew(10, clock.now + 3_600_000);
  assert.equal(fence.deadline(), clock.now + 5000);
});

test('no VM starts between the fence and the next renewal', async () => {
  const { clock, fence } = setup();
  assert.equal(fence.startRefusal(), null, 'no lease yet: the server decides');
  fence.renew(10, clock.now);
  assert.equal(fence.startRefusal(), null);
  clock.now += 5000;
  assert.match(
    fence.startRefusal() ?? '',
    /fenced itself/,
    'the lease ran out, even before the timer fenced',
  );
  await fence.check();
  fence.renew(10); // a new link's first renewal: no echo yet
  assert.match(fence.startRefusal() ?? '', /fenced itself/);
  fence.renew(10, clock.now);
  assert.equal(fence.startRefusal(), null);
});

test('the lease survives an agent restart: one restarted during an outage still fences', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-fence-'));
  try {
    const stateFile = join(dir, 'lease.json');
    const clock = { now: 5_000_000 };
    const make = (fenced: number[]) =>
      new LeaseFence({
        fence: () => {
          fenced.push(clock.now);
          return Promise.resolve(['vm-1']);
        },
        log: createLogger('test', 'silent'),
        now: () => clock.now,
        stateFile,
      });
    make([]).renew(12, clock.now);
    clock.now += 60_000;
    const fenced: number[] = [];
    const restarted = make(fenced);
    assert.equal(restarted.deadline(), 5_000_000 + 12_000 - FENCE_MARGIN_MS);
    assert.equal(await restarted.check(), true);
    assert.deepEqual(fenced, [clock.now]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DetectionEngine, type Detection } from './rule-engine.js';
import { at, ev, T0 } from './test-helpers.js';

function engineOf(rules: Record<string, unknown>[], options = {}): DetectionEngine {
  return new DetectionEngine(JSON.stringify({ version: 1, rules }), options);
}

function rule(extra: Record<string, unknown>): Record<string, unknown> {
  return {
    id: 'r',
    description: 'test rule',
    severity: 'high',
    match: { kind: 'test.event' },
    response: { action: 'alert' },
    ...extra,
  };
}

/** Feeds [seconds, detail] pairs; returns the detections (flattened) and when they fired. */
function feed(
  engine: DetectionEngine,
  kind: string,
  series: [number, Record<string, unknown>][],
): { fired: number[]; detections: Detection[] } {
  const fired: number[] = [];
  const detections: Detection[] = [];
  for (const [seconds, detail] of series) {
    const out = engine.process(ev(kind, detail, { at: seconds }));
    if (out.length > 0) fired.push(seconds);
    detections.push(...out);
  }
  return { fired, detections };
}

test('a threshold slides: old events expire, and a detection starts the window over', () => {
  const engine = engineOf([rule({ threshold: { count: 3, windowSeconds: 10, groupBy: ['detail.g'] } })]);
  const g = { g: 'a' };
  const { fired, detections } = feed(engine, 'test.event', [
    [0, g],
    [5, g],
    [11, g], // 0 has expired: 5, 11 only
    [12, g], // 5, 11, 12 -> fires
    [13, g],
    [14, g], // window restarted after the detection: 13, 14
    [15, g], // 13, 14, 15 -> fires
  ]);
  assert.deepEqual(fired, [12, 15]);
  const d = detections[0]!;
  assert.equal(d.ruleId, 'r');
  assert.equal(d.severity, 'high');
  assert.equal(d.count, 3);
  assert.equal(d.groupKey, 'detail.g=a');
  assert.equal(d.firstAt, new Date(at(5)).toISOString());
  assert.equal(d.lastAt, new Date(at(12)).toISOString());
  assert.equal(d.events.length, 3);
  assert.ok(d.events[0]! < d.events[1]! && d.events[1]! < d.events[2]!);
  assert.equal(d.tenantId, 'tenant-1');
  assert.deepEqual(d.response, { action: 'alert', target: null, targetId: null, allow: [], url: null });
});

test('a threshold counts per group, and evidence is bounded', () => {
  const engine = engineOf([rule({ threshold: { count: 30, windowSeconds: 100, groupBy: ['detail.g'] } })], {
    maxEvidence: 5,
  });
  const series: [number, Record<string, unknown>][] = [];
  for (let i = 0; i < 29; i++) series.push([i, { g: 'a' }], [i, { g: 'b' }]);
  assert.deepEqual(feed(engine, 'test.event', series).fired, []);
  const last = ev('test.event', { g: 'b' }, { at: 50 });
  const [d] = engine.process(last);
  assert.equal(d!.count, 30);
  assert.equal(d!.groupKey, 'detail.g=b');
  assert.equal(d!.events.length, 5);
  assert.equal(d!.events[4], last.seq);
});

test('distinct counts distinct values per group in the window', () => {
  const engine = engineOf([
    rule({ threshold: { count: 3, windowSeconds: 10, groupBy: ['subjectId'], distinct: 'detail.port' } }),
  ]);
  const run = (series: [number, number | undefined][], subject = 'vm-1'): number[] => {
    const fired: number[] = [];
    for (const [s, port] of series) {
      const detail = port === undefined ? {} : { port };
      if (engine.process(ev('test.event', detail, { at: s, subjectId: subject })).length > 0) fired.push(s);
    }
    return fired;
  };
  // Repeats do not count; a missing value does not count.
  assert.deepEqual(
    run([
      [0, 22],
      [1, 22],
      [2, 22],
      [3, undefined],
      [4, 80],
    ]),
    [],
  );
  // 22 was refreshed at 2, so at 12 the values in the window are 22 (2), 80 (4), 443 (12).
  assert.deepEqual(run([[12, 443]]), [12]);
  // Expiry: 1 at 20, 2 at 25, 3 at 31 (1 expired), 4 at 33 -> 2,3,4.
  assert.deepEqual(
    run(
      [
        [20, 1],
        [25, 2],
        [31, 3],
        [33, 4],
      ],
      'vm-2',
    ),
    [33],
  );
  const d = engine.process(ev('test.event', { port: 5 }, { at: 34, subjectId: 'vm-2' }));
  assert.equal(d.length, 0, 'the group started over after the detection');
});

test('a sequence fires only for its steps in order, within the window, per group', () => {
  const engine = engineOf([
    {
      id: 'seq',
      description: 'a then b then c',
      severity: 'medium',
      sequence: {
        steps: [{ kind: 'step.a' }, { kind: 'step.b', where: { 'detail.ok': true } }, { kind: 'step.c' }],
        windowSeconds: 60,
        groupBy: ['detail.user'],
      },
      response: { action: 'disable-user', target: 'detail.user' },
    },
  ]);
  const step = (kind: string, s: number, user = 'u1', ok = true): readonly Detection[] =>
    engine.process(ev(`step.${kind}`, { user, ok }, { at: s }));

  // Out of order: c, b, a -> nothing.
  assert.equal(step('c', 0).length + step('b', 1).length + step('a', 2).length, 0);
  // b then c after that a: fires.
  assert.equal(step('b', 3).length, 0);
  const [d] = step('c', 4);
  assert.equal(d?.ruleId, 'seq');
  assert.equal(d.count, 3);
  assert.equal(d.firstAt, new Date(at(2)).toISOString());
  assert.deepEqual(d.response.targetId, 'u1');
  // Started over: c alone does nothing.
  assert.equal(step('c', 5).length, 0);
  // Another group does not complete this one.
  assert.equal(step('a', 10, 'u2').length + step('b', 11).length + step('c', 12).length, 0);
  assert.equal(step('b', 13, 'u2').length, 0);
  assert.equal(step('c', 14, 'u2').length, 1);
  // A step whose condition fails does not advance.
  assert.equal(step('a', 20).length + step('b', 21, 'u1', false).length + step('c', 22).length, 0);
  // Outside the window: a at 30, b at 40, c at 91 (61 s after a).
  assert.equal(step('a', 30).length + step('b', 40).length + step('c', 91).length, 0);
  // A later a restarts the chain: a at 100, a at 150, b at 155, c at 200 (within 60 s of the later a).
  assert.equal(step('a', 100).length + step('a', 150).length + step('b', 155).length, 0);
  const [late] = step('c', 200);
  assert.equal(late?.firstAt, new Date(at(150)).toISOString());
});

test('a sequence with repeated steps needs distinct events for each step', () => {
  const engine = engineOf([
    {
      id: 'twice',
      description: 'x x y',
      severity: 'low',
      sequence: { steps: [{ kind: 'x' }, { kind: 'x' }, { kind: 'y' }], windowSeconds: 60, groupBy: [] },
      response: { action: 'alert' },
    },
  ]);
  assert.equal(engine.process(ev('x', {}, { at: 0 })).length, 0);
  assert.equal(engine.process(ev('y', {}, { at: 1 })).length, 0, 'one x is not two');
  assert.equal(engine.process(ev('x', {}, { at: 2 })).length, 0);
  assert.equal(engine.process(ev('y', {}, { at: 3 })).length, 1);
});

test('cooldown: one detection per group per cooldown', () => {
  const engine = engineOf([
    rule({ id: 'm', cooldownSeconds: 60, groupBy: ['subjectId'] }),
    rule({
      id: 't',
      match: { kind: 'test.other' },
      threshold: { count: 2, windowSeconds: 10, groupBy: [] },
      cooldownSeconds: 30,
    }),
  ]);
  const fire = (s: number, subjectId = 'a'): number =>
    engine.process(ev('test.event', {}, { at: s, subjectId })).length;
  assert.equal(fire(0), 1);
  assert.equal(fire(30), 0);
  assert.equal(fire(31, 'b'), 1, 'another group is not cooling down');
  assert.equal(fire(59.9), 0);
  assert.equal(fire(60), 1);
  assert.equal(fire(61), 0);

  const { fired } = feed(engine, 'test.other', [
    [0, {}],
    [1, {}], // fires
    [2, {}],
    [3, {}], // suppressed (cooldown until 31)
    [32, {}],
    [33, {}], // fires
  ]);
  assert.deepEqual(fired, [1, 33]);
});

test('match rules without cooldown fire on every matching event', () => {
  const engine = engineOf([rule({})]);
  assert.equal(
    feed(engine, 'test.event', [
      [0, {}],
      [0, {}],
      [0, {}],
    ]).fired.length,
    3,
  );
  assert.equal(engine.groupCounts().r, 0, 'no state kept without a cooldown');
});

test('groups per rule are bounded, least recently used evicted', () => {
  const engine = engineOf([rule({ threshold: { count: 2, windowSeconds: 1000, groupBy: ['detail.g'] } })], {
    maxGroupsPerRule: 100,
  });
  engine.process(ev('test.event', { g: 'keep' }, { at: 0 }));
  for (let i = 0; i < 1000; i++) {
    engine.process(ev('test.event', { g: `g${i}` }, { at: 1 }));
    if (i % 50 === 0) engine.process(ev('test.event', { g: 'keep-touch' }, { at: 1 }));
  }
  assert.equal(engine.groupCounts().r, 100);
  // 'keep' was evicted (its first event forgotten), so one more event does not fire.
  assert.equal(engine.process(ev('test.event', { g: 'keep' }, { at: 2 })).length, 0);
  // g999 is recent: its second event fires.
  assert.equal(engine.process(ev('test.event', { g: 'g999' }, { at: 2 })).length, 1);
  assert.ok(engine.groupCounts().r! <= 100);
});

test('field conditions: every operator, nested fields, kinds and severities', () => {
  const cases: [Record<string, unknown>, Record<string, unknown>[], Record<string, unknown>[]][] = [
    // [where, details that match, details that do not]
    [{ 'detail.s': 'x' }, [{ s: 'x' }], [{ s: 'X' }, {}, { s: ['x'] }]],
    [{ 'detail.n': 5 }, [{ n: 5 }], [{ n: '5' }, { n: 6 }]],
    [{ 'detail.b': false }, [{ b: false }], [{ b: 0 }, {}]],
    [{ 'detail.z': null }, [{ z: null }], [{}, { z: 0 }]],
    [{ 'detail.s': { in: ['a', 2] } }, [{ s: 'a' }, { s: 2 }], [{ s: 'b' }, { s: '2' }, {}]],
    [{ 'detail.n': { gte: 10 } }, [{ n: 10 }, { n: 11 }], [{ n: 9.9 }, { n: '11' }, {}]],
    [{ 'detail.n': { gt: 10 } }, [{ n: 10.1 }], [{ n: 10 }]],
    [{ 'detail.n': { lte: 10 } }, [{ n: 10 }, { n: -1 }], [{ n: 11 }, { n: null }]],
    [{ 'detail.n': { lt: 10 } }, [{ n: 9 }], [{ n: 10 }]],
    [{ 'detail.n': { gte: 1, lt: 3 } }, [{ n: 1 }, { n: 2 }], [{ n: 3 }, { n: 0 }]],
    [
      { 'detail.s': { regex: '^seg(fault)? at' } },
      [{ s: 'segfault at 0' }, { s: 'seg at' }],
      [{ s: 'a segfault at' }, { s: 1 }],
    ],
    [{ 'detail.s': { regex: 'oops', flags: 'i' } }, [{ s: 'Kernel OOPS' }], [{ s: 'oop' }]],
    [{ 'detail.s': { exists: true } }, [{ s: '' }, { s: 0 }], [{}, { s: null }]],
    [{ 'detail.s': { exists: false } }, [{}, { s: null }], [{ s: 'x' }]],
    [{ 'detail.s': { ne: 'x' } }, [{ s: 'y' }, {}], [{ s: 'x' }]],
    [{ 'detail.a.b': 1 }, [{ a: { b: 1 } }], [{ a: 1 }, { a: null }, {}]],
    [{ 'detail.a.b.c': 'deep' }, [{ a: { b: { c: 'deep' } } }], [{ a: { b: 'deep' } }]],
    [
      { 'detail.x': 1, 'detail.y': 2, 'detail.z': 3, 'detail.w': 4 },
      [{ x: 1, y: 2, z: 3, w: 4 }],
      [{ x: 1, y: 2, z: 3 }],
    ],
  ];
  for (const [where, yes, no] of cases) {
    const engine = engineOf([rule({ match: { kind: 'test.event', where } })]);
    for (const detail of yes)
      assert.equal(
        engine.process(ev('test.event', detail)).length,
        1,
        `${JSON.stringify(where)} ~ ${JSON.stringify(detail)}`,
      );
    for (const detail of no)
      assert.equal(
        engine.process(ev('test.event', detail)).length,
        0,
        `${JSON.stringify(where)} !~ ${JSON.stringify(detail)}`,
      );
  }

  const top = engineOf([
    rule({
      match: {
        kind: 'test.event',
        where: { tenantId: null, subjectType: 'host', subjectId: { regex: '^h-' } },
      },
    }),
  ]);
  assert.equal(
    top.process(ev('test.event', {}, { tenantId: null, subjectType: 'host', subjectId: 'h-1' })).length,
    1,
  );
  assert.equal(
    top.process(ev('test.event', {}, { tenantId: 't', subjectType: 'host', subjectId: 'h-1' })).length,
    0,
  );
  assert.equal(
    top.process(ev('test.event', {}, { tenantId: null, subjectType: 'vm', subjectId: 'h-1' })).length,
    0,
  );

  const kinds = engineOf([
    rule({ id: 'prefix', match: { kind: 'image.*', severityAtLeast: 'high' } }),
    rule({ id: 'list', match: { kind: ['a.one', 'b.*'] } }),
    rule({ id: 'all', match: { kind: '*', where: { 'detail.all': true } } }),
  ]);
  const ids = (kind: string, severity = 'info', detail = {}): string[] =>
    kinds.process(ev(kind, detail, { severity })).map((d) => d.ruleId);
  assert.deepEqual(ids('image.quarantined', 'critical'), ['prefix']);
  assert.deepEqual(ids('image.quarantined', 'high'), ['prefix']);
  assert.deepEqual(ids('image.quarantined', 'medium'), []);
  assert.deepEqual(ids('imagex', 'critical'), []);
  assert.deepEqual(ids('a.one'), ['list']);
  assert.deepEqual(ids('a.two'), []);
  assert.deepEqual(ids('b.anything'), ['list']);
  assert.deepEqual(ids('b.anything', 'critical', { all: true }), ['list', 'all']);
});

test('event time: timeMs, occurredAt, else the injected clock', () => {
  let clock = T0;
  const engine = engineOf([rule({ threshold: { count: 2, windowSeconds: 10, groupBy: [] } })], {
    now: () => clock,
  });
  const bare = (): { seq: number; kind: string } => ({ seq: 1, kind: 'test.event' });
  assert.equal(engine.process(bare()).length, 0);
  clock += 11_000;
  assert.equal(engine.process(bare()).length, 0, 'the first one expired on the injected clock');
  clock += 1000;
  assert.equal(engine.process(bare()).length, 1);
  // timeMs wins over occurredAt.
  assert.equal(engine.process(ev('test.event', {}, { at: 0 }), at(100)).length, 0);
  assert.equal(engine.process(ev('test.event', {}, { at: 0 }), at(105)).length, 1);
  assert.equal(engine.process({ ...ev('test.event'), occurredAt: 'garbage' }).length, 0);
});

test('occurredAt: milliseconds within a second and other ISO forms are read exactly', () => {
  const engine = engineOf([rule({ threshold: { count: 2, windowSeconds: 0.5, groupBy: [] } })]);
  const stamp = (occurredAt: string): readonly Detection[] =>
    engine.process({ ...ev('test.event'), occurredAt });
  assert.equal(stamp('2026-03-01T10:00:00.100Z').length, 0);
  assert.equal(stamp('2026-03-01T10:00:00.700Z').length, 0, '600 ms apart');
  assert.equal(stamp('2026-03-01T10:00:01.150Z').length, 1, '450 ms apart');
  assert.equal(stamp('2026-03-01T10:00:01.900Z').length, 0);
  assert.equal(stamp('2026-03-01T11:00:02.300+01:00').length, 1, '400 ms apart, with an offset');
  assert.equal(stamp('2026-03-01T10:00:02.999Z').length, 0, '699 ms apart');
  assert.equal(stamp('2026-03-01T10:00:03.000Z').length, 1, '1 ms apart, across a second');
});

test('replace keeps the state of unchanged rules and resets changed ones', () => {
  const a = rule({ id: 'a', threshold: { count: 2, windowSeconds: 100, groupBy: [] } });
  const b = rule({ id: 'b', threshold: { count: 2, windowSeconds: 100, groupBy: [] } });
  const engine = engineOf([a, b]);
  assert.equal(engine.process(ev('test.event', {}, { at: 0 })).length, 0);
  const result = engine.replace(JSON.stringify({ version: 1, rules: [a, { ...b, severity: 'low' }] }));
  assert.equal(result.ok, true);
  assert.deepEqual(
    engine.process(ev('test.event', {}, { at: 1 })).map((d) => d.ruleId),
    ['a'],
  );
  engine.replace(JSON.stringify({ version: 1, rules: [{ ...a, enabled: false }] }));
  assert.deepEqual(engine.ruleIds, []);
  assert.equal(engine.process(ev('test.event')).length, 0);
});

test('reset forgets windows and cooldowns; memoryMs is the longest window or cooldown', () => {
  const engine = engineOf([
    rule({ id: 't', threshold: { count: 2, windowSeconds: 100, groupBy: [] }, cooldownSeconds: 30 }),
    rule({ id: 'm', match: { kind: 'other.event' }, cooldownSeconds: 600 }),
    {
      id: 's',
      description: 'a then b',
      severity: 'low',
      sequence: { steps: [{ kind: 'a.x' }, { kind: 'b.y' }], windowSeconds: 300, groupBy: [] },
      response: { action: 'alert' },
    },
  ]);
  assert.equal(engine.memoryMs, 600_000);
  assert.equal(engine.process(ev('test.event', {}, { at: 0 })).length, 0);
  engine.reset();
  assert.equal(engine.process(ev('test.event', {}, { at: 1 })).length, 0, 'the first event was forgotten');
  assert.equal(engine.process(ev('test.event', {}, { at: 2 })).length, 1);
  // Within its cooldown the group stays quiet; after a reset it can fire again.
  assert.equal(engine.process(ev('test.event', {}, { at: 3 })).length, 0);
  assert.equal(engine.process(ev('test.event', {}, { at: 4 })).length, 0);
  engine.reset();
  assert.equal(engine.process(ev('test.event', {}, { at: 5 })).length, 0);
  assert.equal(engine.process(ev('test.event', {}, { at: 6 })).length, 1);
  assert.deepEqual(engine.ruleIds, ['t', 'm', 's']);
  assert.equal(engineOf([rule({ id: 'only-match' })]).memoryMs, 0);
});

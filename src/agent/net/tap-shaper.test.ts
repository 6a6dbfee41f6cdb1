/**
 * Unit tests of the tap shaper's pure parts: name validation and the ifb name, the tbf parameter
 * formula, the exact tc arguments and the parsing of tc's JSON (samples captured from iproute2 6.1).
 * The real devices are exercised by test/tap-shaper.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  applyShaping,
  assertInterfaceName,
  assertNetnsName,
  classifyIngressFilters,
  ifbNameFor,
  parseQdiscs,
  readShaping,
  redirectFilterArgs,
  removeShaping,
  tbfArgs,
  tbfParameters,
} from './tap-shaper.js';

const TAP_QDISCS = [
  {
    kind: 'tbf',
    handle: '8001:',
    root: true,
    refcnt: 3,
    options: { rate: 1000000, burst: 15139, lat: 50000 },
    bytes: 90,
    packets: 1,
    drops: 2,
    overlimits: 3,
    requeues: 4,
    backlog: 1514,
    qlen: 1,
  },
  {
    kind: 'ingress',
    handle: 'ffff:',
    parent: 'ffff:fff1',
    options: {},
    bytes: 0,
    packets: 0,
    drops: 0,
    overlimits: 0,
    requeues: 0,
    backlog: 0,
    qlen: 0,
  },
];

function filterSample(pref: number, toDev: string): unknown[] {
  return [
    { protocol: 'all', pref, kind: 'u32', chain: 0 },
    { protocol: 'all', pref, kind: 'u32', chain: 0, options: { fh: '800:', ht_divisor: 1 } },
    {
      protocol: 'all',
      pref,
      kind: 'u32',
      chain: 0,
      options: {
        fh: '800::800',
        order: 2048,
        key_ht: '800',
        bkt: '0',
        not_in_hw: true,
        match: { value: '0', mask: '0', offmask: '', off: 0 },
        actions: [
          {
            order: 1,
            kind: 'mirred',
            mirred_action: 'redirect',
            direction: 'egress',
            to_dev: toDev,
            control_action: { type: 'stolen' },
            index: 1,
            ref: 1,
            bind: 1,
          },
        ],
      },
    },
  ];
}

void describe('tap shaper names', () => {
  void test('interface names follow the kernel limits', () => {
    for (const good of ['tap0', 'a', 'x'.repeat(15), 'vm_1.net-0'])
      assert.equal(assertInterfaceName(good), good);
    for (const bad of ['', 'x'.repeat(16), 'a b', 'a/b', 'a:b', '-json', '.', '..', 'tåp', 'a\nb']) {
      assert.throws(() => assertInterfaceName(bad), /is not valid/, JSON.stringify(bad));
    }
  });

  void test('ifb name is derived deterministically and fits IFNAMSIZ', () => {
    assert.equal(ifbNameFor('tap0'), 'ifb-tap0');
    assert.equal(ifbNameFor('x'.repeat(11)), `ifb-${'x'.repeat(11)}`);
    const long = ifbNameFor('rt-0123456789ab');
    assert.match(long, /^ifb_[0-9a-f]{11}$/);
    assert.equal(long, ifbNameFor('rt-0123456789ab'));
    assert.notEqual(long, ifbNameFor('rt-0123456789ac'));
    assert.equal(assertInterfaceName(long), long);
  });

  void test('tap names in the ifb name space are refused', () => {
    assert.throws(() => ifbNameFor('ifb-x'), /reserved for ifb/);
    assert.throws(() => ifbNameFor('ifb_x'), /reserved for ifb/);
    assert.equal(ifbNameFor('ifbx'), 'ifb-ifbx');
  });

  void test('network namespace names', () => {
    assert.equal(assertNetnsName('rampart-shp-1a2b'), 'rampart-shp-1a2b');
    for (const bad of ['', '-n', '.', '..', 'a/b', 'a b', 'x'.repeat(65)]) {
      assert.throws(() => assertNetnsName(bad), /not valid/, bad);
    }
  });
});

void describe('tbf parameters', () => {
  void test('burst is 10 ms of traffic, at least 10 frames', () => {
    assert.deepEqual(tbfParameters(8), { rateKbit: 8000, burstBytes: 15_140, latencyUs: 50_000 });
    assert.deepEqual(tbfParameters(100), { rateKbit: 100_000, burstBytes: 125_000, latencyUs: 50_000 });
    assert.equal(tbfParameters(1000).burstBytes, 1_250_000);
  });

  void test('queue is 50 ms of traffic within 32 KiB..4 MiB', () => {
    // 4 Mbit/s: 50 ms would be 25,000 bytes, raised to 32 KiB = 65.536 ms.
    assert.equal(tbfParameters(4).latencyUs, 65_536);
    // 1 Gbit/s: 50 ms would be 6.25 MB, capped at 4 MiB = 33.55 ms.
    assert.equal(tbfParameters(1000).latencyUs, 33_555);
    // 0.1 Mbit/s (12,500 B/s): 32 KiB takes 2.62 s.
    assert.deepEqual(tbfParameters(0.1), { rateKbit: 100, burstBytes: 15_140, latencyUs: 2_621_440 });
  });

  void test('fractional rates round to kbit', () => {
    assert.equal(tbfParameters(2.5).rateKbit, 2500);
    assert.equal(tbfParameters(0.1234).rateKbit, 123);
  });

  void test('bad rates are refused', () => {
    for (const bad of [
      0,
      -1,
      0.09,
      100_001,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      '8' as unknown as number,
    ]) {
      assert.throws(() => tbfParameters(bad), /rate must be/, String(bad));
    }
  });

  void test('tc arguments', () => {
    assert.deepEqual(tbfArgs(tbfParameters(8)), [
      'tbf',
      'rate',
      '8000kbit',
      'burst',
      '15140',
      'latency',
      '50000us',
    ]);
    assert.deepEqual(redirectFilterArgs('tap0', 'ifb-tap0'), [
      'filter',
      'add',
      'dev',
      'tap0',
      'parent',
      'ffff:',
      'protocol',
      'all',
      'pref',
      '10',
      'u32',
      'match',
      'u32',
      '0',
      '0',
      'action',
      'mirred',
      'egress',
      'redirect',
      'dev',
      'ifb-tap0',
    ]);
  });
});

void describe('parsing tc JSON', () => {
  void test('qdiscs: root tbf with counters, and the ingress qdisc', () => {
    assert.deepEqual(parseQdiscs(TAP_QDISCS), {
      rootTbf: {
        rateMbps: 8,
        burstBytes: 15139,
        latencyUs: 50000,
        counters: {
          bytes: 90,
          packets: 1,
          drops: 2,
          overlimits: 3,
          requeues: 4,
          backlogBytes: 1514,
          queuedPackets: 1,
        },
      },
      ingress: true,
    });
    assert.deepEqual(parseQdiscs([{ kind: 'pfifo_fast', handle: '0:', root: true, options: {} }]), {
      rootTbf: null,
      ingress: false,
    });
    assert.deepEqual(parseQdiscs([]), { rootTbf: null, ingress: false });
    // A tbf that is not the root (e.g. under some other root qdisc) is not ours.
    assert.equal(parseQdiscs([{ kind: 'tbf', parent: '1:1', options: { rate: 1 } }]).rootTbf, null);
    assert.throws(() => parseQdiscs({}), /expected a JSON array/);
  });

  void test('ingress filters: ours, other, none', () => {
    assert.equal(classifyIngressFilters(filterSample(10, 'ifb-tap0'), 'ifb-tap0'), 'ours');
    assert.equal(classifyIngressFilters(filterSample(10, 'ifb-other'), 'ifb-tap0'), 'other');
    assert.equal(classifyIngressFilters(filterSample(49152, 'ifb-tap0'), 'ifb-tap0'), 'other');
    assert.equal(
      classifyIngressFilters([...filterSample(10, 'ifb-tap0'), ...filterSample(20, 'ifb-tap0')], 'ifb-tap0'),
      'other',
    );
    // After the ifb was deleted, the mirred action stays but points nowhere.
    assert.equal(classifyIngressFilters(filterSample(10, '*'), 'ifb-tap0'), 'other');
    assert.equal(classifyIngressFilters([], 'ifb-tap0'), 'none');
  });
});

void describe('input validation happens before any command runs', () => {
  void test('bad names and limits are refused', async () => {
    await assert.rejects(applyShaping('bad name', { toGuestMbps: 8 }), /tap name/);
    await assert.rejects(applyShaping('tap0', { toGuestMbps: 0 }), /rate must be/);
    await assert.rejects(applyShaping('tap0', { fromGuestMbps: 1e9 }), /rate must be/);
    await assert.rejects(applyShaping('tap0', { toGuestMbps: 8 }, { netns: '../x' }), /namespace/);
    await assert.rejects(removeShaping('-json'), /tap name/);
    await assert.rejects(readShaping('x'.repeat(16)), /tap name/);
  });
});

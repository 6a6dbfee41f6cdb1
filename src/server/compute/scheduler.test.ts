/**
 * Placement: an online host with room is picked, the one with the most free memory first; no online
 * host is HostUnavailableError (503), no host with room is NoCapacityError (503).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HostUnavailableError, NoCapacityError, RampartError } from '../../api/errors.js';
import type { HostsTable } from '../store/schema.js';
import type { HostAllocation } from './host-registry.js';
import { chooseDedicatedCpus, hostRoom, pickHost, type Overcommit } from './scheduler.js';

const NO_OVERCOMMIT: Overcommit = { cpu: 1, memory: 1 };
const pick = (...args: Parameters<typeof pickHost>) =>
  pickHost(args[0], args[1], args[2], args[3] ?? NO_OVERCOMMIT);

function host(id: string, overrides: Partial<HostsTable> = {}): HostsTable {
  return {
    id,
    hostname: `host-${id}`,
    state: 'online',
    accelerator: 'tcg',
    acceleratorReason: 'test',
    qemuVersion: '8.2.2',
    agentVersion: '0.1.0',
    cpus: 8,
    memoryMib: 16_384,
    vcpusAllocatable: 16,
    memoryMibAllocatable: 8192,
    maintenance: 0,
    lastSeenAt: '2024-01-01T00:00:00.000Z',
    createdAt: '2024-01-01T00:00:00.000Z',
    ...overrides,
  };
}

function used(vcpus: number, memoryMiB: number, vms = 1): HostAllocation {
  return { vcpus, memoryMiB, vms };
}

const SMALL = { vcpus: 1, memoryMiB: 128 };

void describe('pickHost', () => {
  void test('picks the only online host with room', () => {
    const a = host('a');
    assert.equal(pick([a], new Map(), SMALL), a);
  });

  void test('skips offline hosts even when they have more room', () => {
    const offline = host('a', { state: 'offline', memoryMibAllocatable: 1_000_000 });
    const online = host('b', { memoryMibAllocatable: 1024 });
    assert.equal(pick([offline, online], new Map(), SMALL).id, 'b');
  });

  void test('prefers the host with more free memory (allocatable minus allocated)', () => {
    const a = host('a', { memoryMibAllocatable: 8192 });
    const b = host('b', { memoryMibAllocatable: 4096 });
    assert.equal(pick([a, b], new Map(), SMALL).id, 'a');
    assert.equal(pick([b, a], new Map(), SMALL).id, 'a', 'independent of input order');
    // Once a holds 6 GiB, b (4 GiB free) has more free memory than a (2 GiB free).
    const allocations = new Map([['a', used(1, 6144)]]);
    assert.equal(pick([a, b], allocations, SMALL).id, 'b');
  });

  void test('equal free memory is broken by host id, deterministically', () => {
    const a = host('a');
    const b = host('b');
    assert.equal(pick([b, a], new Map(), SMALL).id, 'a');
    assert.equal(pick([a, b], new Map(), SMALL).id, 'a');
  });

  void test('a host without enough free vCPUs is skipped even if it has more memory', () => {
    const a = host('a', { cpus: 4, memoryMibAllocatable: 65_536 });
    const b = host('b', { cpus: 4, memoryMibAllocatable: 1024 });
    const allocations = new Map([['a', used(3, 0)]]);
    assert.equal(pick([a, b], allocations, { vcpus: 2, memoryMiB: 128 }).id, 'b');
  });

  void test('a host without enough free memory is skipped', () => {
    const a = host('a', { memoryMibAllocatable: 8192 });
    const b = host('b', { memoryMibAllocatable: 1024 });
    const allocations = new Map([['a', used(1, 8000)]]);
    assert.equal(pick([a, b], allocations, { vcpus: 1, memoryMiB: 512 }).id, 'b');
  });

  void test('a request that fits exactly is placed', () => {
    const a = host('a', { cpus: 2, memoryMibAllocatable: 512 });
    const allocations = new Map([['a', used(1, 256)]]);
    assert.equal(pick([a], allocations, { vcpus: 1, memoryMiB: 256 }).id, 'a');
  });

  void test('no online host: HostUnavailableError', () => {
    for (const hosts of [[], [host('a', { state: 'offline' }), host('b', { state: 'offline' })]]) {
      assert.throws(
        () => pick(hosts, new Map(), SMALL),
        (error: unknown) => {
          assert.ok(error instanceof HostUnavailableError, String(error));
          assert.ok(error instanceof RampartError);
          assert.equal(error.code, 'RAMPART_HOST_UNAVAILABLE');
          assert.equal(error.status, 503);
          return true;
        },
      );
    }
  });

  void test('online hosts but none with room: NoCapacityError', () => {
    const a = host('a', { cpus: 2, memoryMibAllocatable: 1024 });
    const b = host('b', { cpus: 8, memoryMibAllocatable: 512 });
    const offlineBig = host('c', { state: 'offline', cpus: 64, memoryMibAllocatable: 1_000_000 });
    const cases: [Map<string, HostAllocation>, { vcpus: number; memoryMiB: number }][] = [
      [new Map<string, HostAllocation>(), { vcpus: 4, memoryMiB: 1024 }], // a lacks vCPUs, b lacks memory
      [new Map<string, HostAllocation>(), { vcpus: 1, memoryMiB: 2048 }], // nobody has the memory
      [
        new Map([
          ['a', used(2, 0)],
          ['b', used(8, 0)],
        ]),
        SMALL,
      ], // all vCPUs taken
      [
        new Map([
          ['a', used(0, 1000)],
          ['b', used(0, 500)],
        ]),
        SMALL,
      ], // all memory taken
    ];
    for (const [allocations, request] of cases) {
      assert.throws(
        () => pick([a, b, offlineBig], allocations, request),
        (error: unknown) => {
          assert.ok(error instanceof NoCapacityError, String(error));
          assert.equal(error.code, 'RAMPART_NO_CAPACITY');
          assert.equal(error.status, 503);
          assert.match(error.message, new RegExp(`${request.vcpus} vCPUs`));
          return true;
        },
        JSON.stringify(request),
      );
    }
  });

  void test('allocations of other hosts do not count against a host', () => {
    const a = host('a', { cpus: 1, memoryMibAllocatable: 128 });
    const allocations = new Map([['other', used(100, 100_000)]]);
    assert.equal(pick([a], allocations, SMALL).id, 'a');
  });

  void test('overcommit ratios scale capacity: 2 CPUs at 4.0 hold 8 vCPUs, memory at 1.5 holds half again', () => {
    const a = host('a', { cpus: 2, memoryMibAllocatable: 1000 });
    const ratios = { cpu: 4, memory: 1.5 };
    assert.equal(pickHost([a], new Map([['a', used(7, 1000)]]), { vcpus: 1, memoryMiB: 500 }, ratios), a);
    assert.throws(() => pickHost([a], new Map([['a', used(8, 0)]]), SMALL, ratios), NoCapacityError);
    assert.throws(
      () => pickHost([a], new Map([['a', used(0, 1400)]]), { vcpus: 1, memoryMiB: 101 }, ratios),
      NoCapacityError,
    );
  });
});

test('hosts in maintenance get no new VMs, and the failure says so', () => {
  const hosts = [host('a', { maintenance: 1 }), host('b')];
  assert.equal(pick(hosts, new Map(), { vcpus: 1, memoryMiB: 128 }).id, 'b');
  assert.throws(
    () => pick([host('a', { maintenance: 1 })], new Map(), { vcpus: 1, memoryMiB: 128 }),
    /every online host is in maintenance \(host-a\)/,
  );
});

test('dedicated hosts: a dedicated tenant only where no other tenant runs, nobody else where it does', () => {
  const hosts = [host('a'), host('b')];
  const occupancy = new Map([
    ['a', { tenants: new Set(['t1']), dedicated: new Set<string>() }],
    ['b', { tenants: new Set(['t2']), dedicated: new Set(['t2']) }],
  ]);
  const request = { vcpus: 1, memoryMiB: 128 };
  // t3 (not dedicated) cannot go to b (dedicated to t2): a.
  assert.equal(pickHost(hosts, new Map(), { ...request, tenantId: 't3' }, NO_OVERCOMMIT, occupancy).id, 'a');
  // t2 (dedicated) cannot go to a (t1 runs there): b.
  assert.equal(
    pickHost(hosts, new Map(), { ...request, tenantId: 't2', dedicated: true }, NO_OVERCOMMIT, occupancy).id,
    'b',
  );
  // t4 (dedicated) finds no host free of other tenants.
  assert.throws(
    () =>
      pickHost(hosts, new Map(), { ...request, tenantId: 't4', dedicated: true }, NO_OVERCOMMIT, occupancy),
    /requires dedicated hosts and every open host runs other tenants/,
  );
  // Only b open: t3 is refused because b is dedicated to another tenant.
  assert.throws(
    () => pickHost([host('b')], new Map(), { ...request, tenantId: 't3' }, NO_OVERCOMMIT, occupancy),
    /every open host is dedicated to another tenant/,
  );
});

test('placement groups: affinity follows its members, anti-affinity avoids them, failures name the group', () => {
  const hosts = [host('a'), host('b')];
  const request = { vcpus: 1, memoryMiB: 128 };
  const group = (policy: 'affinity' | 'anti-affinity', members: string[]) => ({
    group: { name: 'g1', policy, memberHosts: new Set(members) },
  });
  // b has more free memory, so it is the default choice; affinity with a member on a overrides that.
  const allocations = new Map([['a', { vcpus: 1, memoryMiB: 1024, vms: 1 }]]);
  assert.equal(pick(hosts, allocations, request).id, 'b');
  assert.equal(pick(hosts, allocations, { ...request, ...group('affinity', ['a']) }).id, 'a');
  assert.equal(pick(hosts, allocations, { ...request, ...group('anti-affinity', ['b']) }).id, 'a');
  assert.equal(pick(hosts, allocations, { ...request, ...group('affinity', []) }).id, 'b');
  assert.throws(
    () => pick(hosts, allocations, { ...request, ...group('anti-affinity', ['a', 'b']) }),
    /anti-affinity group g1 already has a member on every open host/,
  );
  assert.throws(
    () => pick(hosts, allocations, { vcpus: 1, memoryMiB: 9000, ...group('affinity', ['a']) }),
    /affinity group g1 is on a host without room/,
  );
});

describe('dedicated CPUs', () => {
  // Two physical cores with two SMT threads each, plus core 0 kept for the host (not dedicatable).
  const smt = host('a', {
    cpus: 6,
    dedicatedCores: JSON.stringify([
      [2, 3],
      [4, 5],
    ]),
  });

  test('a dedicated VM gets whole cores: SMT siblings go together, even for one vCPU', () => {
    assert.deepEqual(chooseDedicatedCpus(smt, undefined, 1), [2, 3]);
    assert.deepEqual(chooseDedicatedCpus(smt, undefined, 3), [2, 3, 4, 5]);
    assert.equal(chooseDedicatedCpus(smt, undefined, 5), null);
  });

  test('a core with any pinned thread is never given to another VM', () => {
    assert.deepEqual(chooseDedicatedCpus(smt, { pinnedCpus: [3] }, 1), [4, 5]);
    assert.equal(chooseDedicatedCpus(smt, { pinnedCpus: [2, 3, 4] }, 1), null);
  });

  test('placement refuses a dedicated VM where no free cores are left, naming the constraint', () => {
    const full = { ...used(2, 256), pinnedCpus: [2, 3, 4, 5], sharedVcpus: 0 };
    assert.throws(
      () => pick([smt], new Map([['a', full]]), { ...SMALL, dedicatedCpus: true }),
      (error: unknown) =>
        error instanceof NoCapacityError &&
        /needs 1 dedicated CPU\(s\) \(whole cores, never shared\)/.test(error.message),
    );
    const other = host('b', { dedicatedCores: '[]' });
    assert.throws(() => pick([other], new Map(), { ...SMALL, dedicatedCpus: true }), NoCapacityError);
    assert.equal(pick([other, smt], new Map(), { ...SMALL, dedicatedCpus: true }).id, 'a');
  });

  test('pinned CPUs leave the shared pool: shared room is (CPUs - pinned) x ratio', () => {
    const pinned = { ...used(2, 256), pinnedCpus: [2, 3], sharedVcpus: 0 };
    assert.deepEqual(hostRoom(smt, pinned, { cpu: 2, memory: 1 }).vcpus, (6 - 2) * 2);
    const mixed = { ...used(5, 512), pinnedCpus: [2, 3], sharedVcpus: 3 };
    assert.equal(hostRoom(smt, mixed, { cpu: 1, memory: 1 }).vcpus, 4 - 3);
    assert.throws(() => pick([smt], new Map([['a', mixed]]), { vcpus: 2, memoryMiB: 128 }), NoCapacityError);
  });
});

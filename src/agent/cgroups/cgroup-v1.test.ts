/**
 * The v1 driver against a fake cgroup tree: it creates `<parent>/vm-<id>` in cpu, cpuacct, memory and
 * pids; the file contents for CPU quota and shares, memory and memsw limits (in either direction) and
 * pids; re-applying writes nothing; usage; membership; cgexec arguments; removal with straggler kill
 * and EBUSY retry; pruning of unknown VMs' cgroups; ids and parent names validated before any path.
 */
import assert from 'node:assert/strict';
import { utimesSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { CgroupError, type CgroupLimits } from './cgroup-driver.js';
import { CgroupV1Driver } from './cgroup-v1.js';
import { fakeCgroupTree, type FakeCgroupTree } from './fake-cgroup-tree.js';

const VM = '0f8e2c7a-1b2c-4d5e-8f90-123456789abc';
const OTHER = '1a2b3c4d-1b2c-4d5e-8f90-123456789abc';
const PARENT = 'rampart-unit';
const MIB = 1024 * 1024;
const LIMITS: CgroupLimits = { cpuPercent: 20, cpuWeight: 100, memoryBytes: 230 * MIB, pidsMax: 256 };
const CONTROLLERS = ['cpu', 'cpuacct', 'memory', 'pids'];

let tree: FakeCgroupTree;
let driver: CgroupV1Driver;

function vmPath(controller: string, file = '', id = VM): string {
  return join(controller, PARENT, `vm-${id}`, file);
}

beforeEach(() => {
  tree = fakeCgroupTree('v1');
  driver = new CgroupV1Driver({
    root: tree.root,
    parent: PARENT,
    fs: tree.fs,
    kill: tree.kill,
    removeTimeoutMs: 300,
  });
});

afterEach(() => tree.cleanup());

void describe('CgroupV1Driver', () => {
  test('create makes <parent>/vm-<id> in each needed controller and nowhere else', () => {
    driver.create(VM);
    for (const controller of CONTROLLERS) assert.ok(tree.fs.exists(join(tree.root, vmPath(controller))));
    assert.ok(!tree.fs.exists(join(tree.root, 'blkio', PARENT)));
    assert.equal(driver.version, 'v1');
  });

  test('apply writes CPU quota and period, shares, memory and memsw limits, pids.max', () => {
    driver.create(VM);
    driver.apply(VM, LIMITS);
    assert.equal(tree.read(vmPath('cpu', 'cpu.cfs_period_us')), '100000');
    assert.equal(tree.read(vmPath('cpu', 'cpu.cfs_quota_us')), '20000');
    assert.equal(tree.read(vmPath('cpu', 'cpu.shares')), '1024');
    assert.equal(tree.read(vmPath('memory', 'memory.limit_in_bytes')), String(230 * MIB));
    assert.equal(tree.read(vmPath('memory', 'memory.memsw.limit_in_bytes')), String(230 * MIB));
    assert.equal(tree.read(vmPath('pids', 'pids.max')), '256');
  });

  test('weight maps to shares (x1024/100, clamped) and percent to quota (x1000)', () => {
    driver.create(VM);
    driver.apply(VM, { ...LIMITS, cpuPercent: 250, cpuWeight: 50 });
    assert.equal(tree.read(vmPath('cpu', 'cpu.cfs_quota_us')), '250000');
    assert.equal(tree.read(vmPath('cpu', 'cpu.shares')), '512');
    driver.apply(VM, { ...LIMITS, cpuWeight: 1 });
    assert.equal(tree.read(vmPath('cpu', 'cpu.shares')), '10');
    driver.apply(VM, { ...LIMITS, cpuWeight: 10_000 });
    assert.equal(tree.read(vmPath('cpu', 'cpu.shares')), '102400');
  });

  test('memory limits can be raised and lowered with memsw (the kernel wants memory <= memsw)', () => {
    driver.create(VM);
    driver.apply(VM, LIMITS);
    driver.apply(VM, { ...LIMITS, memoryBytes: 512 * MIB });
    assert.equal(tree.read(vmPath('memory', 'memory.limit_in_bytes')), String(512 * MIB));
    assert.equal(tree.read(vmPath('memory', 'memory.memsw.limit_in_bytes')), String(512 * MIB));
    driver.apply(VM, { ...LIMITS, memoryBytes: 200 * MIB });
    assert.equal(tree.read(vmPath('memory', 'memory.limit_in_bytes')), String(200 * MIB));
    assert.equal(tree.read(vmPath('memory', 'memory.memsw.limit_in_bytes')), String(200 * MIB));
  });

  test('without swap accounting only memory.limit_in_bytes is written', () => {
    tree.cleanup();
    tree = fakeCgroupTree('v1', { swap: false });
    driver = new CgroupV1Driver({ root: tree.root, parent: PARENT, fs: tree.fs });
    driver.create(VM);
    driver.apply(VM, LIMITS);
    assert.equal(tree.read(vmPath('memory', 'memory.limit_in_bytes')), String(230 * MIB));
    assert.ok(!tree.writes.some((w) => w.includes('memsw')));
  });

  test('re-applying the same limits writes nothing (adoption is not destructive)', () => {
    driver.create(VM);
    driver.apply(VM, LIMITS);
    const before = tree.writes.length;
    driver.create(VM);
    driver.apply(VM, LIMITS);
    assert.equal(tree.writes.length, before, JSON.stringify(tree.writes.slice(before)));
  });

  test('create keeps the processes and values of an existing cgroup', () => {
    driver.create(VM);
    driver.apply(VM, LIMITS);
    driver.place(VM, 4242);
    driver.create(VM);
    assert.ok(driver.contains(VM, 4242));
    assert.equal(tree.read(vmPath('cpu', 'cpu.cfs_quota_us')), '20000');
  });

  test('readUsage reads cpuacct.usage (ns, beyond 2^53), memory.usage_in_bytes and pids.current', () => {
    driver.create(VM);
    tree.set(vmPath('cpuacct', 'cpuacct.usage'), '123456789012');
    tree.set(vmPath('memory', 'memory.usage_in_bytes'), String(190 * MIB));
    tree.set(vmPath('pids', 'pids.current'), '7');
    assert.deepEqual(driver.readUsage(VM), { cpuUsageUsec: 123_456_789, memoryBytes: 190 * MIB, pids: 7 });
    tree.set(vmPath('cpuacct', 'cpuacct.usage'), '100000000000000123'); // > 2^53 ns: ~3 CPU-years
    assert.equal(driver.readUsage(VM).cpuUsageUsec, 100_000_000_000_000);
    tree.set(vmPath('cpuacct', 'cpuacct.usage'), 'garbage');
    assert.throws(() => driver.readUsage(VM), CgroupError);
  });

  test('place writes the pid into every cgroup.procs; contains needs all of them', () => {
    driver.create(VM);
    assert.equal(driver.contains(VM, 4242), false);
    driver.place(VM, 4242);
    for (const controller of CONTROLLERS) assert.equal(tree.read(vmPath(controller, 'cgroup.procs')), '4242');
    assert.ok(driver.contains(VM, 4242));
    tree.set(vmPath('pids', 'cgroup.procs'), '');
    assert.equal(driver.contains(VM, 4242), false);
    assert.throws(() => driver.place(VM, 1), /not a placeable pid/);
  });

  test('execArgs name all four controllers and the relative path, for cgexec', () => {
    assert.deepEqual(driver.execArgs(VM), ['-g', `cpu,cpuacct,memory,pids:${PARENT}/vm-${VM}`]);
  });

  test('ids and parent names are validated before a path is built', () => {
    for (const bad of ['../../etc', `${VM}/..`, VM.toUpperCase(), '', 'vm-x']) {
      assert.throws(() => driver.create(bad), /not a valid id/);
      assert.throws(() => driver.apply(bad, LIMITS), /not a valid id/);
      assert.throws(() => driver.execArgs(bad), /not a valid id/);
    }
    assert.deepEqual(tree.writes, []);
    for (const parent of ['..', '.', 'a/b', '', '-x', 'a b'])
      assert.throws(() => new CgroupV1Driver({ root: tree.root, parent, fs: tree.fs }), /cgroup parent/);
  });

  test('remove kills stragglers, then removes the cgroup in every controller', async () => {
    driver.create(VM);
    driver.place(VM, 4242);
    await driver.remove(VM);
    assert.deepEqual([...new Set(tree.killed)], [4242]);
    for (const controller of CONTROLLERS) assert.ok(!tree.fs.exists(join(tree.root, vmPath(controller))));
    assert.ok(tree.fs.exists(join(tree.root, 'cpu', PARENT)), 'the parent stays');
    await driver.remove(VM); // already gone: fine
  });

  test('remove retries while the kernel answers EBUSY, and gives up with an error', async () => {
    driver.create(VM);
    let busy = 2;
    const rmdir = tree.fs.rmdir.bind(tree.fs);
    tree.fs.rmdir = (path) => {
      if (busy-- > 0) throw new CgroupError('busy', path, 'EBUSY');
      rmdir(path);
    };
    await driver.remove(VM);
    assert.ok(!tree.fs.exists(join(tree.root, vmPath('cpu'))));

    driver.create(VM);
    tree.fs.rmdir = (path) => {
      throw new CgroupError(`cannot remove ${path}: EBUSY`, path, 'EBUSY');
    };
    await assert.rejects(driver.remove(VM), /EBUSY/);
  });

  test('pruneUnknown removes old empty cgroups of unknown VMs only', async () => {
    const old = '2b3c4d5e-1b2c-4d5e-8f90-123456789abc';
    const fresh = '3c4d5e6f-1b2c-4d5e-8f90-123456789abc';
    for (const id of [VM, OTHER, old, fresh]) driver.create(id);
    driver.place(OTHER, 5151); // unknown but holds a task: not ours to kill
    tree.fs.mkdir(join(tree.root, 'cpu', PARENT, 'not-a-vm'));
    const past = new Date(Date.now() - 120_000);
    for (const id of [VM, OTHER, old])
      for (const controller of CONTROLLERS)
        utimesSync(join(tree.root, vmPath(controller, '', id)), past, past);
    assert.deepEqual(driver.listVmIds(), [VM, OTHER, old, fresh].sort());
    const result = await driver.pruneUnknown(new Set([VM]), 60_000);
    assert.deepEqual(result.removed, [old]);
    assert.deepEqual(result.kept.sort(), [OTHER, fresh].sort());
    assert.deepEqual(tree.killed, []);
    assert.deepEqual(driver.listVmIds(), [VM, OTHER, fresh].sort());
  });
});

describe('cpuset (dedicated CPUs and the shared pool)', () => {
  let pinned: FakeCgroupTree;
  let pinning: CgroupV1Driver;
  beforeEach(() => {
    pinned = fakeCgroupTree('v1', { cpuset: true });
    pinning = new CgroupV1Driver({ root: pinned.root, parent: PARENT, fs: pinned.fs, kill: pinned.kill });
  });
  afterEach(() => pinned.cleanup());

  test('with the hierarchy mounted, VMs join it too, starting with the parent’s CPUs and memory nodes', () => {
    assert.equal(pinning.supportsCpuset, true);
    assert.equal(driver.supportsCpuset, false, 'a host without it is still fine');
    pinning.create(VM);
    assert.equal(pinned.read(join('cpuset', PARENT, 'cpuset.cpus')), '0-3');
    assert.equal(pinned.read(vmPath('cpuset', 'cpuset.mems')), '0');
    assert.equal(pinned.read(vmPath('cpuset', 'cpuset.cpus')), '0-3');
    assert.match(pinning.execArgs(VM)[1]!, /^cpu,cpuacct,memory,pids,cpuset:/);
    pinning.place(VM, 4242); // would be ENOSPC with empty cpus/mems
    assert.equal(pinning.contains(VM, 4242), true);
  });

  test('setCpus keeps a VM to its cores, writes ranges, rewrites nothing unchanged, and null restores all', () => {
    pinning.create(VM);
    pinning.setCpus(VM, [3, 2]);
    assert.equal(pinned.read(vmPath('cpuset', 'cpuset.cpus')), '2-3');
    const before = pinned.writes.length;
    pinning.setCpus(VM, [2, 3]);
    assert.equal(pinned.writes.length, before);
    pinning.setCpus(VM, null);
    assert.equal(pinned.read(vmPath('cpuset', 'cpuset.cpus')), '0-3');
    assert.throws(() => driver.setCpus(VM, [1]), /cpuset controller is not mounted/);
  });
});

/**
 * The v2 driver against a fake cgroup tree: controllers are enabled in the root's and the parent's
 * subtree_control before the VM's cgroup is made (the fake only shows controller files then), the file
 * contents for cpu.max, cpu.weight, memory.max, memory.swap.max and pids.max, idempotent re-apply,
 * usage from cpu.stat/memory.current/pids.current, cgexec arguments, membership and removal.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { CgroupLimits } from './cgroup-driver.js';
import { CgroupV2Driver } from './cgroup-v2.js';
import { fakeCgroupTree, type FakeCgroupTree } from './fake-cgroup-tree.js';

const VM = '0f8e2c7a-1b2c-4d5e-8f90-123456789abc';
const PARENT = 'rampart-unit';
const MIB = 1024 * 1024;
const LIMITS: CgroupLimits = { cpuPercent: 20, cpuWeight: 100, memoryBytes: 230 * MIB, pidsMax: 256 };

let tree: FakeCgroupTree;
let driver: CgroupV2Driver;

function vmPath(file = ''): string {
  return join(PARENT, `vm-${VM}`, file);
}

beforeEach(() => {
  tree = fakeCgroupTree('v2');
  driver = new CgroupV2Driver({ root: tree.root, parent: PARENT, fs: tree.fs, kill: tree.kill });
});

afterEach(() => tree.cleanup());

void describe('CgroupV2Driver', () => {
  test('create enables cpu, memory and pids for the parent and the VM, then makes the leaf', () => {
    driver.create(VM);
    assert.equal(tree.read('cgroup.subtree_control'), 'cpu memory pids');
    assert.equal(tree.read(join(PARENT, 'cgroup.subtree_control')), 'cpu memory pids');
    assert.equal(tree.read(vmPath('cgroup.controllers')), 'cpu memory pids');
    assert.equal(driver.version, 'v2');
  });

  test('controllers already enabled are not written again', () => {
    tree.set('cgroup.subtree_control', 'cpu io memory pids');
    driver.create(VM);
    assert.ok(!tree.writes.includes('cgroup.subtree_control'));
    const before = tree.writes.length;
    driver.create(VM);
    assert.equal(tree.writes.length, before);
  });

  test('apply writes cpu.max, cpu.weight, memory.max, memory.swap.max=0 and pids.max', () => {
    driver.create(VM);
    driver.apply(VM, { ...LIMITS, cpuWeight: 250 });
    assert.equal(tree.read(vmPath('cpu.max')), '20000 100000');
    assert.equal(tree.read(vmPath('cpu.weight')), '250');
    assert.equal(tree.read(vmPath('memory.max')), String(230 * MIB));
    assert.equal(tree.read(vmPath('memory.swap.max')), '0');
    assert.equal(tree.read(vmPath('pids.max')), '256');
  });

  test('more than one CPU: the quota exceeds the period', () => {
    driver.create(VM);
    driver.apply(VM, { ...LIMITS, cpuPercent: 400 });
    assert.equal(tree.read(vmPath('cpu.max')), '400000 100000');
  });

  test('re-applying the same limits writes nothing', () => {
    driver.create(VM);
    driver.apply(VM, LIMITS);
    const before = tree.writes.length;
    driver.create(VM);
    driver.apply(VM, LIMITS);
    assert.deepEqual(tree.writes.slice(before), []);
  });

  test('without swap accounting memory.swap.max is skipped', () => {
    tree.cleanup();
    tree = fakeCgroupTree('v2', { swap: false });
    driver = new CgroupV2Driver({ root: tree.root, parent: PARENT, fs: tree.fs });
    driver.create(VM);
    driver.apply(VM, LIMITS);
    assert.equal(tree.read(vmPath('memory.max')), String(230 * MIB));
    assert.ok(!tree.writes.some((w) => w.endsWith('memory.swap.max')));
  });

  test('readUsage: cpu.stat usage_usec, memory.current, pids.current', () => {
    driver.create(VM);
    tree.set(vmPath('cpu.stat'), 'usage_usec 987654\nuser_usec 900000\nsystem_usec 87654');
    tree.set(vmPath('memory.current'), String(150 * MIB));
    tree.set(vmPath('pids.current'), '9');
    assert.deepEqual(driver.readUsage(VM), { cpuUsageUsec: 987_654, memoryBytes: 150 * MIB, pids: 9 });
    tree.set(vmPath('cpu.stat'), 'user_usec 1');
    assert.throws(() => driver.readUsage(VM), /usage_usec/);
  });

  test('execArgs, membership, removal with stragglers killed', async () => {
    assert.deepEqual(driver.execArgs(VM), ['-g', `cpu,memory,pids:${PARENT}/vm-${VM}`]);
    driver.create(VM);
    driver.place(VM, 777);
    assert.equal(tree.read(vmPath('cgroup.procs')), '777');
    assert.ok(driver.contains(VM, 777));
    assert.deepEqual(driver.listVmIds(), [VM]);
    await driver.remove(VM);
    assert.deepEqual(tree.killed, [777]);
    assert.ok(!tree.fs.exists(join(tree.root, vmPath())));
    assert.deepEqual(driver.listVmIds(), []);
  });

  test('a bad id never reaches the tree', () => {
    assert.throws(() => driver.create('../../x'), /not a valid id/);
    assert.deepEqual(tree.writes, []);
    assert.ok(!tree.fs.exists(join(tree.root, PARENT)));
  });
});

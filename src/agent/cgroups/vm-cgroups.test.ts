/**
 * The VM-level policy: limits from an intent (memory = guest RAM + QEMU overhead), the cgexec-wrapped
 * command, fail-closed starts (unavailable cgroups or a failing write throw instead of running QEMU
 * unconfined), re-adoption that rewrites nothing and reports a QEMU found outside its cgroups, and
 * removal and pruning.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { pino } from 'pino';
import type { VmIntent } from '../../api/agent-protocol.js';
import { CgroupError } from './cgroup-driver.js';
import type { CgroupSetup } from './cgroup-load.js';
import { CgroupV1Driver } from './cgroup-v1.js';
import { fakeCgroupTree, type FakeCgroupTree } from './fake-cgroup-tree.js';
import { limitsFor, VmCgroups } from './vm-cgroups.js';
import { vmIntentFixture } from '../testing.js';

const MIB = 1024 * 1024;
const INTENT: VmIntent = vmIntentFixture({
  name: 'capped',
  power: 'running',
  bootId: 1,
  limits: { cpuPercent: 20, cpuWeight: 100, pidsMax: 256 },
});
const QEMU = ['/usr/bin/setpriv', '--reuid', '3000', '--', '/usr/bin/qemu-system-x86_64', '-m', '128'];
const log = pino({ level: 'silent' });

let tree: FakeCgroupTree;
let cgroups: VmCgroups;

function vmFile(controller: string, file: string): string {
  return join(controller, 'rampart-unit', `vm-${INTENT.id}`, file);
}

beforeEach(() => {
  tree = fakeCgroupTree('v1');
  const driver = new CgroupV1Driver({
    root: tree.root,
    parent: 'rampart-unit',
    fs: tree.fs,
    kill: tree.kill,
  });
  cgroups = new VmCgroups({ state: 'enabled', driver, cgexec: '/usr/bin/cgexec' }, log);
});

afterEach(() => tree.cleanup());

void describe('limitsFor', () => {
  test('memory limit = guest RAM + QEMU overhead for the accelerator; CPU and pids from the flavor', () => {
    const tcg = limitsFor(INTENT, 'tcg');
    assert.equal(tcg.memoryLimitMiB, 230); // 128 + 64 base + 4 per vCPU + 2 (RAM/64) + 32 TCG cache
    assert.deepEqual(tcg.limits, { cpuPercent: 20, cpuWeight: 100, memoryBytes: 230 * MIB, pidsMax: 256 });
    assert.equal(limitsFor(INTENT, 'kvm').memoryLimitMiB, 198);
  });
});

void describe('VmCgroups', () => {
  test('prepare applies the limits and wraps the command in cgexec', () => {
    const prepared = cgroups.prepare(INTENT, 'tcg', QEMU);
    assert.deepEqual(prepared.command, [
      '/usr/bin/cgexec',
      '-g',
      `cpu,cpuacct,memory,pids:rampart-unit/vm-${INTENT.id}`,
      ...QEMU,
    ]);
    assert.equal(tree.read(vmFile('cpu', 'cpu.cfs_quota_us')), '20000');
    assert.equal(tree.read(vmFile('memory', 'memory.limit_in_bytes')), String(230 * MIB));
    assert.equal(tree.read(vmFile('pids', 'pids.max')), '256');
    assert.deepEqual(prepared.resources, {
      cgroup: 'v1',
      cpuPercent: 20,
      cpuWeight: 100,
      pidsMax: 256,
      memoryLimitMiB: 230,
      confined: true,
    });
  });

  test('unavailable limits fail the start with the reason', () => {
    const unavailable: CgroupSetup = { state: 'unavailable', reason: 'cgexec not found' };
    const vm = new VmCgroups(unavailable, log);
    assert.throws(
      () => vm.prepare(INTENT, 'tcg', QEMU),
      (error: unknown) =>
        error instanceof CgroupError &&
        error.message === 'resource limits cannot be applied on this host: cgexec not found',
    );
    assert.equal(vm.isConfined(INTENT.id, 123), false);
  });

  test('a failing write fails the start', () => {
    tree.fs.write = (path) => {
      throw new CgroupError(`cannot write ${path}: EACCES`, path, 'EACCES');
    };
    assert.throws(
      () => cgroups.prepare(INTENT, 'tcg', QEMU),
      /resource limits could not be applied: .*EACCES/,
    );
  });

  test('with limits off (RAMPART_CGROUP=none) the command is unchanged', () => {
    const off = new VmCgroups({ state: 'disabled' }, log);
    assert.deepEqual(off.prepare(INTENT, 'tcg', QEMU), { command: QEMU, resources: null });
    assert.equal(off.isConfined(INTENT.id, 123), true);
    assert.equal(off.usage(INTENT.id), null);
  });

  test('readopt of a confined QEMU rewrites nothing and stays confined', () => {
    cgroups.prepare(INTENT, 'tcg', QEMU);
    tree.set(vmFile('cpu', 'cgroup.procs'), '4242');
    for (const c of ['cpuacct', 'memory', 'pids']) tree.set(vmFile(c, 'cgroup.procs'), '4242');
    const before = tree.writes.length;
    const resources = cgroups.readopt(INTENT, 'tcg', 4242, true);
    assert.deepEqual(tree.writes.slice(before), []);
    assert.equal(resources?.confined, true);
    assert.ok(cgroups.isConfined(INTENT.id, 4242));
  });

  test('readopt of a QEMU outside its cgroups reports it and moves it in', () => {
    const resources = cgroups.readopt(INTENT, 'tcg', 4242, true);
    assert.equal(resources?.confined, false);
    assert.ok(cgroups.isConfined(INTENT.id, 4242), 'moved into every cgroup');
    assert.equal(tree.read(vmFile('cpu', 'cpu.cfs_quota_us')), '20000', 'cgroups re-created with limits');
  });

  test('readopt with changed limits rewrites only what changed', () => {
    cgroups.prepare(INTENT, 'tcg', QEMU);
    const before = tree.writes.length;
    cgroups.readopt({ ...INTENT, limits: { ...INTENT.limits, pidsMax: 300 } }, 'tcg', 4242, true);
    const written = tree.writes.slice(before).filter((w) => !w.endsWith('cgroup.procs'));
    assert.deepEqual(written, [vmFile('pids', 'pids.max')]);
  });

  test('release removes the cgroups; prune removes only unknown empty ones', async () => {
    cgroups.prepare(INTENT, 'tcg', QEMU);
    assert.deepEqual(await cgroups.prune(new Set([INTENT.id])), { removed: [], kept: [] });
    await cgroups.release(INTENT.id);
    assert.ok(!tree.fs.exists(join(tree.root, vmFile('cpu', ''))));
    assert.equal(cgroups.usage(INTENT.id), null);
  });
});

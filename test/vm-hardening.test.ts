/**
 * The hardening self-check (GET /v1/vms/{vm}/hardening) against two real QEMUs, and what it claims
 * checked independently (SECURITY-TESTS.md items 12 and 13): every check passes; the kernel's own view
 * (/proc) agrees; the uids differ; a process running as one VM's uid gets EACCES on the other VM's
 * sockets, run directory and logs.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { VmHardening } from '../src/api/hardening.js';
import type { Vm } from '../src/api/vm.js';
import { RampartHarness } from './helpers/rampart-harness.js';

let harness: RampartHarness;
const running: Record<string, Vm> = {};

before(async () => {
  harness = await RampartHarness.start();
  for (const name of ['hard1', 'hard2']) {
    const created = await harness.api<Vm>('POST', '/v1/vms', { name, image: 'tiny', flavor: 'tiny' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
  for (const name of ['hard1', 'hard2']) running[name] = await harness.waitForState(name, 'running');
});

after(async () => {
  await harness?.cleanup();
});

function procStatus(pid: number, field: string): string {
  const match = new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match?.[1]?.trim() ?? '';
}

test('every check of the self-check passes, and /proc agrees with what it reports', async () => {
  const reports: VmHardening[] = [];
  for (const name of ['hard1', 'hard2']) {
    const answer = await harness.api<VmHardening>('GET', `/v1/vms/${name}/hardening`);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const report = answer.body;
    assert.equal(report.running, true);
    const failed = report.checks.filter((c) => !c.ok);
    assert.deepEqual(failed, [], `${name}: ${JSON.stringify(failed)}`);
    assert.equal(report.pid, running[name]!.pid);
    assert.equal(report.seccompMode, 2);
    assert.equal(report.noNewPrivs, true);
    assert.match(report.capabilities!.effective, /^0+$/);
    assert.equal(report.rlimits!.openFiles, 4096);
    assert.equal(report.environmentVariables, 0);
    assert.deepEqual(report.listeningSockets, []);
    assert.ok(report.devices.length >= 2, `devices: ${JSON.stringify(report.devices)}`);
    assert.ok(
      report.devices.some((d) => d.id === '1af4:1000'),
      'virtio-net is there',
    );
    assert.ok(
      report.cgroups.some((c) => c.includes(`vm-${running[name]!.id}`)),
      'in its own cgroup',
    );
    // The kernel's own view, read here, not through the agent.
    const pid = report.pid!;
    assert.equal(procStatus(pid, 'Seccomp'), '2');
    assert.equal(procStatus(pid, 'NoNewPrivs'), '1');
    assert.match(procStatus(pid, 'CapEff'), /^0+$/);
    assert.equal(Number(procStatus(pid, 'Uid').split(/\s+/)[0]), report.uid);
    reports.push(report);
  }
  assert.notEqual(reports[0]!.uid, reports[1]!.uid, 'each VM has its own uid');
  assert.ok(reports.every((r) => r.uid! > 0));
});

test("one VM's uid cannot open the other VM's sockets, run directory or logs (EACCES)", async () => {
  const other = await harness.api<VmHardening>('GET', '/v1/vms/hard2/hardening');
  const uid = other.body.uid!;
  const vmDir = join(harness.dataDir, 'agent', 'vms', running.hard1!.id);
  for (const target of [
    join(vmDir, 'run', 'qmp.sock'),
    join(vmDir, 'run', 'console.sock'),
    join(vmDir, 'run'),
    join(vmDir, 'console.log'),
    join(vmDir, 'qemu.log'),
  ]) {
    const attempt = spawnSync(
      'setpriv',
      ['--reuid', String(uid), '--regid', String(uid), '--clear-groups', 'cat', target],
      { encoding: 'utf8' },
    );
    assert.notEqual(attempt.status, 0, `${target} was readable by another VM's uid`);
    assert.match(attempt.stderr, /Permission denied/, `${target}: ${attempt.stderr}`);
  }
});

test('a stopped VM reports that it is not running', async () => {
  assert.equal((await harness.api('POST', '/v1/vms/hard2/stop', { force: true })).status, 202);
  await harness.waitForState('hard2', 'stopped');
  const report = await harness.api<VmHardening>('GET', '/v1/vms/hard2/hardening');
  assert.equal(report.status, 200);
  assert.equal(report.body.running, false);
  assert.deepEqual(
    report.body.checks.map((c) => [c.name, c.ok]),
    [['running', false]],
  );
});

test('nested virtualization: off by default; only a platform admin turns it on for a tenant', async () => {
  const before = await harness.api<VmHardening>('GET', '/v1/vms/hard1/hardening');
  const check = before.body.checks.find((c) => c.name === 'nested-virtualization');
  assert.ok(check?.ok, JSON.stringify(check));
  assert.match(check.detail, /vmx=off,svm=off/);

  const adminToken = await harness.createMember(
    'nestadmin',
    'a long enough password 1',
    'default',
    'tenant-admin',
  );
  const refused = await harness.api(
    'PATCH',
    '/v1/tenants/default',
    { allowNestedVirtualization: true },
    { authorization: `Bearer ${adminToken}` },
  );
  assert.equal(refused.status, 403, 'a tenant admin cannot allow it');
  const allowed = await harness.api<{ allowNestedVirtualization: boolean }>('PATCH', '/v1/tenants/default', {
    allowNestedVirtualization: true,
  });
  assert.equal(allowed.status, 200, JSON.stringify(allowed.body));
  assert.equal(allowed.body.allowNestedVirtualization, true);
  // The next boot exposes VMX/SVM; the self-check says why that is fine.
  assert.equal((await harness.api('POST', '/v1/vms/hard2/start')).status, 202);
  await harness.waitForState('hard2', 'running');
  const after = await harness.api<VmHardening>('GET', '/v1/vms/hard2/hardening');
  const nested = after.body.checks.find((c) => c.name === 'nested-virtualization')!;
  assert.ok(nested.ok);
  assert.match(nested.detail, /-cpu qemu64 \(allowed for the tenant\)/);
  // A tenant admin may turn it off again (tightening).
  const off = await harness.api(
    'PATCH',
    '/v1/tenants/default',
    { allowNestedVirtualization: false },
    { authorization: `Bearer ${adminToken}` },
  );
  assert.equal(off.status, 200);
});

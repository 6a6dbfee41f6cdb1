/**
 * Crash consistency of VM creation (SECURITY-TESTS.md item 11): the server is killed (SIGKILL, through
 * failpoints) at each step of a create — before its transaction, after quota admission inside it, after
 * the commit, after the agent was told — and restarted. Each time the VM either fully exists (and is
 * brought to its desired state) or is fully absent; quota usage equals the VM table; no QEMU runs that
 * the database does not know.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Quota } from '../src/api/quota.js';
import type { Vm } from '../src/api/vm.js';
import { RampartHarness } from './helpers/rampart-harness.js';

let harness: RampartHarness;

before(async () => {
  harness = await RampartHarness.start();
});

after(async () => {
  await harness?.cleanup();
});

async function waitForServerExit(): Promise<void> {
  await harness.waitFor(
    async () => {
      try {
        await fetch(`${harness.url}/v1/health`);
        return false;
      } catch {
        return true;
      }
    },
    10_000,
    'the server to die at its failpoint',
  );
}

async function crashDuringCreate(failpoint: string, name: string): Promise<void> {
  await harness.killServer('SIGTERM');
  await harness.startServer({ RAMPART_FAILPOINTS: failpoint });
  await harness.waitFor(
    async () =>
      (await harness.api<{ items: { state: string }[] }>('GET', '/v1/hosts')).body.items.some(
        (h) => h.state === 'online',
      ),
    30_000,
    'host online',
  );
  await assert.rejects(harness.api('POST', '/v1/vms', { name, image: 'tiny', flavor: 'tiny' }));
  await waitForServerExit();
  await harness.killServer('SIGKILL');
  await harness.startServer();
  await harness.waitFor(
    async () =>
      (await harness.api<{ items: { state: string }[] }>('GET', '/v1/hosts')).body.items.some(
        (h) => h.state === 'online',
      ),
    30_000,
    'host online again',
  );
}

async function checkConsistency(): Promise<Vm[]> {
  const vms = (await harness.api<{ items: Vm[] }>('GET', '/v1/vms')).body.items;
  const quota = (await harness.api<Quota>('GET', '/v1/tenants/default/quota')).body;
  assert.equal(quota.resources.vms.usage, vms.length, 'usage equals the VMs that exist');
  assert.equal(
    quota.resources.vcpus.usage,
    vms.reduce((sum, vm) => sum + vm.vcpus, 0),
  );
  // Every QEMU belongs to a VM the database knows and wants running.
  await harness.waitFor(
    async () => {
      const current = (await harness.api<{ items: Vm[] }>('GET', '/v1/vms')).body.items;
      const pids = new Set(harness.qemuPids());
      const known = new Set(current.map((vm) => vm.pid).filter((pid): pid is number => pid !== null));
      // ... and every VM cgroup to a VM that exists.
      const cgroups = harness.vmCgroups().map((dir) => dir.slice(dir.lastIndexOf('/vm-') + 4));
      return (
        [...pids].every((pid) => known.has(pid)) &&
        cgroups.every((id) => current.some((vm) => vm.id === id)) &&
        pids.size === current.filter((v) => v.state === 'running').length
      );
    },
    60_000,
    'no QEMU without a VM',
  );
  return vms;
}

for (const [failpoint, expected] of [
  ['create:before-transaction', 'absent'],
  ['create:after-admission', 'absent'],
  ['create:after-commit', 'present'],
  ['create:after-apply', 'present'],
] as const) {
  test(`killed at ${failpoint}: the VM is fully ${expected} after restart`, async () => {
    const name = `crash-${failpoint.split(':')[1]!}`;
    await crashDuringCreate(failpoint, name);
    const found = await harness.api<Vm>('GET', `/v1/vms/${name}`);
    if (expected === 'absent') {
      assert.equal(found.status, 404);
    } else {
      assert.equal(found.status, 200);
      // The restarted server tells the agent; the VM reaches its desired state (running).
      await harness.waitForState(name, 'running');
    }
    const vms = await checkConsistency();
    assert.equal(
      vms.some((vm) => vm.name === name),
      expected === 'present',
    );
  });
}

test('deleting the survivors leaves no QEMU behind', async () => {
  for (const vm of (await harness.api<{ items: Vm[] }>('GET', '/v1/vms')).body.items) {
    assert.equal((await harness.api('DELETE', `/v1/vms/${vm.id}`)).status, 202);
  }
  await harness.waitFor(
    async () => (await harness.api<{ items: Vm[] }>('GET', '/v1/vms')).body.items.length === 0,
    60_000,
    'VMs deleted',
  );
  await harness.waitFor(async () => harness.qemuPids().length === 0, 30_000, 'no QEMU');
  await harness.waitFor(async () => harness.vmCgroups().length === 0, 30_000, 'no VM cgroup left');
  await checkConsistency();
});

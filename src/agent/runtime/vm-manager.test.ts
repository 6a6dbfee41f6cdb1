/**
 * The host's own dedicated-host check: whatever the scheduler decided, the agent refuses to put a
 * dedicated tenant's VM next to another tenant's, or any VM next to a dedicated tenant's. VMs stay
 * powered off here (no QEMU is started).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { VmIntent } from '../../api/agent-protocol.js';
import { createLogger } from '../../common/logger.js';
import type { VmRuntimeEnv } from './vm-instance.js';
import { VmManager } from './vm-manager.js';
import { vmIntentFixture } from '../testing.js';

function intent(id: string, tenant: string, dedicatedHosts: boolean): VmIntent {
  return vmIntentFixture({
    id,
    name: `vm-${id.slice(0, 4)}`,
    image: {
      ...(vmIntentFixture().image as Extract<VmIntent['image'], { format: 'kernel-initrd' }>),
      kernelPath: '/nonexistent/k',
      initrdPath: '/nonexistent/i',
    },
    tenant: { id: tenant, dedicatedHosts },
  });
}

/** A runtime without QEMU: the VMs stay powered off; cgroups only record the CPU plan and refreshes. */
function runtimeEnv(dir: string, canPin = true) {
  const refreshed: string[] = [];
  let plan: (intent: VmIntent) => readonly number[] | null = () => null;
  const cgroups = {
    canPin,
    setCpuPlan: (p: typeof plan) => (plan = p),
    refreshCpus: (i: VmIntent) => refreshed.push(`${i.name}:${(plan(i) ?? []).join(',')}`),
  };
  return Object.assign(
    { vmsDir: join(dir, 'vms'), log: createLogger('test', 'silent'), cgroups } as unknown as VmRuntimeEnv,
    { refreshed, plan: (i: VmIntent) => plan(i) },
  );
}

const T1 = '11111111-1111-4111-8111-111111111111';
const T2 = '22222222-2222-4222-8222-222222222222';

test('a dedicated tenant never shares this host, and nobody joins it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-vm-manager-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env = runtimeEnv(dir);
  const manager = new VmManager(env, { base: 3_900_000, count: 10 });
  await manager.reconcile(intent('aaaaaaaa-0000-4000-8000-000000000001', T1, false));
  await assert.rejects(
    manager.reconcile(intent('aaaaaaaa-0000-4000-8000-000000000002', T2, true)),
    /dedicated hosts and this host runs another tenant/,
  );
  // Same tenant: fine.
  await manager.reconcile(intent('aaaaaaaa-0000-4000-8000-000000000003', T1, false));

  const other = new VmManager({ ...env, vmsDir: join(dir, 'vms2') }, { base: 3_900_100, count: 10 });
  await other.reconcile(intent('bbbbbbbb-0000-4000-8000-000000000001', T2, true));
  await assert.rejects(
    other.reconcile(intent('bbbbbbbb-0000-4000-8000-000000000002', T1, false)),
    /dedicated to another tenant/,
  );
  await other.reconcile(intent('bbbbbbbb-0000-4000-8000-000000000003', T2, true));
});

test('dedicated CPUs: whole dedicated cores held by no other VM; the shared pool shrinks and grows', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-vm-manager-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env = runtimeEnv(dir);
  // CPUs 0-5: core 0-1 stays shared, cores 2-3 and 4-5 may be pinned.
  const manager = new VmManager(
    env,
    { base: 3_900_200, count: 10 },
    {
      online: [0, 1, 2, 3, 4, 5],
      dedicatedCores: [
        [2, 3],
        [4, 5],
      ],
    },
  );
  const shared = intent('cccccccc-0000-4000-8000-000000000001', T1, false);
  await manager.reconcile(shared);
  assert.equal(manager.sharedPool(), null, 'nothing pinned: no restriction');
  const pinned = { ...intent('cccccccc-0000-4000-8000-000000000002', T1, false), pinnedCpus: [2, 3] };
  await manager.reconcile(pinned);
  assert.deepEqual(manager.sharedPool(), [0, 1, 4, 5]);
  assert.deepEqual(env.plan(pinned), [2, 3]);
  assert.deepEqual(env.plan(shared), [0, 1, 4, 5]);
  assert.ok(
    env.refreshed.includes(`${shared.name}:0,1,4,5`),
    'the running shared VM moved off the pinned core',
  );

  const refuse = (pinnedCpus: number[], pattern: RegExp, n: number) =>
    assert.rejects(
      manager.reconcile({ ...intent(`cccccccc-0000-4000-8000-00000000001${n}`, T2, false), pinnedCpus }),
      pattern,
    );
  await refuse([2, 3], /already pinned to another VM/, 1);
  await refuse([4], /would share its physical core with another VM/, 2);
  await refuse([0, 1], /not one of this host's dedicated cores/, 3);
  await manager.remove(pinned.id);
  assert.equal(manager.sharedPool(), null, 'its cores return to the shared pool');

  const noCpuset = new VmManager(
    runtimeEnv(join(dir, 'x'), false),
    { base: 3_900_300, count: 10 },
    {
      online: [0, 1],
      dedicatedCores: [[1]],
    },
  );
  await assert.rejects(
    noCpuset.reconcile({ ...intent('dddddddd-0000-4000-8000-000000000001', T1, false), pinnedCpus: [1] }),
    /cannot be enforced on this host/,
  );
});

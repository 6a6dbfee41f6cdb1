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

function intent(id: string, tenant: string, dedicatedHosts: boolean): VmIntent {
  return {
    id,
    name: `vm-${id.slice(0, 4)}`,
    vcpus: 1,
    memoryMiB: 128,
    image: {
      format: 'kernel-initrd',
      sha256: 'a'.repeat(64),
      kernelPath: '/nonexistent/k',
      initrdPath: '/nonexistent/i',
      kernelSha256: 'b'.repeat(64),
      initrdSha256: 'c'.repeat(64),
      trust: {
        rules: { requireSignatures: true, acceptPlatformImages: true },
        trustedKeys: [],
        attestations: [],
        platformKeys: [],
        platformSignature: null,
        platformImage: true,
      },
    },
    tenant: { id: tenant, dedicatedHosts },
    ports: [],
    power: 'stopped',
    bootId: 0,
    rebootId: 0,
    stopTimeoutMs: 0,
    limits: { cpuPercent: 100, cpuWeight: 100, pidsMax: 512 },
  };
}

const T1 = '11111111-1111-4111-8111-111111111111';
const T2 = '22222222-2222-4222-8222-222222222222';

test('a dedicated tenant never shares this host, and nobody joins it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-vm-manager-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env = { vmsDir: join(dir, 'vms'), log: createLogger('test', 'silent') } as unknown as VmRuntimeEnv;
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

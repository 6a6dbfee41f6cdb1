/**
 * Verification before every boot (SECURITY-TESTS.md item 21, first part): one flipped byte in a stored
 * image file and the VM does not boot — it goes to error naming the reason, is not restarted, no QEMU
 * runs, and the audit log has a record of it. With the file restored the same VM boots.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import type { Vm } from '../src/api/vm.js';
import type { AuditRecordView } from '../src/api/audit.js';
import { RampartHarness } from './helpers/rampart-harness.js';

let harness: RampartHarness;

before(async () => {
  harness = await RampartHarness.start();
});

after(async () => {
  await harness?.cleanup();
});

test('a flipped byte in the stored kernel stops the boot; restored, the VM boots', async () => {
  const created = await harness.api<Vm>('POST', '/v1/vms', {
    name: 'verified',
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(created.status, 201);
  const image = await harness.api<{ sha256: string }>('GET', '/v1/images/tiny');
  assert.equal(image.status, 200);
  const db = (await import('better-sqlite3')).default;
  const sqlite = new db(`${harness.dataDir}/db/rampart.db`, { readonly: true });
  const { kernelPath } = sqlite
    .prepare('SELECT kernel_path AS kernelPath FROM images WHERE name = ?')
    .get('tiny') as {
    kernelPath: string;
  };
  sqlite.close();
  const original = readFileSync(kernelPath);
  const flipped = Buffer.from(original);
  flipped[Math.floor(flipped.length / 2)]! ^= 0x01;
  writeFileSync(kernelPath, flipped);
  try {
    assert.equal((await harness.api('POST', '/v1/vms/verified/start')).status, 202);
    const failed = await harness.waitForState('verified', 'error', 30_000);
    assert.match(failed.error ?? '', /image verification failed: the kernel does not match its digest/);
    assert.equal(failed.pid, null);
    assert.equal(harness.qemuPids().length, 0, 'no QEMU was started');
    // Not restarted by the on-failure policy: a retry cannot fix a bad image.
    await new Promise((r) => setTimeout(r, 3_000));
    const still = await harness.vm('verified');
    assert.equal(still.state, 'error');
    assert.equal(still.restartCount, 0);
    const audit = await harness.api<{ items: AuditRecordView[] }>(
      'GET',
      '/v1/platform/audit?action=image:verify&limit=10',
    );
    const record = audit.body.items.find((r) => r.target === created.body.id);
    assert.ok(record, 'the failed verification is in the audit log');
    assert.equal(record.outcome, 'failure');
    assert.equal(record.actor, 'system:agent');
    assert.match(record.detail ?? '', /kernel does not match/);
  } finally {
    writeFileSync(kernelPath, original);
  }
  assert.equal((await harness.api('POST', '/v1/vms/verified/start')).status, 202);
  const running = await harness.waitForState('verified', 'running');
  assert.equal(running.error, null);
});

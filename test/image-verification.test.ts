/**
 * Verification before every boot (SECURITY-TESTS.md item 21, first part): one flipped byte in the cached
 * plaintext of an image and the VM does not boot — it goes to error naming the reason, is not restarted, no QEMU
 * runs, and the audit log has a record of it. With the file restored the same VM boots.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Image } from '../src/api/image.js';
import type { Vm } from '../src/api/vm.js';
import type { AuditRecordView } from '../src/api/audit.js';
import type { SecurityAlert } from '../src/api/security.js';
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
  const image = await harness.api<Image>('GET', '/v1/images/tiny');
  assert.equal(image.status, 200);
  // The verified plaintext cache QEMU boots from: a file only Rampart writes, never trusted.
  const kernelPath = join(harness.dataDir, 'image-cache', image.body.files.kernel!);
  const original = readFileSync(kernelPath);
  const flipped = Buffer.from(original);
  flipped[Math.floor(flipped.length / 2)]! ^= 0x01;
  writeFileSync(kernelPath, flipped);
  try {
    assert.equal((await harness.api('POST', '/v1/vms/verified/start')).status, 202);
    const failed = await harness.waitForState('verified', 'error', 30_000);
    assert.match(
      failed.error ?? '',
      /image verification failed: the cached copy of file .* was altered on the host/,
    );
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
    assert.match(record.detail ?? '', /was altered on the host/);
    const events = await harness.api<{
      items: { kind: string; subjectId: string | null; severity: string }[];
    }>('GET', '/v1/security/events?kind=image.verification_failed');
    assert.ok(
      events.body.items.some((e) => e.subjectId === created.body.id && e.severity === 'high'),
      `a security event names the VM: ${JSON.stringify(events.body)}`,
    );
    // ...and the shipped image-verification-failed rule raises an alert in the VM's tenant.
    await harness.waitFor(
      async () =>
        (await harness.api<{ items: SecurityAlert[] }>('GET', '/v1/security/alerts')).body.items.some(
          (a) =>
            a.ruleId === 'image-verification-failed' &&
            a.subjectId === created.body.id &&
            a.status === 'open',
        ),
      20_000,
      'the image-verification-failed alert',
    );
    // The altered copy was removed, so the next start rebuilds it from the encrypted store.
    assert.equal(existsSync(kernelPath), false);
  } finally {
    // Only when an assertion failed before the server removed the altered copy.
    if (existsSync(kernelPath) && !readFileSync(kernelPath).equals(original))
      writeFileSync(kernelPath, original);
  }
  // Started again, the cache is rebuilt from the encrypted store and the VM boots.
  assert.equal((await harness.api('POST', '/v1/vms/verified/start')).status, 202);
  const running = await harness.waitForState('verified', 'running');
  assert.equal(running.error, null);
});

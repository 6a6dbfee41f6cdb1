/**
 * The hardening self-check judged on a process that is NOT confined (this test runner: root, with
 * capabilities and an environment): the checks must fail, so a green report means something.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inspectProcess, pciDevices } from './hardening.js';

test('an unconfined process fails the checks that matter', () => {
  const report = inspectProcess(
    process.pid,
    { uid: 3_000_123, nested: false, openFiles: 4096, fileSizeBytes: 65 * 1024 ** 4 },
    [],
  );
  const verdict = Object.fromEntries(report.checks.map((c) => [c.name, c.ok]));
  assert.equal(verdict['unprivileged-uid'], false);
  assert.equal(verdict['sandbox-deny-set'], false);
  assert.equal(verdict['no-default-devices'], false);
  assert.equal(verdict['empty-environment'], false);
  assert.equal(verdict['private-mount-namespace'], false, 'the test runner shares the host mount namespace');
  assert.equal(verdict['jail-root'], false, 'its root is /');
  assert.equal(verdict['jail-read-only'], false);
  assert.equal(verdict['dedicated-cpus'], undefined, 'judged only for pinned VMs');
  const pinned = inspectProcess(
    process.pid,
    { uid: 3_000_123, nested: false, openFiles: 4096, fileSizeBytes: 65 * 1024 ** 4, pinnedCpus: [4095] },
    [],
  );
  assert.equal(pinned.checks.find((c) => c.name === 'dedicated-cpus')?.ok, false, 'not kept to CPU 4095');
  assert.match(pinned.cpusAllowed ?? '', /^[0-9,-]+$/);
  if (process.getuid?.() === 0) assert.equal(verdict['no-capabilities'], false);
  assert.ok((report.environmentVariables ?? 0) > 0);
  assert.equal(report.pid, process.pid);
});

test('PCI devices from query-pci', () => {
  const devices = pciDevices([
    {
      devices: [
        { slot: 0, class_info: { desc: 'Host bridge', class: 1536 }, id: { vendor: 0x8086, device: 0x1237 } },
        { slot: 3, class_info: { class: 512 }, id: { vendor: 0x1af4, device: 0x1000 } },
      ],
    },
  ]);
  assert.deepEqual(devices, [
    { slot: 0, class: 'Host bridge', id: '8086:1237' },
    { slot: 3, class: 'class 0200', id: '1af4:1000' },
  ]);
});

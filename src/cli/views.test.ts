import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hostFixture, vmFixture } from './testing.js';
import { flavorTable, hostDetails, hostTable, imageTable, vmDetails, vmTable } from './views.js';

const now = Date.parse('2026-01-01T12:00:00Z');
const plain = { now, color: false };

void describe('resource tables', () => {
  void it('shows VMs with the fixed column set', () => {
    const text = vmTable(
      [
        vmFixture(),
        vmFixture({
          name: 'db',
          state: 'stopped',
          guestIps: [],
          hostId: null,
          createdAt: '2025-12-30T12:00:00Z',
        }),
      ],
      plain,
    );
    assert.equal(
      text,
      [
        'NAME   STATE     FLAVOR   IMAGE   IPS            HOST       AGE',
        'web1   running   small    tiny    10.0.2.15/24   cccccccc   5m',
        'db     stopped   small    tiny    -              -          2d',
        '',
      ].join('\n'),
    );
  });

  void it('shows hosts with used/allocatable capacity', () => {
    const text = hostTable(
      [
        hostFixture(),
        hostFixture({
          id: 'dddddddd-0000-4000-8000-000000000000',
          hostname: 'hv2',
          state: 'offline',
          accelerator: 'tcg',
        }),
      ],
      plain,
    );
    assert.equal(
      text,
      [
        'ID         HOSTNAME   STATE     ACCEL   VCPUS   MEMORY           VMS',
        'cccccccc   hv1        online    kvm     2/16    512 MiB/15 GiB   2',
        'dddddddd   hv2        offline   tcg     2/16    512 MiB/15 GiB   2',
        '',
      ].join('\n'),
    );
  });

  void it('shows images and flavors', () => {
    const images = imageTable(
      [
        {
          id: 'aaaaaaaa-2222-4333-8444-555555555555',
          name: 'tiny',
          format: 'kernel-initrd',
          sha256: 'ab'.repeat(32),
          sizeBytes: 5 * 1024 * 1024,
          description: 'Tiny guest',
          createdAt: '2026-01-01T11:00:00Z',
        },
      ],
      plain,
    );
    assert.equal(
      images,
      [
        'NAME   FORMAT          SIZE    SHA256         AGE   DESCRIPTION',
        'tiny   kernel-initrd   5 MiB   abababababab   1h    Tiny guest',
        '',
      ].join('\n'),
    );
    const flavors = flavorTable(
      [
        {
          id: 'bbbbbbbb-2222-4333-8444-555555555555',
          name: 'small',
          vcpus: 1,
          memoryMiB: 512,
          diskGiB: 2,
          createdAt: '2026-01-01T11:00:00Z',
        },
      ],
      plain,
    );
    assert.equal(flavors, 'NAME    VCPUS   MEMORY    DISK    AGE\nsmall   1       512 MiB   2 GiB   1h\n');
  });

  void it('colours VM states on a terminal', () => {
    const text = vmTable([vmFixture({ state: 'error' })], { now, color: true });
    assert.ok(text.includes('\u001b[31merror\u001b[0m'));
  });
});

void describe('detail views', () => {
  void it('shows a VM with its error and boot time', () => {
    const text = vmDetails(vmFixture({ state: 'error', error: 'qemu exited' }), plain);
    assert.match(text, /^Name: +web1$/m);
    assert.match(text, /^Error: +qemu exited$/m);
    assert.match(text, /^Boot time: +3\.1 s$/m);
    assert.match(text, /^Memory: +256 MiB$/m);
  });
  void it('shows a host', () => {
    const text = hostDetails(hostFixture(), plain);
    assert.match(text, /^Accelerator: +kvm \(\/dev\/kvm is usable\)$/m);
    assert.match(text, /^vCPUs used: +2 of 16 allocatable$/m);
  });
});

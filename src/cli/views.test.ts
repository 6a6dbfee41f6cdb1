import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hostFixture, vmFixture } from './testing.js';
import {
  flavorDetails,
  flavorTable,
  hostDetails,
  hostTable,
  imageTable,
  quotaTable,
  vmDetails,
  vmTable,
} from './views.js';

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
        'ID         HOSTNAME   STATE     ACCEL   VCPUS   MEMORY       VMS',
        'cccccccc   hv1        online    kvm     2/16    0.5/15 GiB   2',
        'dddddddd   hv2        offline   tcg     2/16    0.5/15 GiB   2',
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
          status: 'active',
          statusReason: '',
          files: { kernel: 'cd'.repeat(32), initrd: 'ef'.repeat(32) },
          scan: { verdict: 'clean', signatures: [], engine: 'ClamAV 1.4.3', database: null, scannedAt: null },
          platformSigned: true,
          description: 'Tiny guest',
          visibility: 'public',
          platform: true,
          createdAt: '2026-01-01T11:00:00Z',
        },
      ],
      plain,
    );
    assert.equal(
      images,
      [
        'NAME   FORMAT          STATUS   SCAN    SIZE    SHA256         AGE   DESCRIPTION',
        'tiny   kernel-initrd   active   clean   5 MiB   abababababab   1h    Tiny guest',
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
          cpuLimitPercent: null,
          cpuWeight: 100,
          pidsMax: 512,
          networkMbps: null,
          diskIops: null,
          diskMiBps: null,
          cpuPolicy: 'shared',
          createdAt: '2026-01-01T11:00:00Z',
        },
      ],
      plain,
    );
    assert.equal(
      flavors,
      'NAME    VCPUS   MEMORY    DISK    CPU LIMIT   AGE\nsmall   1       512 MiB   2 GiB   -           1h\n',
    );
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
    assert.match(text, /^Overcommit: +CPU 2x \(vCPUs per CPU\), memory 1x$/m);
    const ratios = hostDetails(hostFixture({ overcommit: { cpu: 64, memory: 1.5 } }), plain);
    assert.match(ratios, /^Overcommit: +CPU 64x \(vCPUs per CPU\), memory 1.5x$/m);
  });
  void it("shows a flavor's and a VM's runtime limits", () => {
    const flavor = {
      id: 'bbbbbbbb-2222-4333-8444-555555555555',
      name: 'small',
      vcpus: 2,
      memoryMiB: 512,
      diskGiB: 2,
      cpuLimitPercent: 150,
      cpuWeight: 200,
      pidsMax: 1024,
      networkMbps: null,
      diskIops: 500,
      diskMiBps: null,
      cpuPolicy: 'shared' as const,
      createdAt: '2026-01-01T11:00:00Z',
    };
    const text = flavorDetails(flavor, plain);
    assert.match(text, /^CPU limit: +150% of one host CPU$/m);
    assert.match(text, /^CPU weight: +200$/m);
    assert.match(text, /^PIDs max: +1024$/m);
    assert.match(
      flavorDetails({ ...flavor, cpuLimitPercent: null }, plain),
      /^CPU limit: +none \(its 2 vCPUs: 200%\)$/m,
    );
    const vm = vmDetails(vmFixture({ cpuLimitPercent: 50 }), plain);
    assert.match(vm, /^CPU limit: +50% of one host CPU$/m);
    assert.match(vm, /^PIDs max: +512$/m);
  });
  void it('shows a quota: unlimited for -1, the source of each limit', () => {
    const entry = (limit: number, usage: number, overridden: boolean) => ({ limit, usage, overridden });
    const text = quotaTable(
      {
        tenant: { id: 'dddddddd-2222-4333-8444-555555555555', name: 'acme' },
        resources: {
          vms: entry(5, 2, true),
          vcpus: entry(-1, 4, true),
          memoryMiB: entry(81920, 512, false),
          diskGiB: entry(1000, 1, false),
          images: entry(20, 0, false),
          imageStorageGiB: entry(200, 0, false),
          networks: entry(10, 0, false),
          securityGroups: entry(20, 0, false),
          securityGroupRules: entry(200, 0, false),
          snapshots: entry(50, 0, false),
          apiTokens: entry(20, 1, false),
          volumes: entry(20, 0, false),
          volumeGiB: entry(1000, 0, false),
          backups: entry(20, 0, false),
        },
      },
      plain,
    );
    const lines = text.split('\n');
    assert.equal(lines[0], 'RESOURCE             LIMIT       USED   SOURCE');
    assert.equal(lines[1], 'vms                  5           2      override');
    assert.equal(lines[2], 'vcpus                unlimited   4      override');
    assert.equal(lines[3], 'memoryMiB            81920       512    default');
    assert.equal(lines.length, 16);
  });
});

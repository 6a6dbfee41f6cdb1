/**
 * QEMU's memory overhead estimate: the measured TCG figures stay below the limit with margin, the TCG
 * translation cache is counted, and the estimate is flat in guest RAM except for its small
 * bookkeeping share.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { qemuOverheadMiB, TCG_TRANSLATION_CACHE_MIB, vmMemoryLimitMiB } from './memory-overhead.js';

void describe('QEMU memory overhead', () => {
  test('the measured TCG peaks fit under the limit with room to spare', () => {
    // Measured peaks (cgroup v1 memory.max_usage_in_bytes) with tb-size=32.
    for (const [memoryMiB, vcpus, peakMiB] of [
      [128, 1, 197],
      [128, 2, 198],
      [512, 1, 582],
    ] as const) {
      const limit = vmMemoryLimitMiB('tcg', { memoryMiB, vcpus });
      assert.ok(limit - peakMiB >= 25, `${memoryMiB} MiB x${vcpus}: limit ${limit}, peak ${peakMiB}`);
    }
  });

  test('TCG counts the bounded translation cache, KVM does not', () => {
    const guest = { memoryMiB: 1024, vcpus: 2 };
    assert.equal(qemuOverheadMiB('tcg', guest) - qemuOverheadMiB('kvm', guest), TCG_TRANSLATION_CACHE_MIB);
    assert.equal(vmMemoryLimitMiB('tcg', { memoryMiB: 128, vcpus: 1 }), 230);
    assert.equal(vmMemoryLimitMiB('kvm', { memoryMiB: 4096, vcpus: 4 }), 4096 + 64 + 16 + 64);
  });

  test('never below the guest + 100 MiB that HOST-NOTES asks for under TCG', () => {
    for (const memoryMiB of [64, 128, 256]) assert.ok(qemuOverheadMiB('tcg', { memoryMiB, vcpus: 1 }) >= 100);
  });
});

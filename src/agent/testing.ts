/** Test support for the agent: a valid VM intent (a stopped tiny VM) to override per test. */
import type { VmIntent } from '../api/agent-protocol.js';

export function vmIntentFixture(overrides: Partial<VmIntent> = {}): VmIntent {
  return {
    id: '0f8e2c7a-1b2c-4d5e-8f90-123456789abc',
    name: 'fixture',
    vcpus: 1,
    memoryMiB: 128,
    image: {
      format: 'kernel-initrd',
      sha256: 'a'.repeat(64),
      kernelPath: '/images/vmlinuz',
      initrdPath: '/images/initrd.img',
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
    ports: [],
    power: 'stopped',
    bootId: 0,
    rebootId: 0,
    stopTimeoutMs: 0,
    limits: { cpuPercent: 100, cpuWeight: 100, pidsMax: 512 },
    ...overrides,
  };
}

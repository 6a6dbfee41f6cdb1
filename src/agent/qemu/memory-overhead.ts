/**
 * How much memory QEMU needs on top of the guest's RAM. A VM's memory cgroup limit is guest RAM plus
 * this overhead. If the limit is too tight the kernel OOM-kills QEMU (a limit of guest RAM + 32 MiB killed a
 * TCG guest); if it is too loose it protects nothing.
 *
 * Measured on the build host (QEMU 7.2, TCG, cgroup v1 `memory.max_usage_in_bytes`): the tiny guest
 * booted, then its RAM was filled with a tmpfs file and busybox workloads (ls -R, sort) were run to
 * translate as much code as possible:
 *   - translation cache unbounded (QEMU's default): 128 MiB guest -> 223 MiB peak (QEMU: 95 MiB);
 *   - `-accel tcg,tb-size=32`: 128 MiB guest -> 197 MiB (69), 2 vCPUs -> 197 MiB, 512 MiB -> 581 (69);
 *   - `tb-size=16`: 128 MiB guest -> 178 MiB (50).
 * QEMU itself therefore takes about 37 MiB plus the translation cache. That amount does not grow with
 * guest RAM or vCPUs. With the limit below (128 MiB guest: 230 MiB) the same workload ran with
 * `memory.failcnt` 0; at 160 MiB QEMU was OOM-killed. The margin also covers shared-library page cache,
 * which is charged to the first cgroup that touches it. KVM could not be measured here (nested
 * virtualization is broken). It gets the same base without the translation cache.
 */
import type { Accelerator } from '../../api/host.js';

/** `-accel tcg,tb-size=` in MiB: bounds TCG's translated-code cache (QEMU's default may grow to 1 GiB). */
export const TCG_TRANSLATION_CACHE_MIB = 32;

/** QEMU's own footprint (measured ~37 MiB) with margin for library page cache and allocator slack. */
const QEMU_BASE_MIB = 64;
/** Per vCPU: thread stack, per-CPU state (measured +0.5 MiB for a second vCPU; kept generous). */
const PER_VCPU_MIB = 4;
/** Page tables, dirty bitmaps and other per-RAM bookkeeping: 1/64 of guest RAM, rounded up. */
const RAM_DIVISOR = 64;

export interface GuestSize {
  memoryMiB: number;
  vcpus: number;
}

export function qemuOverheadMiB(accelerator: Accelerator, guest: GuestSize): number {
  const base = QEMU_BASE_MIB + PER_VCPU_MIB * guest.vcpus + Math.ceil(guest.memoryMiB / RAM_DIVISOR);
  return accelerator === 'tcg' ? base + TCG_TRANSLATION_CACHE_MIB : base;
}

/** The memory limit of the VM's cgroup: guest RAM + QEMU's overhead for its accelerator. */
export function vmMemoryLimitMiB(accelerator: Accelerator, guest: GuestSize): number {
  return guest.memoryMiB + qemuOverheadMiB(accelerator, guest);
}

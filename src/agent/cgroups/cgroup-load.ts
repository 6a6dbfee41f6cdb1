/**
 * Picks the cgroup driver for this host. It uses v2 when `<root>/cgroup.controllers` exists and offers cpu, memory
 * and pids. Otherwise it uses v1 when cpu, cpuacct, memory and pids are each mounted at `<root>/<name>`.
 * RAMPART_CGROUP=v1|v2 forces a version (still checked) and `none` turns limits off, for tests and
 * hosts without cgroups.
 *
 * A host where limits are wanted but cannot work gets an `unavailable` setup with the reason, not an
 * agent that refuses to start. Every VM start then fails with that reason in the VM's status. That is
 * easier to see than a dead agent, and no VM ever runs unconfined. QEMU joins its cgroups through
 * `cgexec` (Debian package cgroup-tools), so a missing cgexec also makes the setup unavailable.
 */
import { join } from 'node:path';
import type { CgroupDriver, CgroupVersion } from './cgroup-driver.js';
import { nodeCgroupFs, type CgroupFs } from './cgroup-fs.js';
import { CgroupV1Driver, V1_CONTROLLERS } from './cgroup-v1.js';
import { CgroupV2Driver, V2_CONTROLLERS } from './cgroup-v2.js';

export type CgroupMode = 'auto' | CgroupVersion | 'none';

export type CgroupSetup =
  | { state: 'enabled'; driver: CgroupDriver; cgexec: string }
  | { state: 'disabled' }
  | { state: 'unavailable'; reason: string };

export type Detection = { version: CgroupVersion } | { reason: string };

function checkV2(root: string, fs: CgroupFs): Detection {
  const path = join(root, 'cgroup.controllers');
  if (!fs.exists(path)) return { reason: `no cgroup v2 hierarchy at ${root}` };
  const available = new Set(fs.read(path).trim().split(/\s+/));
  const missing = V2_CONTROLLERS.filter((c) => !available.has(c));
  if (missing.length > 0)
    return { reason: `cgroup v2 at ${root} lacks the controllers ${missing.join(', ')}` };
  return { version: 'v2' };
}

function checkV1(root: string, fs: CgroupFs): Detection {
  const missing = V1_CONTROLLERS.filter((c) => !fs.exists(join(root, c, 'cgroup.procs')));
  if (missing.length > 0)
    return { reason: `cgroup v1 controllers not mounted under ${root}: ${missing.join(', ')}` };
  return { version: 'v1' };
}

export function detectCgroupVersion(
  mode: CgroupMode,
  root = '/sys/fs/cgroup',
  fs: CgroupFs = nodeCgroupFs,
): Detection {
  if (mode === 'v2') return checkV2(root, fs);
  if (mode === 'v1') return checkV1(root, fs);
  const v2 = checkV2(root, fs);
  if ('version' in v2) return v2;
  const v1 = checkV1(root, fs);
  return 'version' in v1 ? v1 : { reason: `${v2.reason}; ${v1.reason}` };
}

export interface LoadCgroupsOptions {
  mode: CgroupMode;
  parent: string;
  /** Resolves the cgexec binary; throws when it is not installed. */
  findCgexec: () => string;
  root?: string;
  fs?: CgroupFs;
}

export function loadCgroups(options: LoadCgroupsOptions): CgroupSetup {
  if (options.mode === 'none') return { state: 'disabled' };
  const root = options.root ?? '/sys/fs/cgroup';
  const fs = options.fs ?? nodeCgroupFs;
  const detection = detectCgroupVersion(options.mode, root, fs);
  if ('reason' in detection) return { state: 'unavailable', reason: detection.reason };
  let cgexec: string;
  try {
    cgexec = options.findCgexec();
  } catch {
    return { state: 'unavailable', reason: 'cgexec not found (install the Debian package cgroup-tools)' };
  }
  const driverOptions = { root, fs, parent: options.parent };
  const driver =
    detection.version === 'v2' ? new CgroupV2Driver(driverOptions) : new CgroupV1Driver(driverOptions);
  return { state: 'enabled', driver, cgexec };
}

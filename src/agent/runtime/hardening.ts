/**
 * The hardening self-check of a running QEMU, read back from the kernel rather than assumed from the
 * command line: /proc/<pid>/status (uid, gid, seccomp, no_new_privs, capabilities), /proc/<pid>/limits,
 * /proc/<pid>/environ, /proc/<pid>/cgroup, the sockets among its open files matched against the
 * namespace's TCP/UDP tables, its command line (the -sandbox deny set, -nodefaults), its jail (mount
 * namespace, root and the mounts it can see: /proc/<pid>/ns/mnt, /proc/<pid>/root, /proc/<pid>/mountinfo)
 * and the PCI devices QEMU itself reports over QMP.
 */
import { formatCpuList } from '../../common/cpu-list.js';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import type { HardeningCheck, VmHardening } from '../../api/hardening.js';
import { SANDBOX } from '../qemu/command-line.js';
import { inspectJail } from './qemu-jail.js';

/**
 * The only mount points a jailed QEMU may write through: device nodes, its run directory (ends in
 * `/run`) and its volume files (/volumes/<id>).
 */
const WRITABLE_IN_JAIL =
  /^\/dev\/(null|zero|urandom|random|net\/tun|kvm)$|\/run$|^\/volumes\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface HardeningExpectations {
  /** The uid this VM's QEMU must run as (unique per VM). */
  uid: number;
  /** Nested virtualization allowed for this VM (VMX/SVM may be exposed). */
  nested: boolean;
  openFiles: number;
  fileSizeBytes: number;
  /** The VM's jail root on the host: QEMU's /proc/<pid>/root (absent: any root but `/`). */
  jailRoot?: string;
  /** Dedicated CPU policy: the only host CPUs QEMU may run on (absent: the shared pool). */
  pinnedCpus?: readonly number[];
}

export interface PciDevice {
  slot: number;
  class: string;
  id: string;
}

function statusField(status: string, field: string): string | null {
  const match = new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(status);
  return match ? match[1]!.trim() : null;
}

function limit(limits: string, name: string): number | null {
  const line = limits.split('\n').find((l) => l.startsWith(name));
  if (!line) return null;
  const soft = line.slice(name.length).trim().split(/\s+/)[0]!;
  return soft === 'unlimited' ? null : Number(soft);
}

/** Socket inodes among the process's open files. */
function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]!);
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

/** TCP sockets in LISTEN state and bound UDP sockets of the process, as `proto port`. */
function listeningSockets(pid: number): string[] {
  const inodes = socketInodes(pid);
  const found: string[] = [];
  for (const proto of ['tcp', 'tcp6', 'udp', 'udp6']) {
    let table: string;
    try {
      table = readFileSync(`/proc/${pid}/net/${proto}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of table.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const [local, state, inode] = [cols[1]!, cols[3]!, cols[9]!];
      if (!inodes.has(inode)) continue;
      if (proto.startsWith('tcp') && state !== '0A') continue;
      found.push(`${proto} ${parseInt(local.split(':')[1] ?? '0', 16)}`);
    }
  }
  return found.sort();
}

/** Reads what the kernel enforces on `pid` and judges it against the expectations. */
export function inspectProcess(
  pid: number,
  expected: HardeningExpectations,
  devices: readonly PciDevice[],
): VmHardening {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  const environ = readFileSync(`/proc/${pid}/environ`);
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  const cgroups = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').filter(Boolean);
  const uids = (statusField(status, 'Uid') ?? '').split(/\s+/).map(Number);
  const gids = (statusField(status, 'Gid') ?? '').split(/\s+/).map(Number);
  const seccomp = Number(statusField(status, 'Seccomp') ?? NaN);
  const cpusAllowed = statusField(status, 'Cpus_allowed_list');
  const noNewPrivs = statusField(status, 'NoNewPrivs') === '1';
  const capabilities = {
    effective: statusField(status, 'CapEff') ?? '',
    permitted: statusField(status, 'CapPrm') ?? '',
    inheritable: statusField(status, 'CapInh') ?? '',
    bounding: statusField(status, 'CapBnd') ?? '',
    ambient: statusField(status, 'CapAmb') ?? '',
  };
  const rlimits = {
    openFiles: limit(limits, 'Max open files'),
    fileSizeBytes: limit(limits, 'Max file size'),
  };
  const environmentVariables =
    environ.length === 0 ? 0 : environ.toString('latin1').split('\0').filter(Boolean).length;
  const sockets = listeningSockets(pid);
  const jail = inspectJail(pid);
  const writable = jail.mounts.filter((m) => !m.readOnly).map((m) => m.path);
  const usr = jail.mounts.filter((m) => m.path === '/usr').pop();
  const rootMount = jail.mounts.filter((m) => m.path === '/').pop();
  const zero = (mask: string) => /^0+$/.test(mask);
  const sandboxAt = cmdline.indexOf('-sandbox');
  const checks: HardeningCheck[] = [
    {
      name: 'unprivileged-uid',
      ok: uids.length === 4 && uids.every((u) => u === expected.uid) && expected.uid > 0,
      detail: `uids ${uids.join('/')}, expected ${expected.uid} (this VM's own)`,
    },
    { name: 'unprivileged-gid', ok: gids.every((g) => g > 0), detail: `gids ${gids.join('/')}` },
    { name: 'seccomp-filter', ok: seccomp === 2, detail: `Seccomp ${seccomp} (2 = filter)` },
    { name: 'no-new-privs', ok: noNewPrivs, detail: `NoNewPrivs ${noNewPrivs ? 1 : 0}` },
    {
      name: 'no-capabilities',
      ok: Object.values(capabilities).every(zero),
      detail: `CapEff ${capabilities.effective} CapPrm ${capabilities.permitted} CapBnd ${capabilities.bounding}`,
    },
    {
      name: 'sandbox-deny-set',
      ok: sandboxAt >= 0 && cmdline[sandboxAt + 1] === SANDBOX,
      detail: sandboxAt >= 0 ? `-sandbox ${cmdline[sandboxAt + 1] ?? ''}` : '-sandbox missing',
    },
    { name: 'no-default-devices', ok: cmdline.includes('-nodefaults'), detail: '-nodefaults' },
    {
      name: 'nested-virtualization',
      ok: expected.nested || /vmx=off,svm=off$/.test(cmdline[cmdline.indexOf('-cpu') + 1] ?? ''),
      detail: `-cpu ${cmdline[cmdline.indexOf('-cpu') + 1] ?? '(default)'}${expected.nested ? ' (allowed for the tenant)' : ''}`,
    },
    {
      name: 'no-network-listener',
      ok: sockets.length === 0,
      detail: sockets.length === 0 ? 'no TCP/UDP socket' : sockets.join(', '),
    },
    {
      name: 'empty-environment',
      ok: environmentVariables === 0,
      detail: `${environmentVariables} environment variables`,
    },
    {
      name: 'rlimit-open-files',
      ok: rlimits.openFiles !== null && rlimits.openFiles <= expected.openFiles,
      detail: `${rlimits.openFiles ?? 'unlimited'} (at most ${expected.openFiles})`,
    },
    {
      name: 'rlimit-file-size',
      ok: rlimits.fileSizeBytes !== null && rlimits.fileSizeBytes <= expected.fileSizeBytes,
      detail: `${rlimits.fileSizeBytes ?? 'unlimited'} bytes (at most ${expected.fileSizeBytes})`,
    },
    {
      name: 'private-mount-namespace',
      ok: jail.mountNamespace === 'private',
      detail: `mount namespace ${jail.mountNamespace === 'private' ? 'of its own' : "is the agent's (host)"}`,
    },
    {
      name: 'jail-root',
      ok: expected.jailRoot === undefined ? jail.root !== '/' : jail.root === expected.jailRoot,
      detail: `root ${jail.root}, expected ${expected.jailRoot ?? 'a jail (not /)'}`,
    },
    {
      name: 'jail-read-only',
      ok:
        rootMount?.readOnly === true &&
        usr?.readOnly === true &&
        writable.every((path) => WRITABLE_IN_JAIL.test(path)),
      detail: `${jail.mounts.length} mounts; writable: ${writable.join(', ') || 'none'}; / ${rootMount?.readOnly ? 'ro' : 'rw'}, /usr ${usr ? (usr.readOnly ? 'ro' : 'rw') : 'absent'}`,
    },
    ...(expected.pinnedCpus
      ? [
          {
            name: 'dedicated-cpus',
            ok: cpusAllowed === formatCpuList(expected.pinnedCpus),
            detail: `runs on CPUs ${cpusAllowed ?? '?'}, pinned ${formatCpuList(expected.pinnedCpus)}`,
          },
        ]
      : []),
    {
      name: 'no-display-device',
      ok: !devices.some((d) => /VGA|display/i.test(d.class)),
      detail: devices.map((d) => d.class).join(', ') || 'no PCI devices reported',
    },
  ];
  return {
    running: true,
    pid,
    uid: uids[1] ?? null,
    gid: gids[1] ?? null,
    seccompMode: Number.isFinite(seccomp) ? seccomp : null,
    noNewPrivs,
    capabilities,
    rlimits,
    environmentVariables,
    cgroups,
    devices: [...devices],
    listeningSockets: sockets,
    cpusAllowed,
    mountNamespace: jail.mountNamespace,
    root: jail.root,
    mounts: jail.mounts,
    checks,
  };
}

interface QmpPciBus {
  devices?: {
    slot?: number;
    class_info?: { desc?: string; class?: number };
    id?: { vendor?: number; device?: number };
  }[];
}

/** PCI devices from QMP `query-pci`. */
export function pciDevices(buses: readonly QmpPciBus[]): PciDevice[] {
  const hex = (n: number | undefined) => (n ?? 0).toString(16).padStart(4, '0');
  return buses.flatMap((bus) =>
    (bus.devices ?? []).map((d) => ({
      slot: d.slot ?? 0,
      class: d.class_info?.desc ?? `class ${hex(d.class_info?.class)}`,
      id: `${hex(d.id?.vendor)}:${hex(d.id?.device)}`,
    })),
  );
}

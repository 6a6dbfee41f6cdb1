/**
 * A VM's hardening self-check: what the host really enforces on its running QEMU, read back from the
 * kernel (/proc) and from QEMU itself (QMP), with a verdict per check. The compliance checks of the
 * security engine consume it.
 */
import { Type, type Static } from 'typebox';

export const HardeningCheck = Type.Object({
  name: Type.String(),
  ok: Type.Boolean(),
  detail: Type.String(),
});
export type HardeningCheck = Static<typeof HardeningCheck>;

export const VmHardening = Type.Object(
  {
    /** False when the VM has no running QEMU (then only `checks` explains why). */
    running: Type.Boolean(),
    pid: Type.Union([Type.Integer(), Type.Null()]),
    uid: Type.Union([Type.Integer(), Type.Null()]),
    gid: Type.Union([Type.Integer(), Type.Null()]),
    /** /proc/<pid>/status Seccomp: 2 = filter mode (QEMU's -sandbox). */
    seccompMode: Type.Union([Type.Integer(), Type.Null()]),
    noNewPrivs: Type.Union([Type.Boolean(), Type.Null()]),
    /** Capability sets as hex masks (all zero when confined). */
    capabilities: Type.Union([
      Type.Object({
        effective: Type.String(),
        permitted: Type.String(),
        inheritable: Type.String(),
        bounding: Type.String(),
        ambient: Type.String(),
      }),
      Type.Null(),
    ]),
    /** Soft limits: open files and file size in bytes (null = unlimited). */
    rlimits: Type.Union([
      Type.Object({
        openFiles: Type.Union([Type.Integer(), Type.Null()]),
        fileSizeBytes: Type.Union([Type.Integer(), Type.Null()]),
      }),
      Type.Null(),
    ]),
    /** Environment variables QEMU was started with (none expected). */
    environmentVariables: Type.Union([Type.Integer(), Type.Null()]),
    /** The cgroups the process is in (`<hierarchy>:<controllers>:<path>` lines). */
    cgroups: Type.Array(Type.String()),
    /** PCI devices as QEMU reports them (query-pci): class and vendor:device ids. */
    devices: Type.Array(Type.Object({ slot: Type.Integer(), class: Type.String(), id: Type.String() })),
    /** TCP/UDP sockets the process listens on (none expected: QMP, console and agent are unix sockets). */
    listeningSockets: Type.Array(Type.String()),
    /** The host CPUs QEMU may run on (Cpus_allowed_list): its pinned cores, or the shared pool. */
    cpusAllowed: Type.Union([Type.String(), Type.Null()]),
    /** QEMU's mount namespace: its own (`private`, the jail) or the agent's (`host`). */
    mountNamespace: Type.Union([Type.Literal('private'), Type.Literal('host'), Type.Null()]),
    /** QEMU's root directory (/proc/<pid>/root): the VM's jail on the host, never `/`. */
    root: Type.Union([Type.String(), Type.Null()]),
    /** The mount points QEMU can see (/proc/<pid>/mountinfo, relative to its root) and whether read-only. */
    mounts: Type.Array(Type.Object({ path: Type.String(), readOnly: Type.Boolean() })),
    checks: Type.Array(HardeningCheck),
  },
  { $id: 'VmHardening' },
);
export type VmHardening = Static<typeof VmHardening>;

/** The self-check of a VM without a running QEMU: one failed `running` check saying why. */
export function hardeningNotRunning(reason: string): VmHardening {
  return {
    running: false,
    pid: null,
    uid: null,
    gid: null,
    seccompMode: null,
    noNewPrivs: null,
    capabilities: null,
    rlimits: null,
    environmentVariables: null,
    cgroups: [],
    devices: [],
    listeningSockets: [],
    cpusAllowed: null,
    mountNamespace: null,
    root: null,
    mounts: [],
    checks: [{ name: 'running', ok: false, detail: reason }],
  };
}

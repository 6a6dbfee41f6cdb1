/**
 * Builds QEMU's argument array from a typed VM spec. Nothing here comes from a user string: names and
 * ids are validated by the protocol schema, paths by the agent config, and every value is rendered by
 * this module. The device set is minimal (-nodefaults; serial, virtio-serial for the guest agent,
 * virtio-net, one virtio-blk per volume), and the full -sandbox deny set is always on. A volume is a
 * LUKS file QEMU decrypts itself: its passphrase reaches QEMU only as a `secret` object reading a file
 * (never on the command line). Under TCG the translated-code cache is
 * bounded (`tb-size`) so QEMU's memory fits the VM's cgroup limit (see memory-overhead.ts).
 */
import { createHash } from 'node:crypto';
import { NAME_PATTERN } from '../../api/common.js';
import type { Accelerator } from '../../api/host.js';
import { TCG_TRANSLATION_CACHE_MIB } from './memory-overhead.js';
import { blockThrottleArgs, throttleNodeName } from './block-throttle.js';

export const GUEST_AGENT_PORT_NAME = 'org.rampart.agent.0';
export const SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';

/** Guest addressing on the isolated user-mode network (restrict=on: no route out of the VM). */
export const USER_NET = {
  cidr: '10.0.2.0/24',
  guestIp: '10.0.2.15',
  prefix: 24,
  gateway: '10.0.2.2',
} as const;

export interface QemuSpec {
  id: string;
  name: string;
  vcpus: number;
  memoryMiB: number;
  accelerator: Accelerator;
  /** Direct kernel boot (kernel+initrd images); absent: the firmware boots the `boot` volume. */
  kernel?: { kernelPath: string; initrdPath: string };
  runDir: string;
  /**
   * Network interfaces on tenant networks (taps the agent created, owned by the VM's uid). None: one
   * isolated user-mode NIC (restrict=on) as before networks existed.
   */
  nics?: readonly QemuNic[];
  /** Expose VMX/SVM to the guest (nested virtualization); off unless the tenant is allowed it. */
  nested?: boolean;
  /** Attached volumes in order (/dev/vda, /dev/vdb, ... in the guest). */
  volumes?: readonly QemuVolume[];
  /** I/O limits of each disk (a throttle group per disk); absent: unthrottled. */
  diskLimits?: DiskLimits;
  /** The NoCloud seed image (a read-only disk after the volumes), as QEMU sees it. */
  seedPath?: string;
  /** The VM generation id (vmgenid device; a UUID): changes when the VM is cloned or its disk restored. */
  generationId?: string;
}

export interface DiskLimits {
  iops?: number;
  bytesPerSecond?: number;
}

export interface QemuVolume {
  id: string;
  /** The LUKS file, as QEMU sees it (inside its jail). */
  path: string;
  /** The file holding the LUKS passphrase, as QEMU sees it; QEMU reads it once, at start. */
  keyFile: string;
  /** raw LUKS (default) or qcow2 with LUKS encryption (a root disk, maybe an overlay of `backing`). */
  format?: 'luks' | 'qcow2';
  /** qcow2 only: the read-only image below the overlay, as QEMU sees it. */
  backing?: { path: string; format: 'raw' | 'qcow2' };
  /** The disk the firmware boots (bootindex 0). */
  boot?: boolean;
}

/**
 * The guest CPU: the host's under KVM, QEMU's default model under TCG; either way without VMX and SVM
 * (no hypervisor inside the guest) unless nested virtualization is allowed for the VM's tenant.
 */
export function cpuModel(spec: Pick<QemuSpec, 'accelerator' | 'nested'>): string {
  const base = spec.accelerator === 'kvm' ? 'host' : 'qemu64';
  return spec.nested ? base : `${base},vmx=off,svm=off`;
}

export interface QemuNic {
  tap: string;
  mac: string;
  ipv4: string;
  prefixLength: number;
  gateway: string | null;
}

export interface QemuSockets {
  qmp: string;
  console: string;
  guestAgent: string;
}

export function socketPaths(runDir: string): QemuSockets {
  return { qmp: `${runDir}/qmp.sock`, console: `${runDir}/console.sock`, guestAgent: `${runDir}/ga.sock` };
}

/** A stable locally administered MAC from the VM id (52:54:00 is QEMU's prefix). */
export function macForVm(id: string): string {
  const hash = createHash('sha256').update(id).digest();
  return ['52', '54', '00', ...[0, 1, 2].map((i) => hash[i]!.toString(16).padStart(2, '0'))].join(':');
}

function assertOptionSafe(value: string, what: string): string {
  // QEMU option strings use ',' as separator and '=' inside; refuse anything that could inject.
  if (!/^[A-Za-z0-9._/:-]+$/.test(value))
    throw new Error(`${what} contains characters not allowed in a QEMU option`);
  return value;
}

const VM_NAME = new RegExp(NAME_PATTERN);

function assertVmName(name: string): string {
  if (!VM_NAME.test(name)) throw new Error('VM name must be a lowercase DNS label');
  return name;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function assertIpv4(value: string): string {
  const match = IPV4.exec(value);
  if (!match || match.slice(1).some((p) => Number(p) > 255)) throw new Error(`not an IPv4 address: ${value}`);
  return value;
}

/** The guest learns its address from the platform: the first NIC's, else the user-mode network's. */
export function kernelCommandLine(
  spec: Pick<QemuSpec, 'name' | 'nics'>,
  extra: readonly string[] = [],
): string {
  const nic = spec.nics?.[0];
  const addressing = nic
    ? [
        `rampart.ip=${assertIpv4(nic.ipv4)}/${Number(nic.prefixLength)}`,
        ...(nic.gateway ? [`rampart.gw=${assertIpv4(nic.gateway)}`] : []),
      ]
    : [`rampart.ip=${USER_NET.guestIp}/${USER_NET.prefix}`, `rampart.gw=${USER_NET.gateway}`];
  return [
    'console=ttyS0',
    'panic=-1',
    'quiet',
    ...addressing,
    `rampart.hostname=${assertVmName(spec.name)}`,
    ...extra,
  ].join(' ');
}

const TAP = /^rpt[0-9a-f]{12}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** -netdev/-device pairs: taps on tenant networks, or the isolated user-mode NIC. */
function nicArgs(spec: QemuSpec): string[] {
  if (!spec.nics || spec.nics.length === 0)
    return [
      '-netdev',
      'user,id=net0,restrict=on',
      '-device',
      `virtio-net-pci,netdev=net0,mac=${macForVm(spec.id)}`,
    ];
  return spec.nics.flatMap((nic, index) => {
    if (!TAP.test(nic.tap)) throw new Error(`bad tap name ${JSON.stringify(nic.tap)}`);
    if (!MAC.test(nic.mac)) throw new Error(`bad MAC ${JSON.stringify(nic.mac)}`);
    return [
      '-netdev',
      `tap,id=net${index},ifname=${nic.tap},script=no,downscript=no`,
      '-device',
      `virtio-net-pci,netdev=net${index},mac=${nic.mac}`,
    ];
  });
}

const VOLUME_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Per volume: a secret read from its key file, a LUKS block node on the file, and a virtio-blk device
 * whose serial is the start of the volume id (the guest finds it under /dev/disk/by-id). With disk
 * limits, a throttle filter node (its own throttle group) sits between the LUKS node and the device.
 */
export function volumeArgs(volumes: readonly QemuVolume[], limits: DiskLimits = {}): string[] {
  const throttled = limits.iops !== undefined || limits.bytesPerSecond !== undefined;
  return volumes.flatMap((volume, index) => {
    if (!VOLUME_ID.test(volume.id))
      throw new Error(`bad volume id ${JSON.stringify(volume.id.slice(0, 64))}`);
    const keyFile = assertOptionSafe(volume.keyFile, 'volume key file');
    const file = { driver: 'file', filename: assertOptionSafe(volume.path, 'volume path') };
    const base: string[] = [];
    let blockdev: Record<string, unknown>;
    if (volume.format === 'qcow2') {
      // The backing is named explicitly (read-only): what the overlay's header says is never opened.
      if (volume.backing)
        base.push(
          '-blockdev',
          JSON.stringify({
            driver: backingDriver(volume.backing.format),
            'node-name': `base${index}`,
            'read-only': true,
            file: {
              driver: 'file',
              filename: assertOptionSafe(volume.backing.path, 'backing image path'),
              'read-only': true,
            },
          }),
        );
      blockdev = {
        driver: 'qcow2',
        'node-name': `vol${index}`,
        encrypt: { format: 'luks', 'key-secret': `volsec${index}` },
        file,
        backing: volume.backing ? `base${index}` : null,
      };
    } else {
      blockdev = { driver: 'luks', 'node-name': `vol${index}`, 'key-secret': `volsec${index}`, file };
    }
    const throttle = throttled
      ? blockThrottleArgs(
          {
            id: `vol${index}`,
            ...(limits.iops !== undefined ? { iopsTotal: limits.iops } : {}),
            ...(limits.bytesPerSecond !== undefined ? { bpsTotal: limits.bytesPerSecond } : {}),
          },
          `vol${index}`,
        )
      : [];
    const drive = throttled ? throttleNodeName(`vol${index}`) : `vol${index}`;
    return [
      '-object',
      `secret,id=volsec${index},file=${keyFile},format=raw`,
      ...base,
      '-blockdev',
      JSON.stringify(blockdev),
      ...throttle,
      '-device',
      `virtio-blk-pci,drive=${drive},serial=${volume.id.slice(0, 20)}${volume.boot ? ',bootindex=0' : ''}`,
    ];
  });
}

function backingDriver(format: string): 'raw' | 'qcow2' {
  if (format !== 'raw' && format !== 'qcow2') throw new Error(`bad backing image format ${format}`);
  return format;
}

/** The NoCloud seed: a read-only raw disk (the guest finds it by its CIDATA label). */
export function seedArgs(seedPath: string): string[] {
  return [
    '-blockdev',
    JSON.stringify({
      driver: 'raw',
      'node-name': 'seed0',
      'read-only': true,
      file: { driver: 'file', filename: assertOptionSafe(seedPath, 'seed path'), 'read-only': true },
    }),
    '-device',
    'virtio-blk-pci,drive=seed0,serial=cidata',
  ];
}

/** How the guest is booted: its kernel directly, or by the firmware from the boot volume. */
function bootArgs(spec: QemuSpec): string[] {
  if (!spec.kernel) {
    if (!(spec.volumes ?? []).some((v) => v.boot)) throw new Error('no kernel and no boot volume');
    return [];
  }
  return [
    '-kernel',
    assertOptionSafe(spec.kernel.kernelPath, 'kernel path'),
    '-initrd',
    assertOptionSafe(spec.kernel.initrdPath, 'initrd path'),
    '-append',
    kernelCommandLine(spec),
  ];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The vmgenid device: the guest's kernel sees a new generation (reseeds its RNG) when it changes. */
export function generationIdArgs(generationId: string): string[] {
  if (!UUID.test(generationId)) throw new Error('the generation id must be a UUID');
  return ['-device', `vmgenid,guid=${generationId}`];
}

export function buildQemuArgs(spec: QemuSpec): string[] {
  const run = assertOptionSafe(spec.runDir, 'run directory');
  const sockets = socketPaths(run);
  const machine = ['pc', 'dump-guest-core=off', 'mem-merge=off'].join(',');
  return [
    '-name',
    `guest=${assertVmName(spec.name)},debug-threads=on`,
    '-uuid',
    assertOptionSafe(spec.id, 'VM id'),
    '-machine',
    machine,
    '-accel',
    spec.accelerator === 'tcg' ? `tcg,tb-size=${TCG_TRANSLATION_CACHE_MIB}` : spec.accelerator,
    '-cpu',
    cpuModel(spec),
    '-m',
    String(spec.memoryMiB),
    '-smp',
    String(spec.vcpus),
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    ...bootArgs(spec),
    '-chardev',
    `socket,id=console0,path=${sockets.console},server=on,wait=off`,
    '-serial',
    'chardev:console0',
    '-chardev',
    `socket,id=qmp0,path=${sockets.qmp},server=on,wait=off`,
    '-mon',
    'chardev=qmp0,mode=control',
    '-device',
    'virtio-serial-pci,id=vser0',
    '-chardev',
    `socket,id=ga0,path=${sockets.guestAgent},server=on,wait=off`,
    '-device',
    `virtserialport,bus=vser0.0,chardev=ga0,name=${GUEST_AGENT_PORT_NAME}`,
    ...nicArgs(spec),
    ...volumeArgs(spec.volumes ?? [], spec.diskLimits),
    ...(spec.seedPath !== undefined ? seedArgs(spec.seedPath) : []),
    ...(spec.generationId !== undefined ? generationIdArgs(spec.generationId) : []),
    '-sandbox',
    SANDBOX,
    '-msg',
    'timestamp=on',
  ];
}

/**
 * Resource limits of every QEMU (set by `prlimit` before it drops privileges, so QEMU cannot raise
 * them): open files, and the largest file it may write: the largest volume (64 TiB, the protocol's
 * bound) plus its LUKS header, rounded up to 65 TiB (a bound against a runaway writer).
 */
export const QEMU_RLIMITS = { openFiles: 4096, fileSizeBytes: 65 * 1024 ** 4 } as const;

/** `prlimit` setting QEMU_RLIMITS (soft = hard) for the command that follows. */
export function rlimitPrefix(prlimitBinary: string): string[] {
  const { openFiles, fileSizeBytes } = QEMU_RLIMITS;
  return [
    prlimitBinary,
    `--nofile=${openFiles}:${openFiles}`,
    `--fsize=${fileSizeBytes}:${fileSizeBytes}`,
    '--',
  ];
}

/** The unprivileged wrapper: QEMU starts already as the VM's uid, with no privileges to regain. */
export function unprivilegedPrefix(
  uid: number,
  gid: number,
  supplementaryGroups: readonly number[],
): string[] {
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid <= 0 || gid <= 0) {
    throw new Error('QEMU never runs as root: the VM uid and gid must be positive');
  }
  return [
    '--reuid',
    String(uid),
    '--regid',
    String(gid),
    ...(supplementaryGroups.length > 0 ? ['--groups', supplementaryGroups.join(',')] : ['--clear-groups']),
    '--no-new-privs',
    '--inh-caps=-all',
    '--bounding-set=-all',
    '--',
  ];
}

/**
 * The jail of one VM's QEMU: a private mount namespace whose root (chroot) holds only what that QEMU
 * needs. QEMU sees the host's /usr (read-only), the image's kernel and initrd (read-only, as
 * /image/kernel and /image/initrd) or its disk (read-only, /image/disk-N: the base of the root disk's
 * overlay), a few device nodes (null, zero, random, urandom, net/tun, and kvm
 * when the accelerator is KVM), its own run directory (its sockets) and the files of its attached
 * volumes (read-write, each as /volumes/<id>: the LUKS file itself, opened and decrypted by QEMU). Nothing else exists for it: no
 * /home, /root, /etc/shadow, no other VM's files, no agent data, no /proc and no /sys (QEMU 7.2 with
 * this command line needs neither; measured with strace: it falls back from /proc/self/exe to argv[0]).
 *
 * How, per start (the agent is root):
 *  1. The skeleton is written into <vmDir>/jail (root, 0755): empty mount points and the host's
 *     top-level links (merged /usr: lib -> usr/lib, ...). It is rebuilt from scratch at every start and
 *     written without ever following a link (a planted link cannot make the agent write elsewhere).
 *  2. A holder process `unshare --mount --propagation private sleep 30` creates the namespace
 *     (util-linux unshare execs in place, so the holder is the child the agent spawned).
 *  3. One `nsenter --target <holder> --mount -- mount --fstab <vmDir>/jail.fstab --all` populates it
 *     with bind mounts. The first entry binds the jail root onto itself read-only, so everything QEMU
 *     can reach is read-only except its run directory, its volume files and the device nodes. libmount (2.38) turns
 *     `bind,ro,...` into a bind followed by a read-only remount; the agent then reads the holder's
 *     mountinfo and refuses to go on unless every mount is there with the expected read-only flag and
 *     nothing else under the jail is writable.
 *  4. QEMU is started as `nsenter --target <holder> --mount [--net=/run/netns/NS] -- chroot <jail>
 *     prlimit ... setpriv ... qemu ...`: every step execs in place, so the pid the agent tracks is QEMU's.
 *  5. Once QEMU's /proc/<pid>/ns/mnt is the holder's, the holder is killed. From then on the namespace
 *     and its mounts live exactly as long as QEMU: nothing is mounted on the host, nothing can leak, and
 *     nothing needs cleaning up after QEMU exits (or after an agent crash).
 *
 * The run directory appears inside the jail at the same absolute path as on the host (mirrored), so
 * QEMU's command line names the same socket paths the agent connects to, and tools that find a data
 * directory's QEMUs by their command line keep working. The mirrored path holds nothing but empty,
 * read-only directories leading to the run directory.
 */
import type { ChildProcess } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { openNoFollow, writeNoFollow } from '../../common/no-follow.js';
import { run, spawnDetached } from '../../common/subprocess.js';

/** Where the image files appear inside the jail (QEMU's -kernel and -initrd). */
export const JAIL_KERNEL = '/image/kernel';
export const JAIL_INITRD = '/image/initrd';
/** Where the n-th disk image (a read-only base of a disk overlay) appears inside the jail. */
export function jailDiskImagePath(index: number): string {
  if (!Number.isInteger(index) || index < 0 || index > 64) throw new Error(`bad disk image index ${index}`);
  return `/image/disk-${index}`;
}
/** Where the volume files appear inside the jail: /volumes/<volume id>. */
export const JAIL_VOLUMES = '/volumes';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** How long the holder lives at most (if the agent dies mid-start it goes away by itself). */
const HOLDER_SECONDS = 30;
const HOLDER_READY_TIMEOUT_MS = 5_000;
const MOUNT_TIMEOUT_MS = 15_000;
/** Top-level entries the host may have as links into /usr (merged /usr) or as directories. */
const SYSTEM_TOP_LEVEL = ['bin', 'sbin', 'lib', 'lib64'] as const;
const DEVICES = ['null', 'zero', 'urandom', 'random', 'net/tun'] as const;
/** Top-level names of the skeleton: a mirrored run directory must not start with one of them. */
const RESERVED_TOP_LEVEL = new Set<string>([...SYSTEM_TOP_LEVEL, 'usr', 'dev', 'etc', 'image', 'volumes']);

export interface JailBinaries {
  nsenter: string;
  unshare: string;
  chroot: string;
  mount: string;
  /** What the holder runs (outside the jail). */
  sleep: string;
}

/** The host's top-level system entries: a link (merged /usr) is mirrored, a directory is bound. */
export type HostEntry = { kind: 'link'; target: string } | { kind: 'dir' } | { kind: 'absent' };

export interface HostRootFacts {
  entries: Record<(typeof SYSTEM_TOP_LEVEL)[number], HostEntry>;
  /** /etc/ld.so.cache exists (the dynamic loader finds the libraries quicker with it). */
  ldCache: boolean;
}

export interface JailSpec {
  /** The VM's directory on the host (root, 0755): the jail root is <vmDir>/jail. */
  vmDir: string;
  /** The VM's run directory on the host (its uid, 0700): QEMU's sockets. */
  runDir: string;
  /** The image's kernel and initrd (kernel+initrd images). */
  kernel?: { kernelPath: string; initrdPath: string };
  /** Disk images on the host (read-only bases of the VM's overlays), bound at jailDiskImagePath(n). */
  diskImages?: readonly string[];
  kvm: boolean;
  /** The VM's volume files on the host (regular LUKS files, owned by the VM's uid), in order. */
  volumes?: readonly JailVolume[];
}

export interface JailVolume {
  id: string;
  /** The file on the host. */
  source: string;
}

/** Something the skeleton holds, by its absolute path inside the jail. */
export type SkeletonEntry =
  | { kind: 'dir'; path: string }
  | { kind: 'file'; path: string }
  | { kind: 'link'; path: string; target: string };

/** One bind mount: `source` on the host onto `target` inside the jail. */
export interface JailMount {
  source: string;
  target: string;
  options: readonly string[];
  readOnly: boolean;
}

export interface JailLayout {
  root: string;
  skeleton: SkeletonEntry[];
  mounts: JailMount[];
}

const RO = ['bind', 'ro', 'nosuid', 'nodev'];
const RO_NOEXEC = [...RO, 'noexec'];
const DEVICE = ['bind', 'nosuid', 'noexec'];
const RUN = ['bind', 'nosuid', 'nodev', 'noexec'];
const VOLUME = ['bind', 'nosuid', 'nodev', 'noexec'];

export function jailRoot(vmDir: string): string {
  return join(vmDir, 'jail');
}

/** Where the run directory appears inside the jail: at its host path (see the module comment). */
export function jailRunDir(runDir: string): string {
  return runDir;
}

/** Where a volume's file appears inside the jail (its id is checked: it becomes a path). */
export function jailVolumePath(id: string): string {
  if (!UUID.test(id)) throw new Error(`bad volume id ${JSON.stringify(id.slice(0, 64))}`);
  return `${JAIL_VOLUMES}/${id}`;
}

/** A host path as seen from inside the jail: binaries must live under /usr (or a link into it). */
export function inJailBinary(path: string, facts: HostRootFacts): string {
  const clean = normalize(path);
  if (!isAbsolute(clean)) throw new Error(`${path} is not an absolute path`);
  const top = clean.split('/')[1] ?? '';
  const reachable =
    top === 'usr' ||
    ((SYSTEM_TOP_LEVEL as readonly string[]).includes(top) &&
      facts.entries[top as (typeof SYSTEM_TOP_LEVEL)[number]].kind !== 'absent');
  if (!reachable) throw new Error(`${path} is not inside the QEMU jail (only /usr and its links are)`);
  return clean;
}

/** What to create and what to mount for one VM (pure: the host facts are given). */
export function jailLayout(spec: JailSpec, facts: HostRootFacts): JailLayout {
  const root = jailRoot(spec.vmDir);
  const run = normalize(jailRunDir(spec.runDir));
  const runParts = run.split('/').filter(Boolean);
  if (!isAbsolute(run) || runParts.length === 0 || RESERVED_TOP_LEVEL.has(runParts[0]!))
    throw new Error(`the run directory ${spec.runDir} cannot be mirrored into the jail`);
  const skeleton: SkeletonEntry[] = [];
  const mounts: JailMount[] = [{ source: root, target: '/', options: RO_NOEXEC, readOnly: true }];
  const dirs = new Set<string>();
  const addDir = (path: string) => {
    const parts = path.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const dir = `/${parts.slice(0, i).join('/')}`;
      if (dirs.has(dir)) continue;
      dirs.add(dir);
      skeleton.push({ kind: 'dir', path: dir });
    }
  };
  const addFile = (path: string) => {
    addDir(dirname(path));
    skeleton.push({ kind: 'file', path });
  };
  addDir('/usr');
  mounts.push({ source: '/usr', target: '/usr', options: RO, readOnly: true });
  for (const name of SYSTEM_TOP_LEVEL) {
    const entry = facts.entries[name];
    if (entry.kind === 'link') skeleton.push({ kind: 'link', path: `/${name}`, target: entry.target });
    else if (entry.kind === 'dir') {
      addDir(`/${name}`);
      mounts.push({ source: `/${name}`, target: `/${name}`, options: RO, readOnly: true });
    }
  }
  if (facts.ldCache) {
    addFile('/etc/ld.so.cache');
    mounts.push({
      source: '/etc/ld.so.cache',
      target: '/etc/ld.so.cache',
      options: RO_NOEXEC,
      readOnly: true,
    });
  }
  for (const device of [...DEVICES, ...(spec.kvm ? ['kvm'] : [])]) {
    addFile(`/dev/${device}`);
    mounts.push({ source: `/dev/${device}`, target: `/dev/${device}`, options: DEVICE, readOnly: false });
  }
  if (spec.kernel) {
    addFile(JAIL_KERNEL);
    mounts.push({ source: spec.kernel.kernelPath, target: JAIL_KERNEL, options: RO_NOEXEC, readOnly: true });
    addFile(JAIL_INITRD);
    mounts.push({ source: spec.kernel.initrdPath, target: JAIL_INITRD, options: RO_NOEXEC, readOnly: true });
  }
  for (const [index, source] of (spec.diskImages ?? []).entries()) {
    if (!isAbsolute(source)) throw new Error(`disk image ${source} is not an absolute path`);
    const target = jailDiskImagePath(index);
    addFile(target);
    mounts.push({ source, target, options: RO_NOEXEC, readOnly: true });
  }
  addDir(run);
  mounts.push({ source: spec.runDir, target: run, options: RUN, readOnly: false });
  for (const volume of spec.volumes ?? []) {
    const target = jailVolumePath(volume.id);
    if (!isAbsolute(volume.source)) throw new Error(`volume file ${volume.source} is not an absolute path`);
    addFile(target);
    mounts.push({ source: volume.source, target, options: VOLUME, readOnly: false });
  }
  return { root, skeleton, mounts };
}

/** fstab field escaping (getmntent): space, tab, newline and backslash as octal. */
export function fstabEscape(value: string): string {
  return value.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

/** The fstab `mount --all` reads: one bind mount per line, the jail root's own first. */
export function renderFstab(layout: JailLayout): string {
  return layout.mounts
    .map((m) => {
      const target = m.target === '/' ? layout.root : join(layout.root, m.target);
      return `${fstabEscape(m.source)} ${fstabEscape(target)} none ${m.options.join(',')} 0 0\n`;
    })
    .join('');
}

/** The command that runs `inner` (paths inside the jail) in the jail's namespace, chrooted. */
export function jailCommand(
  binaries: Pick<JailBinaries, 'nsenter' | 'chroot'>,
  holderPid: number,
  root: string,
  netnsPath: string | null,
  inner: readonly string[],
): string[] {
  return [
    binaries.nsenter,
    '--target',
    String(holderPid),
    '--mount',
    ...(netnsPath === null ? [] : [`--net=${netnsPath}`]),
    '--',
    binaries.chroot,
    root,
    ...inner,
  ];
}

export interface MountinfoEntry {
  /** Mount point, as the reading process's root sees it. */
  path: string;
  readOnly: boolean;
}

function unescapeMountinfo(value: string): string {
  return value.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Mount points and their per-mount read-only flag from a /proc/<pid>/mountinfo text. */
export function parseMountinfo(text: string): MountinfoEntry[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const fields = line.split(' ');
      const options = (fields[5] ?? '').split(',');
      return { path: unescapeMountinfo(fields[4] ?? ''), readOnly: options.includes('ro') };
    });
}

/**
 * Differences between the mounts a namespace should hold (seen from outside the jail, as absolute
 * host paths under the root) and what its mountinfo says; empty when all is right. The last mount on
 * a point is the visible one. Nothing else mounted under the jail root may be writable: only the
 * layout's writable mounts (run directory, device nodes, volume files) are.
 */
export function verifyMounts(layout: JailLayout, mountinfo: readonly MountinfoEntry[]): string[] {
  const visible = new Map<string, MountinfoEntry>();
  for (const entry of mountinfo) visible.set(entry.path, entry);
  const problems: string[] = [];
  const expected = new Set<string>();
  for (const mount of layout.mounts) {
    const point = mount.target === '/' ? layout.root : join(layout.root, mount.target);
    expected.add(point);
    const found = visible.get(point);
    if (!found) problems.push(`${mount.target} is not mounted`);
    else if (mount.readOnly && !found.readOnly) problems.push(`${mount.target} is not read-only`);
  }
  for (const [path, entry] of visible) {
    const inside = path === layout.root || path.startsWith(`${layout.root}/`);
    if (inside && !entry.readOnly && !expected.has(path))
      problems.push(`${path.slice(layout.root.length) || '/'} is writable`);
  }
  return problems;
}

/** Reads the host's top-level layout (merged /usr or not). */
export function readHostRootFacts(): HostRootFacts {
  const entry = (path: string): HostEntry => {
    const stat = lstatSync(path, { throwIfNoEntry: false });
    if (!stat) return { kind: 'absent' };
    if (stat.isSymbolicLink()) return { kind: 'link', target: readlinkSync(path) };
    return stat.isDirectory() ? { kind: 'dir' } : { kind: 'absent' };
  };
  const entries = Object.fromEntries(SYSTEM_TOP_LEVEL.map((name) => [name, entry(`/${name}`)])) as Record<
    (typeof SYSTEM_TOP_LEVEL)[number],
    HostEntry
  >;
  return { entries, ldCache: lstatSync('/etc/ld.so.cache', { throwIfNoEntry: false })?.isFile() === true };
}

/**
 * Rebuilds the skeleton from scratch: the old jail (a plain tree on the host: its mounts only ever
 * existed in QEMU's namespace) is removed, a link in its place included (removed, not followed).
 */
export function writeSkeleton(layout: JailLayout): void {
  rmSync(layout.root, { recursive: true, force: true });
  mkdirSync(layout.root, { mode: 0o755 });
  chmodSync(layout.root, 0o755);
  for (const entry of layout.skeleton) {
    const path = join(layout.root, entry.path);
    if (entry.kind === 'dir') {
      mkdirSync(path, { mode: 0o755 }); // fails (EEXIST) rather than reuse anything already there
      chmodSync(path, 0o755);
      if (!lstatSync(path).isDirectory()) throw new Error(`${path} is not a directory`);
    } else if (entry.kind === 'file') closeSync(openNoFollow(path, 'truncate', 0o644));
    else symlinkSync(entry.target, path);
  }
}

function mountNamespace(pid: number | 'self'): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return null;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A prepared jail: its namespace, populated and checked, held by the holder until QEMU has entered it.
 * `release()` must be called in every case (it is idempotent).
 */
export class PreparedJail {
  private released = false;

  constructor(
    readonly layout: JailLayout,
    private readonly holder: ChildProcess,
    readonly holderPid: number,
    /** The namespace's id (`mnt:[inode]`). */
    readonly namespace: string,
    private readonly binaries: JailBinaries,
  ) {}

  /** The QEMU command (`inner`, with paths inside the jail) wrapped to run in the jail. */
  command(netnsPath: string | null, inner: readonly string[]): string[] {
    return jailCommand(this.binaries, this.holderPid, this.layout.root, netnsPath, inner);
  }

  /**
   * Waits until `pid` is inside the namespace. False if it exited first or did not get there in time
   * (the caller then kills it).
   */
  async entered(pid: number, timeoutMs = 5_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ns = mountNamespace(pid);
      if (ns === this.namespace) return true;
      if (ns === null || Date.now() > deadline) return false;
      await sleep(2);
    }
  }

  /** Kills the holder: from now on only QEMU keeps the namespace (and its mounts) alive. */
  release(): void {
    if (this.released) return;
    this.released = true;
    try {
      this.holder.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * Builds the jail of one VM start: skeleton, namespace, mounts, all checked. Throws with the reason
 * (and leaves no holder behind) if any step fails.
 */
export async function prepareJail(
  spec: JailSpec,
  binaries: JailBinaries,
  facts: HostRootFacts = readHostRootFacts(),
): Promise<PreparedJail> {
  const layout = jailLayout(spec, facts);
  writeSkeleton(layout);
  const fstab = join(spec.vmDir, 'jail.fstab');
  writeNoFollow(fstab, renderFstab(layout), 'truncate');
  const holder = spawnDetached(binaries.unshare, [
    '--mount',
    '--propagation',
    'private',
    '--',
    binaries.sleep,
    String(HOLDER_SECONDS),
  ]);
  holder.on('error', () => undefined); // reported below: the namespace never appears
  const pid = holder.pid;
  try {
    if (pid === undefined) throw new Error(`${binaries.unshare} could not be started`);
    const own = mountNamespace('self');
    const deadline = Date.now() + HOLDER_READY_TIMEOUT_MS;
    let namespace = mountNamespace(pid);
    while (namespace === own || namespace === null) {
      if (namespace === null || holder.exitCode !== null || Date.now() > deadline)
        throw new Error('the namespace holder did not start');
      await sleep(2);
      namespace = mountNamespace(pid);
    }
    await run(
      binaries.nsenter,
      ['--target', String(pid), '--mount', '--', binaries.mount, '--fstab', fstab, '--all'],
      {
        timeoutMs: MOUNT_TIMEOUT_MS,
        env: {},
      },
    );
    const problems = verifyMounts(layout, parseMountinfo(readFileSync(`/proc/${pid}/mountinfo`, 'utf8')));
    if (problems.length > 0) throw new Error(problems.join('; '));
    if (mountNamespace(pid) !== namespace) throw new Error('the namespace holder went away');
    return new PreparedJail(layout, holder, pid, namespace, binaries);
  } catch (error) {
    holder.kill('SIGKILL');
    throw new Error(`the QEMU jail could not be set up: ${(error as Error).message}`, { cause: error });
  }
}

/** What the kernel says about a process's jail (for the hardening self-check). */
export interface JailView {
  mountNamespace: 'private' | 'host';
  root: string;
  mounts: MountinfoEntry[];
}

export function inspectJail(pid: number): JailView {
  const own = readlinkSync('/proc/self/ns/mnt');
  const ns = readlinkSync(`/proc/${pid}/ns/mnt`);
  return {
    mountNamespace: ns === own ? 'host' : 'private',
    root: readlinkSync(`/proc/${pid}/root`),
    // Relative to the process's root, and only what is visible below it.
    mounts: parseMountinfo(readFileSync(`/proc/${pid}/mountinfo`, 'utf8')),
  };
}

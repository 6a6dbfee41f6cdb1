/**
 * One VM on this host: its QEMU process, the three channels to it (QMP, serial console, guest agent)
 * and the reconciliation of the server's intent against what is true. QEMU is started detached and
 * unprivileged, so it survives an agent restart; a restarted agent re-adopts it from state.json.
 *
 * Layout: vms/<id>/ (root, 0755) holds state.json, console.log and qemu.log; vms/<id>/run/ (the VM's
 * uid, 0700) holds QEMU's sockets. QEMU can touch nothing but run/.
 *
 * Resource limits: before each start the VM's cgroups are created and its limits applied, and QEMU is
 * spawned through cgexec so it joins them before it execs (see cgroups/vm-cgroups.ts). If that is not
 * possible the start fails, with the reason in the VM's status. Once QMP answers, QEMU's membership is
 * checked. After QEMU exits its cgroups are removed.
 *
 * Jail: QEMU runs in a private mount namespace, chrooted into vms/<id>/jail, which holds only the
 * host's /usr (read-only), the image's kernel and initrd, a few device nodes, run/ and the VM's
 * volume files (see qemu-jail.ts). The namespace lives exactly as long as QEMU.
 *
 * Volumes: before each start every volume of the intent is created (or grown) as a LUKS file, given
 * to the VM's uid and bound into the jail; each passphrase is written to run/volume-<n>.key (the VM's
 * uid, 0600) for QEMU's `secret` object, and those files are deleted as soon as QMP answers (QEMU has
 * read them by then), or when the start fails. The passphrases live only in memory otherwise:
 * state.json holds the intent without them (a restarted agent re-adopts a running QEMU, which needs
 * none; every start comes with a fresh intent from the server). A volume leaving the intent, or the
 * VM being removed, gives the file back to root (erasing it is the server's explicit request).
 */
import { checkImageTrustOnAgent } from './image-trust-check.js';
import { verifyImage } from './image-verification.js';
import type { HostNetwork } from './host-network.js';
import { EventEmitter } from 'node:events';
import {
  chownSync,
  closeSync,
  constants,
  existsSync,
  fchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { writeNoFollow } from '../../common/no-follow.js';
import type { Socket } from 'node:net';
import { tryConnect } from '../../common/unix-socket.js';
import { join } from 'node:path';
import type {
  BackingImage,
  SeedIntent,
  VmIntent,
  VmPhase,
  VmResources,
  VmStatus,
} from '../../api/agent-protocol.js';
import type { Accelerator } from '../../api/host.js';
import { readJsonLines } from '../../common/json-lines.js';
import type { Logger } from '../../common/logger.js';
import { spawnDetached } from '../../common/subprocess.js';
import type { CgroupUsage } from '../cgroups/cgroup-driver.js';
import { limitsFor, type VmCgroups } from '../cgroups/vm-cgroups.js';
import {
  QEMU_RLIMITS,
  buildQemuArgs,
  rlimitPrefix,
  socketPaths,
  unprivilegedPrefix,
} from '../qemu/command-line.js';
import { hardeningNotRunning, type VmHardening } from '../../api/hardening.js';
import { inspectProcess, pciDevices } from './hardening.js';
import {
  JAIL_INITRD,
  jailDiskImagePath,
  JAIL_KERNEL,
  inJailBinary,
  jailVolumePath,
  jailRoot,
  jailRunDir,
  prepareJail,
  readHostRootFacts,
  type JailBinaries,
  type PreparedJail,
} from './qemu-jail.js';
import { QmpClient } from '../qemu/qmp-client.js';
import type { VolumeFiles } from '../storage/volume-files.js';
import { seedFiles, writeSeedImage, type SeedTools } from '../storage/nocloud-seed.js';
import { ConsoleLog } from './console-log.js';
import { identify, isAlive, type ProcessIdentity } from './process-info.js';

/** Cumulative disk counters of a running QEMU. */
export interface DiskUsage {
  readBytes: number;
  writeBytes: number;
  readOps: number;
  writeOps: number;
}

export interface PersistedVm {
  intent: VmIntent;
  uid: number;
  process: ProcessIdentity | null;
  accelerator: Accelerator | null;
  bootId: number;
  rebootId: number;
  spawnedAt: number | null;
  booted: boolean;
  bootMs: number | null;
  phase: VmPhase;
  error: string | null;
  /** Limits in force for the running QEMU (absent in state written before limits existed). */
  resources?: VmResources | null;
  /** The last start failed for good (the image did not verify). */
  fatal?: boolean;
}

export interface VmRuntimeEnv {
  vmsDir: string;
  accelerator: Accelerator;
  qemuBinary: string;
  setprivBinary: string;
  /** util-linux prlimit: QEMU's resource limits are set before it drops privileges. */
  prlimitBinary: string;
  /** What builds QEMU's jail (private mount namespace + chroot): nsenter, unshare, chroot, mount, sleep. */
  jail: JailBinaries;
  kvmGroup: number | null;
  consoleCapBytes: number;
  cgroups: VmCgroups;
  /** Taps on tenant bridges, and the network namespace QEMU runs in. */
  network: HostNetwork;
  /** The host's volume files (LUKS), attached to VMs by their intents. */
  volumes: VolumeFiles;
  /** mkfs.vfat and mcopy: the NoCloud seed of disk-image VMs. */
  seedTools: SeedTools;
  log: Logger;
  /** Remote mode: why no VM may start now (the host fenced itself), or null. */
  startRefusal?: () => string | null;
}

/** A volume ready for this start: its host file, its key file, and how QEMU opens it. */
interface PreparedVolume {
  id: string;
  source: string;
  keyFile: string;
  format: 'luks' | 'qcow2';
  backing: BackingImage | null;
  boot: boolean;
}

/** The NoCloud seed image in the run directory. */
const SEED_FILE = 'seed.img';

/** The key file of the n-th volume in the run directory (QEMU's `secret` object reads it). */
const VOLUME_KEY_FILE = /^volume-\d+\.key$/;

/** The intent as persisted: without the volume keys (they are never written to disk). */
export function intentWithoutKeys(intent: VmIntent): VmIntent {
  if (!intent.volumes) return intent;
  // The type keeps `key`; state read back from disk has none (start() refuses a volume without one).
  const volumes = intent.volumes.map(({ key: _key, ...rest }) => rest) as VmIntent['volumes'];
  return { ...intent, volumes };
}

interface GuestHeartbeat {
  type: 'heartbeat';
  uptime: number;
  ips: string[];
}

const CHANNEL_TIMEOUT_MS = 20_000;
const HEARTBEAT_REPORT_INTERVAL_MS = 5_000;
const FORCE_KILL_GRACE_MS = 3_000;

export interface VmInstanceEvents {
  status: [VmStatus];
  console: [Buffer];
}

export class VmInstance extends EventEmitter<VmInstanceEvents> {
  readonly dir: string;
  readonly runDir: string;
  private readonly consoleLog: ConsoleLog;
  private qmp: QmpClient | null = null;
  private consoleSocket: Socket | null = null;
  private guestSocket: Socket | null = null;
  private monitor: NodeJS.Timeout | null = null;
  private stopTimer: NodeJS.Timeout | null = null;
  private stopRequested = false;
  private guestShutdown = false;
  private resetAt: number | null = null;
  private lastExit: string | null = null;
  private lastHeartbeatAt: string | null = null;
  private guestUptime: number | null = null;
  private guestIps: string[] = [];
  private lastReportAt = 0;
  private lastReportKey = '';
  private removed = false;
  /** The pending removal of the VM's cgroups: a new start waits for it. */
  private cgroupRelease: Promise<void> = Promise.resolve();
  /** Set by start(): check QEMU's cgroup membership as soon as QMP answers. */
  private verifyConfinementOnQmp = false;
  /** Why QEMU was stopped for not being confined; becomes the crash error. */
  private confinementFailure: string | null = null;
  /** A start is in progress (its volumes may be in preparation). */
  private starting = false;

  constructor(
    private state: PersistedVm,
    private readonly env: VmRuntimeEnv,
  ) {
    super();
    this.dir = join(env.vmsDir, state.intent.id);
    this.runDir = join(this.dir, 'run');
    mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    this.consoleLog = new ConsoleLog(join(this.dir, 'console.log'), env.consoleCapBytes);
  }

  get id(): string {
    return this.state.intent.id;
  }

  get uid(): number {
    return this.state.uid;
  }

  get pid(): number | null {
    return this.state.process?.pid ?? null;
  }

  static load(file: string): PersistedVm {
    return JSON.parse(readFileSync(file, 'utf8')) as PersistedVm;
  }

  /** After an agent restart: re-attach to a QEMU that still runs, or record that it died meanwhile. */
  adopt(): void {
    this.startMonitor();
    if (this.state.phase === 'stopping' || this.state.intent.power === 'stopped') this.stopRequested = true;
    if (this.state.process && isAlive(this.state.process)) {
      this.env.log.info({ vmId: this.id, pid: this.state.process.pid }, 'adopted running QEMU');
      this.reapplyLimits(this.state.process.pid);
      this.connectChannels();
      return;
    }
    this.releaseCgroups(); // QEMU is gone: its cgroups may have outlived it while the agent was down
    if (this.state.process) {
      this.state.process = null;
      this.state.resources = null;
      if (this.state.phase !== 'stopped' && this.state.phase !== 'stopping') {
        this.state.phase = 'crashed';
        this.state.error = 'QEMU exited while the agent was not running';
      } else {
        this.state.phase = 'stopped';
      }
      this.persist();
    }
  }

  /** Moves the VM towards the server's intent; resolves once the immediate step has been taken. */
  async reconcile(intent: VmIntent): Promise<VmStatus> {
    const previous = this.state.intent;
    this.state.intent = intent;
    this.persist();
    await this.reclaimVolumes(previous, intent);
    const alive = this.state.process !== null && isAlive(this.state.process);
    if (intent.power === 'stopped') {
      if (alive) await this.stop(intent.stopTimeoutMs);
      else if (this.state.phase !== 'crashed') this.setPhase('stopped');
      return this.status();
    }
    if (!alive) {
      if (intent.bootId > this.state.bootId) await this.start();
      return this.status();
    }
    if (intent.bootId > this.state.bootId) {
      this.state.bootId = intent.bootId; // the server restarted a boot that is in fact still running
      this.persist();
    }
    if (this.limitsChanged(intent)) {
      this.reapplyLimits(this.state.process!.pid);
      this.reportStatus(true);
    }
    if (intent.rebootId > this.state.rebootId) await this.reset(intent.rebootId);
    const qmp = this.qmp ?? (await this.waitForQmp());
    if (intent.power === 'paused' && this.state.phase !== 'paused') {
      await qmp.stop();
      this.setPhase('paused');
    } else if (intent.power === 'running' && this.state.phase === 'paused') {
      await qmp.cont();
      this.setPhase(this.state.booted ? 'running' : 'starting');
    }
    return this.status();
  }

  status(): VmStatus {
    return {
      id: this.id,
      phase: this.state.phase,
      bootId: this.state.bootId,
      rebootId: this.state.rebootId,
      pid: this.state.process?.pid ?? null,
      uid: this.state.uid,
      accelerator: this.state.accelerator,
      guestIps: this.guestIps,
      lastHeartbeatAt: this.lastHeartbeatAt,
      guestUptimeSeconds: this.guestUptime,
      bootMs: this.state.bootMs,
      error: this.state.error,
      resources: this.state.resources ?? null,
      fatal: this.state.fatal ?? false,
    };
  }

  /** CPU, memory and task usage of the running QEMU's cgroups (null when not running or no limits). */
  resourceUsage(): CgroupUsage | null {
    return this.state.process ? this.env.cgroups.usage(this.id) : null;
  }

  /**
   * Bytes and operations read and written by the guest on all its disks since QEMU started (QMP
   * `query-blockstats`); null when QMP is not connected or does not answer within a second.
   */
  async diskUsage(): Promise<DiskUsage | null> {
    const qmp = this.qmp;
    if (!qmp || !this.state.process) return null;
    try {
      const stats = await qmp.queryBlockStats(1_000);
      const total: DiskUsage = { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 };
      for (const { stats: s } of stats) {
        total.readBytes += s.rd_bytes;
        total.writeBytes += s.wr_bytes;
        total.readOps += s.rd_operations;
        total.writeOps += s.wr_operations;
      }
      return total;
    } catch {
      return null;
    }
  }

  get consoleCap(): number {
    return this.consoleLog.capBytes;
  }

  consoleTail(bytes: number): Buffer {
    return this.consoleLog.tail(bytes);
  }

  writeConsole(data: Buffer): number {
    if (!this.consoleSocket || this.consoleSocket.destroyed)
      throw new Error('the VM console is not connected');
    this.consoleSocket.write(data);
    return data.length;
  }

  /** Stops QEMU by force, waits for it to go, and deletes every file of the VM. */
  async remove(): Promise<void> {
    this.stopRequested = true;
    await this.killAndWait();
    this.removed = true;
    this.shutdownRuntime();
    this.releaseCgroups();
    await this.cgroupRelease;
    await this.reclaimVolumes(this.state.intent, null);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** What the server last asked of this VM. */
  get intent(): VmIntent {
    return this.state.intent;
  }

  /** Whether this VM's QEMU runs (or is being started) with the volume attached. */
  usesVolume(volumeId: string): boolean {
    if (!(this.state.intent.volumes ?? []).some((v) => v.id === volumeId)) return false;
    return this.starting || (this.state.process !== null && isAlive(this.state.process));
  }

  /** The hardening self-check of the running QEMU (what the kernel and QEMU report, judged). */
  async hardening(): Promise<VmHardening> {
    const process = this.state.process;
    if (!process || !isAlive(process)) return hardeningNotRunning(`the VM is ${this.state.phase}`);
    const pid = process.pid;
    let devices: ReturnType<typeof pciDevices> = [];
    try {
      const qmp = this.qmp ?? (await this.waitForQmp());
      devices = pciDevices(await qmp.execute('query-pci', undefined, 5000));
    } catch {
      // QMP not answering: the device list stays empty and its check says so.
    }
    try {
      return inspectProcess(
        pid,
        {
          uid: this.state.uid,
          nested: this.state.intent.nestedVirtualization === true,
          jailRoot: jailRoot(this.dir),
          ...(this.state.intent.pinnedCpus ? { pinnedCpus: this.state.intent.pinnedCpus } : {}),
          ...QEMU_RLIMITS,
        },
        devices,
      );
    } catch (error) {
      return hardeningNotRunning(`QEMU's /proc entries could not be read: ${(error as Error).message}`);
    }
  }

  /** Detaches from QEMU without stopping it (agent shutdown). */
  detach(): void {
    this.shutdownRuntime();
  }

  // ------------------------------------------------------------------ lifecycle steps

  private async start(): Promise<void> {
    const refusal = this.env.startRefusal?.() ?? null;
    if (refusal) {
      this.failStart(refusal);
      return;
    }
    this.starting = true;
    try {
      await this.startSteps();
    } finally {
      this.starting = false;
    }
  }

  private async startSteps(): Promise<void> {
    const problem = await this.verifyFiles(this.state.intent);
    if (problem) {
      this.failStart(problem, true);
      return;
    }
    // The tenant's trust policy again, on the host, with the material the server sent (fails closed).
    const untrusted = checkImageTrustOnAgent(this.state.intent.image);
    if (untrusted) {
      this.failStart(untrusted, true);
      return;
    }
    const intent = this.state.intent;
    await this.cgroupRelease; // the previous boot's cgroups are gone before this boot's are made
    this.prepareRunDir();
    try {
      // Taps owned by the VM's uid (its unprivileged QEMU opens them), on the networks' bridges.
      await this.env.network.ensurePorts(
        intent.ports,
        { uid: this.state.uid, gid: this.state.uid },
        intent.limits.networkMbps,
      );
    } catch (error) {
      this.failStart(`network ports could not be set up: ${(error as Error).message}`);
      return;
    }
    let volumes: PreparedVolume[];
    try {
      volumes = await this.prepareVolumes(intent);
    } catch (error) {
      this.failStart(`volumes could not be prepared: ${(error as Error).message}`);
      return;
    }
    let seedPath: string | undefined;
    if (intent.seed) {
      try {
        seedPath = await this.writeSeed(intent, intent.seed);
      } catch (error) {
        this.failStart(`the NoCloud seed could not be written: ${(error as Error).message}`);
        return;
      }
    }
    // The read-only bases of the overlays, each bound once into the jail.
    const diskImages = [...new Set(volumes.flatMap((v) => (v.backing ? [v.backing.path] : [])))];
    const image = intent.image;
    // QEMU sees only its jail: the image files and the run directory under their paths inside it.
    const args = buildQemuArgs({
      id: intent.id,
      name: intent.name,
      vcpus: intent.vcpus,
      memoryMiB: intent.memoryMiB,
      accelerator: this.env.accelerator,
      ...(image.format === 'kernel-initrd'
        ? { kernel: { kernelPath: JAIL_KERNEL, initrdPath: JAIL_INITRD } }
        : {}),
      runDir: jailRunDir(this.runDir),
      nested: intent.nestedVirtualization === true,
      nics: intent.ports.map((p) => ({
        tap: p.tap,
        mac: p.mac,
        ipv4: p.ipv4,
        prefixLength: p.prefixLength,
        gateway: p.gateway,
      })),
      volumes: volumes.map((v) => ({
        id: v.id,
        path: jailVolumePath(v.id),
        keyFile: v.keyFile,
        format: v.format,
        boot: v.boot,
        ...(v.backing
          ? {
              backing: {
                path: jailDiskImagePath(diskImages.indexOf(v.backing.path)),
                format: v.backing.format,
              },
            }
          : {}),
      })),
      diskLimits: {
        ...(intent.limits.diskIops !== undefined ? { iops: intent.limits.diskIops } : {}),
        ...(intent.limits.diskBytesPerSecond !== undefined
          ? { bytesPerSecond: intent.limits.diskBytesPerSecond }
          : {}),
      },
      ...(seedPath !== undefined ? { seedPath } : {}),
      ...(intent.generationId !== undefined ? { generationId: intent.generationId } : {}),
    });
    const groups = this.env.accelerator === 'kvm' && this.env.kvmGroup !== null ? [this.env.kvmGroup] : [];
    const prefix = unprivilegedPrefix(this.state.uid, this.state.uid, groups);
    const jailStartedAt = Date.now();
    let jail: PreparedJail;
    let innerCommand: string[];
    try {
      const facts = readHostRootFacts();
      // After chroot every path is resolved inside the jail: the binaries must be under its /usr.
      innerCommand = [
        ...rlimitPrefix(inJailBinary(this.env.prlimitBinary, facts)),
        inJailBinary(this.env.setprivBinary, facts),
        ...prefix,
        inJailBinary(this.env.qemuBinary, facts),
        ...args,
      ];
      jail = await prepareJail(
        {
          vmDir: this.dir,
          runDir: this.runDir,
          ...(image.format === 'kernel-initrd'
            ? { kernel: { kernelPath: image.kernelPath, initrdPath: image.initrdPath } }
            : {}),
          diskImages,
          kvm: this.env.accelerator === 'kvm',
          volumes: volumes.map((v) => ({ id: v.id, source: v.source })),
        },
        this.env.jail,
        facts,
      );
    } catch (error) {
      this.failStart((error as Error).message);
      return;
    }
    const jailSetupMs = Date.now() - jailStartedAt;
    const qemuCommand = jail.command(this.env.network.qemuNetnsPath(), innerCommand);
    let prepared: ReturnType<VmCgroups['prepare']>;
    try {
      prepared = this.env.cgroups.prepare(intent, this.env.accelerator, qemuCommand);
    } catch (error) {
      jail.release();
      this.failStart((error as Error).message);
      return;
    }
    this.confinementFailure = null;
    this.verifyConfinementOnQmp = prepared.resources !== null;
    this.stopRequested = false;
    this.guestShutdown = false;
    this.resetAt = null;
    this.lastExit = null;
    this.lastHeartbeatAt = null;
    this.guestUptime = null;
    this.guestIps = [];
    const spawnedAt = Date.now();
    const [command, ...commandArgs] = prepared.command;
    let child: ReturnType<typeof spawnDetached>;
    try {
      child = spawnDetached(command!, commandArgs, { logFile: join(this.dir, 'qemu.log'), env: {} });
    } catch (error) {
      jail.release();
      this.failStart(`QEMU could not be started: ${(error as Error).message}`);
      return;
    }
    const pid = child.pid;
    const identity = pid === undefined ? null : identify(pid);
    child.once('exit', (code, signal) => {
      this.lastExit = signal ? `killed by ${signal}` : `exit code ${code}`;
      setImmediate(() => this.checkAlive());
    });
    child.once('error', (error) => {
      this.lastExit = error.message;
    });
    // QEMU holds the namespace from here on; until then the holder does. A QEMU that is not inside
    // its jail never runs.
    if (identity && !(await jail.entered(identity.pid))) {
      try {
        process.kill(identity.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      const deadline = Date.now() + FORCE_KILL_GRACE_MS;
      while (isAlive(identity) && Date.now() < deadline) await sleep(20);
      jail.release();
      const exit = this.lastExit as string | null; // set by the exit handler meanwhile
      this.failStart(`QEMU did not enter its jail${exit ? ` (${exit})` : ''}${this.qemuLogHint()}`);
      return;
    }
    jail.release();
    Object.assign(this.state, {
      process: identity,
      accelerator: this.env.accelerator,
      bootId: this.state.intent.bootId,
      rebootId: this.state.intent.rebootId,
      spawnedAt,
      booted: false,
      bootMs: null,
      error: identity ? null : 'QEMU could not be started',
      phase: identity ? 'starting' : 'crashed',
      resources: identity ? prepared.resources : null,
      fatal: false,
    } satisfies Partial<PersistedVm>);
    this.persist();
    this.reportStatus(true);
    if (!identity) {
      this.removeKeyFiles();
      this.releaseCgroups();
      return;
    }
    this.env.log.info(
      { vmId: this.id, pid, uid: this.state.uid, bootId: this.state.bootId, jailSetupMs },
      'QEMU started',
    );
    this.startMonitor();
    this.connectChannels();
  }

  /**
   * A start that could not even spawn QEMU (limits not applicable, image not verified): crashed, with
   * the reason; `fatal` when retrying cannot help (the server then applies no restart policy).
   */
  private failStart(reason: string, fatal = false): void {
    this.removeKeyFiles();
    this.env.log.error({ vmId: this.id, reason }, 'VM not started');
    Object.assign(this.state, {
      process: null,
      accelerator: this.env.accelerator,
      bootId: this.state.intent.bootId,
      rebootId: this.state.intent.rebootId,
      spawnedAt: null,
      booted: false,
      bootMs: null,
      error: reason,
      phase: 'crashed',
      resources: null,
      fatal,
    } satisfies Partial<PersistedVm>);
    this.persist();
    this.reportStatus(true);
    this.releaseCgroups();
  }

  /**
   * The image's files and every overlay's backing image, re-hashed against the digests the server sent
   * (the cache is never trusted): null when all verify, else why not.
   */
  private async verifyFiles(intent: VmIntent): Promise<string | null> {
    const problem = await verifyImage(intent.image);
    if (problem) return problem;
    const checked = new Set(intent.image.format === 'kernel-initrd' ? [] : [intent.image.diskPath]);
    for (const volume of intent.volumes ?? []) {
      const backing = volume.backing;
      if (!backing || checked.has(backing.path)) continue;
      const failed = await verifyImage({
        format: backing.format,
        sha256: backing.sha256,
        diskPath: backing.path,
      });
      if (failed) return `${failed} (the base image of volume ${volume.id})`;
      checked.add(backing.path);
    }
    return null;
  }

  /**
   * Every volume of the intent made ready for this start: created or grown (raw LUKS, or a qcow2 with
   * LUKS encryption over its backing image), given to the VM's uid, and its key written to
   * run/volume-<n>.key (the VM's uid, 0600; created exclusively, never through a link). Returns the
   * host files and the key files' paths (the same inside the jail).
   */
  private async prepareVolumes(intent: VmIntent): Promise<PreparedVolume[]> {
    const volumes = intent.volumes ?? [];
    const prepared: PreparedVolume[] = [];
    for (const [index, volume] of volumes.entries()) {
      // Keys are never persisted: a start from state read back from disk has none.
      if (typeof volume.key !== 'string') throw new Error(`no key for volume ${volume.id}`);
      const format = volume.format ?? 'luks';
      const backing = format === 'qcow2' && volume.backing ? volume.backing : null;
      const { path } = await this.env.volumes.ensureVolume(volume.id, volume.sizeGiB, volume.key, {
        format,
        ...(backing ? { backing: { path: backing.path, format: backing.format } } : {}),
      });
      await this.env.volumes.assignTo(volume.id, this.state.uid);
      const keyFile = join(jailRunDir(this.runDir), `volume-${index}.key`);
      const hostKeyFile = join(this.runDir, `volume-${index}.key`);
      rmSync(hostKeyFile, { force: true });
      const fd = openSync(
        hostKeyFile,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o600,
      );
      try {
        fchownSync(fd, this.state.uid, this.state.uid);
        writeSync(fd, volume.key);
      } finally {
        closeSync(fd);
      }
      prepared.push({ id: volume.id, source: path, keyFile, format, backing, boot: volume.boot === true });
    }
    return prepared;
  }

  /** The NoCloud seed for this start, in the run directory (the VM's uid, read-only). */
  private async writeSeed(intent: VmIntent, seed: SeedIntent): Promise<string> {
    const files = seedFiles(seed, intent.ports);
    await writeSeedImage(join(this.runDir, SEED_FILE), files, this.env.seedTools, {
      uid: this.state.uid,
      gid: this.state.uid,
    });
    return join(jailRunDir(this.runDir), SEED_FILE);
  }

  /** Deletes the volume key files from the run directory (QEMU has read them, or will never run). */
  private removeKeyFiles(): void {
    let entries: string[];
    try {
      entries = readdirSync(this.runDir);
    } catch {
      return; // no run directory: no key files
    }
    for (const entry of entries)
      if (VOLUME_KEY_FILE.test(entry)) rmSync(join(this.runDir, entry), { force: true });
  }

  /**
   * Volumes no longer attached to this VM (`next` null: the VM goes away) go back to root. Not erased:
   * that is only ever on the server's explicit request.
   */
  private async reclaimVolumes(previous: VmIntent, next: VmIntent | null): Promise<void> {
    const kept = new Set((next?.volumes ?? []).map((v) => v.id));
    for (const volume of previous.volumes ?? []) {
      if (kept.has(volume.id)) continue;
      try {
        await this.env.volumes.reclaim(volume.id, this.state.uid);
      } catch (error) {
        this.env.log.warn(
          { vmId: this.id, volumeId: volume.id, err: (error as Error).message },
          'could not give a volume file back to root',
        );
      }
    }
  }

  /** Whether the intent asks for other limits than the ones in force for the running QEMU. */
  private limitsChanged(intent: VmIntent): boolean {
    const current = this.state.resources;
    if (!current) return false;
    const { memoryLimitMiB } = limitsFor(intent, this.state.accelerator ?? this.env.accelerator);
    return (
      current.cpuPercent !== intent.limits.cpuPercent ||
      current.cpuWeight !== intent.limits.cpuWeight ||
      current.pidsMax !== intent.limits.pidsMax ||
      current.memoryLimitMiB !== memoryLimitMiB
    );
  }

  /** Re-applies the intent's limits to the running QEMU, idempotently, and checks it is inside. */
  private reapplyLimits(pid: number): void {
    this.state.resources = this.env.cgroups.readopt(
      this.state.intent,
      this.state.accelerator ?? this.env.accelerator,
      pid,
      this.state.resources?.confined ?? false,
    );
    this.persist();
  }

  /** Right after QMP first answers: QEMU runs, so cgexec has joined it to its cgroups, or it is stopped. */
  private verifyConfinement(): boolean {
    const pid = this.state.process?.pid;
    if (pid === undefined || this.env.cgroups.isConfined(this.id, pid)) return true;
    this.confinementFailure = 'QEMU was not inside its cgroups after start and was stopped';
    this.env.log.error({ vmId: this.id, pid }, this.confinementFailure);
    try {
      process.kill(pid, 'SIGKILL'); // no grace: it must not run unconfined
    } catch {
      // already gone
    }
    void this.killAndWait();
    return false;
  }

  /** Removes the VM's cgroups (after QEMU is gone), one removal after the other. */
  /** QEMU is gone: its cgroups and its taps go too (a stopped VM leaves no device behind). */
  private releaseCgroups(): void {
    const vmId = this.id;
    const ports = this.state.intent.ports ?? [];
    this.cgroupRelease = this.cgroupRelease
      .then(() => this.env.cgroups.release(vmId))
      .catch((error: unknown) =>
        this.env.log.warn({ vmId, err: (error as Error).message }, 'could not remove the VM cgroups'),
      )
      .then(() => (ports.length > 0 ? this.env.network.releasePorts(ports) : undefined))
      .catch((error: unknown) =>
        this.env.log.warn({ vmId, err: (error as Error).message }, 'could not remove the VM taps'),
      );
  }

  private async stop(timeoutMs: number): Promise<void> {
    if (this.state.phase === 'stopping' && !this.stopRequested) this.stopRequested = true;
    if (this.state.phase === 'stopping' && timeoutMs > 0) return; // already on its way down
    this.stopRequested = true;
    this.setPhase('stopping');
    if (this.stopTimer) clearTimeout(this.stopTimer);
    if (timeoutMs === 0) {
      void this.killAndWait();
      return;
    }
    try {
      const qmp = this.qmp ?? (await this.waitForQmp());
      const { running } = await qmp.queryStatus();
      if (!running) await qmp.cont();
      await qmp.systemPowerdown();
    } catch (error) {
      this.env.log.warn(
        { vmId: this.id, err: (error as Error).message },
        'ACPI shutdown request failed; stopping by force',
      );
      void this.killAndWait();
      return;
    }
    this.stopTimer = setTimeout(() => {
      this.env.log.warn({ vmId: this.id, timeoutMs }, 'guest did not power off in time; stopping by force');
      void this.killAndWait();
    }, timeoutMs);
    this.stopTimer.unref();
  }

  private async reset(rebootId: number): Promise<void> {
    const qmp = this.qmp ?? (await this.waitForQmp());
    if (this.state.phase === 'paused') await qmp.cont();
    await qmp.systemReset();
    this.resetAt = Date.now();
    this.state.rebootId = rebootId;
    this.state.booted = false;
    this.state.bootMs = null;
    this.setPhase('starting');
  }

  /**
   * Self-fencing: the host lost the server for longer than its lease. The QEMU is killed at once
   * (SIGKILL, no graceful quit); resolves true when it was running.
   */
  async fence(): Promise<boolean> {
    const identity = this.state.process;
    if (!identity || !isAlive(identity)) return false;
    try {
      process.kill(identity.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    const deadline = Date.now() + 10_000;
    while (isAlive(identity) && Date.now() < deadline) await sleep(20);
    this.checkAlive();
    return true;
  }

  private async killAndWait(): Promise<void> {
    const identity = this.state.process;
    if (!identity || !isAlive(identity)) {
      this.checkAlive();
      return;
    }
    try {
      await this.qmp?.quit(FORCE_KILL_GRACE_MS);
    } catch {
      // fall through to SIGKILL
    }
    const deadline = Date.now() + FORCE_KILL_GRACE_MS;
    while (isAlive(identity) && Date.now() < deadline) await sleep(50);
    if (isAlive(identity)) {
      try {
        process.kill(identity.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      const killDeadline = Date.now() + 10_000;
      while (isAlive(identity) && Date.now() < killDeadline) await sleep(50);
    }
    this.checkAlive();
  }

  private checkAlive(): void {
    const identity = this.state.process;
    if (!identity || isAlive(identity)) return;
    this.onExit();
  }

  private onExit(): void {
    if (this.stopTimer) clearTimeout(this.stopTimer);
    this.stopTimer = null;
    this.closeChannels();
    const orderly = (this.stopRequested || this.guestShutdown) && this.confinementFailure === null;
    const detail = this.lastExit ? ` (${this.lastExit})` : '';
    this.state.process = null;
    this.state.booted = false;
    this.state.resources = null;
    this.state.phase = orderly ? 'stopped' : 'crashed';
    this.state.error = orderly
      ? null
      : (this.confinementFailure ?? `QEMU exited unexpectedly${detail}${this.qemuLogHint()}`);
    this.releaseCgroups();
    this.env.log.info({ vmId: this.id, phase: this.state.phase, error: this.state.error }, 'QEMU exited');
    this.removeSockets();
    this.removeKeyFiles();
    if (!this.removed) {
      this.persist();
      this.reportStatus(true);
    }
  }

  // ------------------------------------------------------------------ channels

  private connectChannels(): void {
    const sockets = socketPaths(this.runDir);
    void this.connectWithRetry(sockets.console).then((socket) => {
      if (!socket) return;
      this.consoleSocket = socket;
      socket.on('data', (data: Buffer) => {
        this.consoleLog.append(data);
        this.emit('console', data);
      });
      socket.on('error', () => undefined);
    });
    void this.connectWithRetry(sockets.guestAgent).then((socket) => {
      if (!socket) return;
      this.guestSocket = socket;
      readJsonLines(socket, { maxLineBytes: 64 * 1024, onValue: (value) => this.onGuestMessage(value) });
      socket.on('error', () => undefined);
    });
    void this.connectQmp(sockets.qmp);
  }

  private async connectWithRetry(path: string): Promise<Socket | null> {
    const deadline = Date.now() + CHANNEL_TIMEOUT_MS;
    const identity = this.state.process;
    while (Date.now() < deadline && identity && isAlive(identity) && !this.removed) {
      const socket = this.isOwnSocket(path) ? await tryConnect(path) : null;
      if (socket) return socket;
      await sleep(10);
    }
    return null;
  }

  /**
   * The agent (root) only connects to a socket its QEMU made: a real socket (not a link a compromised
   * QEMU planted to point the agent at another VM's QMP) owned by this VM's uid.
   */
  private isOwnSocket(path: string): boolean {
    const stat = lstatSync(path, { throwIfNoEntry: false });
    if (!stat) return false;
    if (!stat.isSocket() || stat.uid !== this.state.uid) {
      if (!this.refusedSockets.has(path))
        this.env.log.error({ vmId: this.id, path }, 'refusing a channel socket that is not this VM’s own');
      this.refusedSockets.add(path);
      return false;
    }
    return true;
  }

  private readonly refusedSockets = new Set<string>();
  private qmpWaiters: Array<(qmp: QmpClient | null) => void> = [];

  private async connectQmp(path: string): Promise<void> {
    const deadline = Date.now() + CHANNEL_TIMEOUT_MS;
    const identity = this.state.process;
    while (Date.now() < deadline && identity && isAlive(identity) && !this.removed) {
      try {
        if (!this.isOwnSocket(path)) {
          await sleep(10);
          continue;
        }
        const qmp = await QmpClient.connect(path, { connectTimeoutMs: 5000, commandTimeoutMs: 10_000 });
        this.removeKeyFiles(); // QEMU answers: it read its volume keys when it created its objects
        if (this.verifyConfinementOnQmp) {
          this.verifyConfinementOnQmp = false;
          if (!this.verifyConfinement()) {
            void qmp.close();
            for (const waiter of this.qmpWaiters.splice(0)) waiter(null);
            return;
          }
        }
        this.qmp = qmp;
        qmp.on('event', (event) => this.onQmpEvent(event.event, event.data));
        qmp.on('close', () => {
          if (this.qmp === qmp) this.qmp = null;
          setTimeout(() => this.checkAlive(), 50);
        });
        const status = await qmp.queryStatus();
        if (!status.running && status.status === 'paused' && this.state.phase !== 'stopping')
          this.setPhase('paused');
        for (const waiter of this.qmpWaiters.splice(0)) waiter(qmp);
        return;
      } catch {
        await sleep(20);
      }
    }
    this.removeKeyFiles();
    for (const waiter of this.qmpWaiters.splice(0)) waiter(null);
  }

  private waitForQmp(): Promise<QmpClient> {
    if (this.qmp) return Promise.resolve(this.qmp);
    return new Promise((resolve, reject) => {
      this.qmpWaiters.push((qmp) => (qmp ? resolve(qmp) : reject(new Error('QMP is not available'))));
    });
  }

  private onQmpEvent(event: string, data: unknown): void {
    if (event === 'SHUTDOWN' && (data as { guest?: boolean } | undefined)?.guest) this.guestShutdown = true;
    if (event === 'STOP' && this.state.phase !== 'stopping') this.setPhase('paused');
    if (event === 'RESUME' && this.state.phase === 'paused')
      this.setPhase(this.state.booted ? 'running' : 'starting');
  }

  private onGuestMessage(value: unknown): void {
    if (typeof value !== 'object' || value === null || (value as { type?: unknown }).type !== 'heartbeat')
      return;
    const beat = value as Partial<GuestHeartbeat>;
    const uptime = typeof beat.uptime === 'number' ? beat.uptime : null;
    const now = Date.now();
    // After a reset, a heartbeat written before it may still be in flight: it shows a longer uptime.
    if (this.resetAt !== null && uptime !== null && uptime > (now - this.resetAt) / 1000 + 1) return;
    this.lastHeartbeatAt = new Date(now).toISOString();
    this.guestUptime = uptime;
    this.guestIps = Array.isArray(beat.ips)
      ? beat.ips.filter((ip): ip is string => typeof ip === 'string').slice(0, 32)
      : [];
    if (!this.state.booted) {
      this.state.booted = true;
      const since = this.resetAt ?? this.state.spawnedAt ?? now;
      this.state.bootMs = now - since;
      this.resetAt = null;
      if (this.state.phase === 'starting') this.state.phase = 'running';
      this.persist();
      this.reportStatus(true);
      return;
    }
    this.reportStatus(false);
  }

  // ------------------------------------------------------------------ helpers

  private setPhase(phase: VmPhase): void {
    if (this.state.phase === phase) return;
    this.state.phase = phase;
    if (phase !== 'crashed') this.state.error = null;
    this.persist();
    this.reportStatus(true);
  }

  private reportStatus(force: boolean): void {
    const status = this.status();
    const key = JSON.stringify([
      status.phase,
      status.pid,
      status.guestIps,
      status.error,
      status.bootId,
      status.rebootId,
      status.resources,
    ]);
    const now = Date.now();
    if (!force && key === this.lastReportKey && now - this.lastReportAt < HEARTBEAT_REPORT_INTERVAL_MS)
      return;
    this.lastReportKey = key;
    this.lastReportAt = now;
    this.emit('status', status);
  }

  private startMonitor(): void {
    if (this.monitor) return;
    this.monitor = setInterval(() => this.checkAlive(), 1000);
    this.monitor.unref();
  }

  private prepareRunDir(): void {
    // A link (or anything but a directory) in place of the run directory is removed, never followed.
    const existing = lstatSync(this.runDir, { throwIfNoEntry: false });
    if (existing && !existing.isDirectory()) rmSync(this.runDir, { force: true });
    mkdirSync(this.runDir, { recursive: true, mode: 0o700 });
    chownSync(this.runDir, this.state.uid, this.state.uid);
    this.removeSockets();
    this.removeKeyFiles();
  }

  private removeSockets(): void {
    const sockets = socketPaths(this.runDir);
    for (const path of [sockets.qmp, sockets.console, sockets.guestAgent]) rmSync(path, { force: true });
  }

  private qemuLogHint(): string {
    const log = join(this.dir, 'qemu.log');
    if (!existsSync(log)) return '';
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    const last = lines[lines.length - 1]?.trim();
    return last ? `: ${last.slice(0, 300)}` : '';
  }

  private closeChannels(): void {
    this.consoleSocket?.destroy();
    this.guestSocket?.destroy();
    void this.qmp?.close();
    this.consoleSocket = null;
    this.guestSocket = null;
    this.qmp = null;
  }

  private shutdownRuntime(): void {
    if (this.monitor) clearInterval(this.monitor);
    if (this.stopTimer) clearTimeout(this.stopTimer);
    this.monitor = null;
    this.stopTimer = null;
    this.closeChannels();
  }

  persist(): void {
    if (this.removed) return;
    const file = join(this.dir, 'state.json');
    // Never the volume keys: they exist only in memory (and briefly in the key files).
    const persisted: PersistedVm = { ...this.state, intent: intentWithoutKeys(this.state.intent) };
    writeNoFollow(`${file}.tmp`, JSON.stringify(persisted), 'truncate');
    renameSync(`${file}.tmp`, file);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

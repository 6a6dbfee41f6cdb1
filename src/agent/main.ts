/**
 * `rampart agent`: the host agent. Runs as root (it prepares uids, directories and later taps, nft
 * rules and cgroups) and starts every QEMU unprivileged, inside the VM's cgroups. It holds no authority of its own: it does
 * what the server's intents say and reports what is true. Stopping it leaves VMs running; the next
 * start re-adopts them.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { TELEMETRY_EVENT_KIND } from '../api/telemetry.js';
import { createLogger } from '../common/logger.js';
import { RAMPART_VERSION } from '../common/version.js';
import { loadCgroups } from './cgroups/cgroup-load.js';
import { VmCgroups } from './cgroups/vm-cgroups.js';
import { loadAgentConfig, type AgentConfigInput } from './config.js';
import {
  cpuCores,
  dedicatedCores,
  findExecutable,
  hostCapacity,
  hostName,
  kvmGroupId,
  loadHostId,
  qemuVersion,
} from './host-facts.js';
import { ServerDialer, loadHostCredentials, storedEndpoints } from './link/server-dialer.js';
import { CertificateRenewal } from './link/certificate-renewal.js';
import { LeaseFence } from './link/lease-fence.js';
import { ServerLink } from './link/server-link.js';
import { chooseAccelerator } from './qemu/accelerator-probe.js';
import { HostNetwork } from './runtime/host-network.js';
import { HostTelemetry } from './runtime/telemetry.js';
import { VmManager } from './runtime/vm-manager.js';
import { VolumeFiles } from './storage/volume-files.js';

export interface AgentCliOptions extends AgentConfigInput {
  config?: string;
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function runAgent(options: AgentCliOptions): Promise<void> {
  const config = loadAgentConfig(options);
  const log = createLogger('rampart-agent', config.logLevel);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o755 });

  // One agent per data directory: refuse to start next to a live one.
  const pidFile = join(config.dataDir, 'agent.pid');
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (
      Number.isInteger(pid) &&
      pid !== process.pid &&
      processAlive(pid) &&
      (await socketAnswers(config.socket))
    ) {
      throw new Error(`another agent (pid ${pid}) is already running for ${config.dataDir}`);
    }
  }
  writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o644 });

  const qemuBinary = findExecutable(config.qemuBinary);
  const setprivBinary = findExecutable('setpriv');
  const prlimitBinary = findExecutable('prlimit');
  const jailBinaries = {
    nsenter: findExecutable('nsenter'),
    unshare: findExecutable('unshare'),
    chroot: findExecutable('chroot'),
    mount: findExecutable('mount'),
    sleep: findExecutable('sleep'),
  };
  const version = await qemuVersion(qemuBinary);
  const kvmGroup = kvmGroupId();
  const verdict = await chooseAccelerator({
    mode: config.accel,
    qemuBinary,
    qemuVersion: version,
    kernel: config.probeKernel,
    initrd: config.probeInitrd,
    cacheFile: config.accelCacheFile,
    kvmGroup,
  });
  log.info({ accelerator: verdict.accelerator, reason: verdict.reason, qemu: version }, 'accelerator chosen');
  const cgroups = new VmCgroups(
    loadCgroups({
      mode: config.cgroupMode,
      parent: config.cgroupParent,
      findCgexec: () => findExecutable('cgexec'),
    }),
    log,
  );
  // Unavailable limits do not stop the agent: each VM start then fails with the reason in its status.
  if (cgroups.describe().startsWith('unavailable'))
    log.error({ cgroups: cgroups.describe() }, 'no resource limits');
  else log.info({ cgroups: cgroups.describe() }, 'resource limits');

  const topology = cpuCores();
  const pinnable = dedicatedCores(topology.cores, config.dedicatedCpus);
  log.info({ cores: topology.cores, dedicated: pinnable, pinning: cgroups.canPin }, 'CPU topology');

  const network = new HostNetwork({
    ...(config.netns !== null ? { netns: config.netns } : {}),
    ...(config.tunnelIp !== null ? { tunnelIp: config.tunnelIp } : {}),
    log: log.child({ component: 'network' }),
    reconcileIntervalMs: config.firewallReconcileSeconds * 1000,
    onDrift: (differences) => link.event('firewall.drift', null, { differences: differences.slice(0, 50) }),
  });
  // Volume files (LUKS), root-only directory: created on first use, erased on the server's request.
  const volumes = new VolumeFiles({
    dir: join(config.dataDir, 'volumes'),
    snapshotsDir: join(config.dataDir, 'snapshots'),
    qemuImg: findExecutable('qemu-img'),
    cp: findExecutable('cp'),
  });
  const fenceHolder: { fence: LeaseFence | null } = { fence: null };
  const vms = new VmManager(
    {
      network,
      volumes,
      seedTools: { mkfsVfat: findExecutable('mkfs.vfat'), mcopy: findExecutable('mcopy') },
      vmsDir: join(config.dataDir, 'vms'),
      accelerator: verdict.accelerator,
      qemuBinary,
      setprivBinary,
      prlimitBinary,
      jail: jailBinaries,
      kvmGroup,
      consoleCapBytes: config.consoleCapBytes,
      cgroups,
      log,
      startRefusal: () => fenceHolder.fence?.startRefusal() ?? null,
    },
    { base: config.uidBase, count: config.uidCount },
    { online: topology.online, dedicatedCores: pinnable },
  );
  vms.loadExisting();
  await vms.pruneCgroups();

  const link = new ServerLink(
    config.socket,
    {
      hostId: loadHostId(config.dataDir),
      hostname: config.hostname ?? hostName(),
      agentVersion: RAMPART_VERSION,
      qemuVersion: version,
      accelerator: verdict.accelerator,
      acceleratorReason: verdict.reason,
      capacity: hostCapacity({ cpus: config.cpuLimit, memoryMiB: config.memoryLimitMiB }),
      // Only cores this host can really keep apart (cpuset available) are offered for pinning.
      dedicatedCores: cgroups.canPin ? pinnable : [],
      ...(config.tunnelIp !== null ? { tunnelIp: config.tunnelIp } : {}),
    },
    vms,
    network,
    log,
    volumes,
  );
  // Until the server sends the firewall, the last one this host applied stays in force; drift against
  // it (or an empty one after a reboot) is repaired as soon as the first firewall arrives.
  network.startReconciling();
  // Spoofing drops, denied flows and VM samples for the server's security engine.
  const telemetry = new HostTelemetry({
    firewall: () => network.telemetry(),
    vms: () => vms.list(),
    report: (report) => link.event(TELEMETRY_EVENT_KIND, null, report),
    log: log.child({ component: 'telemetry' }),
    intervalMs: config.telemetrySeconds * 1000,
  });
  telemetry.start();
  await link.listen();
  // Remote mode: a host that has joined dials the server over TLS (mutual authentication).
  const credentials = loadHostCredentials(config.dataDir);
  const endpoints = config.server ?? storedEndpoints(config.dataDir);
  const dialer =
    credentials && endpoints.length > 0
      ? new ServerDialer({
          endpoints,
          credentials,
          link,
          log: log.child({ component: 'server-link' }),
          heartbeatMs: config.heartbeatSeconds * 1000,
        })
      : null;
  if (config.server && !credentials)
    log.warn({ server: config.server }, 'no host certificate: run `rampart agent join` first; not dialing');
  // Remote mode: the server renews this host's lease; without renewals the host fences itself.
  if (dialer) {
    const fence = new LeaseFence({
      fence: () => vms.fence(),
      log: log.child({ component: 'fence' }),
      stateFile: join(config.dataDir, 'lease.json'),
    });
    link.fence = fence;
    fenceHolder.fence = fence;
    fence.start();
  }
  if (dialer)
    link.certificates = new CertificateRenewal(config.dataDir, () => {
      const renewed = loadHostCredentials(config.dataDir);
      if (renewed) dialer.useCredentials(renewed);
    });
  dialer?.start();
  log.info(
    { socket: config.socket, server: dialer ? endpoints : null, vms: vms.list().length },
    'agent ready',
  );

  const shutdown = (signal: string) => {
    log.info({ signal }, 'agent stopping (VMs keep running)');
    dialer?.stop();
    link.close();
    telemetry.stop();
    network.stop();
    vms.detachAll();
    rmSync(pidFile, { force: true });
    process.exit(0);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

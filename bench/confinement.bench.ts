/**
 * Confinement benchmark: what the QEMU jail costs. The tiny guest boots on the same QEMU command line
 * twice per round, in the same run on the same machine:
 *
 *   unconfined: qemu-system-x86_64 <buildQemuArgs() without -sandbox>, as root, in the host's mount
 *               namespace (no jail)
 *   jail:       what the agent's VmInstance.start() does, with the agent's own functions
 *               (src/agent/runtime/qemu-jail.ts): prepareJail() writes the skeleton into <dir>/jail,
 *               starts the namespace holder (`unshare --mount`), populates it with one
 *               `nsenter ... mount --fstab <dir>/jail.fstab --all` and verifies every mount from the
 *               holder's mountinfo; then QEMU is spawned as
 *               `nsenter --target <holder> --mount -- chroot <dir>/jail prlimit --nofile --fsize --
 *               setpriv --reuid/--regid <unused uid> --clear-groups --no-new-privs --inh-caps=-all
 *               --bounding-set=-all -- qemu-system-x86_64 <buildQemuArgs(), -sandbox included, kernel and
 *               initrd as /image/kernel and /image/initrd>`, the bench waits until QEMU is inside the
 *               namespace (PreparedJail.entered()) and kills the holder, as the agent does. The run dir
 *               is owned by that uid.
 *
 * (The agent also wraps this in cgexec and, with tenant networks, `nsenter --net`; those carry the VM's
 * resource-limit policy and its network, not the confinement mechanism, and are not part of this
 * comparison.)
 *
 *   node scripts/run-benches.mjs confinement     # 5 rounds (QEMU RSS is quantized ~2 MiB apart)
 *   RAMPART_BENCH_ROUNDS=9 node scripts/run-benches.mjs confinement
 *
 * Boot time: spawn -> first guest-agent heartbeat on the ga socket (as in boot.bench.ts); on the jail
 * side the clock starts before the jail setup (readHostRootFacts(), prepareJail()), so the boot time
 * includes it, and the setup alone (what the agent logs as jailSetupMs) is also reported. The run dir is
 * created before the clock on both sides. RSS: VmRSS of the QEMU process from /proc/<pid>/status,
 * SETTLE_MS after that heartbeat (the same delay for both); each sample also checks that the process is
 * (or is not) confined: uid, seccomp, no_new_privs, bounding set, mount namespace and root.
 * TCG, the tiny flavor's size (1 vCPU, 128 MiB). Rounds alternate which side goes first; one QEMU runs at
 * a time (two cores). Targets (medians): the jail boots at most 5% slower and adds under 1 MiB of RSS.
 * A miss is reported, not failed: the exit code is 0 unless something broke.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { findExecutable } from '../src/agent/host-facts.js';
import {
  buildQemuArgs,
  rlimitPrefix,
  SANDBOX,
  socketPaths,
  unprivilegedPrefix,
} from '../src/agent/qemu/command-line.js';
import {
  inJailBinary,
  inspectJail,
  JAIL_INITRD,
  JAIL_KERNEL,
  jailRunDir,
  prepareJail,
  readHostRootFacts,
  type JailBinaries,
} from '../src/agent/runtime/qemu-jail.js';
import { GUEST_IMAGE_DIR } from '../test/helpers/repo.js';
import {
  type BenchQemu,
  countForeignQemu,
  median,
  roundsFromEnv,
  sleep,
  withBenchQemu,
} from './lib/qemu-boot.js';

const TARGET_BOOT_RATIO = 1.05;
const TARGET_RSS_DIFF_MIB = 1;
const BOOT_TIMEOUT_MS = 120_000;
/** Delay between the first heartbeat and the RSS sample, the same for both sides. */
const SETTLE_MS = 3_000;
/** The tiny flavor (src/server/compute/flavor-catalog.ts). */
const VCPUS = 1;
const MEMORY_MIB = 128;
/** Unused by the harness (3_100_000 ..) and by boot.bench.ts (3_900_000). */
const JAIL_UID = 3_999_000;
const TEMP_PREFIX = 'rampart-bench-confinement-';

type Side = 'unconfined' | 'jail';

interface Setup {
  kernelPath: string;
  initrdPath: string;
  qemuBinary: string;
  setprivBinary: string;
  prlimitBinary: string;
  /** What builds the jail: nsenter, unshare, chroot, mount, sleep (as the agent finds them). */
  jail: JailBinaries;
}

interface BootResult {
  bootMs: number;
  rssKiB: number;
  /** Jail side only: readHostRootFacts() + prepareJail(), as part of bootMs. */
  jailSetupMs: number | null;
}

/**
 * The fields of /proc/<pid>/status this bench reads (the pid is QEMU's: nsenter, chroot, prlimit and
 * setpriv exec in place).
 */
function procStatus(pid: number): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return fields;
}

/**
 * Reads QEMU's RSS and checks that the process really is (or is not) confined as the side says;
 * `jailRoot` is the jail's root on the host (jail side only).
 */
function sampleQemu(pid: number, side: Side, jailRoot: string | null): number {
  const status = procStatus(pid);
  const name = status.get('Name') ?? '';
  if (!name.startsWith('qemu-system')) throw new Error(`pid ${pid} is ${JSON.stringify(name)}, not QEMU`);
  const uid = Number((status.get('Uid') ?? '').split(/\s+/)[0]);
  const seccomp = Number(status.get('Seccomp'));
  const noNewPrivs = Number(status.get('NoNewPrivs'));
  const capBnd = status.get('CapBnd');
  const view = inspectJail(pid);
  if (side === 'jail') {
    if (uid !== JAIL_UID || seccomp !== 2 || noNewPrivs !== 1 || !/^0+$/.test(capBnd ?? ''))
      throw new Error(
        `jailed QEMU is not confined: uid ${uid}, Seccomp ${seccomp}, NoNewPrivs ${noNewPrivs}, CapBnd ${capBnd}`,
      );
    if (view.mountNamespace !== 'private' || view.root !== jailRoot)
      throw new Error(
        `jailed QEMU is not in its jail: ${view.mountNamespace} mount namespace, root ${view.root} (expected ${jailRoot})`,
      );
  } else if (uid !== 0 || seccomp !== 0 || view.mountNamespace !== 'host' || view.root !== '/') {
    throw new Error(
      `unconfined QEMU is not plain root: uid ${uid}, Seccomp ${seccomp}, ${view.mountNamespace} mount namespace, root ${view.root}`,
    );
  }
  const rss = /^(\d+)\s*kB$/.exec(status.get('VmRSS') ?? '');
  if (!rss) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(rss[1]);
}

/** buildQemuArgs() without its `-sandbox <value>` pair. */
function withoutSandbox(args: readonly string[]): string[] {
  const index = args.indexOf('-sandbox');
  if (index === -1 || args[index + 1] !== SANDBOX) throw new Error('buildQemuArgs() has no -sandbox option');
  return [...args.slice(0, index), ...args.slice(index + 2)];
}

/** A QEMU just spawned: when its clock started, its pid and (jail side) the jail's setup time and root. */
interface Started {
  t0: number;
  pid: number;
  jailSetupMs: number | null;
  jailRoot: string | null;
}

function qemuArgs(name: string, kernelPath: string, initrdPath: string, runDir: string): string[] {
  return buildQemuArgs({
    id: randomUUID(),
    name,
    vcpus: VCPUS,
    memoryMiB: MEMORY_MIB,
    accelerator: 'tcg',
    kernel: { kernelPath, initrdPath },
    runDir,
  });
}

function startUnconfined(qemu: BenchQemu, setup: Setup, name: string, runDir: string): Started {
  const args = withoutSandbox(qemuArgs(name, setup.kernelPath, setup.initrdPath, runDir));
  const t0 = performance.now();
  const child = qemu.spawn(setup.qemuBinary, args);
  return { t0, pid: child.pid, jailSetupMs: null, jailRoot: null };
}

/** VmInstance.start()'s jail steps, in its order and with its functions; the clock starts before them. */
async function startJailed(qemu: BenchQemu, setup: Setup, name: string, runDir: string): Promise<Started> {
  // QEMU sees only its jail: the image files and the run directory under their paths inside it.
  const args = qemuArgs(name, JAIL_KERNEL, JAIL_INITRD, jailRunDir(runDir));
  const t0 = performance.now();
  const facts = readHostRootFacts();
  // After chroot every path is resolved inside the jail: the binaries must be under its /usr.
  const innerCommand = [
    ...rlimitPrefix(inJailBinary(setup.prlimitBinary, facts)),
    inJailBinary(setup.setprivBinary, facts),
    ...unprivilegedPrefix(JAIL_UID, JAIL_UID, []),
    inJailBinary(setup.qemuBinary, facts),
    ...args,
  ];
  const jail = await prepareJail(
    {
      vmDir: qemu.dir,
      runDir,
      kernel: { kernelPath: setup.kernelPath, initrdPath: setup.initrdPath },
      kvm: false,
    },
    setup.jail,
    facts,
  );
  try {
    const jailSetupMs = performance.now() - t0;
    const [command, ...commandArgs] = jail.command(null, innerCommand);
    const child = qemu.spawn(command!, commandArgs);
    // QEMU holds the namespace from here on; until then the holder does.
    if (!(await jail.entered(child.pid))) throw new Error('QEMU did not enter its jail');
    return { t0, pid: child.pid, jailSetupMs, jailRoot: jail.layout.root };
  } finally {
    jail.release();
  }
}

async function boot(setup: Setup, side: Side, name: string): Promise<BootResult> {
  return withBenchQemu(TEMP_PREFIX, `${side} boot`, async (qemu) => {
    const runDir = qemu.makeRunDir(side === 'jail' ? JAIL_UID : null);
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    const started =
      side === 'jail'
        ? await startJailed(qemu, setup, name, runDir)
        : startUnconfined(qemu, setup, name, runDir);
    await qemu.firstHeartbeat(socketPaths(runDir).guestAgent, deadline);
    const bootMs = performance.now() - started.t0;
    await sleep(SETTLE_MS);
    if (qemu.exited()) throw new Error('QEMU exited after the first heartbeat');
    return {
      bootMs,
      rssKiB: sampleQemu(started.pid, side, started.jailRoot),
      jailSetupMs: started.jailSetupMs,
    };
  });
}

function prepare(): Setup {
  const manifest = JSON.parse(readFileSync(join(GUEST_IMAGE_DIR, 'manifest.json'), 'utf8')) as {
    kernel: string;
    initrd: string;
  };
  const file = (name: string): string => {
    const path = join(GUEST_IMAGE_DIR, name);
    if (!existsSync(path)) throw new Error(`${path} not found (build the guest image first)`);
    return path;
  };
  return {
    kernelPath: file(manifest.kernel),
    initrdPath: file(manifest.initrd),
    qemuBinary: findExecutable(process.env.RAMPART_QEMU ?? 'qemu-system-x86_64'),
    setprivBinary: findExecutable('setpriv'),
    prlimitBinary: findExecutable('prlimit'),
    // As the agent finds them (src/agent/main.ts).
    jail: {
      nsenter: findExecutable('nsenter'),
      unshare: findExecutable('unshare'),
      chroot: findExecutable('chroot'),
      mount: findExecutable('mount'),
      sleep: findExecutable('sleep'),
    },
  };
}

const MS = (ms: number): string => `${ms.toFixed(0)} ms`.padStart(10);
const MIB = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`.padStart(11);

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('the confinement benchmark runs as root (setpriv, chown, mount namespaces)');
  const rounds = roundsFromEnv(5);
  const setup = prepare();
  console.log(
    `confinement benchmark: ${rounds} round(s), TCG, ${VCPUS} vCPU, ${MEMORY_MIB} MiB, QEMU ${setup.qemuBinary}; ` +
      `jail uid ${JAIL_UID}; RSS sampled ${SETTLE_MS} ms after the first heartbeat`,
  );
  let foreignQemu = countForeignQemu([TEMP_PREFIX]);
  // One untimed boot of each side first: page cache, dynamic loader, QEMU's module loading.
  await boot(setup, 'unconfined', 'bench-warmup-u');
  await boot(setup, 'jail', 'bench-warmup-j');

  const results: { side: Side; round: number; result: BootResult }[] = [];
  console.log('');
  console.log(
    `${'round'.padEnd(6)} ${'order'.padEnd(6)} ${'boot u'.padStart(10)} ${'boot jail'.padStart(10)} ` +
      `${'jail setup'.padStart(10)} ${'RSS u'.padStart(11)} ${'RSS jail'.padStart(11)}`,
  );
  for (let round = 1; round <= rounds; round++) {
    foreignQemu = Math.max(foreignQemu, countForeignQemu([TEMP_PREFIX]));
    const order: Side[] = round % 2 === 1 ? ['unconfined', 'jail'] : ['jail', 'unconfined'];
    const got = new Map<Side, BootResult>();
    for (const side of order) {
      const result = await boot(setup, side, `bench-${side === 'jail' ? 'j' : 'u'}${round}`);
      got.set(side, result);
      results.push({ side, round, result });
    }
    const u = got.get('unconfined')!;
    const j = got.get('jail')!;
    console.log(
      `${String(round).padEnd(6)} ${(order[0] === 'jail' ? 'J,U' : 'U,J').padEnd(6)} ${MS(u.bootMs)} ${MS(j.bootMs)} ` +
        `${MS(j.jailSetupMs ?? 0)} ${MIB(u.rssKiB)} ${MIB(j.rssKiB)}`,
    );
  }

  const of = (side: Side, pick: (r: BootResult) => number): number =>
    median(results.filter((r) => r.side === side).map((r) => pick(r.result)));
  const bootU = of('unconfined', (r) => r.bootMs);
  const bootJ = of('jail', (r) => r.bootMs);
  const jailSetup = of('jail', (r) => r.jailSetupMs ?? 0);
  const rssU = of('unconfined', (r) => r.rssKiB);
  const rssJ = of('jail', (r) => r.rssKiB);
  const ratio = bootJ / bootU;
  const rssDiffMiB = (rssJ - rssU) / 1024;
  const rssRatio = rssJ / rssU;

  console.log('');
  const line = (label: string, value: string): void => console.log(`${label.padEnd(58)} = ${value}`);
  line('median boot, unconfined (spawn -> first heartbeat)', `${bootU.toFixed(0)} ms`);
  line('median boot, jail (jail setup included)', `${bootJ.toFixed(0)} ms`);
  line('median jail setup (facts, skeleton, holder, mount, verify)', `${jailSetup.toFixed(1)} ms`);
  line('median QEMU RSS, unconfined', `${(rssU / 1024).toFixed(2)} MiB`);
  line('median QEMU RSS, jail', `${(rssJ / 1024).toFixed(2)} MiB`);
  // The run-to-run spread within one side: a difference smaller than this is noise.
  const spread = (side: Side, pick: (r: BootResult) => number): number => {
    const values = results.filter((r) => r.side === side).map((r) => pick(r.result));
    return Math.max(...values) - Math.min(...values);
  };
  line(
    'spread (max - min) of boot, unconfined / jail',
    `${spread('unconfined', (r) => r.bootMs).toFixed(0)} / ${spread('jail', (r) => r.bootMs).toFixed(0)} ms`,
  );
  line(
    'spread (max - min) of RSS, unconfined / jail',
    `${(spread('unconfined', (r) => r.rssKiB) / 1024).toFixed(2)} / ${(spread('jail', (r) => r.rssKiB) / 1024).toFixed(2)} MiB`,
  );
  if (foreignQemu > 0)
    console.log(`note: ${foreignQemu} other QEMU process(es) were running on this host: results are noisy`);
  console.log(`boot ratio (jail/unconfined) = ${ratio.toFixed(3)}`);
  console.log(`RSS ratio (jail/unconfined) = ${rssRatio.toFixed(3)}`);
  console.log(`RSS diff (jail - unconfined) = ${rssDiffMiB >= 0 ? '+' : ''}${rssDiffMiB.toFixed(2)} MiB`);
  console.log(
    `boot: ${ratio <= TARGET_BOOT_RATIO ? 'PASS' : 'MISS'} (target: jail/unconfined <= ${TARGET_BOOT_RATIO.toFixed(2)})`,
  );
  console.log(
    `RSS: ${rssDiffMiB < TARGET_RSS_DIFF_MIB ? 'PASS' : 'MISS'} (target: jail adds under ${TARGET_RSS_DIFF_MIB} MiB)`,
  );
}

main().catch((error: unknown) => {
  console.error(
    `confinement benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  process.exitCode = 1;
});

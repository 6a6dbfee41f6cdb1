/**
 * Boot benchmark: API create -> first guest heartbeat through Rampart, against the very same QEMU
 * command line launched by hand, in the same run and on the same machine.
 *
 *   npm run bench                      # 5 rounds
 *   RAMPART_BENCH_ROUNDS=3 npm run bench
 *
 * Rampart side: t0 before POST /v1/vms, then GET every 20 ms until the VM is `running` (the server
 * records the first heartbeat); then DELETE and wait until the VM is gone.
 * Baseline side: buildQemuArgs() with the same accelerator, flavor size and registered kernel/initrd,
 * under the same setpriv prefix (an unused uid owns a fresh run dir), then connect to the guest-agent
 * socket (retrying until it exists) and stop at the first heartbeat line; then kill QEMU.
 * Rounds alternate which side goes first; one VM runs at a time. The target: Rampart adds under 10%
 * and under 150 ms (medians). A miss is reported, not failed: the exit code is 0 unless something broke.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Accelerator } from '../src/api/host.js';
import type { Vm } from '../src/api/vm.js';
import { findExecutable } from '../src/agent/host-facts.js';
import { buildQemuArgs, socketPaths, unprivilegedPrefix } from '../src/agent/qemu/command-line.js';
import { RampartHarness } from '../test/helpers/rampart-harness.js';
import { GUEST_IMAGE_DIR } from '../test/helpers/repo.js';
import { countForeignQemu, median, roundsFromEnv, sleep, withBenchQemu } from './lib/qemu-boot.js';

const TARGET_RATIO = 1.1;
const TARGET_OVERHEAD_MS = 150;
const POLL_MS = 20;
const BOOT_TIMEOUT_MS = 120_000;
/** Far outside the uid ranges the harness gives its agents (3_100_000 .. ~3_265_000). */
const BASELINE_UID = 3_900_000;

interface Setup {
  harness: RampartHarness;
  accelerator: Accelerator;
  vcpus: number;
  memoryMiB: number;
  kernelPath: string;
  initrdPath: string;
  qemuBinary: string;
  setprivBinary: string;
}

interface RoundResult {
  round: number;
  order: string;
  baselineMs: number;
  rampartMs: number;
  /** The agent's own spawn -> first heartbeat measurement of the Rampart VM. */
  rampartBootMs: number | null;
}

// ------------------------------------------------------------------ baseline: QEMU by hand

async function baselineBoot(setup: Setup, name: string): Promise<number> {
  return withBenchQemu('rampart-bench-', 'baseline boot', async (qemu) => {
    const t0 = performance.now();
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    // What the agent does before it spawns: a run dir owned by the VM's uid, mode 0700.
    const runDir = qemu.makeRunDir(BASELINE_UID);
    const args = buildQemuArgs({
      id: randomUUID(),
      name,
      vcpus: setup.vcpus,
      memoryMiB: setup.memoryMiB,
      accelerator: setup.accelerator,
      kernel: { kernelPath: setup.kernelPath, initrdPath: setup.initrdPath },
      runDir,
    });
    qemu.spawn(setup.setprivBinary, [
      ...unprivilegedPrefix(BASELINE_UID, BASELINE_UID, []),
      setup.qemuBinary,
      ...args,
    ]);
    await qemu.firstHeartbeat(socketPaths(runDir).guestAgent, deadline);
    return performance.now() - t0;
  });
}

// ------------------------------------------------------------------ Rampart: through the API

async function rampartBoot(
  harness: RampartHarness,
  name: string,
): Promise<{ ms: number; bootMs: number | null }> {
  const t0 = performance.now();
  const created = await harness.api<Vm>('POST', '/v1/vms', {
    name,
    image: 'tiny',
    flavor: 'tiny',
    restartPolicy: 'never',
  });
  try {
    if (created.status !== 201)
      throw new Error(`create ${name}: ${created.status} ${JSON.stringify(created.body)}`);
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    for (;;) {
      const vm = await harness.vm(name);
      if (vm.state === 'running') return { ms: performance.now() - t0, bootMs: vm.bootMs };
      if (vm.state === 'error') throw new Error(`VM ${name} failed: ${vm.error}`);
      if (Date.now() > deadline)
        throw new Error(`VM ${name} not running in time (last: ${JSON.stringify(vm)})`);
      await sleep(POLL_MS);
    }
  } finally {
    if (created.status === 201) await deleteVm(harness, name);
  }
}

async function deleteVm(harness: RampartHarness, name: string): Promise<void> {
  const deleted = await harness.api('DELETE', `/v1/vms/${name}`);
  if (deleted.status >= 300)
    throw new Error(`delete ${name}: ${deleted.status} ${JSON.stringify(deleted.body)}`);
  await harness.waitFor(
    async () => (await harness.api('GET', `/v1/vms/${name}`)).status === 404,
    60_000,
    `VM ${name} to be gone`,
  );
  await harness.waitFor(async () => harness.qemuPids().length === 0, 10_000, `QEMU of ${name} to exit`);
}

// ------------------------------------------------------------------ setup and report

async function prepare(harness: RampartHarness): Promise<Setup> {
  const hosts = await harness.api<{ items: { state: string; accelerator: Accelerator }[] }>(
    'GET',
    '/v1/hosts',
  );
  const host = hosts.body.items.find((h) => h.state === 'online');
  if (!host) throw new Error('no online host');
  const flavor = await harness.api<{ vcpus: number; memoryMiB: number }>('GET', '/v1/flavors/tiny');
  if (flavor.status !== 200) throw new Error(`flavor tiny: ${flavor.status}`);
  // The registered image: the verified plaintext the server materializes from its encrypted store into
  // <dataDir>/image-cache, under its SHA-256, for a VM's first boot (the Rampart warm-up boot makes it).
  const manifest = JSON.parse(readFileSync(join(GUEST_IMAGE_DIR, 'manifest.json'), 'utf8')) as {
    kernel: string;
    initrd: string;
    sha256: Record<string, string>;
  };
  const imagePath = (file: string): string => {
    const path = join(harness.dataDir, 'image-cache', manifest.sha256[file] ?? '');
    if (!existsSync(path)) throw new Error(`registered image file ${path} (${file}) not found`);
    return path;
  };
  return {
    harness,
    accelerator: host.accelerator,
    vcpus: flavor.body.vcpus,
    memoryMiB: flavor.body.memoryMiB,
    kernelPath: imagePath(manifest.kernel),
    initrdPath: imagePath(manifest.initrd),
    qemuBinary: findExecutable(process.env.RAMPART_QEMU ?? 'qemu-system-x86_64'),
    setprivBinary: findExecutable('setpriv'),
  };
}

function fmt(ms: number): string {
  return `${ms.toFixed(0)} ms`.padStart(10);
}

async function main(): Promise<void> {
  const rounds = roundsFromEnv(5);
  // The measurement polls the VM as fast as it can: the API rate limits would only add noise.
  const harness = await RampartHarness.start({
    env: { RAMPART_RATE_LIMIT_PRINCIPAL: 'off', RAMPART_RATE_LIMIT_TENANT: 'off' },
  });
  try {
    let foreignQemu = countForeignQemu([harness.dataDir, 'rampart-bench-']);
    // One untimed boot of each side first: page cache, accelerator probe cache, first-request JIT. The
    // Rampart side goes first: its boot materializes the image files the baseline boots.
    await rampartBoot(harness, 'bench-warmup-r');
    const setup = await prepare(harness);
    console.log(
      `boot benchmark: ${rounds} round(s), accelerator ${setup.accelerator}, ${setup.vcpus} vCPU, ${setup.memoryMiB} MiB, ` +
        `QEMU ${setup.qemuBinary} as uid ${BASELINE_UID} (baseline)`,
    );
    await baselineBoot(setup, 'bench-warmup-b');

    const results: RoundResult[] = [];
    console.log('');
    console.log(
      `${'round'.padEnd(6)} ${'order'.padEnd(6)} ${'baseline'.padStart(10)} ${'rampart'.padStart(10)} ${'diff'.padStart(10)} ` +
        `${'agent bootMs'.padStart(13)} ${'outside boot'.padStart(13)}`,
    );
    for (let round = 1; round <= rounds; round++) {
      const baselineFirst = round % 2 === 1;
      foreignQemu = Math.max(foreignQemu, countForeignQemu([harness.dataDir, 'rampart-bench-']));
      let baselineMs = 0;
      let rampart = { ms: 0, bootMs: null as number | null };
      if (baselineFirst) {
        baselineMs = await baselineBoot(setup, `bench-b${round}`);
        rampart = await rampartBoot(setup.harness, `bench-r${round}`);
      } else {
        rampart = await rampartBoot(setup.harness, `bench-r${round}`);
        baselineMs = await baselineBoot(setup, `bench-b${round}`);
      }
      const result: RoundResult = {
        round,
        order: baselineFirst ? 'B,R' : 'R,B',
        baselineMs,
        rampartMs: rampart.ms,
        rampartBootMs: rampart.bootMs,
      };
      results.push(result);
      console.log(
        `${String(round).padEnd(6)} ${result.order.padEnd(6)} ${fmt(baselineMs)} ${fmt(rampart.ms)} ${fmt(rampart.ms - baselineMs)} ` +
          `${(rampart.bootMs === null ? '-' : `${rampart.bootMs} ms`).padStart(13)} ` +
          `${(rampart.bootMs === null ? '-' : fmt(rampart.ms - rampart.bootMs)).padStart(13)}`,
      );
    }

    const baseline = median(results.map((r) => r.baselineMs));
    const rampartMedian = median(results.map((r) => r.rampartMs));
    const ratio = rampartMedian / baseline;
    const overhead = rampartMedian - baseline;
    const pass = ratio < TARGET_RATIO && overhead < TARGET_OVERHEAD_MS;
    console.log('');
    const paired = median(results.map((r) => r.rampartMs - r.baselineMs));
    const outside = results
      .filter((r) => r.rampartBootMs !== null)
      .map((r) => r.rampartMs - r.rampartBootMs!);
    const line = (label: string, value: string): void => console.log(`${label.padEnd(58)} = ${value}`);
    line('median baseline (QEMU by hand, spawn -> first heartbeat)', `${baseline.toFixed(0)} ms`);
    line(`median rampart (POST -> running, polled every ${POLL_MS} ms)`, `${rampartMedian.toFixed(0)} ms`);
    line('median paired diff (rampart - baseline, same round)', `${paired.toFixed(0)} ms`);
    if (outside.length > 0)
      line("median time outside the agent's own boot measurement", `${median(outside).toFixed(0)} ms`);
    if (foreignQemu > 0) {
      console.log(
        `note: ${foreignQemu} other QEMU process(es) were running on this host: boot times are noisy`,
      );
    }
    console.log(`ratio (rampart/baseline) = ${ratio.toFixed(2)}`);
    console.log(`overhead = ${overhead.toFixed(0)} ms`);
    console.log(
      `verdict: ${pass ? 'PASS' : 'MISS'} (target: Rampart adds under ${Math.round((TARGET_RATIO - 1) * 100)}% and under ${TARGET_OVERHEAD_MS} ms)`,
    );
  } finally {
    await harness.cleanup();
  }
}

main().catch((error: unknown) => {
  console.error(
    `boot benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  process.exitCode = 1;
});

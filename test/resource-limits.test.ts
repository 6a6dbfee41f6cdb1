/**
 * Per-VM runtime limits on a real all-in-one Rampart (server + agent + QEMU under TCG). A flavor with a
 * 20% CPU cap and 256 tasks boots the tiny guest. QEMU must sit in its own cgroups with the flavor's
 * values and the memory limit guest + QEMU overhead. A busy loop in the guest must be held at about
 * 20% of one CPU while an uncapped VM running the same loop gets far more. An agent restart re-adopts
 * without resetting anything and prunes a leftover cgroup. Deleting the VMs removes their cgroups.
 * Where limits cannot be applied, a VM does not start and its error says why.
 *
 * The agent runs in external mode, started by this file. The reason: the server passes only a fixed
 * set of variables to a local agent, and this run needs a cgroup parent of its own
 * (RAMPART_CGROUP_PARENT=rampart-test-<random>), so parallel runs never share one. The after() hook
 * kills QEMU and the agent and removes the parent in every hierarchy, pass or fail.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  utimesSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import type { Vm } from '../src/api/vm.js';
import { vmMemoryLimitMiB } from '../src/agent/qemu/memory-overhead.js';
import { RampartHarness } from './helpers/rampart-harness.js';
import { CLI_MAIN } from './helpers/repo.js';

const CGROUP_ROOT = '/sys/fs/cgroup';
const CONTROLLERS = ['cpu', 'cpuacct', 'memory', 'pids'] as const;
const PARENT = `rampart-test-${randomBytes(6).toString('hex')}`;
const MIB = 1024 * 1024;
const BOOT_TIMEOUT_MS = 180_000;
const SAMPLE_MS = 3000;

const agentDir = mkdtempSync(join(tmpdir(), 'rampart-limits-'));
chmodSync(agentDir, 0o755);
const agentSocket = join(agentDir, 'agent.sock');
let agent: ChildProcess | null = null;
let rampart: RampartHarness | undefined;
const vms: { capped?: Vm; free?: Vm } = {};

function h(): RampartHarness {
  if (!rampart) throw new Error('the harness did not start');
  return rampart;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function cgroupDir(controller: string, vmId: string): string {
  return join(CGROUP_ROOT, controller, PARENT, `vm-${vmId}`);
}

function cgroupFile(controller: string, vmId: string, file: string): string {
  return readFileSync(join(cgroupDir(controller, vmId), file), 'utf8').trim();
}

function cpuUsageNs(vmId: string): number {
  return Number(cgroupFile('cpuacct', vmId, 'cpuacct.usage'));
}

function throttledPeriods(vmId: string): number {
  return Number(/^nr_throttled (\d+)$/m.exec(cgroupFile('cpu', vmId, 'cpu.stat'))?.[1] ?? NaN);
}

function agentState(vmId: string): { resources?: Record<string, unknown> | null } {
  return JSON.parse(readFileSync(join(agentDir, 'vms', vmId, 'state.json'), 'utf8')) as {
    resources?: Record<string, unknown> | null;
  };
}

function startAgent(extraEnv: Record<string, string> = {}): void {
  const log = openSync(join(agentDir, 'agent.log'), 'a', 0o600);
  try {
    agent = spawn(process.execPath, [CLI_MAIN, 'agent', '--data-dir', agentDir, '--socket', agentSocket], {
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        RAMPART_CGROUP_PARENT: PARENT,
        RAMPART_ACCEL_CACHE: join(tmpdir(), 'rampart-test-accel-cache.json'),
        RAMPART_UID_BASE: String(3_500_000 + Math.floor(Math.random() * 1000) * 100),
        RAMPART_LOG_LEVEL: 'info',
        ...extraEnv,
      },
      stdio: ['ignore', log, log],
    });
  } finally {
    closeSync(log);
  }
}

async function stopAgent(): Promise<void> {
  const child = agent;
  agent = null;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** Pids of QEMU processes of this file's agent. */
function qemuPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes('qemu-system') && cmdline.includes(agentDir)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

/** Kills what is left in this run's cgroups and removes them and the parent, in every hierarchy. */
function removeCgroupParent(): void {
  for (const controller of CONTROLLERS) {
    const parent = join(CGROUP_ROOT, controller, PARENT);
    if (!existsSync(parent)) continue;
    for (const child of readdirSync(parent, { withFileTypes: true })) {
      if (!child.isDirectory()) continue;
      const dir = join(parent, child.name);
      for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone
        }
      }
      for (let attempt = 0; attempt < 50; attempt++) {
        try {
          rmdirSync(dir);
          break;
        } catch {
          sleepSync(100); // synchronous: also used from the process 'exit' hook
        }
      }
    }
    rmdirSync(parent);
  }
}

function killEverythingSync(): void {
  agent?.kill('SIGKILL');
  for (const pid of qemuPids()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  try {
    removeCgroupParent();
  } catch {
    // best effort at exit
  }
  rmSync(agentDir, { recursive: true, force: true });
}
process.once('exit', killEverythingSync);

async function hostOnlineSince(since: number): Promise<boolean> {
  const hosts = await h().api<{ items: { state: string; lastSeenAt: string | null }[] }>('GET', '/v1/hosts');
  return hosts.body.items.some(
    (host) => host.state === 'online' && host.lastSeenAt !== null && Date.parse(host.lastSeenAt) >= since,
  );
}

/** Types a line into the guest's serial console and waits for the shell to have run it. */
async function typeIntoConsole(vmName: string, line: string): Promise<void> {
  const ws = new WebSocket(`${h().url.replace('http', 'ws')}/v1/vms/${vmName}/console/stream`, {
    headers: { authorization: `Bearer ${h().token}` },
  });
  let received = '';
  ws.on('message', (data: Buffer) => (received += data.toString('utf8')));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const tag = randomBytes(3).toString('hex');
  // Short lines: busybox ash loses lines longer than ~80 columns. The marker is computed by the
  // shell, so the echo of the typed line does not match it.
  ws.send(`${line}\n`);
  ws.send(`echo ran-${tag}-$((6*7))\n`);
  await h().waitFor(async () => received.includes(`ran-${tag}-42`), 60_000, `${vmName} to run "${line}"`);
  ws.close();
}

before(async () => {
  startAgent();
  const deadline = Date.now() + 60_000;
  while (!existsSync(agentSocket)) {
    if (Date.now() > deadline || agent?.exitCode !== null)
      throw new Error(`the agent did not start:\n${readFileSync(join(agentDir, 'agent.log'), 'utf8')}`);
    await sleep(100);
  }
  rampart = await RampartHarness.start({
    env: { RAMPART_AGENT_MODE: 'external', RAMPART_AGENT_SOCKET: agentSocket },
  });
});

after(async () => {
  try {
    await rampart?.cleanup();
    await stopAgent();
    for (const pid of qemuPids()) process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 10_000;
    while (qemuPids().length > 0 && Date.now() < deadline) await sleep(50);
    removeCgroupParent();
  } finally {
    rmSync(agentDir, { recursive: true, force: true });
  }
  for (const controller of CONTROLLERS)
    assert.ok(!existsSync(join(CGROUP_ROOT, controller, PARENT)), `${controller}/${PARENT} left behind`);
});

test('flavors with runtime limits: a 20% CPU cap with 256 tasks, and one without a cap', async () => {
  const capped = await h().api<Record<string, unknown>>('POST', '/v1/flavors', {
    name: 'capped',
    vcpus: 1,
    memoryMiB: 128,
    diskGiB: 1,
    cpuLimitPercent: 20,
    pidsMax: 256,
  });
  assert.equal(capped.status, 201, JSON.stringify(capped.body));
  assert.equal(capped.body.cpuLimitPercent, 20);
  assert.equal(capped.body.pidsMax, 256);
  const free = await h().api<Record<string, unknown>>('POST', '/v1/flavors', {
    name: 'uncapped',
    vcpus: 1,
    memoryMiB: 128,
    diskGiB: 1,
  });
  assert.equal(free.status, 201, JSON.stringify(free.body));
  assert.equal(free.body.cpuLimitPercent, null);
});

test('QEMU starts inside its own cgroups, which hold the flavor values', async () => {
  for (const [name, flavor] of [
    ['capped', 'capped'],
    ['free', 'uncapped'],
  ] as const) {
    const created = await h().api<Vm>('POST', '/v1/vms', { name, image: 'tiny', flavor });
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
  vms.capped = await h().waitForState('capped', 'running', BOOT_TIMEOUT_MS);
  vms.free = await h().waitForState('free', 'running', BOOT_TIMEOUT_MS);
  const id = vms.capped.id;
  const pid = vms.capped.pid!;

  assert.equal(cgroupFile('cpu', id, 'cpu.cfs_period_us'), '100000');
  assert.equal(cgroupFile('cpu', id, 'cpu.cfs_quota_us'), '20000');
  assert.equal(cgroupFile('cpu', id, 'cpu.shares'), '1024');
  assert.equal(cgroupFile('pids', id, 'pids.max'), '256');
  const limitMiB = vmMemoryLimitMiB('tcg', { memoryMiB: 128, vcpus: 1 });
  assert.equal(limitMiB, 230, '128 MiB guest + 102 MiB QEMU overhead under TCG');
  assert.equal(Number(cgroupFile('memory', id, 'memory.limit_in_bytes')), limitMiB * MIB);
  if (existsSync(join(cgroupDir('memory', id), 'memory.memsw.limit_in_bytes')))
    assert.equal(Number(cgroupFile('memory', id, 'memory.memsw.limit_in_bytes')), limitMiB * MIB);
  // The uncapped flavor gets vcpus x 100%.
  assert.equal(cgroupFile('cpu', vms.free.id, 'cpu.cfs_quota_us'), '100000');
  assert.equal(cgroupFile('pids', vms.free.id, 'pids.max'), '512');

  for (const controller of CONTROLLERS) {
    const procs = cgroupFile(controller, id, 'cgroup.procs').split('\n').map(Number);
    assert.deepEqual(procs, [pid], `${controller}/cgroup.procs holds exactly QEMU`);
  }
  const membership = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  for (const controller of CONTROLLERS)
    assert.match(membership, new RegExp(`^\\d+:${controller}:/${PARENT}/vm-${id}$`, 'm'));
  // QEMU is still the unprivileged, sandboxed process cgexec handed over to (same pid).
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  assert.match(status, /^Seccomp:\s+2$/m);
  assert.match(status, /^NoNewPrivs:\s+1$/m);
  assert.doesNotMatch(status, /^Uid:\s+0\s/m);
  assert.ok(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('tcg,tb-size=32'));

  // The whole boot was charged to the VM (join before exec): well above the guest's kernel and
  // initramfs, below the limit, and never at it.
  const peak = Number(cgroupFile('memory', id, 'memory.max_usage_in_bytes'));
  assert.ok(peak > 100 * MIB && peak < limitMiB * MIB, `peak memory ${peak / MIB} MiB`);
  console.log(`# capped VM memory after boot: peak ${(peak / MIB).toFixed(1)} MiB of ${limitMiB} MiB`);
  assert.equal(cgroupFile('memory', id, 'memory.failcnt'), '0');
  assert.deepEqual(agentState(id).resources, {
    cgroup: 'v1',
    cpuPercent: 20,
    cpuWeight: 100,
    pidsMax: 256,
    memoryLimitMiB: 230,
    confined: true,
  });
});

test('a busy guest is held at its 20% CPU cap while an uncapped one runs freely', async () => {
  const capped = vms.capped!;
  const free = vms.free!;
  await typeIntoConsole('capped', 'while :; do :; done &');
  await typeIntoConsole('free', 'while :; do :; done &');
  await sleep(1000);
  const t0 = process.hrtime.bigint();
  const capped0 = cpuUsageNs(capped.id);
  const free0 = cpuUsageNs(free.id);
  const throttled0 = throttledPeriods(capped.id);
  await sleep(SAMPLE_MS);
  const elapsedNs = Number(process.hrtime.bigint() - t0);
  const cappedPercent = ((cpuUsageNs(capped.id) - capped0) / elapsedNs) * 100;
  const freePercent = ((cpuUsageNs(free.id) - free0) / elapsedNs) * 100;
  const throttled = throttledPeriods(capped.id) - throttled0;
  console.log(
    `# CPU over ${(elapsedNs / 1e9).toFixed(2)} s: capped ${cappedPercent.toFixed(1)}%, ` +
      `uncapped ${freePercent.toFixed(1)}%, capped throttled in ${throttled} periods`,
  );
  assert.ok(cappedPercent <= 27, `capped VM used ${cappedPercent.toFixed(1)}% of one CPU`);
  assert.ok(cappedPercent >= 10, `capped VM used only ${cappedPercent.toFixed(1)}%: is the loop running?`);
  assert.ok(throttled >= 10, `the cap is what holds it: throttled in ${throttled} periods`);
  // Two cores shared with the server, the agent and whatever else runs here: well above the cap
  // is enough to show that the loop runs and the cap is what holds the other VM.
  assert.ok(freePercent >= 40, `uncapped VM used only ${freePercent.toFixed(1)}% with the same loop`);
  const pids = Number(cgroupFile('pids', capped.id, 'pids.current'));
  assert.ok(pids > 1 && pids <= 256, `pids.current ${pids}`);
});

test('an agent restart re-adopts QEMU without resetting its cgroups and prunes leftovers', async () => {
  const capped = vms.capped!;
  const leftover = randomUUID();
  const past = new Date(Date.now() - 5 * 60_000);
  for (const controller of CONTROLLERS) {
    mkdirSync(cgroupDir(controller, leftover));
    utimesSync(cgroupDir(controller, leftover), past, past);
  }
  const usageBefore = cpuUsageNs(capped.id);
  await stopAgent();
  const since = Date.now();
  startAgent();
  await h().waitFor(() => hostOnlineSince(since), 60_000, 'the host back online');
  await h().waitFor(
    async () => {
      const vm = await h().vm('capped');
      return vm.state === 'running' && vm.lastHeartbeatAt !== null && Date.parse(vm.lastHeartbeatAt) > since;
    },
    60_000,
    'a heartbeat through the new agent',
  );
  const now = await h().vm('capped');
  assert.equal(now.pid, capped.pid, 'the same QEMU');
  assert.ok(
    cpuUsageNs(capped.id) >= usageBefore,
    'cpuacct.usage kept counting: the cgroup was not recreated',
  );
  assert.equal(cgroupFile('cpu', capped.id, 'cpu.cfs_quota_us'), '20000');
  assert.equal(cgroupFile('pids', capped.id, 'pids.max'), '256');
  for (const controller of CONTROLLERS)
    assert.deepEqual(cgroupFile(controller, capped.id, 'cgroup.procs').split('\n').map(Number), [capped.pid]);
  assert.equal(agentState(capped.id).resources?.confined, true);
  for (const controller of CONTROLLERS)
    assert.ok(!existsSync(cgroupDir(controller, leftover)), `leftover ${controller} cgroup pruned`);
});

test('deleting the VMs removes their cgroups', async () => {
  for (const name of ['capped', 'free']) {
    const deleted = await h().api('DELETE', `/v1/vms/${name}`);
    assert.equal(deleted.status, 202);
  }
  for (const name of ['capped', 'free'])
    await h().waitFor(
      async () => (await h().api('GET', `/v1/vms/${name}`)).status === 404,
      30_000,
      `${name} gone`,
    );
  for (const vm of [vms.capped!, vms.free!])
    for (const controller of CONTROLLERS)
      assert.ok(!existsSync(cgroupDir(controller, vm.id)), `${controller} cgroup of ${vm.name} removed`);
  assert.deepEqual(qemuPids(), []);
});

test('when limits cannot be applied the VM does not start, and its status says why', async () => {
  // This host is v1: an agent forced to v2 finds no usable hierarchy, so limits are unavailable.
  await stopAgent();
  const since = Date.now();
  startAgent({ RAMPART_CGROUP: 'v2' });
  await h().waitFor(() => hostOnlineSince(since), 60_000, 'the host back online');
  const created = await h().api<Vm>('POST', '/v1/vms', {
    name: 'unconfined',
    image: 'tiny',
    flavor: 'capped',
    restartPolicy: 'never',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const failed = await h().waitForState('unconfined', 'error', 60_000);
  assert.equal(
    failed.error,
    'resource limits cannot be applied on this host: no cgroup v2 hierarchy at /sys/fs/cgroup',
  );
  assert.equal(failed.pid, null);
  assert.deepEqual(qemuPids(), [], 'no QEMU ran');
  for (const controller of CONTROLLERS) assert.ok(!existsSync(cgroupDir(controller, failed.id)));
  const deleted = await h().api('DELETE', '/v1/vms/unconfined');
  assert.equal(deleted.status, 202);
  await h().waitFor(
    async () => (await h().api('GET', '/v1/vms/unconfined')).status === 404,
    30_000,
    'deleted',
  );
});

// Process lifecycle of a real all-in-one Rampart: VMs survive an agent crash and a server crash (same
// QEMU processes, nothing restarted, heartbeats keep flowing), and a QEMU that dies is noticed and then
// restarted or left in `error` according to the VM's restart policy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Vm } from '../src/api/vm.js';
import { RampartHarness } from './helpers/rampart-harness.js';

const BOOT_TIMEOUT_MS = 120_000;

let harness: RampartHarness | undefined;

/** Filled in by the first test and carried through the rest: the file is one story. */
const booted: { a?: Vm; b?: Vm } = {};

function h(): RampartHarness {
  if (!harness) throw new Error('the harness did not start');
  return harness;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function sorted(values: readonly number[]): number[] {
  return [...values].sort((x, y) => x - y);
}

/** True once the process is gone (or a zombie nobody has reaped yet). */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

interface HostRow {
  id: string;
  state: string;
  lastSeenAt: string | null;
}

async function hostOnlineSince(since: number): Promise<boolean> {
  const hosts = await h().api<{ items: HostRow[] }>('GET', '/v1/hosts');
  return hosts.body.items.some(
    (host) => host.state === 'online' && host.lastSeenAt !== null && Date.parse(host.lastSeenAt) >= since,
  );
}

function heartbeatAfter(vm: Vm, since: number): boolean {
  return vm.lastHeartbeatAt !== null && Date.parse(vm.lastHeartbeatAt) > since;
}

/** Both VMs running on exactly the QEMU processes recorded at boot, nothing restarted. */
async function assertUntouched(what: string): Promise<{ a: Vm; b: Vm }> {
  const a0 = booted.a!;
  const b0 = booted.b!;
  const [a, b] = await Promise.all([h().vm('a'), h().vm('b')]);
  for (const [now, then] of [
    [a, a0],
    [b, b0],
  ] as const) {
    assert.equal(now.state, 'running', `${what}: VM ${now.name} state (${JSON.stringify(now)})`);
    assert.equal(now.pid, then.pid, `${what}: VM ${now.name} has a different QEMU pid`);
    assert.equal(now.restartCount, 0, `${what}: VM ${now.name} was restarted`);
    assert.equal(now.bootMs, then.bootMs, `${what}: VM ${now.name} bootMs changed (it booted again?)`);
    assert.equal(now.error, null, `${what}: VM ${now.name} has an error`);
  }
  assert.deepEqual(
    sorted(h().qemuPids()),
    sorted([a0.pid!, b0.pid!]),
    `${what}: QEMU processes of the data dir`,
  );
  return { a, b };
}

before(async () => {
  harness = await RampartHarness.start();
});

after(async () => {
  const current = harness;
  if (!current) return;
  harness = undefined;
  await current.cleanup();
  const deadline = Date.now() + 10_000;
  while (current.qemuPids().length > 0 && Date.now() < deadline) await sleep(100);
  assert.deepEqual(current.qemuPids(), [], 'QEMU processes of the data dir are left after cleanup');
});

void test(
  'boots VM a (restart on-failure) and VM b (restart never)',
  { timeout: 2 * BOOT_TIMEOUT_MS + 10_000 },
  async () => {
    for (const [name, restartPolicy] of [
      ['a', 'on-failure'],
      ['b', 'never'],
    ] as const) {
      const created = await h().api<Vm>('POST', '/v1/vms', {
        name,
        image: 'tiny',
        flavor: 'tiny',
        restartPolicy,
      });
      assert.equal(created.status, 201, `create ${name}: ${JSON.stringify(created.body)}`);
      assert.equal(created.body.restartPolicy, restartPolicy);
    }
    const [a, b] = await Promise.all([
      h().waitForState('a', 'running', BOOT_TIMEOUT_MS),
      h().waitForState('b', 'running', BOOT_TIMEOUT_MS),
    ]);
    for (const vm of [a, b]) {
      assert.ok(Number.isInteger(vm.pid) && vm.pid! > 1, `VM ${vm.name} pid ${vm.pid}`);
      assert.ok(Number.isInteger(vm.bootMs) && vm.bootMs! > 0, `VM ${vm.name} bootMs ${vm.bootMs}`);
      assert.equal(vm.restartCount, 0);
    }
    assert.notEqual(a.pid, b.pid);
    assert.deepEqual(sorted(h().qemuPids()), sorted([a.pid!, b.pid!]));
    booted.a = a;
    booted.b = b;
  },
);

void test(
  'SIGKILL of the agent: restarted by the server, VMs re-adopted untouched',
  { timeout: 90_000 },
  async (t) => {
    assert.ok(booted.a && booted.b, 'the VMs did not boot');
    // Uptimes as the server knows them right before the kill.
    const [a0, b0] = await Promise.all([h().vm('a'), h().vm('b')]);
    const oldAgent = h().agentPid();
    assert.ok(oldAgent !== null, 'no agent pid file');
    const killedAt = Date.now();
    process.kill(oldAgent, 'SIGKILL');
    await h().waitFor(async () => processGone(oldAgent), 10_000, `old agent ${oldAgent} to exit`);

    await h().waitFor(
      async () => {
        const pid = h().agentPid();
        return pid !== null && pid !== oldAgent && !processGone(pid);
      },
      30_000,
      'a new agent process',
    );
    await h().waitFor(() => hostOnlineSince(killedAt), 30_000, 'host online again after the agent restart');
    const newAgent = h().agentPid();
    assert.ok(newAgent !== null && newAgent !== oldAgent);

    t.diagnostic(`agent ${oldAgent} -> ${newAgent}, host online again after ${Date.now() - killedAt} ms`);

    // The re-adopted VMs report again: wait for a heartbeat the new agent received, from a guest that
    // kept running (uptime past its value at the kill, so not only a line written before it).
    const uptimeAtKill = (vm: Vm): number =>
      vm.guestUptimeSeconds === null || vm.lastHeartbeatAt === null
        ? 0
        : vm.guestUptimeSeconds + (killedAt - Date.parse(vm.lastHeartbeatAt)) / 1000 - 1;
    const fresh = (now: Vm, then: Vm): boolean =>
      heartbeatAfter(now, killedAt) && (now.guestUptimeSeconds ?? -1) > uptimeAtKill(then);
    await h().waitFor(
      async () => {
        const [a, b] = await Promise.all([h().vm('a'), h().vm('b')]);
        return fresh(a, a0) && fresh(b, b0);
      },
      30_000,
      'heartbeats after the agent restart',
    );
    const { a, b } = await assertUntouched('after the agent restart');
    for (const [now, then] of [
      [a, a0],
      [b, b0],
    ] as const) {
      assert.ok(now.guestUptimeSeconds !== null, `VM ${now.name} has no guest uptime`);
      assert.ok(
        then.guestUptimeSeconds === null || now.guestUptimeSeconds > then.guestUptimeSeconds,
        `VM ${now.name} guest uptime did not grow: ${then.guestUptimeSeconds} -> ${now.guestUptimeSeconds}`,
      );
    }
    assert.equal(h().agentPid(), newAgent, 'the agent restarted more than once');
  },
);

void test(
  'SIGKILL of the server: a new server re-attaches to the same agent and VMs',
  { timeout: 90_000 },
  async () => {
    assert.ok(booted.a && booted.b, 'the VMs did not boot');
    const agent = h().agentPid();
    const [a0, b0] = await Promise.all([h().vm('a'), h().vm('b')]);
    await h().killServer('SIGKILL');
    const restartedAt = Date.now();
    await h().startServer();
    // The old server never marked the host offline; a hello recorded after the restart is the signal.
    await h().waitFor(() => hostOnlineSince(restartedAt), 30_000, 'host online after the server restart');
    await h().waitFor(
      async () => {
        const [a, b] = await Promise.all([h().vm('a'), h().vm('b')]);
        return heartbeatAfter(a, restartedAt) && heartbeatAfter(b, restartedAt);
      },
      30_000,
      'heartbeats reaching the new server',
    );
    const { a, b } = await assertUntouched('after the server restart');
    assert.equal(h().agentPid(), agent, 'the server restart replaced the agent');
    for (const [now, then] of [
      [a, a0],
      [b, b0],
    ] as const) {
      assert.ok(
        now.guestUptimeSeconds !== null &&
          then.guestUptimeSeconds !== null &&
          now.guestUptimeSeconds > then.guestUptimeSeconds,
        `VM ${now.name} guest uptime did not grow: ${then.guestUptimeSeconds} -> ${now.guestUptimeSeconds}`,
      );
    }
  },
);

void test(
  'QEMU of VM a (on-failure) killed: noticed, then restarted by policy',
  { timeout: BOOT_TIMEOUT_MS + 30_000 },
  async (t) => {
    assert.ok(booted.a && booted.b, 'the VMs did not boot');
    const oldPid = booted.a.pid!;
    const killedAt = Date.now();
    process.kill(oldPid, 'SIGKILL');

    // The server notices within ~10 s: the VM leaves `running` (error, then starting) or gets a new pid.
    const seen: string[] = [];
    const deadline = Date.now() + 10_000;
    let noticed: Vm | null = null;
    while (Date.now() < deadline) {
      const vm = await h().vm('a');
      if (seen[seen.length - 1] !== vm.state) seen.push(vm.state);
      if (vm.state !== 'running' || vm.pid !== oldPid) {
        noticed = vm;
        break;
      }
      await sleep(50);
    }
    assert.ok(noticed, `the server did not notice the dead QEMU within 10 s (states: ${seen.join(' -> ')})`);
    assert.ok(
      ['error', 'starting'].includes(noticed.state),
      `after the kill VM a is ${noticed.state} (${JSON.stringify(noticed)})`,
    );

    t.diagnostic(`noticed after ${Date.now() - killedAt} ms: ${noticed.state} (error: ${noticed.error})`);

    const a = await waitForRunningAgain('a', oldPid);
    t.diagnostic(
      `running again after ${Date.now() - killedAt} ms, pid ${oldPid} -> ${a.pid}, bootMs ${a.bootMs}`,
    );
    assert.notEqual(a.pid, oldPid);
    assert.equal(a.restartCount, 1, 'restartCount');
    assert.equal(a.error, null);
    assert.ok(Number.isInteger(a.bootMs) && a.bootMs! > 0, `bootMs of the new boot: ${a.bootMs}`);
    assert.ok(processGone(oldPid), 'the killed QEMU is still there');
    assert.deepEqual(sorted(h().qemuPids()), sorted([a.pid!, booted.b.pid!]));

    const b = await h().vm('b');
    assert.equal(b.state, 'running');
    assert.equal(b.pid, booted.b.pid, 'VM b was touched');
    booted.a = a;
  },
);

async function waitForRunningAgain(ref: string, oldPid: number): Promise<Vm> {
  let last: Vm | null = null;
  await h().waitFor(
    async () => {
      last = await h().vm(ref);
      return last.state === 'running' && last.pid !== null && last.pid !== oldPid;
    },
    BOOT_TIMEOUT_MS,
    `VM ${ref} running again with a new QEMU (last: ${JSON.stringify(last)})`,
  );
  return last!;
}

void test('QEMU of VM b (never) killed: error, and it stays down', { timeout: 60_000 }, async () => {
  assert.ok(booted.a && booted.b, 'the VMs did not boot');
  const oldPid = booted.b.pid!;
  process.kill(oldPid, 'SIGKILL');
  const b = await h().waitForState('b', 'error', 10_000);
  assert.equal(b.pid, null);
  assert.ok(b.error && b.error.length > 0, 'error is empty');
  assert.match(b.error, /QEMU exited/i);

  await sleep(5_000);
  const later = await h().vm('b');
  assert.equal(later.state, 'error', `VM b left error: ${JSON.stringify(later)}`);
  assert.equal(later.restartCount, 0, 'VM b was restarted');
  assert.equal(later.pid, null);
  assert.match(later.error ?? '', /QEMU exited/i);
  assert.ok(processGone(oldPid), 'the killed QEMU is still there');
  assert.deepEqual(h().qemuPids(), [booted.a.pid], 'only VM a should have a QEMU');
});

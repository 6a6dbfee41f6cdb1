/**
 * Host failure with a real remote host: the server (its local agent is host A) listens for agents on
 * a veth address; host B's agent joined over mutual TLS and runs in its own network namespace. The
 * lease is 10 s (the agent fences 5 s after its last echoed renewal, the server fails the host 15 s
 * after it last recorded one).
 *
 * - Cut off: B's link goes down, its agent keeps running and must fence itself: B is suspected, then
 *   failed; B's QEMU is gone before the VM is started on A; at no point do two QEMUs of the VM run;
 *   when the link comes back B drops its stale copy and the VM keeps running on A, once.
 * - Hung: B's agent and its QEMU are frozen (SIGSTOP): B is suspected, then failed, and the VM starts
 *   on A while B's copy stays frozen; when B's agent runs again it kills the frozen copy at once (its
 *   lease has run out) and drops it at the sync.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Host } from '../src/api/host.js';
import type { Vm } from '../src/api/vm.js';
import { freePort } from './helpers/debian-guest.js';
import { RampartHarness, removeCgroupTree } from './helpers/rampart-harness.js';
import {
  ip,
  ipQuietly,
  joinHost,
  killAgent,
  qemusOf,
  startRemoteAgent,
  watchCopies,
} from './helpers/remote-hosts.js';

const TAG = randomBytes(3).toString('hex');
const NS = `rf-${TAG}`;
const VETH_ROOT = `rfa${TAG}`;
const VETH_NS = `rfb${TAG}`;
const OCTET = 16 + (parseInt(TAG, 16) % 200);
const SERVER_IP = `10.203.${OCTET}.1`;
const HOST_B_IP = `10.203.${OCTET}.2`;
const NAME = 'host-b';
const LEASE_SECONDS = 10;

let harness: RampartHarness;
let agent: ChildProcess | null = null;
let agentPort = 0;
let hostAId = '';
let hostBId = '';

function cleanupNetwork(): void {
  ipQuietly('link', 'del', VETH_ROOT);
  ipQuietly('netns', 'del', NS);
}

function cgroupParentB(): string {
  return `${harness.cgroupParent}-b`;
}

/** Removes host B's cgroups (its QEMUs are gone by then; retries while they exit). */
function removeCgroupsB(): void {
  removeCgroupTree(cgroupParentB());
}

function hostBDir(): string {
  return join(harness.dataDir, 'hosts', NAME);
}

/** Host B's agent, inside its network namespace. */
function startAgentB(): void {
  agent = startRemoteAgent({
    name: NAME,
    dataDir: hostBDir(),
    logFile: join(harness.dataDir, `agent-${NAME}.log`),
    cgroupParent: cgroupParentB(),
    netns: NS,
  });
}

function stopAgentB(): void {
  killAgent(agent);
  agent = null;
}

async function hostState(id: string): Promise<Host['state']> {
  return (await harness.api<Host>('GET', `/v1/hosts/${id}`)).body.state;
}

async function maintenance(id: string, on: boolean): Promise<void> {
  const result = await harness.api('PATCH', `/v1/hosts/${id}`, { maintenance: on });
  assert.equal(result.status, 200, JSON.stringify(result.body));
}

/** A tiny VM (restart policy on-failure) placed on host B (host A in maintenance meanwhile). */
async function vmOnB(name: string): Promise<Vm> {
  await maintenance(hostAId, true);
  try {
    const created = await harness.api<Vm>('POST', '/v1/vms', {
      name,
      image: 'tiny',
      flavor: 'tiny',
      restartPolicy: 'on-failure',
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.hostId, hostBId);
  } finally {
    await maintenance(hostAId, false);
  }
  const running = await harness.waitForState(name, 'running', 180_000);
  assert.equal(running.hostId, hostBId);
  return running;
}

async function auditOf(
  vmId: string,
): Promise<{ action: string; actor: string; outcome: string; at: string }[]> {
  const result = await harness.api<{
    items: {
      action: string;
      actor: string;
      outcome: string;
      target: string;
      createdAt: string;
      at?: string;
    }[];
  }>('GET', '/v1/platform/audit?action=host:failover&limit=50');
  return result.body.items
    .filter((r) => r.target === vmId)
    .map((r) => ({ action: r.action, actor: r.actor, outcome: r.outcome, at: r.at ?? r.createdAt }));
}

async function securityEvents(
  kind: string,
): Promise<{ subjectId: string; detail: Record<string, unknown> }[]> {
  const result = await harness.api<{ items: { subjectId: string; detail: Record<string, unknown> }[] }>(
    'GET',
    `/v1/platform/security/events?kind=${kind}&limit=100`,
  );
  return result.body.items;
}

/** Host B's agent log from `offset` on. */
function agentLog(): string {
  const file = join(harness.dataDir, `agent-${NAME}.log`);
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

before(async () => {
  cleanupNetwork();
  ip('netns', 'add', NS);
  ip('-n', NS, 'link', 'set', 'lo', 'up');
  ip('link', 'add', VETH_ROOT, 'type', 'veth', 'peer', 'name', VETH_NS, 'netns', NS);
  ip('addr', 'add', `${SERVER_IP}/30`, 'dev', VETH_ROOT);
  ip('link', 'set', VETH_ROOT, 'up');
  ip('-n', NS, 'addr', 'add', `${HOST_B_IP}/30`, 'dev', VETH_NS);
  ip('-n', NS, 'link', 'set', VETH_NS, 'up');
  agentPort = await freePort();
  harness = await RampartHarness.start({
    env: {
      RAMPART_HOST_NAME: 'host-a',
      RAMPART_AGENT_LISTEN: `${SERVER_IP}:${agentPort}`,
      RAMPART_AGENT_HEARTBEAT_SECONDS: '1',
      RAMPART_HOST_LEASE_SECONDS: String(LEASE_SECONDS),
      RAMPART_TELEMETRY_SECONDS: '0',
    },
  });
  const hosts = (await harness.api<{ items: Host[] }>('GET', '/v1/hosts')).body.items;
  hostAId = hosts.find((h) => h.hostname === 'host-a')!.id;

  hostBId = await joinHost(harness, NAME, hostBDir());
  startAgentB();
  await harness.waitFor(async () => (await hostState(hostBId)) === 'online', 60_000, 'host B online');
});

process.on('exit', () => {
  stopAgentB();
  cleanupNetwork();
});

after(async () => {
  stopAgentB();
  await harness?.cleanup();
  if (harness) removeCgroupsB();
  cleanupNetwork();
});

test('a host cut off fences itself before its VM starts elsewhere; back, it drops its stale copy', async () => {
  const vm = await vmOnB('fo-cut');
  const onB = qemusOf(vm.id);
  assert.equal(onB.length, 1, JSON.stringify(onB));
  const watch = watchCopies(vm.id);
  let most: number;
  try {
    ip('-n', NS, 'link', 'set', VETH_NS, 'down');
    const cutAt = Date.now();
    await harness.waitFor(async () => (await hostState(hostBId)) === 'suspected', 10_000, 'host B suspected');
    // The agent fences itself (its lease minus 5 s); the VM has not moved yet.
    let fencedAt = 0;
    await harness.waitFor(
      async () => {
        if (qemusOf(vm.id).some((q) => q.pid === onB[0]!.pid)) return false;
        fencedAt = Date.now();
        return true;
      },
      LEASE_SECONDS * 1000,
      "host B's QEMU killed by its agent",
    );
    await harness.waitFor(
      () => Promise.resolve(/self-fenced: VMs killed/.test(agentLog())),
      5000,
      'the fence logged by the agent',
    );
    assert.equal((await harness.vm(vm.id)).hostId, hostBId, 'not moved before the lease expired');
    assert.equal(await hostState(hostBId), 'suspected');
    // The server fails the host after the lease plus 5 s, and the VM boots on host A.
    await harness.waitFor(async () => (await hostState(hostBId)) === 'failed', 30_000, 'host B failed');
    const failedAt = Date.now();
    assert.ok(failedAt - cutAt >= LEASE_SECONDS * 1000, `failed after ${failedAt - cutAt} ms`);
    assert.ok(fencedAt < failedAt, 'fenced before the host was failed');
    const moved = await harness.waitForState(vm.id, 'running', 180_000);
    assert.equal(moved.hostId, hostAId);
    assert.ok(moved.restartCount > vm.restartCount, 'a new boot');
    const audit = await auditOf(vm.id);
    assert.deepEqual(
      audit.map((a) => [a.action, a.actor, a.outcome]),
      [['host:failover', 'system', 'success']],
    );
    const failed = await securityEvents('host.failed');
    assert.ok(
      failed.some((e) => e.subjectId === hostBId),
      JSON.stringify(failed),
    );

    // Host B comes back: online again, its stale copy removed; the VM runs on A, once.
    ip('-n', NS, 'link', 'set', VETH_NS, 'up');
    await harness.waitFor(async () => (await hostState(hostBId)) === 'online', 60_000, 'host B back');
    await harness.waitFor(
      async () => !existsSync(join(hostBDir(), 'vms', vm.id)),
      30_000,
      "host B's copy of the VM removed",
    );
    await harness
      .waitFor(
        async () => (await securityEvents('host.fenced')).some((e) => e.subjectId === hostBId),
        15_000,
        'the fence reported',
      )
      .catch((error: Error) => {
        const lines = (text: string) =>
          text
            .split('\n')
            .filter(
              (l) =>
                /fenc|lease|connected|link|host state|sync/i.test(l) &&
                !/incoming request|request completed/.test(l),
            )
            .slice(-30)
            .join('\n');
        throw new Error(
          `${error.message}\nagent:\n${lines(agentLog())}\nserver:\n${lines(harness.serverOutput)}`,
        );
      });
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const now = await harness.vm(vm.id);
    assert.equal(now.hostId, hostAId);
    assert.equal(now.state, 'running');
    assert.equal(qemusOf(vm.id).length, 1);
  } finally {
    most = watch.stop();
    ip('-n', NS, 'link', 'set', VETH_NS, 'up');
  }
  assert.equal(most, 1, 'never two copies running');
  assert.equal((await harness.api('DELETE', `/v1/vms/${vm.id}`)).status < 300, true);
  await harness.waitFor(
    async () => (await harness.api('GET', `/v1/vms/${vm.id}`)).status === 404,
    60_000,
    'the VM deleted',
  );
});

test('a hung host: its VM starts elsewhere after the lease; resumed, it kills its frozen copy', async () => {
  const vm = await vmOnB('fo-hung');
  const [copy] = qemusOf(vm.id);
  assert.ok(copy && agent?.pid);
  const watch = watchCopies(vm.id);
  let most: number;
  try {
    process.kill(agent.pid, 'SIGSTOP');
    process.kill(copy.pid, 'SIGSTOP');
    await harness.waitFor(async () => (await hostState(hostBId)) === 'suspected', 10_000, 'host B suspected');
    await harness.waitFor(async () => (await hostState(hostBId)) === 'failed', 30_000, 'host B failed');
    const moved = await harness.waitForState(vm.id, 'running', 180_000);
    assert.equal(moved.hostId, hostAId);
    assert.equal(qemusOf(vm.id).find((q) => q.pid === copy.pid)?.state, 'T', 'the copy on B stays frozen');
    // B's agent runs again: its lease ran out long ago, so it kills the frozen copy at once.
    process.kill(agent.pid, 'SIGCONT');
    await harness.waitFor(
      async () => !qemusOf(vm.id).some((q) => q.pid === copy.pid),
      10_000,
      'the frozen copy killed',
    );
    await harness.waitFor(async () => (await hostState(hostBId)) === 'online', 60_000, 'host B back');
    await harness.waitFor(
      async () => !existsSync(join(hostBDir(), 'vms', vm.id)),
      30_000,
      "host B's copy of the VM removed",
    );
    const now = await harness.vm(vm.id);
    assert.equal(now.hostId, hostAId);
    assert.equal(now.state, 'running');
    assert.equal(qemusOf(vm.id).length, 1);
  } finally {
    most = watch.stop();
    try {
      process.kill(copy.pid, 'SIGCONT');
    } catch {
      // gone
    }
    if (agent?.pid) process.kill(agent.pid, 'SIGCONT');
  }
  assert.equal(most, 1, 'never two copies running');
});

/**
 * Cluster mode end to end (RAMPART_TEST_POSTGRES_URL; skipped without it): one PostgreSQL database,
 * two server replicas (control plane only: RAMPART_AGENT_MODE=none) listening for agents on a bridge,
 * and three hosts, each an agent in its own network namespace with its own address, joined over
 * mutual TLS (two through replica A, one through B: each agent dials the replica it joined through
 * first and the other one next).
 *
 * - VMs spread over the three hosts; requests through either replica act on every host (a host
 *   linked to the other replica is reached through it).
 * - Replica A is killed: requests keep working through B, A's hosts dial B and stay online, no VM
 *   is stopped or fenced, and B takes the leader lease.
 * - A host is cut off (its link down): it fences its VM, is failed after the lease, and its VM comes
 *   back on another host; when the link returns the host drops its stale copy, and at no time do two
 *   copies run.
 * - A restarted: it leaves the hosts (all linked to B) online; a host revoked through A loses its
 *   link on B at once and cannot come back.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { Host } from '../src/api/host.js';
import type { Vm } from '../src/api/vm.js';
import { freePort } from './helpers/debian-guest.js';
import { POSTGRES_SKIP, createTestPostgres, type TestPostgres } from './helpers/postgres.js';
import { RampartHarness, removeCgroupTree } from './helpers/rampart-harness.js';
import {
  ip,
  ipQuietly,
  joinHost,
  killAgent,
  killQemusUnder,
  qemusOf,
  startRemoteAgent,
  watchCopies,
} from './helpers/remote-hosts.js';

const TAG = randomBytes(3).toString('hex');
const OCTET = 16 + (parseInt(TAG, 16) % 200);
const BRIDGE = `rcb${TAG}`;
const BRIDGE_IP = `10.205.${OCTET}.1`;
const LEASE_SECONDS = 10;
const HOSTS = [1, 2, 3].map((i) => ({
  name: `node-${i}`,
  netns: `rc-${TAG}-${i}`,
  vethRoot: `rc${TAG}h${i}`,
  vethNs: `rc${TAG}n${i}`,
  address: `10.205.${OCTET}.${10 + i}`,
  id: '',
  agent: null as ChildProcess | null,
}));

function cleanupNetwork(): void {
  for (const host of HOSTS) {
    ipQuietly('link', 'del', host.vethRoot);
    ipQuietly('netns', 'del', host.netns);
  }
  ipQuietly('link', 'del', BRIDGE);
}

describe('cluster: two replicas, three hosts, one PostgreSQL', { skip: POSTGRES_SKIP }, () => {
  let database: TestPostgres;
  let client: pg.Client;
  let a: RampartHarness;
  let b: RampartHarness;
  let portA = 0;
  let portB = 0;
  let hostsRoot = '';
  const cgroupParent = `rampart-test-cluster-${TAG}`;
  const vms: Vm[] = [];

  const hostDir = (name: string) => join(hostsRoot, name);
  const byName = (name: string) => HOSTS.find((h) => h.name === name)!;

  async function hostState(server: RampartHarness, id: string): Promise<Host['state']> {
    return (await server.api<Host>('GET', `/v1/hosts/${id}`)).body.state;
  }

  /** host name -> the agent endpoint of the replica it is linked to (null: none). */
  async function links(): Promise<Map<string, string | null>> {
    const rows = await client.query<{ hostname: string; endpoint: string | null }>(
      `SELECT h.hostname, r.agent_endpoint AS endpoint FROM hosts h
       LEFT JOIN server_replicas r ON r.id = h.linked_replica`,
    );
    return new Map(rows.rows.map((r) => [r.hostname, r.endpoint]));
  }

  function startAgent(host: (typeof HOSTS)[number]): void {
    host.agent = startRemoteAgent({
      name: host.name,
      dataDir: hostDir(host.name),
      logFile: join(hostsRoot, `agent-${host.name}.log`),
      cgroupParent: `${cgroupParent}-${host.name}`,
      netns: host.netns,
      // One capacity for all: the scheduler's spread then puts one VM on each.
      env: { RAMPART_HOST_CPUS: '2', RAMPART_HOST_MEMORY_MIB: '2048' },
    });
  }

  before(async () => {
    cleanupNetwork();
    ip('link', 'add', BRIDGE, 'type', 'bridge');
    ip('addr', 'add', `${BRIDGE_IP}/24`, 'dev', BRIDGE);
    ip('link', 'set', BRIDGE, 'up');
    for (const host of HOSTS) {
      ip('netns', 'add', host.netns);
      ip('-n', host.netns, 'link', 'set', 'lo', 'up');
      ip('link', 'add', host.vethRoot, 'type', 'veth', 'peer', 'name', host.vethNs, 'netns', host.netns);
      ip('link', 'set', host.vethRoot, 'master', BRIDGE);
      ip('link', 'set', host.vethRoot, 'up');
      ip('-n', host.netns, 'addr', 'add', `${host.address}/24`, 'dev', host.vethNs);
      ip('-n', host.netns, 'link', 'set', host.vethNs, 'up');
    }
    hostsRoot = mkdtempSync(join(tmpdir(), 'rampart-cluster-'));
    database = await createTestPostgres();
    portA = await freePort();
    portB = await freePort();
    const env = (port: number) => ({
      RAMPART_AGENT_LISTEN: `${BRIDGE_IP}:${port}`,
      RAMPART_AGENT_HEARTBEAT_SECONDS: '1',
      RAMPART_HOST_LEASE_SECONDS: String(LEASE_SECONDS),
      RAMPART_TELEMETRY_SECONDS: '0',
      RAMPART_RATE_LIMIT_PRINCIPAL: 'off',
    });
    a = await RampartHarness.start({
      serverArgs: ['--database', database.url],
      localAgent: false,
      env: env(portA),
    });
    // B shares A's secrets, the host CA among them: a host joined through one is trusted by both.
    b = await RampartHarness.start({
      serverArgs: ['--database', database.url],
      localAgent: false,
      env: env(portB),
      adminPassword: a.adminPassword,
      secretsFrom: a.dataDir,
    });
    client = new pg.Client({ connectionString: database.url });
    await client.connect();
    for (const host of HOSTS) {
      mkdirSync(hostDir(host.name), { recursive: true, mode: 0o755 });
      host.id = await joinHost(host.name === 'node-3' ? b : a, host.name, hostDir(host.name));
      startAgent(host);
    }
    // Online is recorded at the hello, the link to the replica just after it: wait for both.
    await a.waitFor(
      async () => {
        const hosts = (await a.api<{ items: Host[] }>('GET', '/v1/hosts')).body.items;
        const linked = [...(await links()).values()].filter((endpoint) => endpoint !== null);
        return hosts.filter((h) => h.state === 'online').length === 3 && linked.length === 3;
      },
      60_000,
      'three hosts online and linked',
    );
  });

  after(async () => {
    // B is the replica left: it deletes the VMs (A may be gone).
    await b?.cleanup();
    await a?.cleanup();
    for (const host of HOSTS) killAgent(host.agent);
    if (hostsRoot) killQemusUnder(hostsRoot);
    for (const host of HOSTS) removeCgroupTree(`${cgroupParent}-${host.name}`);
    await client?.end();
    await database?.drop();
    cleanupNetwork();
    if (hostsRoot) rmSync(hostsRoot, { recursive: true, force: true });
  });

  test('VMs spread over the three hosts; each replica acts on the hosts linked to the other', async () => {
    const linked = await links();
    assert.equal(linked.get('node-1'), `${BRIDGE_IP}:${portA}`);
    assert.equal(linked.get('node-2'), `${BRIDGE_IP}:${portA}`);
    assert.equal(linked.get('node-3'), `${BRIDGE_IP}:${portB}`);
    // Created through A one after another: one on each host, the one on node-3 through B.
    for (const name of ['c-1', 'c-2', 'c-3']) {
      const created = await a.api<Vm>('POST', '/v1/vms', {
        name,
        image: 'tiny',
        flavor: 'tiny',
        restartPolicy: 'on-failure',
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      vms.push(await a.waitForState(name, 'running', 180_000));
    }
    assert.deepEqual(new Set(vms.map((vm) => vm.hostId)), new Set(HOSTS.map((h) => h.id)));
    for (const vm of vms) assert.equal(qemusOf(vm.id).length, 1, vm.name);
    // Through B, the VM on node-1 (linked to A) is stopped and started again.
    const onNode1 = vms.find((vm) => vm.hostId === byName('node-1').id)!;
    assert.ok((await b.api('POST', `/v1/vms/${onNode1.id}/stop`)).status < 300);
    await b.waitForState(onNode1.id, 'stopped', 60_000);
    assert.equal(qemusOf(onNode1.id).length, 0);
    assert.ok((await b.api('POST', `/v1/vms/${onNode1.id}/start`)).status < 300);
    await b.waitForState(onNode1.id, 'running', 180_000);
    assert.equal(qemusOf(onNode1.id).length, 1);
  });

  test("replica A killed: B keeps serving, A's hosts move to B without losing a VM", async () => {
    assert.equal(vms.length, 3, 'the first test placed the VMs');
    const before = new Map(vms.map((vm) => [vm.id, qemusOf(vm.id).map((q) => q.pid)]));
    await a.killServer('SIGKILL');
    const list = await b.api<{ items: Vm[] }>('GET', '/v1/vms');
    assert.equal(list.status, 200);
    assert.equal(list.body.items.length, 3);
    await b.waitFor(
      async () => [...(await links()).values()].every((endpoint) => endpoint === `${BRIDGE_IP}:${portB}`),
      30_000,
      'every host linked to B',
    );
    await b.waitFor(
      () => Promise.resolve(b.serverOutput.includes('leader lease acquired')),
      30_000,
      'B leads',
    );
    for (const host of HOSTS) assert.equal(await hostState(b, host.id), 'online', host.name);
    // Not one VM stopped, restarted or fenced: the same QEMUs run.
    for (const vm of vms) {
      assert.deepEqual(
        qemusOf(vm.id).map((q) => q.pid),
        before.get(vm.id),
        vm.name,
      );
      assert.equal((await b.vm(vm.id)).state, 'running');
    }
    // And B acts on a host that was A's: node-2's VM stopped through B.
    const onNode2 = vms.find((vm) => vm.hostId === byName('node-2').id)!;
    assert.ok((await b.api('POST', `/v1/vms/${onNode2.id}/stop`)).status < 300);
    await b.waitForState(onNode2.id, 'stopped', 60_000);
    assert.equal(qemusOf(onNode2.id).length, 0);
  });

  test('a host cut off: its VM comes back on another host after the lease; back, no duplicate', async () => {
    const node1 = byName('node-1');
    const vm = vms.find((v) => v.hostId === node1.id)!;
    assert.ok(vm, 'a VM on node-1');
    const [copy] = qemusOf(vm.id);
    assert.ok(copy, 'running on node-1');
    const watch = watchCopies(vm.id);
    let most: number;
    try {
      const cutAt = Date.now();
      ip('-n', node1.netns, 'link', 'set', node1.vethNs, 'down');
      await b.waitFor(async () => (await hostState(b, node1.id)) === 'suspected', 15_000, 'node-1 suspected');
      await b.waitFor(
        () => Promise.resolve(!qemusOf(vm.id).some((q) => q.pid === copy.pid)),
        LEASE_SECONDS * 1000,
        'node-1 fenced its copy',
      );
      assert.equal((await b.vm(vm.id)).hostId, node1.id, 'not moved before the lease expired');
      await b.waitFor(async () => (await hostState(b, node1.id)) === 'failed', 30_000, 'node-1 failed');
      assert.ok(Date.now() - cutAt >= LEASE_SECONDS * 1000);
      let moved = vm;
      await b.waitFor(
        async () => {
          moved = await b.vm(vm.id);
          return moved.state === 'running' && moved.hostId !== node1.id;
        },
        180_000,
        'the VM running on another host',
      );
      assert.equal(qemusOf(vm.id).length, 1);

      // node-1 returns: online again, its stale copy gone, the VM still runs once, elsewhere.
      ip('-n', node1.netns, 'link', 'set', node1.vethNs, 'up');
      await b.waitFor(async () => (await hostState(b, node1.id)) === 'online', 60_000, 'node-1 back');
      await b.waitFor(
        () => Promise.resolve(!existsSync(join(hostDir('node-1'), 'vms', vm.id))),
        30_000,
        "node-1's copy removed",
      );
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const now = await b.vm(vm.id);
      assert.equal(now.hostId, moved.hostId);
      assert.equal(now.state, 'running');
      assert.equal(qemusOf(vm.id).length, 1);
    } finally {
      most = watch.stop();
      ipQuietly('-n', node1.netns, 'link', 'set', node1.vethNs, 'up');
    }
    assert.equal(most, 1, 'never two copies running');
  });

  test('A restarted leaves the hosts to B; a host revoked through A is cut off on B at once', async () => {
    await a.startServer();
    for (const host of HOSTS) assert.equal(await hostState(a, host.id), 'online', host.name);
    const node3 = byName('node-3');
    assert.equal((await links()).get('node-3'), `${BRIDGE_IP}:${portB}`);
    const revoked = await a.api('POST', `/v1/platform/hosts/${node3.id}/revoke`);
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    // Closed on B (announced), and every later handshake with either replica refused.
    await b.waitFor(async () => (await hostState(b, node3.id)) === 'suspected', 10_000, 'node-3 cut off');
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.notEqual(await hostState(b, node3.id), 'online');
    assert.equal((await links()).get('node-3'), null);
  });
});

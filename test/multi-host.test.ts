/**
 * Several hosts: the server manages its local agent (host-a) and an external one (host-b, its own
 * data directory and uid range) as two hosts. Placement spreads an anti-affinity group over them and
 * each QEMU runs under its own host's uids; evacuation moves stopped VMs (under every constraint) and
 * leaves running ones with the reason; a host that was away drops what was moved off it and its
 * reports never override the VM's new host; dedicated tenants get a host of their own.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { VmHardening } from '../src/api/hardening.js';
import type { Host, HostEvacuation } from '../src/api/host.js';
import type { Vm } from '../src/api/vm.js';
import { runCli } from './helpers/cli-runner.js';
import { RampartHarness } from './helpers/rampart-harness.js';

let harness: RampartHarness;
const hostIds = new Map<string, string>();

before(async () => {
  harness = await RampartHarness.start({
    env: { RAMPART_HOST_NAME: 'host-a' },
    extraHosts: [{ name: 'host-b' }],
  });
  const hosts = await harness.api<{ items: Host[] }>('GET', '/v1/hosts');
  for (const host of hosts.body.items) hostIds.set(host.hostname, host.id);
});

after(async () => {
  await harness?.cleanup();
});

function hostNameOf(vm: Vm): string {
  const name = [...hostIds].find(([, id]) => id === vm.hostId)?.[0];
  assert.ok(name, `VM ${vm.name} is on an unknown host ${vm.hostId}`);
  return name;
}

function uidOf(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Uid:'));
  return Number(line!.split(/\s+/)[1]);
}

/** The uids a host hands out: host-a is the harness's local agent (RAMPART_UID_BASE, default count). */
function inHostRange(host: string, uid: number): boolean {
  if (host === 'host-b') {
    const base = harness.extraHostUidBase('host-b');
    return uid >= base && uid < base + 250;
  }
  return uid >= 3_100_000 && uid < 3_400_000;
}

/** Cpus_allowed_list of a process (or one of its threads). */
function cpusAllowed(pid: number, task = pid): string {
  const line = readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Cpus_allowed_list:'));
  return line!.split(/\s+/)[1]!;
}

function threadsOf(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map(Number);
}

async function create(body: Record<string, unknown>, tenant?: string) {
  return harness.api<Vm & { error?: { code: string; message: string } }>(
    'POST',
    `/v1/vms${tenant ? `?tenant=${tenant}` : ''}`,
    { image: 'tiny', flavor: 'tiny', ...body },
  );
}

async function maintenance(host: string, on: boolean): Promise<void> {
  const result = await harness.api('PATCH', `/v1/hosts/${hostIds.get(host)}`, { maintenance: on });
  assert.equal(result.status, 200, JSON.stringify(result.body));
}

async function evacuate(host: string): Promise<HostEvacuation> {
  const result = await harness.api<HostEvacuation>('POST', `/v1/hosts/${hostIds.get(host)}/evacuate`);
  assert.equal(result.status, 200, JSON.stringify(result.body));
  return result.body;
}

async function deleteVm(ref: string, tenant?: string): Promise<void> {
  const query = tenant ? `?tenant=${tenant}` : '';
  await harness.api('DELETE', `/v1/vms/${ref}${query}`);
  await harness.waitFor(
    async () => (await harness.api('GET', `/v1/vms/${ref}${query}`)).status === 404,
    60_000,
    `${ref} deleted`,
  );
}

test('the server manages several hosts, each with its own name, id and capacity', async () => {
  const hosts = await harness.api<{ items: Host[] }>('GET', '/v1/hosts');
  assert.deepEqual(hosts.body.items.map((h) => h.hostname).sort(), ['host-a', 'host-b']);
  assert.ok(hosts.body.items.every((h) => h.state === 'online'));
  assert.equal(new Set(hosts.body.items.map((h) => h.id)).size, 2);
  assert.ok(hosts.body.items.every((h) => h.capacity.vcpusAllocatable > 0));
  const listed = await runCli(harness, ['host', 'list']);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /host-a/);
  assert.match(listed.stdout, /host-b/);
  const metrics = await fetch(`${harness.url}/metrics`, {
    headers: { authorization: `Bearer ${harness.token}` },
  });
  assert.match(await metrics.text(), /^rampart_agent_connected 2$/m);
});

test('anti-affinity spreads a group over the hosts; every QEMU runs under its own host’s uids', async () => {
  assert.equal(
    (await harness.api('POST', '/v1/placement-groups', { name: 'spread', policy: 'anti-affinity' })).status,
    201,
  );
  for (const name of ['s1', 's2'])
    assert.equal((await create({ name, placementGroup: 'spread' })).status, 201);
  const vms = [await harness.waitForState('s1', 'running'), await harness.waitForState('s2', 'running')];
  assert.deepEqual(vms.map(hostNameOf).sort(), ['host-a', 'host-b']);
  for (const vm of vms) {
    const host = hostNameOf(vm);
    assert.ok(vm.pid, `${vm.name} has a QEMU`);
    const uid = uidOf(vm.pid);
    assert.ok(inHostRange(host, uid), `${vm.name} on ${host} runs as uid ${uid}`);
    // Its files live in its own host's agent directory, not the other's.
    const agentDir = host === 'host-b' ? harness.hostDir('host-b') : harness.agentDir;
    const otherDir = host === 'host-b' ? harness.agentDir : harness.hostDir('host-b');
    assert.ok(existsSync(join(agentDir, 'vms', vm.id)), `${vm.name}'s directory on ${host}`);
    assert.ok(!existsSync(join(otherDir, 'vms', vm.id)));
  }
  assert.notEqual(uidOf(vms[0]!.pid!), uidOf(vms[1]!.pid!));
  const third = await create({ name: 's3', placementGroup: 'spread', start: false });
  assert.equal(third.status, 503);
  assert.equal(third.body.error.code, 'RAMPART_NO_CAPACITY');
  assert.match(
    third.body.error.message,
    /anti-affinity group spread already has a member on every open host/,
  );
});

test('evacuation moves stopped VMs under every constraint and leaves running ones, saying why', async () => {
  const onB = (await Promise.all(['s1', 's2'].map((n) => harness.vm(n)))).find(
    (vm) => hostNameOf(vm) === 'host-b',
  )!;
  const running = await evacuate('host-b');
  assert.deepEqual(running.moved, []);
  assert.equal(running.skipped[0]?.name, onB.name);
  assert.match(running.skipped[0].reason, /running: only stopped VMs are evacuated/);

  assert.equal((await harness.api('POST', `/v1/vms/${onB.name}/stop`)).status, 202);
  await harness.waitForState(onB.name, 'stopped');
  const blocked = await evacuate('host-b');
  assert.match(
    blocked.skipped[0]!.reason,
    /anti-affinity group spread already has a member on every open host/,
  );

  // A stopped VM without constraints goes to the other host, through the CLI.
  await maintenance('host-a', true);
  assert.equal((await create({ name: 'mover', start: false })).status, 201);
  assert.equal(hostNameOf(await harness.vm('mover')), 'host-b');
  await maintenance('host-a', false);
  await maintenance('host-b', true);
  const cli = await runCli(harness, ['host', 'evacuate', 'host-b']);
  assert.equal(cli.code, 4, `one VM stayed: exit 4\n${cli.stdout}\n${cli.stderr}`);
  assert.match(cli.stdout, /1 moved, 1 not moved/);
  assert.match(cli.stdout, /moved +mover -> host-a/);
  assert.match(cli.stdout, new RegExp(`stayed +${onB.name}: .*anti-affinity`));
  const mover = await harness.vm('mover');
  assert.equal(hostNameOf(mover), 'host-a');
  assert.ok(!existsSync(join(harness.hostDir('host-b'), 'vms', mover.id)), 'host-b dropped its copy');
  assert.equal((await harness.api('POST', '/v1/vms/mover/start')).status, 202);
  const started = await harness.waitForState('mover', 'running');
  assert.ok(inHostRange('host-a', uidOf(started.pid!)));
  const audit = await harness.api<{ items: { action: string; target: string; detail: string | null }[] }>(
    'GET',
    '/v1/platform/audit?action=platform:host:evacuate&limit=10',
  );
  assert.ok(
    audit.body.items.some((r) => r.target === hostIds.get('host-b') && r.detail === 'moved 1, skipped 1'),
  );
  // Only platform admins evacuate.
  const member = await harness.createMember(
    'evac-member',
    'a long enough password 3',
    'default',
    'tenant-admin',
  );
  const denied = await harness.api('POST', `/v1/hosts/${hostIds.get('host-b')}/evacuate`, undefined, {
    authorization: `Bearer ${member}`,
  });
  assert.equal(denied.status, 403);
  await maintenance('host-b', false);
  await deleteVm('mover');
});

test('a host that was away drops the VMs moved off it, and its reports never override their new host', async () => {
  const [s1, s2] = await Promise.all(['s1', 's2'].map((n) => harness.vm(n)));
  const stoppedOnB = [s1!, s2!].find((vm) => hostNameOf(vm) === 'host-b')!;
  const runningOnA = [s1!, s2!].find((vm) => hostNameOf(vm) === 'host-a')!;
  assert.equal(stoppedOnB.state, 'stopped');
  await deleteVm(runningOnA.name); // frees the anti-affinity group's place on host-a

  harness.killExtraAgent('host-b');
  await harness.waitFor(
    async () =>
      (await harness.api<Host>('GET', `/v1/hosts/${hostIds.get('host-b')}`)).body.state === 'offline',
    30_000,
    'host-b offline',
  );
  const away = await evacuate('host-b');
  assert.deepEqual(
    away.moved.map((m) => [m.name, m.toHostname]),
    [[stoppedOnB.name, 'host-a']],
  );
  assert.ok(existsSync(join(harness.hostDir('host-b'), 'vms', stoppedOnB.id)), 'host-b is away: still there');

  harness.startExtraAgent('host-b');
  await harness.waitFor(
    async () => !existsSync(join(harness.hostDir('host-b'), 'vms', stoppedOnB.id)),
    60_000,
    'host-b dropped the evacuated VM at its sync',
  );
  const moved = await harness.vm(stoppedOnB.name);
  assert.equal(hostNameOf(moved), 'host-a');
  assert.equal(moved.state, 'stopped');
  assert.equal((await harness.api('POST', `/v1/vms/${moved.name}/start`)).status, 202);
  const running = await harness.waitForState(moved.name, 'running');
  assert.ok(inHostRange('host-a', uidOf(running.pid!)));
  await deleteVm(moved.name);
});

test('a dedicated tenant gets a host of its own among several; nobody else is placed there', async () => {
  await harness.waitFor(
    async () =>
      (await harness.api<Host>('GET', `/v1/hosts/${hostIds.get('host-b')}`)).body.state === 'online',
    60_000,
    'host-b online',
  );
  assert.equal((await harness.api('POST', '/v1/tenants', { name: 'solo' })).status, 201);
  assert.equal((await harness.api('PATCH', '/v1/tenants/solo', { dedicatedHosts: true })).status, 200);
  assert.equal((await harness.api('POST', '/v1/tenants', { name: 'other' })).status, 201);
  // host-a runs a default-tenant VM, so the dedicated tenant lands on host-b, the empty one.
  await maintenance('host-b', true);
  assert.equal((await create({ name: 'resident', start: false })).status, 201);
  await maintenance('host-b', false);
  assert.equal(hostNameOf(await harness.vm('resident')), 'host-a');
  for (const name of ['d1', 'd2']) assert.equal((await create({ name, start: false }, 'solo')).status, 201);
  for (const name of ['d1', 'd2'])
    assert.equal(hostNameOf((await harness.api<Vm>('GET', `/v1/vms/${name}?tenant=solo`)).body), 'host-b');
  // Another tenant is placed on host-a even though host-b has more room ...
  assert.equal((await create({ name: 'o1', start: false }, 'other')).status, 201);
  assert.equal(hostNameOf((await harness.api<Vm>('GET', '/v1/vms/o1?tenant=other')).body), 'host-a');
  // ... and refused, naming the constraint, when host-a cannot take it.
  await maintenance('host-a', true);
  const refused = await create({ name: 'o2', start: false }, 'other');
  assert.equal(refused.status, 503);
  assert.match(refused.body.error.message, /every open host is dedicated to another tenant/);
  await maintenance('host-a', false);
  await deleteVm('resident');
  await deleteVm('o1', 'other');
  for (const name of ['d1', 'd2']) await deleteVm(name, 'solo');
});

test('dedicated CPUs: whole cores pinned to one VM, taken out of the shared pool, never shared', async () => {
  const flavor = await runCli(harness, [
    'flavor',
    'create',
    'pinned',
    '--vcpus',
    '1',
    '--memory',
    '128',
    '--disk',
    '1',
    '--cpu-policy',
    'dedicated',
  ]);
  assert.equal(flavor.code, 0, flavor.stderr);
  const hosts = (await harness.api<{ items: Host[] }>('GET', '/v1/hosts')).body.items;
  const a = hosts.find((h) => h.hostname === 'host-a')!;
  assert.deepEqual(a.dedicatedCores, [[1]], 'this two-CPU machine keeps core 0 shared and offers core 1');
  assert.deepEqual(hosts.find((h) => h.hostname === 'host-b')!.dedicatedCores, []);

  await maintenance('host-b', true);
  assert.equal((await create({ name: 'sh' })).status, 201);
  const shared = await harness.waitForState('sh', 'running');
  assert.equal(cpusAllowed(shared.pid!), '0-1', 'nothing pinned yet: the whole machine');
  await maintenance('host-b', false);

  // host-b has more room but no dedicated cores: the pinned VM goes to host-a, core 1.
  assert.equal((await create({ name: 'pin1', flavor: 'pinned' })).status, 201);
  const pinned = await harness.waitForState('pin1', 'running');
  assert.equal(hostNameOf(pinned), 'host-a');
  assert.deepEqual(pinned.pinnedCpus, [1]);
  assert.equal(cpusAllowed(pinned.pid!), '1');
  for (const task of threadsOf(pinned.pid!))
    assert.equal(cpusAllowed(pinned.pid!, task), '1', `thread ${task}`);
  await harness.waitFor(async () => cpusAllowed(shared.pid!) === '0', 10_000, 'the shared VM left core 1');
  const hardening = await harness.api<VmHardening>('GET', '/v1/vms/pin1/hardening');
  assert.equal(hardening.body.cpusAllowed, '1');
  assert.deepEqual(
    hardening.body.checks.find((c) => c.name === 'dedicated-cpus'),
    { name: 'dedicated-cpus', ok: true, detail: 'runs on CPUs 1, pinned 1' },
  );
  const allocated = (await harness.api<Host>('GET', `/v1/hosts/${a.id}`)).body.allocated;
  assert.deepEqual(allocated.pinnedCpus, [1]);
  assert.match((await runCli(harness, ['vm', 'show', 'pin1'])).stdout, /Pinned CPUs: +1$/m);

  // Another tenant never gets that core (nor does anyone else): the refusal names the constraint.
  assert.equal((await harness.api('POST', '/v1/tenants', { name: 'pinner' })).status, 201);
  const refused = await create({ name: 'pin2', flavor: 'pinned', start: false }, 'pinner');
  assert.equal(refused.status, 503);
  assert.match(refused.body.error.message, /needs 1 dedicated CPU\(s\) \(whole cores, never shared\)/);
  // A resize cannot turn a shared VM into a pinned one behind the scheduler's back.
  assert.equal((await harness.api('POST', '/v1/vms/sh/stop')).status, 202);
  await harness.waitForState('sh', 'stopped');
  const resize = await harness.api<{ error: { message: string } }>('POST', '/v1/vms/sh/resize', {
    flavor: 'pinned',
  });
  assert.equal(resize.status, 409, JSON.stringify(resize.body));

  // Deleted, its core returns to the shared pool.
  await deleteVm('pin1');
  assert.equal((await harness.api('POST', '/v1/vms/sh/start')).status, 202);
  const again = await harness.waitForState('sh', 'running');
  assert.equal(cpusAllowed(again.pid!), '0-1');
  await deleteVm('sh');
});

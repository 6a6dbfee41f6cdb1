/**
 * The whole life of one real VM through the API: boot the tiny guest under TCG, heartbeats and guest
 * IPs, the unprivileged sandboxed QEMU, console tail, live console over WebSocket (input and output),
 * the console size cap, pause/resume, reboot, illegal transitions, graceful ACPI stop, start, delete.
 * One VM is booted once and reused across the assertions.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import type { Vm } from '../src/api/vm.js';
import { RampartHarness } from './helpers/rampart-harness.js';

const CONSOLE_CAP = 16_384;
let rampart: RampartHarness;
let vm: Vm;

function procStatus(pid: number, field: string): string {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  assert.ok(line, `${field} in /proc/${pid}/status`);
  return line.slice(field.length + 1).trim();
}

before(async () => {
  rampart = await RampartHarness.start({ env: { RAMPART_CONSOLE_CAP_BYTES: String(CONSOLE_CAP) } });
});

after(async () => {
  await rampart?.cleanup();
  assert.deepEqual(rampart?.qemuPids() ?? [], []);
});

test('POST /v1/vms as written boots the tiny guest and it heartbeats', async () => {
  const created = await rampart.api<Vm>('POST', '/v1/vms', { name: 'web1', image: 'tiny', flavor: 'tiny' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.ok(['pending', 'starting'].includes(created.body.state));
  vm = await rampart.waitForState('web1', 'running', 120_000);
  assert.ok(vm.lastHeartbeatAt, 'a heartbeat was recorded');
  assert.deepEqual(vm.guestIps, ['10.0.2.15/24']);
  assert.ok(vm.bootMs !== null && vm.bootMs > 0);
  assert.ok(vm.accelerator === 'tcg' || vm.accelerator === 'kvm');
  assert.ok(vm.pid !== null);
  // The heartbeat keeps coming: a later report shows more guest uptime.
  const first = vm.guestUptimeSeconds ?? 0;
  await rampart.waitFor(
    async () => ((await rampart.vm('web1')).guestUptimeSeconds ?? 0) > first,
    15_000,
    'a newer heartbeat',
  );
});

test('QEMU runs unprivileged, sandboxed, with no capabilities and its sockets private', () => {
  const pid = vm.pid!;
  const uid = Number(procStatus(pid, 'Uid').split(/\s+/)[0]);
  assert.notEqual(uid, 0);
  assert.equal(procStatus(pid, 'Seccomp'), '2');
  assert.equal(procStatus(pid, 'NoNewPrivs'), '1');
  assert.equal(procStatus(pid, 'CapEff'), '0000000000000000');
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  assert.ok(cmdline.includes('on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny'));
  assert.ok(cmdline.includes('-nodefaults'));
  const runDir = join(rampart.agentDir, 'vms', vm.id, 'run');
  const st = statSync(runDir);
  assert.equal(st.uid, uid);
  assert.equal(st.mode & 0o777, 0o700);
  // No TCP listener owned by QEMU: every socket it listens on is a unix socket in runDir.
  assert.ok(!cmdline.some((arg) => /tcp:|,host=|vnc|spice/.test(arg)));
});

test('console tail shows the guest boot and the cap is reported', async () => {
  const tail = await rampart.api<{ data: string; capBytes: number; bytes: number }>(
    'GET',
    '/v1/vms/web1/console?bytes=65536',
  );
  assert.equal(tail.status, 200);
  assert.match(tail.body.data, /rampart-guest: ready/);
  assert.equal(tail.body.capBytes, CONSOLE_CAP);
  assert.equal((await rampart.api('GET', '/v1/vms/web1/console?bytes=0')).status, 400);
});

test('live console over WebSocket: typed input runs in the guest and its output streams back', async () => {
  const ws = new WebSocket(`${rampart.url.replace('http', 'ws')}/v1/vms/web1/console/stream`, {
    headers: { authorization: `Bearer ${rampart.token}` },
  });
  let received = '';
  ws.on('message', (data: Buffer) => (received += data.toString('utf8')));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send('echo live-$((6*7))\n');
  await rampart.waitFor(async () => received.includes('live-42'), 20_000, 'console echo');
  ws.close();
  const unauthorized = new WebSocket(`${rampart.url.replace('http', 'ws')}/v1/vms/web1/console/stream`);
  unauthorized.on('error', () => undefined);
  const status = await new Promise<number>((resolve) => {
    unauthorized.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    unauthorized.once('open', () => resolve(101));
  });
  unauthorized.terminate();
  assert.equal(status, 401);
});

test('a guest flooding its console cannot grow the log past the cap', async () => {
  const ws = new WebSocket(`${rampart.url.replace('http', 'ws')}/v1/vms/web1/console/stream`, {
    headers: { authorization: `Bearer ${rampart.token}` },
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  // Kept under the 80-column line of the guest shell's line editor.
  ws.send('seq 3000 | sed s/^/flood-/; echo flood-$((1+1))-done\n');
  const file = join(rampart.agentDir, 'vms', vm.id, 'console.log');
  await rampart.waitFor(
    async () => {
      assert.ok(statSync(file).size <= CONSOLE_CAP, `console.log is ${statSync(file).size} bytes`);
      const tail = await rampart.api<{ data: string }>('GET', '/v1/vms/web1/console?bytes=1024');
      return tail.body.data.includes('flood-2-done');
    },
    90_000,
    'the flood to finish',
  );
  ws.close();
  assert.ok(statSync(file).size <= CONSOLE_CAP);
  const whole = await rampart.api<{ data: string; bytes: number }>(
    'GET',
    '/v1/vms/web1/console?bytes=1048576',
  );
  assert.ok(whole.body.bytes <= CONSOLE_CAP);
  assert.ok(!whole.body.data.includes('\nflood-1\r'), 'the oldest lines were dropped');
  assert.ok(whole.body.data.includes('flood-3000'), 'the newest lines were kept');
});

test('pause and resume', async () => {
  const paused = await rampart.api<Vm>('POST', '/v1/vms/web1/pause');
  assert.equal(paused.status, 202);
  assert.equal(paused.body.state, 'paused');
  assert.equal((await rampart.vm('web1')).state, 'paused');
  const qmpState = readFileSync(`/proc/${vm.pid}/status`, 'utf8');
  assert.ok(qmpState.length > 0, 'QEMU still alive while paused');
  const again = await rampart.api<{ error: { code: string } }>('POST', '/v1/vms/web1/pause');
  assert.equal(again.status, 409);
  assert.equal(again.body.error.code, 'RAMPART_ILLEGAL_STATE');
  const resumed = await rampart.api<Vm>('POST', '/v1/vms/web1/resume');
  assert.equal(resumed.status, 202);
  assert.equal(resumed.body.state, 'running');
  const t = Date.now();
  await rampart.waitFor(
    async () => Date.parse((await rampart.vm('web1')).lastHeartbeatAt ?? '0') > t,
    20_000,
    'heartbeat after resume',
  );
});

test('illegal transitions answer 409 and change nothing', async () => {
  for (const action of ['start', 'resume']) {
    const response = await rampart.api<{ error: { code: string; message: string } }>(
      'POST',
      `/v1/vms/web1/${action}`,
    );
    assert.equal(response.status, 409, action);
    assert.equal(response.body.error.code, 'RAMPART_ILLEGAL_STATE');
  }
  const now = await rampart.vm('web1');
  assert.equal(now.state, 'running');
  assert.equal(now.pid, vm.pid);
});

test('reboot resets the guest: same QEMU, fresh uptime', async () => {
  const rebooted = await rampart.api<Vm>('POST', '/v1/vms/web1/reboot');
  assert.equal(rebooted.status, 202);
  assert.equal(rebooted.body.state, 'starting');
  const running = await rampart.waitForState('web1', 'running', 120_000);
  assert.equal(running.pid, vm.pid);
  assert.ok((running.guestUptimeSeconds ?? 1e9) < 60, `uptime after reboot ${running.guestUptimeSeconds}`);
});

test('graceful stop powers the guest off through ACPI, then start boots it again', async () => {
  const stopping = await rampart.api<Vm>('POST', '/v1/vms/web1/stop', { timeoutSeconds: 60 });
  assert.equal(stopping.status, 202);
  const stopped = await rampart.waitForState('web1', 'stopped', 70_000);
  assert.equal(stopped.pid, null);
  assert.deepEqual(rampart.qemuPids(), []);
  const agentLog = readFileSync(join(rampart.agentDir, 'agent.log'), 'utf8');
  assert.ok(!agentLog.includes('stopping by force'), 'the guest powered off by itself (ACPI), not by force');
  const started = await rampart.api<Vm>('POST', '/v1/vms/web1/start');
  assert.equal(started.status, 202);
  const running = await rampart.waitForState('web1', 'running', 120_000);
  assert.notEqual(running.pid, vm.pid);
  vm = running;
});

test('forced stop of a running VM', async () => {
  const response = await rampart.api<Vm>('POST', '/v1/vms/web1/stop', { force: true });
  assert.equal(response.status, 202);
  await rampart.waitForState('web1', 'stopped', 30_000);
  assert.deepEqual(rampart.qemuPids(), []);
});

test('delete removes the VM and all its files', async () => {
  const deleted = await rampart.api<Vm>('DELETE', '/v1/vms/web1');
  assert.equal(deleted.status, 202);
  assert.equal(deleted.body.state, 'deleting');
  await rampart.waitFor(
    async () => (await rampart.api('GET', '/v1/vms/web1')).status === 404,
    30_000,
    'VM gone',
  );
  assert.ok(!existsSync(join(rampart.agentDir, 'vms', vm.id)));
  assert.deepEqual(rampart.qemuPids(), []);
});

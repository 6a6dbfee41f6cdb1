/**
 * Encrypted volumes at the agent level, with a real agent and the tiny guest under TCG, driven over the
 * agent protocol directly (no server: this file plays it). A VM with one volume boots and sees it as
 * /dev/vda; a marker written there survives a stop and a new start, and never appears in the raw LUKS
 * file; the key is never on QEMU's command line, in state.json or in the agent's log, and its key file
 * is gone once QEMU runs; the volume file belongs to the VM's uid while attached and goes back to root
 * when the VM is removed; the erase is refused while the VM runs and then zeroes and removes the file.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  rmdirSync,
} from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { VmIntent, VmStatus } from '../src/api/agent-protocol.js';
import { bundleDigest } from '../src/common/image-digest.js';
import { readJsonLines, writeJsonLine } from '../src/common/json-lines.js';
import { CLI_MAIN, GUEST_IMAGE_DIR } from './helpers/repo.js';
import { fileContains } from './helpers/file-bytes.js';

const PARENT = `rampart-test-${randomBytes(6).toString('hex')}`;
const BOOT_TIMEOUT_MS = 180_000;
const agentDir = mkdtempSync(join(tmpdir(), 'rampart-volumes-agent-'));
chmodSync(agentDir, 0o755);
const socketPath = join(agentDir, 'agent.sock');
const vmId = randomUUID();
const volumeId = randomUUID();
const key = randomBytes(32).toString('base64');
const volumeFile = join(agentDir, 'volumes', `${volumeId}.luks`);

let agent: ChildProcess | null = null;
let link: AgentLink | null = null;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** This file's end of the agent protocol: requests with replies, statuses and console output. */
class AgentLink {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly statuses: VmStatus[] = [];
  console = '';

  constructor(private readonly socket: Socket) {
    readJsonLines(socket, {
      maxLineBytes: 64 * 1024 * 1024,
      onValue: (value) => this.onMessage(value as Record<string, unknown>),
    });
  }

  static async open(path: string): Promise<AgentLink> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    return new AgentLink(socket);
  }

  private onMessage(message: Record<string, unknown>): void {
    if (message.type === 'vm.status') this.statuses.push(message.status as VmStatus);
    if (message.type === 'vm.console')
      this.console += Buffer.from(message.dataBase64 as string, 'base64').toString('utf8');
    if (message.type === 'reply') {
      const waiter = this.pending.get(message.id as number);
      this.pending.delete(message.id as number);
      if (message.ok) waiter?.resolve(message.result);
      else waiter?.reject(new Error((message.error as { message: string }).message));
    }
  }

  request<T>(type: string, body: Record<string, unknown>): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      writeJsonLine(this.socket, { type, id, ...body });
    });
  }

  async waitForStatus(test: (s: VmStatus) => boolean, timeoutMs: number, what: string): Promise<VmStatus> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.statuses.find(test);
      if (found) return found;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(this.statuses.at(-1))}`);
      await sleep(100);
    }
  }

  /** Runs one short line in the guest's console shell; resolves with what it printed. */
  async run(line: string, timeoutMs = 30_000): Promise<string> {
    const tag = randomBytes(3).toString('hex');
    const start = this.console.length;
    const send = (text: string) =>
      this.request('console.write', { vmId, dataBase64: Buffer.from(text).toString('base64') });
    await send(`echo B-${tag}-$((1+1))\n${line}\necho E-${tag}-$((1+1))-$?\n`);
    const deadline = Date.now() + timeoutMs;
    const end = new RegExp(`E-${tag}-2-(\\d+)`);
    for (;;) {
      const seen = this.console.slice(start);
      const match = end.exec(seen);
      if (match) {
        const body = seen.slice(seen.indexOf(`B-${tag}-2`) + `B-${tag}-2`.length, match.index);
        assert.equal(match[1], '0', `"${line}" failed: ${body}`);
        return body
          .split(/\r?\n/)
          .filter((l) => !l.includes(line) && !l.includes(`E-${tag}`))
          .join('\n')
          .trim();
      }
      if (Date.now() > deadline) throw new Error(`guest did not finish "${line}": ${seen.slice(-500)}`);
      await sleep(100);
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

function intent(bootId: number, power: 'running' | 'stopped', attached = true): VmIntent {
  const manifest = JSON.parse(readFileSync(join(GUEST_IMAGE_DIR, 'manifest.json'), 'utf8')) as {
    sha256: { vmlinuz: string; 'initrd.img': string };
  };
  const kernelPath = join(GUEST_IMAGE_DIR, 'vmlinuz');
  const initrdPath = join(GUEST_IMAGE_DIR, 'initrd.img');
  return {
    id: vmId,
    name: 'vol-test',
    vcpus: 1,
    memoryMiB: 256,
    image: {
      format: 'kernel-initrd',
      sha256: bundleDigest(manifest.sha256.vmlinuz, manifest.sha256['initrd.img']),
      kernelPath,
      initrdPath,
      kernelSha256: manifest.sha256.vmlinuz,
      initrdSha256: manifest.sha256['initrd.img'],
      trust: {
        rules: { requireSignatures: false, acceptPlatformImages: true },
        trustedKeys: [],
        attestations: [],
        platformKeys: [],
        platformSignature: null,
        platformImage: false,
      },
    },
    ports: [],
    volumes: attached ? [{ id: volumeId, sizeGiB: 1, key }] : [],
    power,
    bootId,
    rebootId: 0,
    stopTimeoutMs: 30_000,
    limits: { cpuPercent: 100, cpuWeight: 100, pidsMax: 256 },
  };
}

function qemuPids(): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        const cmdline = readFileSync(`/proc/${e}/cmdline`, 'utf8');
        return cmdline.includes('qemu-system') && cmdline.includes(agentDir);
      } catch {
        return false;
      }
    })
    .map(Number);
}

function killEverythingSync(): void {
  link?.close();
  agent?.kill('SIGKILL');
  for (const pid of qemuPids()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (const controller of readdirSync('/sys/fs/cgroup')) {
    const parent = join('/sys/fs/cgroup', controller, PARENT);
    if (!existsSync(parent)) continue;
    for (const child of readdirSync(parent, { withFileTypes: true }))
      if (child.isDirectory()) {
        try {
          rmdirSync(join(parent, child.name));
        } catch {
          // best effort
        }
      }
    try {
      rmdirSync(parent);
    } catch {
      // best effort
    }
  }
  rmSync(agentDir, { recursive: true, force: true });
}
process.once('exit', killEverythingSync);

const uidBase = 3_600_000 + Math.floor(Math.random() * 1000) * 100;

async function startAgent(): Promise<void> {
  const log = openSync(join(agentDir, 'agent.log'), 'a', 0o600);
  try {
    agent = spawn(process.execPath, [CLI_MAIN, 'agent', '--data-dir', agentDir, '--socket', socketPath], {
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        RAMPART_ACCEL: 'tcg',
        RAMPART_CGROUP_PARENT: PARENT,
        RAMPART_ACCEL_CACHE: join(tmpdir(), 'rampart-test-accel-cache.json'),
        RAMPART_UID_BASE: String(uidBase),
        RAMPART_DEDICATED_CPUS: 'none',
        RAMPART_LOG_LEVEL: 'debug',
      },
      stdio: ['ignore', log, log],
    });
  } finally {
    closeSync(log);
  }
  const started = agent;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      link = await AgentLink.open(socketPath);
      return;
    } catch {
      if (Date.now() > deadline || started.exitCode !== null)
        throw new Error(`the agent did not start: ${readFileSync(join(agentDir, 'agent.log'), 'utf8')}`);
      await sleep(100);
    }
  }
}

/** SIGKILL, as in a crash: the VMs keep running. */
async function killAgent(): Promise<void> {
  link?.close();
  link = null;
  const child = agent;
  agent = null;
  if (!child || child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

before(() => startAgent());

after(() => killEverythingSync());

function l(): AgentLink {
  if (!link) throw new Error('no agent link');
  return link;
}

test('a VM with an encrypted volume: boot, write, stop, start, read back, remove, erase', async () => {
  // --- first boot: the volume is created
  await l().request('apply', { vm: intent(1, 'running') });
  const running = await l().waitForStatus(
    (s) => s.phase === 'running' && s.bootId === 1,
    BOOT_TIMEOUT_MS,
    'the first boot',
  );
  const uid = running.uid!;
  const pid = running.pid!;
  assert.ok(readFileSync(volumeFile).subarray(0, 6).equals(Buffer.from('4c554b53babe', 'hex')));
  const stat = lstatSync(volumeFile);
  assert.deepEqual([stat.uid, stat.gid, stat.mode & 0o777], [uid, uid, 0o600], 'the file is the VM uid’s');
  assert.equal(lstatSync(join(agentDir, 'volumes')).mode & 0o777, 0o700);

  // The key: not on QEMU's command line, not on disk (key files gone, state.json without it), not logged.
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  assert.ok(!cmdline.some((a) => a.includes(key)));
  assert.ok(
    cmdline.includes(`secret,id=volsec0,file=${join(agentDir, 'vms', vmId, 'run')}/volume-0.key,format=raw`),
  );
  assert.ok(cmdline.includes(`virtio-blk-pci,drive=vol0,serial=${volumeId.slice(0, 20)}`));
  assert.deepEqual(
    readdirSync(join(agentDir, 'vms', vmId, 'run')).filter((f) => f.endsWith('.key')),
    [],
    'the key files are removed once QEMU runs',
  );
  const state = readFileSync(join(agentDir, 'vms', vmId, 'state.json'), 'utf8');
  assert.ok(!state.includes(key), 'state.json never holds the key');
  assert.ok(state.includes(volumeId));
  assert.ok(!readFileSync(join(agentDir, 'agent.log'), 'utf8').includes(key), 'the key is not logged');

  // The jail: the volume file is the only writable mount besides the run directory and devices.
  const hardening = await l().request<{ checks: { name: string; ok: boolean; detail: string }[] }>(
    'vm.hardening',
    { vmId },
  );
  const failed = hardening.checks.filter((c) => !c.ok);
  assert.deepEqual(failed, [], JSON.stringify(failed));
  assert.match(
    hardening.checks.find((c) => c.name === 'jail-read-only')!.detail,
    new RegExp(`/volumes/${volumeId}`),
  );

  // --- an agent restart re-adopts the running QEMU from state.json, which has no key
  await killAgent();
  await startAgent();
  const adopted = await l().request<{ status: VmStatus }>('apply', { vm: intent(1, 'running') });
  assert.deepEqual([adopted.status.phase, adopted.status.pid], ['running', pid]);
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await l().request('console.write', { vmId, dataBase64: Buffer.from('\n').toString('base64') });
      break;
    } catch (error) {
      if (Date.now() > deadline) throw error; // the console reconnects in the background
      await sleep(100);
    }
  }

  // --- the guest writes a marker to /dev/vda
  const n = 1000 + Math.floor(Math.random() * 8000);
  const marker = `RAMPART-${n + 1}-MARK`; // what the shell computes from the typed line below
  assert.equal(await l().run('cat /sys/block/vda/size'), String(1024 ** 3 / 512));
  await l().run(`echo RAMPART-$((${n}+1))-MARK | dd of=/dev/vda`);
  await l().run('sync');
  assert.equal(await l().run(`head -c ${marker.length} /dev/vda; echo`), marker);

  // --- erase refused while the VM runs
  await assert.rejects(l().request('volume.erase', { volumeId }), /in use by running VM/);

  // --- stop, then a new boot reads the marker back
  await l().request('apply', { vm: intent(1, 'stopped') });
  await l().waitForStatus((s) => s.phase === 'stopped', 60_000, 'the stop');
  assert.equal(fileContains(volumeFile, Buffer.from(marker)), false, 'the marker is not in the raw file');
  assert.equal(fileContains(volumeFile, Buffer.from(key)), false, 'nor the key');
  l().statuses.length = 0;
  l().console = '';
  await l().request('apply', { vm: intent(2, 'running') });
  await l().waitForStatus((s) => s.phase === 'running' && s.bootId === 2, BOOT_TIMEOUT_MS, 'the second boot');
  assert.equal(await l().run(`head -c ${marker.length} /dev/vda; echo`), marker);
  assert.ok(!readFileSync(join(agentDir, 'vms', vmId, 'state.json'), 'utf8').includes(key));

  // --- detached (VM stopped): the file goes back to root; attached again: the VM's uid from its start
  await l().request('apply', { vm: intent(2, 'stopped') });
  await l().waitForStatus((s) => s.phase === 'stopped' && s.bootId === 2, 60_000, 'the second stop');
  await l().request('apply', { vm: intent(2, 'stopped', false) });
  assert.deepEqual([lstatSync(volumeFile).uid, lstatSync(volumeFile).gid], [0, 0]);
  await l().request('volume.erase', { volumeId: randomUUID() }); // another volume: nothing to refuse
  l().statuses.length = 0;
  await l().request('apply', { vm: intent(3, 'running') });
  await l().waitForStatus((s) => s.phase === 'running' && s.bootId === 3, BOOT_TIMEOUT_MS, 'the third boot');
  assert.equal(lstatSync(volumeFile).uid, uid);

  // --- removal gives the file back to root (not erased); then the erase
  assert.deepEqual(await l().request('remove', { vmId }), { removed: true });
  const back = lstatSync(volumeFile);
  assert.deepEqual([back.uid, back.gid, back.mode & 0o777], [0, 0, 0o600]);
  const size = back.size;
  assert.deepEqual(await l().request('volume.erase', { volumeId }), { existed: true, bytes: size });
  assert.equal(existsSync(volumeFile), false);
  assert.deepEqual(await l().request('volume.erase', { volumeId }), { existed: false, bytes: 0 });
  assert.ok(!readFileSync(join(agentDir, 'agent.log'), 'utf8').includes(key), 'the key is not logged');
});

// The default tiny guest (guest/build.sh): the build is reproducible, and the image boots under TCG,
// sends agent heartbeats over virtio-serial and powers off on an ACPI power-button press (QMP).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const QEMU = 'qemu-system-x86_64';
const GUEST_IP = '10.0.2.15/24';

function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('package.json not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

const repoRoot = findRepoRoot();
const buildScript = path.join(repoRoot, 'guest', 'build.sh');

function onPath(cmd: string): boolean {
  return (process.env['PATH'] ?? '')
    .split(path.delimiter)
    .some((d) => d !== '' && existsSync(path.join(d, cmd)));
}

// Everything this file starts or creates, so that `after` can clean up even when a test fails or times out.
const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();

async function makeTempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

function waitForExit(child: ChildProcess, ms: number): Promise<number | string | null> {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve(child.exitCode ?? child.signalCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      reject(new Error(`process ${child.pid} did not exit within ${ms} ms`));
    }, ms);
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      clearTimeout(timer);
      resolve(code ?? signal);
    };
    child.once('exit', onExit);
  });
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await waitForExit(child, 10_000).catch(() => undefined);
  }
  children.delete(child);
}

after(async () => {
  for (const child of [...children]) await killChild(child);
  for (const dir of [...tempDirs]) await removeTempDir(dir);
});

async function runBuild(outDir: string): Promise<void> {
  const child = spawn('bash', [buildScript], {
    env: { ...process.env, RAMPART_GUEST_OUT: outDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  try {
    const code = await waitForExit(child, 60_000);
    assert.equal(code, 0, `guest/build.sh failed (${String(code)}):\n${output}`);
  } finally {
    await killChild(child);
  }
}

async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

interface Manifest {
  format: string;
  initrd: string;
  kernel: string;
  kernelVersion: string;
  name: string;
  sha256: { 'initrd.img': string; vmlinuz: string };
}

async function readManifest(dir: string): Promise<{ text: string; manifest: Manifest }> {
  const text = await readFile(path.join(dir, 'manifest.json'), 'utf8');
  return { text, manifest: JSON.parse(text) as Manifest };
}

void test(
  'guest/build.sh builds a reproducible tiny image with a matching manifest',
  { timeout: 120_000 },
  async () => {
    const a = await makeTempDir('rampart-guest-a-');
    const b = await makeTempDir('rampart-guest-b-');
    try {
      await runBuild(a);
      await runBuild(b);
      for (const file of ['vmlinuz', 'initrd.img', 'manifest.json']) {
        assert.equal(await sha256(path.join(a, file)), await sha256(path.join(b, file)), `${file} differs`);
        assert.equal((await stat(path.join(a, file))).mode & 0o777, 0o644, `${file} mode`);
      }
      const { text, manifest } = await readManifest(a);
      assert.match(manifest.kernelVersion, /^\d+\.\d+\.\d+-.+-cloud-amd64$/);
      const expected: Manifest = {
        format: 'kernel-initrd',
        initrd: 'initrd.img',
        kernel: 'vmlinuz',
        kernelVersion: manifest.kernelVersion,
        name: 'tiny',
        sha256: {
          'initrd.img': await sha256(path.join(a, 'initrd.img')),
          vmlinuz: await sha256(path.join(a, 'vmlinuz')),
        },
      };
      assert.deepEqual(manifest, expected);
      // Keys sorted and a stable layout.
      assert.equal(text, JSON.stringify(expected, null, 2) + '\n');
    } finally {
      await removeTempDir(a);
      await removeTempDir(b);
    }
  },
);

/** Connect to a UNIX socket QEMU is about to create, retrying until it exists. */
async function connectUnix(sockPath: string, qemu: ChildProcess, ms: number): Promise<net.Socket> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const sock = net.createConnection(sockPath);
        sock.once('connect', () => {
          sock.off('error', reject);
          resolve(sock);
        });
        sock.once('error', reject);
      });
    } catch (err) {
      if (qemu.exitCode !== null || qemu.signalCode !== null) {
        throw new Error(`QEMU exited before ${sockPath} opened`, { cause: err });
      }
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Splits a socket's data into lines and hands them out, one `next()` at a time, with a timeout. */
class LineReader {
  private buffer = '';
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private closed = false;

  constructor(sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        this.lines.push(this.buffer.slice(0, nl).replace(/\r$/, ''));
        this.buffer = this.buffer.slice(nl + 1);
      }
      this.waiter?.();
    });
    sock.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    sock.on('error', () => undefined);
  }

  async next(deadline: number, what: string): Promise<string> {
    for (;;) {
      const line = this.lines.shift();
      if (line !== undefined) return line;
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
  }
}

const BOOT_APPEND = 'console=ttyS0 panic=-1 rampart.ip=10.0.2.15/24 rampart.gw=10.0.2.2 rampart.hostname=t1';

/** The QEMU command line Rampart uses for the tiny guest (TCG), with its sockets in `dir`. */
function qemuArgs(dir: string, image: string, append: string): string[] {
  // prettier-ignore
  return [
    '-M', 'pc', '-accel', 'tcg', '-m', '128', '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-kernel', path.join(image, 'vmlinuz'),
    '-initrd', path.join(image, 'initrd.img'),
    '-append', append,
    '-chardev', `socket,id=con0,path=${dir}/console.sock,server=on,wait=off`,
    '-serial', 'chardev:con0',
    '-chardev', `socket,id=qmp0,path=${dir}/qmp.sock,server=on,wait=off`,
    '-mon', 'chardev=qmp0,mode=control',
    '-device', 'virtio-serial-pci,id=vser0',
    '-chardev', `socket,id=ga0,path=${dir}/ga.sock,server=on,wait=off`,
    '-device', 'virtserialport,chardev=ga0,name=org.rampart.agent.0',
    '-netdev', 'user,id=net0,restrict=on',
    '-device', 'virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56',
    '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
  ];
}

interface Heartbeat {
  type: string;
  seq: number;
  uptime: number;
  ips: string[];
  hostname: string;
}

void test(
  'the tiny guest boots under TCG, sends heartbeats and powers off on QMP system_powerdown',
  { timeout: 90_000, skip: onPath(QEMU) ? false : `${QEMU} not installed` },
  async (t) => {
    const dir = await makeTempDir('rampart-guest-boot-');
    const image = path.join(dir, 'image');
    const sockets: net.Socket[] = [];
    let qemu: ChildProcess | undefined;
    let consoleLog = '';
    try {
      await runBuild(image);
      const args = qemuArgs(dir, image, BOOT_APPEND);
      const started = Date.now();
      const proc = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      qemu = proc;
      children.add(proc);
      let qemuOutput = '';
      proc.stdout?.on('data', (d: Buffer) => (qemuOutput += d.toString()));
      proc.stderr?.on('data', (d: Buffer) => (qemuOutput += d.toString()));
      const diag = (): string =>
        `\n--- QEMU output ---\n${qemuOutput}\n--- console ---\n${consoleLog.slice(-4000)}`;

      const con = await connectUnix(path.join(dir, 'console.sock'), proc, 10_000);
      sockets.push(con);
      con.on('data', (d: Buffer) => (consoleLog += d.toString()));
      con.on('error', () => undefined);

      const ga = await connectUnix(path.join(dir, 'ga.sock'), proc, 10_000);
      sockets.push(ga);
      const gaLines = new LineReader(ga);
      const deadline = Date.now() + 45_000;
      let beat: Heartbeat | undefined;
      try {
        for (;;) {
          const line = await gaLines.next(deadline, 'a heartbeat with the guest address');
          const msg = JSON.parse(line) as Heartbeat; // every line must be valid JSON
          if (msg.type === 'heartbeat' && Array.isArray(msg.ips) && msg.ips.includes(GUEST_IP)) {
            beat = msg;
            break;
          }
        }
      } catch (err) {
        assert.fail(`${(err as Error).message}${diag()}`);
      }
      t.diagnostic(`spawn to heartbeat: ${Date.now() - started} ms`);
      assert.equal(typeof beat.seq, 'number');
      assert.equal(typeof beat.uptime, 'number');
      assert.ok(beat.uptime > 0, `uptime ${beat.uptime}`);
      assert.equal(beat.hostname, 't1');
      assert.match(consoleLog, /rampart-guest: ready/);

      const qmp = await connectUnix(path.join(dir, 'qmp.sock'), proc, 10_000);
      sockets.push(qmp);
      const qmpLines = new LineReader(qmp);
      const qmpDeadline = Date.now() + 10_000;
      const greeting = JSON.parse(await qmpLines.next(qmpDeadline, 'the QMP greeting')) as Record<
        string,
        unknown
      >;
      assert.ok('QMP' in greeting, 'QMP greeting');
      const command = async (execute: string): Promise<void> => {
        qmp.write(JSON.stringify({ execute }) + '\n');
        for (;;) {
          const reply = JSON.parse(await qmpLines.next(qmpDeadline, `the reply to ${execute}`)) as Record<
            string,
            unknown
          >;
          if ('error' in reply) assert.fail(`${execute}: ${JSON.stringify(reply)}`);
          if ('return' in reply) return;
          // anything else is an asynchronous event
        }
      };
      await command('qmp_capabilities');
      const powerdownAt = Date.now();
      await command('system_powerdown');
      let code: number | string | null;
      try {
        code = await waitForExit(proc, 30_000);
      } catch (err) {
        assert.fail(`${(err as Error).message}${diag()}`);
      }
      t.diagnostic(`system_powerdown to QEMU exit: ${Date.now() - powerdownAt} ms`);
      assert.equal(code, 0, `QEMU exit status${diag()}`);
    } finally {
      for (const s of sockets) s.destroy();
      if (qemu) await killChild(qemu);
      await removeTempDir(dir);
    }
  },
);

void test(
  'rampart.probe=1 prints RAMPART-PROBE-OK and powers off at once',
  { timeout: 60_000, skip: onPath(QEMU) ? false : `${QEMU} not installed` },
  async (t) => {
    const dir = await makeTempDir('rampart-guest-probe-');
    const image = path.join(dir, 'image');
    let qemu: ChildProcess | undefined;
    let con: net.Socket | undefined;
    let consoleLog = '';
    try {
      await runBuild(image);
      // -no-reboot: should the guest panic (panic=-1 reboots), QEMU exits instead of looping.
      const args = [...qemuArgs(dir, image, BOOT_APPEND + ' rampart.probe=1'), '-no-reboot'];
      const started = Date.now();
      const proc = spawn(QEMU, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      qemu = proc;
      children.add(proc);
      let qemuOutput = '';
      proc.stderr?.on('data', (d: Buffer) => (qemuOutput += d.toString()));
      con = await connectUnix(path.join(dir, 'console.sock'), proc, 10_000);
      con.on('data', (d: Buffer) => (consoleLog += d.toString()));
      con.on('error', () => undefined);
      const code = await waitForExit(proc, 30_000);
      t.diagnostic(`probe boot to QEMU exit: ${Date.now() - started} ms`);
      assert.equal(code, 0, `QEMU exit status; stderr:\n${qemuOutput}`);
      // Let the last console bytes arrive.
      await new Promise((r) => setTimeout(r, 100));
      assert.match(consoleLog, /^RAMPART-PROBE-OK\r?$/m, `console:\n${consoleLog.slice(-4000)}`);
      assert.doesNotMatch(consoleLog, /rampart-guest: ready/);
    } finally {
      con?.destroy();
      if (qemu) await killChild(qemu);
      await removeTempDir(dir);
    }
  },
);

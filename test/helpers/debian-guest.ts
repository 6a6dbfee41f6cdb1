/**
 * Boots the optional Debian 12 image (guest/debian/build.sh) with QEMU directly (TCG, -nodefaults,
 * firmware boot: SeaBIOS boots the disk's own SYSLINUX, no -kernel), on a throwaway qcow2 overlay so the built image is never written, with a NoCloud
 * seed made here (genisoimage or mkfs.vfat + mcopy), the guest agent's virtio-serial port on a UNIX
 * socket and SSH forwarded from a loopback port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { REPO_ROOT } from './repo.js';

export const DEBIAN_IMAGE_DIR =
  process.env['RAMPART_DEBIAN_OUT'] ?? path.join(REPO_ROOT, 'guest', 'out', 'debian12');
export const QEMU = 'qemu-system-x86_64';
const AGENT_PORT = 'org.rampart.agent.0';

export interface DebianManifest {
  /** How the disk boots: "bios" (SYSLINUX on its FAT partition 1, root on partition 2). */
  boot: string;
  cmdline: string;
  disk: string;
  format: string;
  initrd: string;
  kernel: string;
  kernelVersion: string;
  name: string;
  sha256: Record<string, string>;
}

/** The built image's manifest; throws (never skips) when the image has not been built. */
export async function requireDebianImage(): Promise<DebianManifest> {
  const manifestPath = path.join(DEBIAN_IMAGE_DIR, 'manifest.json');
  if (!existsSync(manifestPath))
    throw new Error(
      `the Debian 12 image is not built (${manifestPath} missing): run \`bash guest/debian/build.sh\` (as root; scripts/setup.sh does it)`,
    );
  const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as DebianManifest;
  for (const file of [manifest.disk, manifest.kernel, manifest.initrd])
    if (!existsSync(path.join(DEBIAN_IMAGE_DIR, file)))
      throw new Error(`${file} missing in ${DEBIAN_IMAGE_DIR}: run \`bash guest/debian/build.sh\``);
  return manifest;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (killed after `timeoutMs`), collecting its output. */
export function run(cmd: string, args: readonly string[], timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${cmd}: ${err.message}`));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function mustRun(cmd: string, args: readonly string[]): Promise<string> {
  const result = await run(cmd, args);
  if (result.code !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${String(result.code)}): ${result.stderr}`);
  return result.stdout;
}

export interface SeedOptions {
  instanceId: string;
  hostname: string;
  sshPublicKey: string;
  /** A network-config (version 2) file; none: the guest uses DHCP. */
  networkConfig?: string;
  /** iso: `genisoimage -V cidata -r -J`; vfat: `mkfs.vfat -n CIDATA` + `mcopy`. */
  format: 'iso' | 'vfat';
}

/** Writes a NoCloud seed image into `dir` and returns its path. */
export async function makeSeed(dir: string, options: SeedOptions): Promise<string> {
  const files = path.join(dir, 'seed-files');
  await mkdir(files, { recursive: true });
  const names = ['meta-data', 'user-data'];
  await writeFile(
    path.join(files, 'meta-data'),
    `instance-id: ${options.instanceId}\nlocal-hostname: ${options.hostname}\n`,
  );
  await writeFile(
    path.join(files, 'user-data'),
    `#cloud-config\nhostname: ${options.hostname}\nssh_authorized_keys:\n  - ${options.sshPublicKey.trim()}\n`,
  );
  if (options.networkConfig !== undefined) {
    await writeFile(path.join(files, 'network-config'), options.networkConfig);
    names.push('network-config');
  }
  const paths = names.map((n) => path.join(files, n));
  if (options.format === 'iso') {
    const seed = path.join(dir, 'seed.iso');
    await mustRun('genisoimage', ['-quiet', '-output', seed, '-V', 'cidata', '-r', '-J', ...paths]);
    return seed;
  }
  const seed = path.join(dir, 'seed.img');
  await mustRun('truncate', ['-s', '2M', seed]);
  await mustRun('mkfs.vfat', ['-n', 'CIDATA', seed]);
  await mustRun('mcopy', ['-i', seed, ...paths, '::']);
  return seed;
}

/** A free TCP port on 127.0.0.1 (for the SSH forward). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

export interface BootOptions {
  /** Directory for the sockets and the console log. */
  dir: string;
  /** The (overlay) disk to boot; never the built image itself. */
  disk: string;
  seed: string;
  sshPort: number;
  manifest: DebianManifest;
  memoryMiB?: number;
}

export interface DebianGuest {
  qemu: ChildProcess;
  agentSocket: string;
  qmpSocket: string;
  consoleLog: string;
  startedAt: number;
  /** QEMU's own stdout/stderr so far. */
  output(): string;
}

/**
 * The QEMU command line (TCG, -nodefaults, firmware boot: the root disk has bootindex 0 and SeaBIOS
 * boots it by itself, MBR -> SYSLINUX -> the kernel and initrd on its FAT partition; strict boot order,
 * so a disk that does not boot never falls through to the NIC's PXE ROM).
 */
export function debianQemuArgs(options: BootOptions): string[] {
  const { dir } = options;
  // prettier-ignore
  return [
    '-M', 'pc', '-accel', 'tcg', '-cpu', 'qemu64', '-m', String(options.memoryMiB ?? 512), '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-boot', 'strict=on',
    '-drive', `file=${options.disk},if=none,id=disk0,format=qcow2`,
    '-device', 'virtio-blk-pci,drive=disk0,bootindex=0',
    '-drive', `file=${options.seed},if=none,id=seed0,format=raw,readonly=on`,
    '-device', 'virtio-blk-pci,drive=seed0',
    '-chardev', `file,id=con0,path=${path.join(dir, 'console.log')}`,
    '-serial', 'chardev:con0',
    '-chardev', `socket,id=qmp0,path=${path.join(dir, 'qmp.sock')},server=on,wait=off`,
    '-mon', 'chardev=qmp0,mode=control',
    '-device', 'virtio-serial-pci,id=vser0',
    '-chardev', `socket,id=ga0,path=${path.join(dir, 'ga.sock')},server=on,wait=off`,
    '-device', `virtserialport,bus=vser0.0,chardev=ga0,name=${AGENT_PORT}`,
    '-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${options.sshPort}-:22`,
    '-device', 'virtio-net-pci,netdev=n0',
    '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
  ];
}

export function bootDebian(options: BootOptions): DebianGuest {
  let output = '';
  const qemu = spawn(QEMU, debianQemuArgs(options), { stdio: ['ignore', 'pipe', 'pipe'] });
  qemu.stdout.on('data', (d: Buffer) => (output += d.toString()));
  qemu.stderr.on('data', (d: Buffer) => (output += d.toString()));
  qemu.once('error', (err) => (output += `spawn error: ${err.message}\n`));
  return {
    qemu,
    agentSocket: path.join(options.dir, 'ga.sock'),
    qmpSocket: path.join(options.dir, 'qmp.sock'),
    consoleLog: path.join(options.dir, 'console.log'),
    startedAt: Date.now(),
    output: () => output,
  };
}

/** The last `chars` characters of the guest's serial console, for failure messages. */
export async function consoleTail(guest: DebianGuest, chars = 3000): Promise<string> {
  const text = await readFile(guest.consoleLog, 'utf8').catch(() => '');
  return `\n--- QEMU output ---\n${guest.output()}\n--- console (last ${chars} chars) ---\n${text.slice(-chars)}`;
}

export interface Heartbeat {
  type: string;
  seq: number;
  uptime: number;
  ips: string[];
  hostname: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Connects to the agent socket (retrying until QEMU created it) and resolves with the first heartbeat
 * for which `accept` is true; every line must be a JSON object.
 */
export async function waitForHeartbeat(
  guest: DebianGuest,
  timeoutMs: number,
  accept: (beat: Heartbeat) => boolean = () => true,
): Promise<Heartbeat> {
  const deadline = Date.now() + timeoutMs;
  let sock: net.Socket | undefined;
  while (!sock) {
    if (guest.qemu.exitCode !== null || guest.qemu.signalCode !== null)
      throw new Error('QEMU exited before the agent socket opened');
    try {
      sock = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.createConnection(guest.agentSocket);
        s.once('connect', () => {
          s.off('error', reject);
          resolve(s);
        });
        s.once('error', reject);
      });
    } catch {
      if (Date.now() > deadline) throw new Error('the agent socket never opened');
      await sleep(100);
    }
  }
  const connected = sock;
  try {
    return await new Promise<Heartbeat>((resolve, reject) => {
      let buffer = '';
      const timer = setTimeout(
        () => reject(new Error('timed out waiting for a guest agent heartbeat')),
        Math.max(0, deadline - Date.now()),
      );
      connected.setEncoding('utf8');
      connected.on('data', (chunk: string) => {
        buffer += chunk;
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (line === '') continue;
          let beat: Heartbeat;
          try {
            beat = JSON.parse(line) as Heartbeat;
          } catch {
            clearTimeout(timer);
            reject(new Error(`guest agent sent a line that is not JSON: ${line.slice(0, 200)}`));
            return;
          }
          if (beat.type === 'heartbeat' && accept(beat)) {
            clearTimeout(timer);
            resolve(beat);
            return;
          }
        }
      });
      connected.on('error', () => undefined);
      connected.once('close', () => {
        clearTimeout(timer);
        reject(new Error('agent socket closed'));
      });
    });
  } finally {
    connected.destroy();
  }
}

export interface SshTarget {
  port: number;
  key: string;
  knownHosts: string;
}

export function sshArgs(target: SshTarget, extra: readonly string[], command: string): string[] {
  // prettier-ignore
  return [
    '-i', target.key, '-p', String(target.port),
    '-o', 'StrictHostKeyChecking=no', '-o', `UserKnownHostsFile=${target.knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'HashKnownHosts=no', '-o', 'HostKeyAlgorithms=ssh-ed25519',
    '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR',
    ...extra, 'root@127.0.0.1', command,
  ];
}

/** Runs `command` over SSH, retrying (sshd may not be up yet) until it succeeds or time runs out. */
export async function sshUntilReady(
  guest: DebianGuest,
  target: SshTarget,
  command: string,
  timeoutMs: number,
): Promise<RunResult> {
  const deadline = Date.now() + timeoutMs;
  let last: RunResult | undefined;
  for (;;) {
    if (guest.qemu.exitCode !== null || guest.qemu.signalCode !== null)
      throw new Error(
        `QEMU exited (${String(guest.qemu.exitCode ?? guest.qemu.signalCode)}) before SSH worked`,
      );
    last = await run('ssh', sshArgs(target, [], command), 30_000);
    if (last.code === 0) return last;
    if (Date.now() > deadline)
      throw new Error(`ssh never succeeded; last attempt (${String(last.code)}): ${last.stderr.trim()}`);
    await sleep(2_000);
  }
}

/** The ed25519 host key the SSH client recorded in its known-hosts file. */
export async function recordedHostKey(target: SshTarget): Promise<string> {
  const text = await readFile(target.knownHosts, 'utf8');
  const match = /ssh-ed25519 (\S+)/.exec(text);
  if (!match?.[1]) throw new Error(`no ed25519 host key in ${target.knownHosts}:\n${text}`);
  return match[1];
}

/**
 * Presses the ACPI power button (QMP system_powerdown, as Rampart does): resolves once QEMU accepted
 * the command; the guest (systemd-logind) then shuts down and QEMU exits.
 */
export async function qmpPowerdown(guest: DebianGuest, timeoutMs = 10_000): Promise<void> {
  const sock = net.createConnection(guest.qmpSocket);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('QMP timed out')), timeoutMs);
      let buffer = '';
      const sent: string[] = [];
      const send = (execute: string): void => {
        sent.push(execute);
        sock.write(JSON.stringify({ execute }) + '\n');
      };
      sock.setEncoding('utf8');
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      sock.on('data', (chunk: string) => {
        buffer += chunk;
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const msg = JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>;
          buffer = buffer.slice(nl + 1);
          if ('QMP' in msg) send('qmp_capabilities');
          else if ('error' in msg) {
            clearTimeout(timer);
            reject(new Error(`QMP error: ${JSON.stringify(msg)}`));
          } else if ('return' in msg) {
            if (sent.length === 1) send('system_powerdown');
            else {
              clearTimeout(timer);
              resolve();
            }
          }
        }
      });
    });
  } finally {
    sock.destroy();
  }
}

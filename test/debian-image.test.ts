// The optional Debian 12 image (guest/debian/build.sh), booted for real under TCG with QEMU directly and
// from the disk alone (SeaBIOS -> MBR -> SYSLINUX on the FAT partition 1, root on vda2): its NoCloud reader applies the seed (hostname, root's SSH key, network), the guest agent sends
// heartbeats over virtio-serial, SSH is key-only, and a clone booted with a new instance-id gets a new
// machine-id and new SSH host keys. Never skipped: without the image the tests fail and say how to build it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  DEBIAN_IMAGE_DIR,
  bootDebian,
  consoleTail,
  debianQemuArgs,
  freePort,
  makeSeed,
  qmpPowerdown,
  recordedHostKey,
  requireDebianImage,
  run,
  sshArgs,
  sshUntilReady,
  waitForHeartbeat,
  type DebianGuest,
  type DebianManifest,
  type SshTarget,
} from './helpers/debian-guest.js';

const GUEST_IP = '10.0.2.15/24';
const STATIC_NETWORK = `version: 2
ethernets:
  eth0:
    addresses:
      - ${GUEST_IP}
    gateway4: 10.0.2.2
    nameservers:
      addresses: [10.0.2.3]
`;

// Everything started or created here, so `after` cleans up even when a test fails or times out.
const children = new Set<ChildProcess>();
let tempDir: string | undefined;

/** Whether `promise` settled within `ms` (the timer never outlives it). */
async function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function stop(qemu: ChildProcess): Promise<void> {
  if (qemu.exitCode === null && qemu.signalCode === null) {
    const exited = new Promise<void>((resolve) => qemu.once('exit', () => resolve()));
    qemu.kill('SIGKILL');
    await withTimeout(exited, 10_000);
  }
  children.delete(qemu);
}

after(async () => {
  for (const child of [...children]) await stop(child);
  if (tempDir) await rm(tempDir, { recursive: true, force: true });
});

async function workDir(): Promise<string> {
  tempDir ??= await mkdtemp(path.join(os.tmpdir(), 'rampart-debian-'));
  return tempDir;
}

async function overlay(dir: string, backing: string): Promise<string> {
  const file = path.join(dir, 'overlay.qcow2');
  const result = await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', backing, '-F', 'qcow2', file]);
  assert.equal(result.code, 0, `qemu-img create: ${result.stderr}`);
  return file;
}

/** Powers the guest off over SSH (so its disk is consistent) and waits for QEMU to exit. */
async function powerOff(guest: DebianGuest, target: SshTarget): Promise<void> {
  const exited = new Promise<void>((resolve) => {
    if (guest.qemu.exitCode !== null || guest.qemu.signalCode !== null) resolve();
    else guest.qemu.once('exit', () => resolve());
  });
  await run('ssh', sshArgs(target, [], 'sync; systemctl poweroff'), 30_000);
  if (!(await withTimeout(exited, 60_000))) await stop(guest.qemu);
  children.delete(guest.qemu);
}

interface BootState {
  manifest: DebianManifest;
  key: string;
  firstDisk: string;
  machineId: string;
  hostKey: string;
}
let first: BootState | undefined;

void test('the Debian 12 image is built (run `bash guest/debian/build.sh`)', async () => {
  const manifest = await requireDebianImage();
  assert.equal(manifest.name, 'debian12');
  assert.equal(manifest.format, 'qcow2');
  assert.equal(manifest.boot, 'bios');
  assert.match(manifest.kernelVersion, /^\d+\.\d+\.\d+-.+-cloud-amd64$/);
  const info = await run('qemu-img', ['info', '--output=json', path.join(DEBIAN_IMAGE_DIR, manifest.disk)]);
  assert.equal(info.code, 0, info.stderr);
  const parsed = JSON.parse(info.stdout) as Record<string, unknown>;
  assert.equal(parsed['format'], 'qcow2');
  assert.equal(parsed['backing-filename'], undefined, 'the image has no backing file');
  assert.equal(parsed['encrypted'], undefined, 'the image is not encrypted');
});

void test(
  'boots under TCG: agent heartbeat, seed applied, key-only SSH as root',
  { timeout: 180_000 },
  async (t) => {
    const manifest = await requireDebianImage();
    const dir = path.join(await workDir(), 'boot1');
    await mkdir(dir);
    const key = path.join(await workDir(), 'id_ed25519');
    const keygen = await run('ssh-keygen', [
      '-q',
      '-t',
      'ed25519',
      '-N',
      '',
      '-C',
      'rampart-test',
      '-f',
      key,
    ]);
    assert.equal(keygen.code, 0, keygen.stderr);
    const publicKey = await readFile(`${key}.pub`, 'utf8');
    const seed = await makeSeed(dir, {
      instanceId: 'iid-rampart-test-1',
      hostname: 'deb-test',
      sshPublicKey: publicKey,
      networkConfig: STATIC_NETWORK,
      format: 'iso',
    });
    const disk = await overlay(dir, path.join(DEBIAN_IMAGE_DIR, manifest.disk));
    const sshPort = await freePort();
    const options = { dir, disk, seed, sshPort, manifest };
    t.diagnostic(`qemu-system-x86_64 ${debianQemuArgs(options).join(' ')}`);
    const guest = bootDebian(options);
    children.add(guest.qemu);
    const target: SshTarget = { port: sshPort, key, knownHosts: path.join(dir, 'known_hosts') };
    try {
      const firstBeat = await waitForHeartbeat(guest, 120_000);
      t.diagnostic(
        `spawn to first heartbeat: ${Date.now() - guest.startedAt} ms (guest uptime ${firstBeat.uptime} s)`,
      );
      assert.equal(typeof firstBeat.seq, 'number');
      assert.ok(firstBeat.uptime > 0);
      const configured = await waitForHeartbeat(
        guest,
        60_000,
        (b) => b.hostname === 'deb-test' && b.ips.includes(GUEST_IP),
      );
      t.diagnostic(`heartbeat with hostname and static IP: ${Date.now() - guest.startedAt} ms`);
      assert.ok(
        configured.ips.every((ip) => !ip.startsWith('127.')),
        `ips ${configured.ips.join(',')}`,
      );

      const hostname = await sshUntilReady(guest, target, 'hostname', 120_000);
      t.diagnostic(`spawn to SSH: ${Date.now() - guest.startedAt} ms`);
      assert.equal(hostname.stdout.trim(), 'deb-test');

      // Password (and keyboard-interactive) logins are not even offered.
      const password = await run(
        'ssh',
        sshArgs(
          target,
          ['-o', 'PubkeyAuthentication=no', '-o', 'PreferredAuthentications=password,keyboard-interactive'],
          'true',
        ),
      );
      assert.equal(password.code, 255, `password login must fail: ${password.stdout}${password.stderr}`);
      assert.match(password.stderr, /Permission denied \(publickey\)/);

      // Only the seed's key opens root's account.
      const otherKey = path.join(dir, 'other_ed25519');
      assert.equal((await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherKey])).code, 0);
      const other = await run('ssh', sshArgs({ ...target, key: otherKey }, [], 'true'));
      assert.equal(other.code, 255, `a key not in the seed must be refused: ${other.stdout}${other.stderr}`);
      assert.match(other.stderr, /Permission denied \(publickey\)/);

      const facts = await run(
        'ssh',
        sshArgs(
          target,
          [],
          'cat /etc/machine-id; cat /var/lib/rampart-nocloud/instance-id; systemctl is-active rampart-guest-agent rampart-nocloud ssh; passwd -S root; ip route show default; findmnt -n -o SOURCE /; cat /proc/cmdline',
        ),
      );
      assert.equal(facts.code, 0, `${facts.stdout}${facts.stderr}`);
      const lines = facts.stdout.trim().split('\n');
      assert.match(lines[0] ?? '', /^[0-9a-f]{32}$/, 'machine-id');
      assert.equal(lines[1], 'iid-rampart-test-1');
      assert.deepEqual(lines.slice(2, 5), ['active', 'active', 'active']);
      assert.match(lines[5] ?? '', /^root L /, 'root password locked');
      assert.match(lines[6] ?? '', /^default via 10\.0\.2\.2 /);
      // The root is the disk's partition 2, and SYSLINUX (not QEMU's -kernel) started the kernel with
      // the manifest's command line.
      assert.equal(lines[7], '/dev/vda2', 'root filesystem');
      assert.equal(lines[8], `BOOT_IMAGE=/vmlinuz ${manifest.cmdline} initrd=/initrd.img`, '/proc/cmdline');
      first = {
        manifest,
        key,
        firstDisk: disk,
        machineId: lines[0]!,
        hostKey: await recordedHostKey(target),
      };
      await powerOff(guest, target);
    } catch (err) {
      assert.fail(`${(err as Error).message}${await consoleTail(guest)}`);
    } finally {
      await stop(guest.qemu);
    }
  },
);

void test(
  'a clone booted with a new instance-id gets a new machine-id and SSH host keys (vfat seed, DHCP)',
  { timeout: 180_000 },
  async (t) => {
    assert.ok(first, 'the first boot did not complete');
    const { manifest, key } = first;
    const dir = path.join(await workDir(), 'boot2');
    await mkdir(dir);
    const seed = await makeSeed(dir, {
      instanceId: 'iid-rampart-test-2',
      hostname: 'deb-clone',
      sshPublicKey: await readFile(`${key}.pub`, 'utf8'),
      format: 'vfat',
    });
    // The clone: an overlay on the first boot's (already booted, already personalised) disk.
    const disk = await overlay(dir, first.firstDisk);
    const sshPort = await freePort();
    const guest = bootDebian({ dir, disk, seed, sshPort, manifest });
    children.add(guest.qemu);
    const target: SshTarget = { port: sshPort, key, knownHosts: path.join(dir, 'known_hosts') };
    try {
      const beat = await waitForHeartbeat(
        guest,
        150_000,
        (b) => b.hostname === 'deb-clone' && b.ips.includes(GUEST_IP),
      );
      t.diagnostic(
        `clone: spawn to heartbeat with hostname and DHCP address: ${Date.now() - guest.startedAt} ms`,
      );
      assert.equal(beat.hostname, 'deb-clone');
      const out = await sshUntilReady(
        guest,
        target,
        'hostname; cat /etc/machine-id; cat /var/lib/rampart-nocloud/instance-id',
        120_000,
      );
      t.diagnostic(`clone: spawn to SSH: ${Date.now() - guest.startedAt} ms`);
      const [hostname, machineId, instanceId] = out.stdout.trim().split('\n');
      assert.equal(hostname, 'deb-clone');
      assert.equal(instanceId, 'iid-rampart-test-2');
      assert.match(machineId ?? '', /^[0-9a-f]{32}$/);
      assert.notEqual(machineId, first.machineId, 'the clone must get a new machine-id');
      assert.notEqual(await recordedHostKey(target), first.hostKey, 'the clone must get new SSH host keys');

      // The ACPI power button (QMP system_powerdown, what Rampart sends) shuts the guest down.
      const exited = new Promise<void>((resolve) => guest.qemu.once('exit', () => resolve()));
      const pressedAt = Date.now();
      await qmpPowerdown(guest);
      assert.ok(
        await withTimeout(exited, 60_000),
        'the guest did not power off within 60 s of system_powerdown',
      );
      t.diagnostic(`clone: system_powerdown to QEMU exit: ${Date.now() - pressedAt} ms`);
      assert.equal(guest.qemu.exitCode, 0);
    } catch (err) {
      assert.fail(`${(err as Error).message}${await consoleTail(guest)}`);
    } finally {
      await stop(guest.qemu);
    }
  },
);

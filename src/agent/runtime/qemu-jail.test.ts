/**
 * The pure parts of the QEMU jail: its layout for merged and split /usr hosts, the fstab `mount --all`
 * reads, the command that enters it, the mountinfo check, and a skeleton written without following a
 * link planted in its place. (The namespace itself is exercised with real QEMU in vm-hardening.)
 */
import assert from 'node:assert/strict';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  JAIL_INITRD,
  JAIL_KERNEL,
  fstabEscape,
  jailDiskImagePath,
  inJailBinary,
  jailCommand,
  jailLayout,
  parseMountinfo,
  renderFstab,
  verifyMounts,
  writeSkeleton,
  type HostRootFacts,
  type JailSpec,
} from './qemu-jail.js';

const MERGED: HostRootFacts = {
  entries: {
    bin: { kind: 'link', target: 'usr/bin' },
    sbin: { kind: 'link', target: 'usr/sbin' },
    lib: { kind: 'link', target: 'usr/lib' },
    lib64: { kind: 'link', target: 'usr/lib64' },
  },
  ldCache: true,
};

const SPLIT: HostRootFacts = {
  entries: { bin: { kind: 'dir' }, sbin: { kind: 'dir' }, lib: { kind: 'dir' }, lib64: { kind: 'absent' } },
  ldCache: false,
};

const SPEC: JailSpec = {
  vmDir: '/var/lib/rampart/agent/vms/0b0e',
  runDir: '/var/lib/rampart/agent/vms/0b0e/run',
  kernel: {
    kernelPath: '/var/lib/rampart/images/tiny/vmlinuz',
    initrdPath: '/var/lib/rampart/images/tiny/initrd.img',
  },
  kvm: false,
};

test('merged /usr: links mirrored, /usr, image files, devices and the run directory bound', () => {
  const layout = jailLayout(SPEC, MERGED);
  assert.equal(layout.root, '/var/lib/rampart/agent/vms/0b0e/jail');
  const links = layout.skeleton.filter((e) => e.kind === 'link');
  assert.deepEqual(
    links.map((e) => [e.path, e.kind === 'link' ? e.target : '']),
    [
      ['/bin', 'usr/bin'],
      ['/sbin', 'usr/sbin'],
      ['/lib', 'usr/lib'],
      ['/lib64', 'usr/lib64'],
    ],
  );
  const mounts = Object.fromEntries(layout.mounts.map((m) => [m.target, m]));
  assert.deepEqual(Object.keys(mounts), [
    '/',
    '/usr',
    '/etc/ld.so.cache',
    '/dev/null',
    '/dev/zero',
    '/dev/urandom',
    '/dev/random',
    '/dev/net/tun',
    JAIL_KERNEL,
    JAIL_INITRD,
    SPEC.runDir,
  ]);
  assert.equal(mounts['/']!.source, layout.root, 'the root is bound onto itself, read-only');
  assert.ok(mounts['/']!.readOnly && mounts['/usr']!.readOnly && mounts[JAIL_KERNEL]!.readOnly);
  assert.deepEqual(mounts['/usr']!.options, ['bind', 'ro', 'nosuid', 'nodev']);
  assert.equal(mounts[JAIL_KERNEL]!.source, SPEC.kernel!.kernelPath);
  assert.equal(mounts[JAIL_INITRD]!.source, SPEC.kernel!.initrdPath);
  assert.deepEqual(mounts[SPEC.runDir]!.options, ['bind', 'nosuid', 'nodev', 'noexec']);
  assert.equal(mounts[SPEC.runDir]!.readOnly, false);
  assert.ok(!('/dev/kvm' in mounts), 'no /dev/kvm under TCG');
  // Every mount target exists in the skeleton (a file for a file, a directory for a directory).
  const paths = new Set(layout.skeleton.map((e) => e.path));
  for (const target of Object.keys(mounts)) if (target !== '/') assert.ok(paths.has(target), target);
  assert.ok(layout.skeleton.some((e) => e.kind === 'file' && e.path === '/dev/net/tun'));
  assert.ok(layout.skeleton.some((e) => e.kind === 'dir' && e.path === SPEC.runDir));
});

test('disk images: each base image bound read-only at /image/disk-N, and no kernel or initrd', () => {
  const { kernel: _kernel, ...noKernel } = SPEC;
  const layout = jailLayout({ ...noKernel, diskImages: ['/cache/aaa', '/cache/bbb'] }, MERGED);
  const mounts = Object.fromEntries(layout.mounts.map((m) => [m.target, m]));
  assert.ok(!(JAIL_KERNEL in mounts) && !(JAIL_INITRD in mounts));
  assert.equal(mounts[jailDiskImagePath(0)]!.source, '/cache/aaa');
  assert.equal(mounts[jailDiskImagePath(1)]!.source, '/cache/bbb');
  for (const i of [0, 1]) {
    assert.ok(mounts[jailDiskImagePath(i)]!.readOnly);
    assert.deepEqual(mounts[jailDiskImagePath(i)]!.options, ['bind', 'ro', 'nosuid', 'nodev', 'noexec']);
  }
  assert.throws(() => jailLayout({ ...noKernel, diskImages: ['relative'] }, MERGED), /absolute/);
});

test('split /usr: directories bound read-only, absent ones left out; KVM gets /dev/kvm', () => {
  const layout = jailLayout({ ...SPEC, kvm: true }, SPLIT);
  const targets = layout.mounts.map((m) => m.target);
  for (const dir of ['/bin', '/sbin', '/lib']) {
    const mount = layout.mounts.find((m) => m.target === dir)!;
    assert.ok(mount.readOnly, dir);
    assert.equal(mount.source, dir);
  }
  assert.ok(!targets.includes('/lib64'));
  assert.ok(!targets.includes('/etc/ld.so.cache'));
  assert.ok(targets.includes('/dev/kvm'));
  assert.ok(!layout.skeleton.some((e) => e.kind === 'link'));
});

test('a run directory that would land on a system path of the jail is refused', () => {
  assert.throws(
    () => jailLayout({ ...SPEC, vmDir: '/usr/rampart/vms/x', runDir: '/usr/rampart/vms/x/run' }, MERGED),
    /cannot be mirrored/,
  );
  assert.throws(() => jailLayout({ ...SPEC, runDir: '/dev/x' }, MERGED), /cannot be mirrored/);
});

test('the fstab: the jail root first, one escaped bind per line', () => {
  const layout = jailLayout({ ...SPEC, kernel: { ...SPEC.kernel!, kernelPath: '/images/a kernel' } }, MERGED);
  const lines = renderFstab(layout).trimEnd().split('\n');
  assert.equal(lines.length, layout.mounts.length);
  assert.equal(lines[0], `${layout.root} ${layout.root} none bind,ro,nosuid,nodev,noexec 0 0`);
  assert.equal(lines[1], `/usr ${layout.root}/usr none bind,ro,nosuid,nodev 0 0`);
  assert.ok(
    lines.includes(`/images/a\\040kernel ${layout.root}/image/kernel none bind,ro,nosuid,nodev,noexec 0 0`),
  );
  assert.ok(lines.includes(`/dev/net/tun ${layout.root}/dev/net/tun none bind,nosuid,noexec 0 0`));
  assert.equal(fstabEscape('a\tb\\c\nd'), 'a\\011b\\134c\\012d');
});

test('the command enters the namespace (and the network namespace), then chroots', () => {
  const binaries = { nsenter: '/usr/bin/nsenter', chroot: '/usr/sbin/chroot' };
  assert.deepEqual(jailCommand(binaries, 42, '/j', null, ['/usr/bin/prlimit', 'x']), [
    '/usr/bin/nsenter',
    '--target',
    '42',
    '--mount',
    '--',
    '/usr/sbin/chroot',
    '/j',
    '/usr/bin/prlimit',
    'x',
  ]);
  assert.deepEqual(jailCommand(binaries, 42, '/j', '/run/netns/h1', ['q']).slice(3, 6), [
    '--mount',
    '--net=/run/netns/h1',
    '--',
  ]);
});

test('binaries must be reachable inside the jail', () => {
  assert.equal(inJailBinary('/usr/bin/qemu-system-x86_64', MERGED), '/usr/bin/qemu-system-x86_64');
  assert.equal(inJailBinary('/bin/setpriv', MERGED), '/bin/setpriv');
  assert.equal(inJailBinary('/bin/setpriv', SPLIT), '/bin/setpriv');
  assert.throws(() => inJailBinary('/opt/qemu/bin/qemu', MERGED), /not inside the QEMU jail/);
  assert.throws(() => inJailBinary('/lib64/x', SPLIT), /not inside the QEMU jail/);
  assert.throws(() => inJailBinary('qemu', MERGED), /absolute/);
});

test('mountinfo: parsed, and every expected mount checked for presence and read-only flag', () => {
  const layout = jailLayout(SPEC, MERGED);
  const text = (roUsr: boolean, skip?: string) =>
    layout.mounts
      .map((m) => ({
        point: m.target === '/' ? layout.root : `${layout.root}${m.target}`,
        ro: m.target === '/usr' ? roUsr : m.readOnly,
      }))
      .filter(({ point }) => point !== skip)
      .map(
        ({ point, ro }, i) =>
          `${100 + i} 1 254:0 / ${point.replace(/ /g, '\\040')} ${ro ? 'ro' : 'rw'},relatime - ext4 /dev/vda rw`,
      )
      .join('\n');
  assert.deepEqual(verifyMounts(layout, parseMountinfo(text(true))), []);
  assert.deepEqual(verifyMounts(layout, parseMountinfo(text(false))), ['/usr is not read-only']);
  assert.deepEqual(verifyMounts(layout, parseMountinfo(text(true, `${layout.root}/dev/null`))), [
    '/dev/null is not mounted',
  ]);
  assert.deepEqual(parseMountinfo('36 35 0:6 / /a\\040b rw,nosuid - tmpfs t rw\n'), [
    { path: '/a b', readOnly: false },
  ]);
  // The mount that came last on a point is the one that counts.
  const over = `${text(true)}\n200 1 254:0 / ${layout.root}/usr rw - ext4 /dev/vda rw`;
  assert.deepEqual(verifyMounts(layout, parseMountinfo(over)), ['/usr is not read-only']);
});

test('the skeleton is rebuilt from scratch; a link planted in place of the jail is removed, not followed', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-jail-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const outside = join(dir, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'keep'), 'untouched');
  const vmDir = join(dir, 'vm');
  mkdirSync(vmDir);
  symlinkSync(outside, join(vmDir, 'jail'), 'dir'); // planted: the jail would be `outside`
  const layout = jailLayout({ ...SPEC, vmDir, runDir: join(vmDir, 'run') }, MERGED);
  writeSkeleton(layout);
  assert.equal(readFileSync(join(outside, 'keep'), 'utf8'), 'untouched', 'the link target was not touched');
  assert.deepEqual(readdirSync(outside), ['keep'], 'nothing was created through the link');
  assert.ok(lstatSync(layout.root).isDirectory());
  assert.equal(lstatSync(layout.root).mode & 0o777, 0o755);
  assert.equal(readlinkSync(join(layout.root, 'lib64')), 'usr/lib64');
  assert.ok(lstatSync(join(layout.root, 'dev', 'net', 'tun')).isFile());
  assert.ok(lstatSync(join(layout.root, 'image', 'kernel')).isFile());
  assert.ok(lstatSync(join(layout.root, vmDir, 'run')).isDirectory(), 'the mirrored run directory');
  // Rebuilt again: whatever was left in it is gone.
  writeFileSync(join(layout.root, 'stray'), 'x');
  writeSkeleton(layout);
  assert.ok(!existsSync(join(layout.root, 'stray')));
});

test('volumes: each file bound read-write at /volumes/<id>; nothing else under the jail may be writable', () => {
  const id = '11111111-2222-4333-8444-555555555555';
  const source = `/var/lib/rampart/agent/volumes/${id}.luks`;
  const layout = jailLayout({ ...SPEC, volumes: [{ id, source }] }, MERGED);
  assert.deepEqual(
    layout.mounts.find((m) => m.target === `/volumes/${id}`),
    { source, target: `/volumes/${id}`, options: ['bind', 'nosuid', 'nodev', 'noexec'], readOnly: false },
  );
  assert.deepEqual(
    layout.skeleton.filter((e) => e.path.startsWith('/volumes')),
    [
      { kind: 'dir', path: '/volumes' },
      { kind: 'file', path: `/volumes/${id}` },
    ],
  );
  assert.throws(() => jailLayout({ ...SPEC, volumes: [{ id: '../x', source }] }, MERGED), /bad volume id/);
  assert.throws(() => jailLayout({ ...SPEC, runDir: '/volumes/run' }, MERGED), /cannot be mirrored/);
  const mountinfo = layout.mounts
    .map((m, i) => {
      const point = m.target === '/' ? layout.root : `${layout.root}${m.target}`;
      return `${100 + i} 1 254:0 / ${point} ${m.readOnly ? 'ro' : 'rw'},relatime - ext4 /dev/vda rw`;
    })
    .join('\n');
  assert.deepEqual(verifyMounts(layout, parseMountinfo(mountinfo)), []);
  // A writable mount the layout does not have (under the jail) is refused; one outside it is not ours.
  const extra = `${mountinfo}\n300 1 254:0 / ${layout.root}/volumes rw - ext4 /dev/vda rw\n301 1 0:5 / /home rw - ext4 /dev/vda rw`;
  assert.deepEqual(verifyMounts(layout, parseMountinfo(extra)), ['/volumes is writable']);
});

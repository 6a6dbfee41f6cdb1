/**
 * Disk image inspection against the real qemu-img: clean raw and qcow2 images are accepted; backing
 * files, external data files, encryption, format confusion (qcow2, LUKS or a VMDK descriptor uploaded as
 * raw, raw uploaded as qcow2), oversize images, symlinks, corrupt metadata and qemu-img failures are
 * rejected. Where strace works, it also proves that no qemu-img run ever opened the host file an image
 * points at.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  checkQcow2Header,
  DiskImageRejected,
  inspectDiskImage,
  qemuImgVersion,
  sniffFormat,
  type DiskFormat,
  type InspectOptions,
} from './disk-inspection.js';

const QEMU_IMG = '/usr/bin/qemu-img';
const MiB = 1024 * 1024;

const dir = mkdtempSync(join(tmpdir(), 'rampart-disk-inspection-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let counter = 0;
function path(name: string): string {
  return join(dir, `${++counter}-${name}`);
}

/**
 * `qemu-img <subcommand> -q <args>`. Retried: creating LUKS headers benchmarks PBKDF2 and, in some
 * VMs, fails now and then with "Unable to get accurate CPU usage" (SHA-256 is often too quick to
 * measure there, hence SHA-512 in the LUKS tests, as volume-files.ts does).
 */
function qemuImg(subcommand: string, ...args: string[]): void {
  for (let attempt = 1; ; attempt++) {
    try {
      execFileSync(QEMU_IMG, [subcommand, '-q', ...args], { stdio: 'pipe' });
      return;
    } catch (error) {
      if (attempt >= 20 || !/accurate CPU usage/.test(String((error as { stderr?: unknown }).stderr)))
        throw error;
      // A third of the attempts fail on a busy two-core machine: pause a moment and try again.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
}

function createQcow2(size = '64M', ...extra: string[]): string {
  const file = path('disk.qcow2');
  qemuImg('create', '-f', 'qcow2', ...extra, file, size);
  return file;
}

function rawFile(bytes: number): string {
  const file = path('disk.raw');
  writeFileSync(file, randomBytes(bytes));
  return file;
}

function patch(file: string, offset: number, bytes: Buffer): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

async function rejected(
  file: string,
  declared: DiskFormat,
  reason: RegExp,
  opts: InspectOptions = {},
): Promise<DiskImageRejected> {
  let caught: unknown;
  try {
    await inspectDiskImage(file, declared, opts);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof DiskImageRejected, `expected a rejection, got ${String(caught)}`);
  assert.equal(caught.name, 'DiskImageRejected');
  assert.equal(caught.message, caught.reason);
  assert.match(caught.reason, reason);
  assert.ok(caught.reason.length < 400, 'reasons stay short');
  return caught;
}

/** A VMDK descriptor whose one flat extent is `target`: CVE-2024-32498's way of reading host files. */
function vmdkDescriptor(target: string): string {
  const file = path('descriptor.img');
  writeFileSync(
    file,
    [
      '# Disk DescriptorFile',
      'version=1',
      'CID=fffffffe',
      'parentCID=ffffffff',
      'createType="monolithicFlat"',
      '',
      `RW 2048 FLAT "${target}" 0`,
      '',
    ].join('\n'),
  );
  return file;
}

describe('inspectDiskImage accepts clean images', () => {
  test('a raw file', async () => {
    const file = rawFile(MiB);
    const result = await inspectDiskImage(file, 'raw');
    assert.equal(result.format, 'raw');
    assert.equal(result.virtualSizeBytes, MiB);
    assert.ok(result.actualSizeBytes > 0);
    assert.match(result.qemuImgVersion, /^qemu-img version \d+\.\d+/);
    assert.equal(result.leakedClusters, undefined);
    assert.equal(await qemuImgVersion(), result.qemuImgVersion);
  });

  test('a sparse raw file', async () => {
    const file = path('sparse.raw');
    execFileSync('truncate', ['-s', '100M', file]);
    const result = await inspectDiskImage(file, 'raw');
    assert.equal(result.virtualSizeBytes, 100 * MiB);
  });

  test('a fresh qcow2 of 64 MiB', async () => {
    const result = await inspectDiskImage(createQcow2('64M'), 'qcow2');
    assert.equal(result.format, 'qcow2');
    assert.equal(result.virtualSizeBytes, 64 * MiB);
    assert.ok(result.actualSizeBytes > 0 && result.actualSizeBytes < MiB);
    assert.equal(result.leakedClusters, 0);
  });

  test('a qcow2 with data, and a qcow2 v2 (compat=0.10)', async () => {
    const withData = createQcow2('64M');
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 1M', withData], { stdio: 'pipe' });
    assert.equal((await inspectDiskImage(withData, 'qcow2')).virtualSizeBytes, 64 * MiB);
    const v2 = createQcow2('16M', '-o', 'compat=0.10');
    assert.equal((await inspectDiskImage(v2, 'qcow2')).virtualSizeBytes, 16 * MiB);
  });

  test('a qcow2 with only leaked clusters is accepted and the leaks reported', async () => {
    const file = createQcow2('64M');
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 1M', file], { stdio: 'pipe' });
    // 64 KiB clusters: header, refcount table, refcount block (at 0x20000), L1, L2, 16 data clusters.
    // Append cluster 21 and give it a refcount of 1 that nothing references.
    const size = readFileSync(file).length;
    assert.equal(size, 21 * 65536);
    patch(file, size, Buffer.alloc(65536));
    patch(file, 0x20000 + 2 * 21, Buffer.from([0, 1]));
    const result = await inspectDiskImage(file, 'qcow2');
    assert.equal(result.leakedClusters, 1);
  });
});

describe('inspectDiskImage rejects images that reference host files', () => {
  test('a qcow2 with a backing file', async () => {
    const base = rawFile(MiB);
    const top = path('top.qcow2');
    qemuImg('create', '-f', 'qcow2', '-F', 'raw', '-b', base, top);
    await rejected(top, 'qcow2', /backing file/);
    // Also when uploaded as raw: the format confusion is caught first.
    await rejected(top, 'raw', /^declared raw but the content is a qcow2 image$/);
  });

  test('a qcow2 whose backing file is /etc/shadow', async () => {
    const top = path('shadow.qcow2');
    qemuImg('create', '-f', 'qcow2', '-F', 'raw', '-b', '/etc/shadow', '-u', top, '1M');
    await rejected(top, 'qcow2', /backing file/);
  });

  test('a qcow2 with an external data file', async () => {
    const data = path('data.raw');
    const file = createQcow2('64M', '-o', `data_file=${data}`);
    assert.ok(existsSync(data));
    await rejected(file, 'qcow2', /external data file/);
  });

  test('the header checks alone catch backing and data files (defence in depth)', () => {
    const base = rawFile(MiB);
    const top = path('top.qcow2');
    qemuImg('create', '-f', 'qcow2', '-F', 'raw', '-b', base, top);
    assert.throws(() => checkQcow2Header(readFileSync(top)), /backing file/);
    const file = createQcow2('64M', '-o', `data_file=${path('data.raw')}`);
    assert.throws(() => checkQcow2Header(readFileSync(file)), /external data file/);
    checkQcow2Header(readFileSync(createQcow2()));
  });

  test('a VMDK descriptor uploaded as raw', async () => {
    const secret = path('secret.txt');
    writeFileSync(secret, 'top secret\n');
    await rejected(vmdkDescriptor(secret), 'raw', /^declared raw but the content is a vmdk image$/);
  });

  test('no qemu-img run ever opens the file an image points at (strace)', async (t) => {
    try {
      execFileSync('strace', ['-o', '/dev/null', 'true'], { stdio: 'pipe' });
    } catch {
      t.skip('strace is not usable here');
      return;
    }
    const logs = path('strace');
    mkdirSync(logs);
    const wrapper = path('qemu-img-strace.sh');
    writeFileSync(
      wrapper,
      `#!/bin/sh\nexec strace -f -qq -e trace=open,openat,openat2,creat -o "${logs}/log.$$" ${QEMU_IMG} "$@"\n`,
    );
    chmodSync(wrapper, 0o755);
    const opts = { qemuImg: wrapper };

    const targets: string[] = [];
    const target = (name: string): string => {
      const file = path(name);
      writeFileSync(file, Buffer.alloc(MiB));
      targets.push(file);
      return file;
    };
    const backed = path('backed.qcow2');
    qemuImg('create', '-f', 'qcow2', '-F', 'raw', '-b', target('base.raw'), backed);
    await rejected(backed, 'qcow2', /backing file/, opts);
    await rejected(backed, 'raw', /declared raw/, opts);
    const dataFile = target('data.raw');
    const withData = createQcow2('1M', '-o', `data_file=${dataFile}`);
    await rejected(withData, 'qcow2', /external data file/, opts);
    await rejected(withData, 'raw', /declared raw/, opts);
    await rejected(vmdkDescriptor(target('extent.raw')), 'raw', /vmdk/, opts);
    // A clean image goes through every qemu-img step (version, probe, info, check) under strace.

    const clean = createQcow2('1M');
    await inspectDiskImage(clean, 'qcow2', opts);

    const traces = readdirSync(logs).map((name) => readFileSync(join(logs, name), 'utf8'));
    assert.ok(traces.length >= 4, `strace logged ${traces.length} runs`);
    const all = traces.join('\n');
    // The trace does see images being opened, so an absent path means "never opened". (The rejected
    // images above never reach qemu-img at all: Rampart's own header checks refuse them first.)
    assert.ok(all.includes(`"${clean}"`), 'the trace records the image qemu-img opened');
    for (const file of targets) assert.ok(!all.includes(file), `qemu-img opened ${file}`);
  });
});

describe('inspectDiskImage rejects format confusion and bad images', () => {
  test('a qcow2 declared as raw', async () => {
    await rejected(createQcow2(), 'raw', /^declared raw but the content is a qcow2 image$/);
  });

  test('a raw file declared as qcow2', async () => {
    await rejected(rawFile(MiB), 'qcow2', /^declared qcow2 but the content is raw data$/);
  });

  test('a LUKS volume declared as raw', async () => {
    const file = path('disk.luks');
    qemuImg(
      'create',
      '-f',
      'luks',
      '--object',
      'secret,id=sec0,data=x',
      '-o',
      'key-secret=sec0,iter-time=200,hash-alg=sha512',
      file,
      '4M',
    );
    await rejected(file, 'raw', /^declared raw but the content is a luks image$/);
  });

  test('a qcow2 with LUKS encryption', async () => {
    const file = createQcow2(
      '64M',
      '--object',
      'secret,id=sec0,data=x',
      '-o',
      'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=200,encrypt.hash-alg=sha512',
    );
    await rejected(file, 'qcow2', /encrypted/);
  });

  test('a virtual size over the limit', async () => {
    await rejected(createQcow2('64M'), 'qcow2', /virtual size 67108864 bytes exceeds the limit of 1048576/, {
      maxVirtualSizeBytes: MiB,
    });
    await rejected(rawFile(2 * MiB), 'raw', /exceeds the limit/, { maxVirtualSizeBytes: MiB });
    // The default limit is 2 TiB: a 3 TiB qcow2 costs nothing to create.
    await rejected(createQcow2('3T'), 'qcow2', /exceeds the limit of 2199023255552 bytes/);
    assert.equal((await inspectDiskImage(createQcow2('2T'), 'qcow2')).virtualSizeBytes, 2 * 1024 ** 4);
  });

  test('a symlink, a directory, a missing file', async () => {
    const target = rawFile(MiB);
    const link = path('link.raw');
    symlinkSync(target, link);
    await rejected(link, 'raw', /symbolic link/);
    const sub = path('dir');
    mkdirSync(sub);
    await rejected(sub, 'raw', /not a regular file/);
    await rejected(path('missing.raw'), 'raw', /cannot stat the image: ENOENT/);
  });

  test('a qcow2 with a zeroed refcount block', async () => {
    const file = createQcow2('64M');
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 1M', file], { stdio: 'pipe' });
    patch(file, 0x20000, Buffer.alloc(64));
    await rejected(file, 'qcow2', /^the qcow2 image is corrupt \(\d+ corruptions found\)$/);
  });

  test('a qcow2 whose L1 entry points at the refcount table', async () => {
    const file = createQcow2('64M');
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 1M', file], { stdio: 'pipe' });
    const l1 = Number(readFileSync(file).readBigUInt64BE(40));
    patch(file, l1, Buffer.from('8000000000010000', 'hex'));
    await rejected(file, 'qcow2', /corrupt/);
  });

  test('a qcow2 with a damaged header magic', async () => {
    const file = createQcow2('64M');
    patch(file, 0, Buffer.from('XXXX'));
    await rejected(file, 'qcow2', /^declared qcow2 but the content is raw data$/);
  });

  test('a qcow2 with the corrupt bit set', async () => {
    const file = createQcow2('64M');
    patch(file, 72 + 7, Buffer.from([0x02]));
    await rejected(file, 'qcow2', /marked corrupt/);
  });

  test('a truncated qcow2 header', async () => {
    const file = path('short.qcow2');
    writeFileSync(file, readFileSync(createQcow2()).subarray(0, 48));
    await rejected(file, 'qcow2', /truncated/);
  });
});

describe('inspectDiskImage handles qemu-img failures', () => {
  function wrapper(name: string, body: string): string {
    const file = path(name);
    writeFileSync(file, `#!/bin/sh\nif [ "$1" = --version ]; then exec ${QEMU_IMG} --version; fi\n${body}\n`);
    chmodSync(file, 0o755);
    return file;
  }

  test('a timeout rejects', async () => {
    const slow = wrapper('slow.sh', 'exec sleep 10');
    const started = Date.now();
    await rejected(rawFile(MiB), 'raw', /did not complete|killed/, { qemuImg: slow, timeoutMs: 300 });
    assert.ok(Date.now() - started < 5000);
  });

  test('a non-zero exit rejects with a short reason', async () => {
    const failing = wrapper('failing.sh', `printf '%0500d' 0 >&2; exit 1`);
    const error = await rejected(rawFile(MiB), 'raw', /failed \(exit 1\)/, { qemuImg: failing });
    assert.ok(error.reason.length < 300);
  });

  test('unparsable JSON rejects', async () => {
    const garbage = wrapper('garbage.sh', 'echo "{not json"');
    await rejected(rawFile(MiB), 'raw', /unparsable output/, { qemuImg: garbage });
  });

  test('a probe that disagrees with the declared format rejects', async () => {
    const liar = wrapper('liar.sh', `echo '{"format": "vmdk", "virtual-size": 1}'`);
    await rejected(rawFile(MiB), 'raw', /qemu-img says the content is a vmdk image/, { qemuImg: liar });
  });

  test('a missing qemu-img is a host error, not a rejection', async () => {
    await assert.rejects(
      inspectDiskImage(rawFile(MiB), 'raw', { qemuImg: path('no-such-qemu-img') }),
      (error: unknown) => error instanceof Error && !(error instanceof DiskImageRejected),
    );
  });
});

describe('sniffFormat', () => {
  const at = (offset: number, bytes: Buffer): Buffer => {
    const buf = Buffer.alloc(1024);
    bytes.copy(buf, offset);
    return buf;
  };
  const cases: [string, Buffer, Buffer?][] = [
    ['raw', Buffer.alloc(1024)],
    ['qcow2', at(0, Buffer.from('514649fb00000003', 'hex'))],
    ['qcow', at(0, Buffer.from('514649fb00000001', 'hex'))],
    ['qed', at(0, Buffer.from('QED\0', 'latin1'))],
    ['vmdk', at(0, Buffer.from('KDMV'))],
    ['vmdk', at(0, Buffer.from('COWD'))],
    ['vmdk', Buffer.from('# a comment\n\nversion=2\nCID=1\n')],
    ['vmdk', Buffer.from('\n\n# Disk DescriptorFile\n')],
    ['vhdx', at(0, Buffer.from('vhdxfile'))],
    ['vpc', at(0, Buffer.from('conectix'))],
    ['vdi', at(64, Buffer.from('7f10dabe', 'hex'))],
    ['luks', at(0, Buffer.from('4c554b53babe0001', 'hex'))],
    ['parallels', at(0, Buffer.from('WithoutFreeSpace'))],
    ['parallels', at(0, Buffer.from('WithouFreSpacExt'))],
    ['bochs', at(0, Buffer.from('Bochs Virtual HD Image\0'))],
    ['cloop', at(0, Buffer.from('#!/bin/sh\n#V2.0 Format\nmodprobe cloop'))],
    ['dmg', Buffer.alloc(1024), at(0, Buffer.from('koly'))],
    ['raw', Buffer.from('just some text\nversion=1\n')],
  ];
  for (const [expected, head, tail] of cases) {
    test(`${expected}: ${head.subarray(0, 12).toString('hex')}`, () => {
      assert.equal(sniffFormat(head, tail), expected);
    });
  }
});

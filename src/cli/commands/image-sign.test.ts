/**
 * `rampart image keygen | sign | verify-signature` end to end in a temp dir (no server), and the same
 * envelopes checked by scripts/verify-image-signature.sh with openssl alone.
 */
import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../program.js';
import { tempDir, testIo } from '../testing.js';

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('repository root not found');
    dir = parent;
  }
  return dir;
}
const SCRIPT = join(repoRoot(), 'scripts', 'verify-image-signature.sh');

function script(...args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile('bash', [SCRIPT, ...args], (err, stdout) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout });
    });
  });
}

// No server: a URL nothing listens on proves the commands make no request.
const ENV = { RAMPART_URL: 'http://127.0.0.1:1' };

void describe('image signing commands', () => {
  let dir: ReturnType<typeof tempDir>;
  let image: string;
  let other: string;
  beforeEach(() => {
    dir = tempDir();
    image = join(dir.path, 'tiny.img');
    other = join(dir.path, 'other.img');
    writeFileSync(image, Buffer.alloc(3 * 1024 * 1024 + 7, 0xab));
    writeFileSync(other, 'another image');
  });
  afterEach(() => dir.remove());

  async function keygen(prefix: string): Promise<string> {
    const io = testIo(ENV);
    assert.equal(await run(['image', 'keygen', '--out', join(dir.path, prefix)], io), 0, io.stderr.text);
    const keyid = /^Key id: +([0-9a-f]{64})$/m.exec(io.stdout.text)?.[1];
    assert.ok(keyid, io.stdout.text);
    return keyid;
  }

  void it('keygen writes a 0600 private key and a public key, prints the key id, never overwrites', async () => {
    const keyid = await keygen('alice');
    const key = join(dir.path, 'alice.key');
    const pub = join(dir.path, 'alice.pub');
    assert.equal(statSync(key).mode & 0o777, 0o600);
    assert.equal(statSync(pub).mode & 0o777, 0o644);
    assert.match(readFileSync(key, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
    assert.match(readFileSync(pub, 'utf8'), /^-----BEGIN PUBLIC KEY-----\n/);
    const der = Buffer.from(readFileSync(pub, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64');
    assert.equal(keyid, createHash('sha256').update(der).digest('hex'));

    const before = readFileSync(key, 'utf8');
    const again = testIo(ENV);
    assert.equal(await run(['image', 'keygen', '--out', join(dir.path, 'alice')], again), 2);
    assert.match(again.stderr.text, /refusing to overwrite .*alice\.(key|pub)/);
    assert.equal(readFileSync(key, 'utf8'), before);
  });

  void it('signs and verifies locally; another image, a tampered envelope or another key fail with 8', async () => {
    const keyid = await keygen('alice');
    await keygen('mallory');
    const envelope = join(dir.path, 'tiny.dsse.json');
    const io = testIo(ENV);
    const args = ['image', 'sign', image, '--key', join(dir.path, 'alice.key'), '--name', 'tiny'];
    assert.equal(await run([...args, '--out', envelope], io), 0, io.stderr.text);
    const sha256 = createHash('sha256').update(readFileSync(image)).digest('hex');
    assert.match(io.stdout.text, new RegExp(`^SHA-256: +${sha256}$`, 'm'));
    assert.match(io.stdout.text, new RegExp(`^Key id: +${keyid}$`, 'm'));
    assert.match(io.stdout.text, /^Format: +raw$/m);
    const written = JSON.parse(readFileSync(envelope, 'utf8')) as { payloadType: string; payload: string };
    assert.equal(written.payloadType, 'application/vnd.in-toto+json');
    assert.match(Buffer.from(written.payload, 'base64').toString(), /"signedAt":"2026-01-01T12:00:00.000Z"/);

    const verify = async (file: string, env: string, pub: string) => {
      const v = testIo(ENV);
      const code = await run(['image', 'verify-signature', file, '--envelope', env, '--pub', pub], v);
      return { code, out: v.stdout.text, err: v.stderr.text };
    };
    const alicePub = join(dir.path, 'alice.pub');
    const ok = await verify(image, envelope, alicePub);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /^Result: +OK$/m);
    assert.match(ok.out, /^Image name: +tiny$/m);

    const moved = await verify(other, envelope, alicePub);
    assert.equal(moved.code, 8);
    assert.match(moved.err, /^rampart: image signature verification failed: the signature is for sha256:/);
    const wrongKey = await verify(image, envelope, join(dir.path, 'mallory.pub'));
    assert.equal(wrongKey.code, 8);
    assert.match(wrongKey.err, /no signature by a trusted key/);
    const tampered = join(dir.path, 'tampered.json');
    writeFileSync(
      tampered,
      readFileSync(envelope, 'utf8').replace(
        /"payload": "(.)/,
        (_m, c: string) => `"payload": "${c === 'e' ? 'f' : 'e'}`,
      ),
    );
    const bad = await verify(image, tampered, alicePub);
    assert.equal(bad.code, 8);
    assert.match(bad.err, /does not verify|canonical|not UTF-8/);

    // Refuses to overwrite the envelope.
    const again = testIo(ENV);
    assert.equal(await run([...args, '--out', envelope], again), 2);
    assert.match(again.stderr.text, /refusing to overwrite/);
  });

  void it('refuses a private key that group or others can read, and a missing image', async () => {
    await keygen('alice');
    const key = join(dir.path, 'alice.key');
    chmodSync(key, 0o640);
    const io = testIo(ENV);
    assert.equal(await run(['image', 'sign', image, '--key', key], io), 2);
    assert.match(
      io.stderr.text,
      /refusing to use private key .*: group or others can access it \(mode 0640\)/,
    );
    assert.equal(existsSync(`${image}.dsse.json`), false);
    chmodSync(key, 0o600);
    const missing = testIo(ENV);
    assert.equal(await run(['image', 'sign', join(dir.path, 'nope.img'), '--key', key], missing), 3);
    const sniff = testIo(ENV);
    writeFileSync(other, Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb]), Buffer.alloc(100)]));
    assert.equal(
      await run(['image', 'sign', other, '--key', key, '-o', 'json'], sniff),
      0,
      sniff.stderr.text,
    );
    const summary = JSON.parse(sniff.stdout.text) as { format: string; envelope: string };
    assert.equal(summary.format, 'qcow2');
    assert.equal(summary.envelope, `${other}.dsse.json`);
  });

  void it('refuses an oversized envelope with 8', async () => {
    await keygen('alice');
    const big = join(dir.path, 'big.json');
    writeFileSync(big, ' '.repeat(65 * 1024));
    const io = testIo(ENV);
    const code = await run(
      ['image', 'verify-signature', image, '--envelope', big, '--pub', join(dir.path, 'alice.pub')],
      io,
    );
    assert.equal(code, 8);
    assert.match(io.stderr.text, /larger than 65536 bytes/);
  });

  void it('scripts/verify-image-signature.sh checks the same envelopes with openssl alone', async () => {
    const keyid = await keygen('alice');
    await keygen('mallory');
    const envelope = join(dir.path, 'tiny.dsse.json');
    const io = testIo(ENV);
    assert.equal(
      await run(['image', 'sign', image, '--key', join(dir.path, 'alice.key'), '--out', envelope], io),
      0,
    );
    const alicePub = join(dir.path, 'alice.pub');
    const sha256 = createHash('sha256').update(readFileSync(image)).digest('hex');

    const ok = await script(image, envelope, alicePub);
    assert.equal(ok.code, 0, ok.stdout);
    assert.match(ok.stdout, new RegExp(`^OK sha256:${sha256} key ${keyid}$`, 'm'));

    const moved = await script(other, envelope, alicePub);
    assert.equal(moved.code, 1);
    assert.match(moved.stdout, /FAIL: the signature is for sha256:/);

    const wrongKey = await script(image, envelope, join(dir.path, 'mallory.pub'));
    assert.equal(wrongKey.code, 1);
    assert.match(wrongKey.stdout, /FAIL: no single signature by key/);

    // Same payload length, one character changed: the signature no longer verifies.
    const text = readFileSync(envelope, 'utf8');
    const parsed = JSON.parse(text) as { payload: string };
    const payload = Buffer.from(parsed.payload, 'base64')
      .toString()
      .replace('"format":"raw"', '"format":"rax"');
    const tampered = join(dir.path, 'tampered.json');
    writeFileSync(tampered, text.replace(parsed.payload, Buffer.from(payload).toString('base64')));
    const bad = await script(image, tampered, alicePub);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /FAIL: signature by key .* does not verify/);
    // A signature relabelled with the trusted key id but made by another key does not verify either.
    const forged = testIo(ENV);
    const forgedPath = join(dir.path, 'forged.json');
    assert.equal(
      await run(
        ['image', 'sign', image, '--key', join(dir.path, 'mallory.key'), '--out', forgedPath],
        forged,
      ),
      0,
    );
    const malloryId = /^Key id: +([0-9a-f]{64})$/m.exec(forged.stdout.text)?.[1] ?? '';
    writeFileSync(forgedPath, readFileSync(forgedPath, 'utf8').replace(malloryId, keyid));
    assert.equal((await script(image, forgedPath, alicePub)).code, 1);

    assert.equal((await script(image, envelope)).code, 2);
  });
});

import assert from 'node:assert/strict';
import { createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { inspect } from 'node:util';
import { keyIdOf, trustedKey } from '../../common/dsse.js';
import { verifyImageSignature } from '../../common/in-toto.js';
import { PlatformSigner } from './platform-signer.js';

const dirs: string[] = [];
function freshDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-platform-signer-'));
  dirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const digest = createHash('sha256').update('a platform image').digest('hex');
const otherDigest = createHash('sha256').update('another image').digest('hex');
const image = { sha256: digest, format: 'kernel-initrd' as const, name: 'tiny', sizeBytes: 4096 };

void describe('PlatformSigner', () => {
  void it('creates the key file 0600 in a 0700 directory, and reloads the same key', () => {
    const dir = freshDir();
    const signer = PlatformSigner.load(dir);
    const path = join(dir, 'secrets', 'platform-signing.key');
    assert.equal(signer.path, path);
    assert.equal(signer.created, true);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'secrets')).mode & 0o777, 0o700);
    const pem = readFileSync(path, 'utf8');
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
    const privateKey = createPrivateKey(pem);
    assert.equal(privateKey.asymmetricKeyType, 'ed25519');
    assert.equal(signer.keyid, keyIdOf(privateKey));

    const again = PlatformSigner.load(dir);
    assert.equal(again.created, false);
    assert.equal(again.keyid, signer.keyid);
    assert.equal(again.publicKeyPem, signer.publicKeyPem);
    assert.match(signer.publicKeyPem, /^-----BEGIN PUBLIC KEY-----\n/);
    assert.deepEqual(signer.trustedKey().keyid, signer.keyid);
  });

  void it('keeps the private key out of logs and JSON', () => {
    const dir = freshDir();
    const signer = PlatformSigner.load(dir);
    const pem = readFileSync(join(dir, 'secrets', 'platform-signing.key'), 'utf8');
    const body = pem.split('\n')[1]!;
    for (const shown of [inspect(signer), JSON.stringify(signer), String(signer), inspect({ signer })]) {
      assert.ok(!shown.includes(body), shown);
    }
    assert.equal(String(signer), `PlatformSigner(${signer.keyid})`);
    assert.deepEqual(JSON.parse(JSON.stringify(signer)), { keyid: signer.keyid });
    assert.equal(
      Object.keys(signer).some((k) => /private/i.test(k)),
      false,
    );
  });

  void it('refuses a key file accessible by group or others', () => {
    const dir = freshDir();
    const signer = PlatformSigner.load(dir);
    const path = join(dir, 'secrets', 'platform-signing.key');
    chmodSync(path, 0o644);
    assert.throws(
      () => PlatformSigner.load(dir),
      /has mode 0644; it must not be accessible by group or others/,
    );
    chmodSync(path, 0o640);
    assert.throws(() => PlatformSigner.load(dir), /mode 0640/);
    chmodSync(path, 0o604);
    assert.throws(() => PlatformSigner.load(dir), /mode 0604/);
    chmodSync(path, 0o600);
    assert.equal(PlatformSigner.load(dir).keyid, signer.keyid);
  });

  void it('refuses a symlink or a directory in place of the key file', () => {
    const dir = freshDir();
    PlatformSigner.load(dir);
    const path = join(dir, 'secrets', 'platform-signing.key');
    const linkDir = freshDir();
    mkdirSync(join(linkDir, 'secrets'), { mode: 0o700 });
    symlinkSync(path, join(linkDir, 'secrets', 'platform-signing.key'));
    assert.throws(() => PlatformSigner.load(linkDir), /cannot open platform signing key file/);
    // A dangling symlink is not "absent": no key is created through it.
    const dangling = freshDir();
    mkdirSync(join(dangling, 'secrets'), { mode: 0o700 });
    symlinkSync(join(dangling, 'elsewhere'), join(dangling, 'secrets', 'platform-signing.key'));
    assert.throws(() => PlatformSigner.load(dangling), /cannot open platform signing key file/);
    assert.throws(() => statSync(join(dangling, 'elsewhere')), /ENOENT/);

    const dirDir = freshDir();
    mkdirSync(join(dirDir, 'secrets', 'platform-signing.key'), { recursive: true, mode: 0o700 });
    assert.throws(() => PlatformSigner.load(dirDir), /not a regular file/);
  });

  void it('refuses a key file that is not an Ed25519 PKCS8 private key', () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'secrets'), { mode: 0o700 });
    const path = join(dir, 'secrets', 'platform-signing.key');
    writeFileSync(path, 'garbage\n', { mode: 0o600 });
    assert.throws(() => PlatformSigner.load(dir), /is not a PKCS8 PEM private key/);
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    assert.throws(() => PlatformSigner.load(dir), /holds a ec key, not Ed25519/);
  });

  void it('signs images so that the signature verifies for that digest only, with the platform key only', () => {
    const signer = PlatformSigner.load(freshDir());
    const envelope = signer.signImage(image);
    assert.equal(typeof envelope, 'string');
    const verified = verifyImageSignature(envelope, digest, [signer.trustedKey()]);
    assert.ok(verified.ok, verified.ok ? '' : verified.reason);
    assert.equal(verified.keyid, signer.keyid);
    assert.equal(verified.statement.subject[0].name, 'tiny');
    assert.equal(verified.statement.predicate.format, 'kernel-initrd');
    assert.equal(verified.statement.predicate.sizeBytes, 4096);

    const moved = verifyImageSignature(envelope, otherDigest, [signer.trustedKey()]);
    assert.equal(moved.ok, false);
    assert.match(moved.ok ? '' : moved.reason, /not this image/);

    const stranger = trustedKey(generateKeyPairSync('ed25519').publicKey);
    const untrusted = verifyImageSignature(envelope, digest, [stranger]);
    assert.equal(untrusted.ok, false);

    const otherSigner = PlatformSigner.load(freshDir());
    assert.equal(verifyImageSignature(envelope, digest, [otherSigner.trustedKey()]).ok, false);
    assert.throws(() => signer.signImage({ ...image, sha256: 'not-a-digest' }), /sha256/);
  });
});

/**
 * The host CA: created once with a 0600 key (a group-readable key is refused), signs P-256 CSRs into
 * client certificates whose subject the server sets (CN = the host id, never the CSR's subject),
 * refuses other key types, foreign subjects and broken CSRs, and never reuses a serial.
 */
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { run } from '../../common/subprocess.js';
import { newId } from '../../common/ids.js';
import { HostCa } from './host-ca.js';

async function csr(dir: string, keyPem: string, subject: string): Promise<string> {
  const file = join(dir, `k-${newId()}.pem`);
  writeFileSync(file, keyPem, { mode: 0o600 });
  return (await run('openssl', ['req', '-new', '-key', file, '-subj', subject])).stdout;
}

function ecKey(): string {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
}

test('the host CA signs P-256 CSRs with the server-chosen subject and unique serials', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-ca-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await HostCa.open(dir);
  assert.equal(statSync(join(dir, 'secrets', 'host-ca.key')).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'secrets')).mode & 0o777, 0o700);
  const caCert = new X509Certificate(ca.certificatePem);
  assert.ok(caCert.ca);
  // Opening again reuses the same CA.
  assert.equal((await HostCa.open(dir)).certificatePem, ca.certificatePem);

  const hostId = newId();
  const request = await csr(dir, ecKey(), '/CN=node-1');
  const issued = await ca.signHostCsr(request, hostId, 'node-1');
  const cert = new X509Certificate(issued.certificate);
  assert.equal(cert.subject, `CN=${hostId}`);
  assert.ok(cert.checkIssued(caCert) && cert.verify(caCert.publicKey));
  assert.equal(cert.ca, false);
  assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.2'], 'clientAuth only');
  assert.equal(issued.name, 'node-1');
  const days = (issued.notAfter.getTime() - issued.notBefore.getTime()) / 86_400_000;
  assert.ok(days > 364 && days < 367, `about a year (${days})`);

  // Serials are unique.
  const serials = new Set([issued.serial]);
  for (let i = 0; i < 5; i++) serials.add((await ca.signHostCsr(request, newId(), null)).serial);
  assert.equal(serials.size, 6);

  // Refused: another key type, a CN other than the expected name, extra subject fields, garbage.
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
  await assert.rejects(ca.signHostCsr(await csr(dir, rsa, '/CN=node-1'), newId(), 'node-1'), /EC P-256/);
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
  await assert.rejects(ca.signHostCsr(await csr(dir, p384, '/CN=node-1'), newId(), 'node-1'), /EC P-256/);
  await assert.rejects(ca.signHostCsr(request, newId(), 'node-2'), /CN must be/);
  await assert.rejects(
    ca.signHostCsr(await csr(dir, ecKey(), '/CN=node-1/O=Evil CA'), newId(), 'node-1'),
    /exactly CN=/,
  );
  await assert.rejects(ca.signHostCsr('not a csr', newId(), null), /PEM certificate request/);
  // A CSR whose signature does not match (last byte of the signature flipped).
  const der = Buffer.from(request.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 1]! ^= 0x01;
  const lines = der
    .toString('base64')
    .match(/.{1,64}/g)!
    .join('\n');
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${lines}\n-----END CERTIFICATE REQUEST-----\n`;
  await assert.rejects(ca.signHostCsr(tampered, newId(), null), /verif|valid/);

  // The listener's certificate names its host.
  const server = await ca.serverCertificate('127.0.0.1');
  const serverCert = new X509Certificate(server.certificate);
  assert.equal(serverCert.checkIP('127.0.0.1'), '127.0.0.1');
  assert.ok(serverCert.checkIssued(caCert));
});

test('a CA key readable by group or others is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-ca-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await HostCa.open(dir);
  chmodSync(join(dir, 'secrets', 'host-ca.key'), 0o640);
  await assert.rejects(HostCa.open(dir), /group or others/);
});

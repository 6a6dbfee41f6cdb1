/**
 * The agent's half of certificate renewal, against the real host CA (openssl): a new key and CSR, the
 * signed certificate installed only when it is from the pinned CA, for this host id and for that key
 * (anything else is refused and the credentials on disk stay as they were), and a renewal interrupted
 * between its renames finished or undone when the credentials are next loaded.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { newId } from '../../common/ids.js';
import { HostCa } from '../../server/cluster/host-ca.js';
import { CertificateRenewal } from './certificate-renewal.js';
import { CA_CERT_FILE, HOST_CERT_FILE, HOST_KEY_FILE } from './host-files.js';
import { loadHostCredentials } from './server-dialer.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-renewal-'));
after(() => rmSync(root, { recursive: true, force: true }));

let ca: HostCa;
let otherCa: HostCa;

/** An agent data directory that joined as `hostId` (`node-1`): key, certificate, CA, host id. */
async function joinedHost(
  name: string,
): Promise<{ dir: string; hostId: string; renewal: CertificateRenewal; installs: () => number }> {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const hostId = newId();
  writeFileSync(join(dir, CA_CERT_FILE), ca.certificatePem);
  writeFileSync(join(dir, 'host-id'), `${hostId}\n`);
  let installed = 0;
  const renewal = new CertificateRenewal(dir, () => installed++);
  // The join's credentials, made the same way.
  const { csr } = await renewal.request('node-1');
  await renewal.install((await ca.signHostCsr(csr, hostId, 'node-1')).certificate);
  installed = 0;
  return { dir, hostId, renewal, installs: () => installed };
}

function matches(dir: string): boolean {
  const certificate = new X509Certificate(readFileSync(join(dir, HOST_CERT_FILE)));
  return certificate.checkPrivateKey(createPrivateKey(readFileSync(join(dir, HOST_KEY_FILE))));
}

describe('agent certificate renewal', () => {
  before(async () => {
    ca = await HostCa.open(join(root, 'server'));
    otherCa = await HostCa.open(join(root, 'other-server'));
  });

  test('a new key and CSR, then the signed certificate replaces the credentials', async () => {
    const host = await joinedHost('renew');
    const oldKey = readFileSync(join(host.dir, HOST_KEY_FILE), 'utf8');
    const oldCert = readFileSync(join(host.dir, HOST_CERT_FILE), 'utf8');
    const { csr } = await host.renewal.request('node-1');
    assert.match(csr, /^-----BEGIN CERTIFICATE REQUEST-----/);
    // Until the install, the credentials in use are untouched.
    assert.equal(readFileSync(join(host.dir, HOST_KEY_FILE), 'utf8'), oldKey);
    const signed = await ca.signHostCsr(csr, host.hostId, 'node-1');
    const installed = await host.renewal.install(signed.certificate);
    assert.equal(installed.serial, signed.serial);
    assert.equal(installed.notAfter, signed.notAfter.toISOString());
    assert.equal(host.installs(), 1, 'the dialer is told');
    assert.notEqual(readFileSync(join(host.dir, HOST_KEY_FILE), 'utf8'), oldKey, 'a new key');
    assert.notEqual(readFileSync(join(host.dir, HOST_CERT_FILE), 'utf8'), oldCert);
    assert.ok(matches(host.dir), 'the new key and certificate belong together');
    assert.ok(!existsSync(join(host.dir, `${HOST_KEY_FILE}.next`)));
    const credentials = loadHostCredentials(host.dir)!;
    assert.equal(credentials.certificate, signed.certificate);
    // A second install of the same answer has no key waiting.
    await assert.rejects(host.renewal.install(signed.certificate), /no certificate was requested/);
  });

  test('a certificate from another CA, for another host or for another key is refused', async () => {
    const host = await joinedHost('refuse');
    const before = [HOST_KEY_FILE, HOST_CERT_FILE].map((f) => readFileSync(join(host.dir, f), 'utf8'));
    const { csr } = await host.renewal.request('node-1');
    await assert.rejects(
      host.renewal.install((await otherCa.signHostCsr(csr, host.hostId, 'node-1')).certificate),
      /not signed by the CA pinned at join/,
    );
    await assert.rejects(
      host.renewal.install((await ca.signHostCsr(csr, newId(), 'node-1')).certificate),
      /names CN=.*, not this host/,
    );
    const stranger = await joinedHost('stranger');
    const { csr: strangerCsr } = await stranger.renewal.request('node-1');
    await assert.rejects(
      host.renewal.install((await ca.signHostCsr(strangerCsr, host.hostId, 'node-1')).certificate),
      /not for the key this host made/,
    );
    await assert.rejects(host.renewal.install('not a certificate'), /not a valid X\.509 certificate/);
    assert.deepEqual(
      [HOST_KEY_FILE, HOST_CERT_FILE].map((f) => readFileSync(join(host.dir, f), 'utf8')),
      before,
      'the credentials in use are unchanged',
    );
    assert.equal(host.installs(), 0);
  });

  test('a renewal interrupted between its renames is finished, or undone, at the next load', async () => {
    const host = await joinedHost('interrupted');
    const { csr } = await host.renewal.request('node-1');
    const signed = await ca.signHostCsr(csr, host.hostId, 'node-1');
    // Crashed after the key was renamed, before the certificate was: new key, old certificate.
    writeFileSync(join(host.dir, `${HOST_CERT_FILE}.next`), signed.certificate);
    rmSync(join(host.dir, HOST_KEY_FILE));
    writeFileSync(join(host.dir, HOST_KEY_FILE), readFileSync(join(host.dir, `${HOST_KEY_FILE}.next`)), {
      mode: 0o600,
    });
    rmSync(join(host.dir, `${HOST_KEY_FILE}.next`));
    assert.ok(!matches(host.dir), 'the pair on disk does not match');
    assert.equal(loadHostCredentials(host.dir)!.certificate, signed.certificate);
    assert.ok(matches(host.dir));
    assert.ok(!existsSync(join(host.dir, `${HOST_CERT_FILE}.next`)));

    // Crashed before the key was renamed: the new certificate is dropped, the old pair stays.
    const again = await host.renewal.request('node-1');
    const next = await ca.signHostCsr(again.csr, host.hostId, 'node-1');
    writeFileSync(join(host.dir, `${HOST_CERT_FILE}.next`), next.certificate);
    assert.equal(loadHostCredentials(host.dir)!.certificate, signed.certificate);
    assert.ok(matches(host.dir));
    assert.ok(!existsSync(join(host.dir, `${HOST_CERT_FILE}.next`)));
  });
});

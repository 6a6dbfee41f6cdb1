/**
 * The agent's half of host certificate renewal (the server drives it over the authenticated link:
 * certificate.request, then certificate.install).
 *
 * - request: a fresh P-256 key is made here with openssl into `host.key.next` (0600) and a CSR with
 *   CN = the host name is answered. The key never leaves the host.
 * - install: the certificate must be signed by the CA pinned at join, name this host's id (CN), and
 *   hold the public key of `host.key.next`; only then are the files replaced: `host.crt.next` is
 *   written, `host.key.next` renamed over `host.key`, and `host.crt.next` over `host.crt`.
 *
 * A crash between those renames leaves a new key beside the old certificate; completeInterruptedRenewal
 * (called before the credentials are loaded) finishes the install when `host.crt.next` matches
 * `host.key`, and otherwise drops the leftovers, so the pair on disk always matches.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSecretFile, readSecretFile } from '../../common/secret-file.js';
import { run } from '../../common/subprocess.js';
import { CA_CERT_FILE, HOST_CERT_FILE, HOST_KEY_FILE } from './host-files.js';

const NEXT_KEY_FILE = `${HOST_KEY_FILE}.next`;
const NEXT_CERT_FILE = `${HOST_CERT_FILE}.next`;

/** Finishes or undoes a renewal a crash interrupted (see the file comment). */
export function completeInterruptedRenewal(dataDir: string): void {
  const nextCert = join(dataDir, NEXT_CERT_FILE);
  if (!existsSync(nextCert)) return;
  const key = readSecretFile(join(dataDir, HOST_KEY_FILE), 'host key');
  let matches: boolean;
  try {
    matches =
      key !== null && new X509Certificate(readFileSync(nextCert)).checkPrivateKey(createPrivateKey(key));
  } catch {
    matches = false;
  }
  if (matches) renameSync(nextCert, join(dataDir, HOST_CERT_FILE));
  else rmSync(nextCert, { force: true });
}

export class CertificateRenewal {
  private readonly openssl: string;

  constructor(
    private readonly dataDir: string,
    /** Called after a new certificate was installed (the dialer reloads its credentials). */
    private readonly onInstalled: () => void,
    options: { openssl?: string } = {},
  ) {
    this.openssl = options.openssl ?? 'openssl';
  }

  /** A fresh key kept aside, and its CSR with CN = `subject`. */
  async request(subject: string): Promise<{ csr: string }> {
    const keyPath = join(this.dataDir, NEXT_KEY_FILE);
    rmSync(keyPath, { force: true });
    const { stdout: key } = await run(this.openssl, [
      'genpkey',
      '-algorithm',
      'EC',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
    ]);
    createSecretFile(keyPath, Buffer.from(key));
    const { stdout: csr } = await run(this.openssl, [
      'req',
      '-new',
      '-key',
      keyPath,
      '-subj',
      `/CN=${subject}`,
    ]);
    return { csr };
  }

  /** Checks `certificatePem` and makes it and the key set aside this host's credentials. */
  async install(certificatePem: string): Promise<{ serial: string; notAfter: string }> {
    const keyPath = join(this.dataDir, NEXT_KEY_FILE);
    const key = readSecretFile(keyPath, 'new host key');
    if (!key) throw new Error('no certificate was requested: no new key is waiting');
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(certificatePem);
    } catch {
      throw new Error('the new certificate is not a valid X.509 certificate');
    }
    const ca = new X509Certificate(readFileSync(join(this.dataDir, CA_CERT_FILE)));
    if (!certificate.checkIssued(ca) || !certificate.verify(ca.publicKey))
      throw new Error('the new certificate is not signed by the CA pinned at join');
    const hostId = readFileSync(join(this.dataDir, 'host-id'), 'utf8').trim();
    if (certificate.subject.trim() !== `CN=${hostId}`)
      throw new Error(`the new certificate names ${certificate.subject.trim()}, not this host (${hostId})`);
    if (!certificate.checkPrivateKey(createPrivateKey(key)))
      throw new Error('the new certificate is not for the key this host made');
    const now = Date.now();
    if (
      new Date(certificate.validFrom).getTime() > now + 300_000 ||
      new Date(certificate.validTo).getTime() <= now
    )
      throw new Error('the new certificate is not valid now');
    writeFileSync(join(this.dataDir, NEXT_CERT_FILE), certificatePem, { mode: 0o644 });
    renameSync(keyPath, join(this.dataDir, HOST_KEY_FILE));
    renameSync(join(this.dataDir, NEXT_CERT_FILE), join(this.dataDir, HOST_CERT_FILE));
    this.onInstalled();
    return {
      serial: certificate.serialNumber.toUpperCase().replace(/^0+(?=.)/, ''),
      notAfter: new Date(certificate.validTo).toISOString(),
    };
  }
}

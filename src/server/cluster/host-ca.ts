/**
 * The server's small certificate authority for remote hosts. On first use it creates an EC P-256 key
 * (`<data>/secrets/host-ca.key`, 0600 in a 0700 directory, refused when group/other can read it) and a
 * self-signed CA certificate (`host-ca.crt`), with the `openssl` CLI (Node cannot create X.509
 * certificates). It signs host CSRs into client certificates and makes the agent listener's server
 * certificate.
 *
 * A CSR is trusted for its public key only: its self-signature is verified, the key must be EC P-256,
 * and its subject must be exactly `CN=<host name>` with the name the server expects. The certificate's
 * subject is set by the server (CN = the host id it assigned), never copied from the CSR; the serial
 * is 128 random bits (recorded in the database by the caller, where revocation is kept).
 */
import { X509Certificate, createHash, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { InvalidInputError } from '../../api/errors.js';
import { isUuid } from '../../common/ids.js';
import { createSecretFile, readSecretFile } from '../../common/secret-file.js';
import { run } from '../../common/subprocess.js';

/** Host certificates are valid this long. */
export const HOST_CERT_DAYS = 365;
const CA_DAYS = 3650;
/** A CSR larger than this is refused before anything parses it. */
export const MAX_CSR_PEM_BYTES = 8192;
export const HOSTNAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$';
const HOSTNAME = new RegExp(HOSTNAME_PATTERN);
const CSR_PEM =
  /^-----BEGIN CERTIFICATE REQUEST-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE REQUEST-----\r?\n?$/;

export interface IssuedCertificate {
  certificate: string;
  /** Uppercase hex without leading zeros, as node:tls reports a peer certificate's serial. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

/** A serial of 128 random bits whose first byte is 0x10..0x7f: positive, and no leading zero in hex. */
function newSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x6f) | 0x10;
  return bytes.toString('hex').toUpperCase();
}

/** `sha256:<hex>` of a certificate's DER: what a joining agent compares the CA it receives with. */
export function certificateFingerprint(pem: string): string {
  return `sha256:${createHash('sha256').update(new X509Certificate(pem).raw).digest('hex')}`;
}

export function normalizeSerial(serial: string): string {
  return serial.toUpperCase().replace(/^0+(?=.)/, '');
}

export class HostCa {
  private constructor(
    private readonly keyPath: string,
    private readonly certPath: string,
    /** The CA certificate (PEM): handed to agents at join, pinned by them. */
    readonly certificatePem: string,
    private readonly secretsDir: string,
    private readonly openssl: string,
  ) {}

  /** Opens the CA in `<dataDir>/secrets/`, creating its key and certificate on first use. */
  static async open(dataDir: string, options: { openssl?: string } = {}): Promise<HostCa> {
    const openssl = options.openssl ?? 'openssl';
    const dir = join(dataDir, 'secrets');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const dirMode = statSync(dir).mode & 0o777;
    if (dirMode & 0o077)
      throw new Error(`${dir} must not be accessible by group or others (mode ${dirMode.toString(8)})`);
    const keyPath = join(dir, 'host-ca.key');
    const certPath = join(dir, 'host-ca.crt');
    const existing = readSecretFile(keyPath, 'host CA key');
    existing?.fill(0);
    if (existing === null) {
      const { stdout } = await run(openssl, [
        'genpkey',
        '-algorithm',
        'EC',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
      ]);
      createSecretFile(keyPath, Buffer.from(stdout));
      rmSync(certPath, { force: true });
    }
    // Checks the key file's mode and owner again (also when it existed before).
    readSecretFile(keyPath, 'host CA key')?.fill(0);
    if (!existsSync(certPath)) {
      const { stdout } = await run(openssl, [
        'req',
        '-x509',
        '-new',
        '-key',
        keyPath,
        '-sha256',
        '-days',
        String(CA_DAYS),
        '-subj',
        '/CN=Rampart host CA',
        '-addext',
        'basicConstraints=critical,CA:TRUE,pathlen:0',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ]);
      writeFileSync(certPath, stdout, { mode: 0o644 });
    }
    const pem = readFileSync(certPath, 'utf8');
    const cert = new X509Certificate(pem);
    if (!cert.ca) throw new Error(`${certPath} is not a CA certificate`);
    return new HostCa(keyPath, certPath, pem, dir, openssl);
  }

  /**
   * Signs a host's CSR into a client certificate with CN = `hostId`. `expectedName`: the host name the
   * CSR's CN must be (null: any valid host name). Answers the certificate and the CSR's name.
   */
  async signHostCsr(
    csrPem: string,
    hostId: string,
    expectedName: string | null,
  ): Promise<IssuedCertificate & { name: string }> {
    if (!isUuid(hostId)) throw new Error('host id must be a UUID');
    const name = await this.checkCsr(csrPem, expectedName);
    const issued = await this.sign(csrPem, hostId, [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=clientAuth',
      'subjectKeyIdentifier=hash',
      'authorityKeyIdentifier=keyid',
    ]);
    return { ...issued, name };
  }

  /**
   * A fresh key and server certificate for the agent listener (serverAuth, SAN = `host`), made at each
   * start (the key lives in memory only; the short-lived CSR files are in a 0700 directory).
   */
  async serverCertificate(host: string): Promise<{ key: string; certificate: string }> {
    const san = isIP(host) ? `IP:${host}` : `DNS:${host}`;
    if (!isIP(host) && !HOSTNAME.test(host)) throw new Error(`${host} is not a host name or IP address`);
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const key = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const csr = await this.withTempDir(async (dir) => {
      const keyFile = join(dir, 'listener.key');
      writeFileSync(keyFile, key, { mode: 0o600, flag: 'wx' });
      const { stdout } = await run(this.openssl, [
        'req',
        '-new',
        '-key',
        keyFile,
        '-subj',
        '/CN=rampart-agent-listener',
      ]);
      return stdout;
    });
    const issued = await this.sign(csr, 'rampart-agent-listener', [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      `subjectAltName=${san}`,
    ]);
    return { key, certificate: issued.certificate };
  }

  /** Verifies the CSR's self-signature, its key type (EC P-256) and subject; answers its CN. */
  private async checkCsr(csrPem: string, expectedName: string | null): Promise<string> {
    if (Buffer.byteLength(csrPem) > MAX_CSR_PEM_BYTES || !CSR_PEM.test(csrPem))
      throw new InvalidInputError('csr must be one PEM certificate request');
    const out = await this.withTempDir(async (dir) => {
      const file = join(dir, 'host.csr');
      writeFileSync(file, csrPem, { mode: 0o600, flag: 'wx' });
      try {
        return await run(this.openssl, [
          'req',
          '-in',
          file,
          '-noout',
          '-verify',
          '-pubkey',
          '-subject',
          '-nameopt',
          'RFC2253',
        ]);
      } catch {
        throw new InvalidInputError('csr is not a valid, self-signed certificate request');
      }
    });
    if (!/verify OK/.test(`${out.stdout}\n${out.stderr}`))
      throw new InvalidInputError('csr signature does not verify');
    const pubkey = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/.exec(out.stdout)?.[0];
    if (!pubkey) throw new InvalidInputError('csr has no public key');
    const key = createPublicKey(pubkey);
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
      throw new InvalidInputError('csr key must be EC P-256');
    const subject = /^subject=(.*)$/m.exec(out.stdout)?.[1]?.trim() ?? '';
    const cn = /^CN=([A-Za-z0-9][A-Za-z0-9.-]{0,62})$/.exec(subject)?.[1];
    if (!cn) throw new InvalidInputError('csr subject must be exactly CN=<host name>');
    if (expectedName !== null && cn !== expectedName)
      throw new InvalidInputError(`csr CN must be the host name the join token is for (${expectedName})`);
    return cn;
  }

  private async sign(csrPem: string, cn: string, extensions: string[]): Promise<IssuedCertificate> {
    const serial = newSerial();
    const certificate = await this.withTempDir(async (dir) => {
      const csrFile = join(dir, 'req.csr');
      const extFile = join(dir, 'ext.cnf');
      writeFileSync(csrFile, csrPem, { mode: 0o600, flag: 'wx' });
      writeFileSync(extFile, `${extensions.join('\n')}\n`, { mode: 0o600, flag: 'wx' });
      const { stdout } = await run(this.openssl, [
        'x509',
        '-req',
        '-in',
        csrFile,
        '-CA',
        this.certPath,
        '-CAkey',
        this.keyPath,
        '-set_serial',
        `0x${serial}`,
        '-days',
        String(HOST_CERT_DAYS),
        '-sha256',
        '-extfile',
        extFile,
        '-subj',
        `/CN=${cn}`,
      ]);
      return stdout;
    });
    const cert = new X509Certificate(certificate);
    if (
      normalizeSerial(cert.serialNumber) !== serial ||
      !cert.checkIssued(new X509Certificate(this.certificatePem))
    )
      throw new Error('openssl produced an unexpected certificate');
    return { certificate, serial, notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo) };
  }

  private async withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
    const dir = mkdtempSync(join(this.secretsDir, 'ca-work-'));
    try {
      return await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

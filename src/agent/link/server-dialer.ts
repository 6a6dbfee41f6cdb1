/**
 * Remote mode: the agent dials the server's agent listener over TLS 1.3 with the key and host
 * certificate it got at join, verifies the server against the CA it received then (pinned: no system
 * CAs), and hands each connected socket to ServerLink.accept (with heartbeats). A lost connection is
 * dialed again with capped exponential backoff (a connection that held for a while resets it).
 *
 * The join itself (`rampart agent join`) is here too: a P-256 key made locally with openssl (it never
 * leaves the host), a CSR with CN = the host name, POST /v1/hosts/join, and the answer stored in the
 * data directory: `host.key` (0600), `host.crt`, `ca.crt`, `server-endpoint`, `host-id`.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { isUuid } from '../../common/ids.js';
import type { Logger } from '../../common/logger.js';
import { createSecretFile, readSecretFile } from '../../common/secret-file.js';
import { run } from '../../common/subprocess.js';
import { completeInterruptedRenewal } from './certificate-renewal.js';
import { CA_CERT_FILE, ENDPOINT_FILE, HOST_CERT_FILE, HOST_KEY_FILE } from './host-files.js';
import type { ServerLink } from './server-link.js';

export { CA_CERT_FILE, ENDPOINT_FILE, HOST_CERT_FILE, HOST_KEY_FILE };

export interface HostCredentials {
  key: Buffer;
  certificate: string;
  ca: string;
}

/** The credentials in an agent data directory, or null when the host has not joined. */
export function loadHostCredentials(dataDir: string): HostCredentials | null {
  completeInterruptedRenewal(dataDir);
  const certFile = join(dataDir, HOST_CERT_FILE);
  if (!existsSync(certFile)) return null;
  const key = readSecretFile(join(dataDir, HOST_KEY_FILE), 'host key');
  if (!key) throw new Error(`${dataDir} has a host certificate but no ${HOST_KEY_FILE}`);
  return {
    key,
    certificate: readFileSync(certFile, 'utf8'),
    ca: readFileSync(join(dataDir, CA_CERT_FILE), 'utf8'),
  };
}

/** The endpoints stored at join (host:port, one per line: every server replica's), or []. */
export function storedEndpoints(dataDir: string): string[] {
  const file = join(dataDir, ENDPOINT_FILE);
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
}

export function parseEndpoint(endpoint: string): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(endpoint);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port < 1 || port > 65535)
    throw new Error(`server endpoint must be HOST:PORT, got ${endpoint}`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

export interface DialerOptions {
  /** The server replicas' agent listeners: dialed in turn, the next one after a link closes. */
  endpoints: readonly string[];
  credentials: HostCredentials;
  link: ServerLink;
  log: Logger;
  heartbeatMs: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export class ServerDialer {
  private stopped = false;
  private socket: TLSSocket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;
  private next = 0;

  constructor(private readonly options: DialerOptions) {
    if (options.endpoints.length === 0) throw new Error('no server endpoint to dial');
    for (const endpoint of options.endpoints) parseEndpoint(endpoint);
  }

  start(): void {
    this.stopped = false;
    this.dial();
  }

  /**
   * New credentials (a renewed certificate): the current connection is closed once the reply that
   * installed them is on its way, and the next dial presents them.
   */
  useCredentials(credentials: HostCredentials): void {
    this.options.credentials = credentials;
    const socket = this.socket;
    if (socket) setTimeout(() => socket.end(), 500).unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.destroy();
  }

  private dial(): void {
    if (this.stopped) return;
    const o = this.options;
    const endpoint = o.endpoints[this.next % o.endpoints.length]!;
    // The next attempt, whatever ends this one, goes to the next replica (a lost replica is skipped).
    this.next = (this.next + 1) % o.endpoints.length;
    const { host, port } = parseEndpoint(endpoint);
    const socket = connect({
      host,
      port,
      key: o.credentials.key,
      cert: o.credentials.certificate,
      // Pinned: only the CA received at join; the system's CAs are not consulted.
      ca: [o.credentials.ca],
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    });
    this.socket = socket;
    let connectedAt = 0;
    socket.once('secureConnect', () => {
      connectedAt = Date.now();
      socket.setKeepAlive(true, 10_000);
      o.log.info({ server: endpoint }, 'connected to the server');
      o.link.accept(socket, { heartbeatMs: o.heartbeatMs });
    });
    socket.on('error', (error: Error) =>
      o.log.warn({ server: endpoint, err: error.message }, 'server link error'),
    );
    socket.once('close', () => {
      if (this.socket === socket) this.socket = null;
      // A connection that held for a while resets the backoff; refusals right away grow it, once
      // every replica has refused in turn.
      this.failures = connectedAt && Date.now() - connectedAt > 10_000 ? 0 : this.failures + 1;
      const round = Math.max(0, this.failures - o.endpoints.length);
      const delay = Math.min((o.minBackoffMs ?? 500) * 2 ** Math.min(round, 16), o.maxBackoffMs ?? 30_000);
      if (!this.stopped) o.log.warn({ server: endpoint, retryInMs: delay }, 'server link closed');
      this.schedule(Math.max(o.minBackoffMs ?? 500, delay));
    });
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.dial();
    }, ms);
  }
}

export interface JoinAnswer {
  hostId: string;
  hostname: string;
  certificate: string;
  caCertificate: string;
  agentEndpoint: string;
  agentEndpoints?: string[];
}

/**
 * Joins this host to a server: makes the key (openssl, here), sends only the CSR and the token, and
 * stores what comes back. Refuses a data directory that already holds a host certificate.
 */
export async function joinServer(input: {
  server: string;
  token: string;
  dataDir: string;
  name: string;
  /** `sha256:<hex>` the received CA certificate must have (from `rampart host join-token`). */
  caFingerprint?: string | undefined;
  openssl?: string;
  fetchImpl?: typeof fetch;
}): Promise<JoinAnswer> {
  const openssl = input.openssl ?? 'openssl';
  if (existsSync(join(input.dataDir, HOST_CERT_FILE)))
    throw new Error(`${input.dataDir} already holds a host certificate (this host has joined)`);
  const keyPath = join(input.dataDir, HOST_KEY_FILE);
  if (readSecretFile(keyPath, 'host key') === null) {
    const { stdout } = await run(openssl, [
      'genpkey',
      '-algorithm',
      'EC',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
    ]);
    createSecretFile(keyPath, Buffer.from(stdout));
  }
  const { stdout: csr } = await run(openssl, ['req', '-new', '-key', keyPath, '-subj', `/CN=${input.name}`]);
  const url = new URL('/v1/hosts/join', input.server);
  const response = await (input.fetchImpl ?? fetch)(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: input.token, csr }),
  }).catch((error: unknown) => {
    const cause = (error as { cause?: { message?: string } }).cause?.message ?? (error as Error).message;
    throw new Error(`cannot reach ${url.origin}: ${cause}`);
  });
  const body = (await response.json().catch(() => null)) as
    (JoinAnswer & { error?: { message?: string } }) | null;
  if (!response.ok || !body)
    throw new Error(`join refused (${response.status}): ${body?.error?.message ?? 'no answer'}`);
  if (!isUuid(body.hostId)) throw new Error('the server answered an invalid host id');
  const endpoints = body.agentEndpoints?.length ? body.agentEndpoints : [body.agentEndpoint];
  for (const endpoint of endpoints) parseEndpoint(endpoint);
  // The CA is pinned from now on: when the operator gave its fingerprint, it must be that one (an
  // answer altered on the way is refused and nothing is stored).
  const fingerprint = `sha256:${createHash('sha256').update(new X509Certificate(body.caCertificate).raw).digest('hex')}`;
  if (input.caFingerprint !== undefined && input.caFingerprint.toLowerCase() !== fingerprint)
    throw new Error(
      `the server's CA certificate has fingerprint ${fingerprint}, not ${input.caFingerprint}: refused`,
    );
  writeFileSync(join(input.dataDir, CA_CERT_FILE), body.caCertificate, { mode: 0o644 });
  writeFileSync(join(input.dataDir, HOST_CERT_FILE), body.certificate, { mode: 0o644 });
  writeFileSync(join(input.dataDir, ENDPOINT_FILE), `${endpoints.join('\n')}\n`, { mode: 0o644 });
  writeFileSync(join(input.dataDir, 'host-id'), `${body.hostId}\n`, { mode: 0o644 });
  return body;
}

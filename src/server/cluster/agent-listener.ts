/**
 * The TLS listener remote agents dial (RAMPART_AGENT_LISTEN): TLS 1.3 only, a client certificate
 * signed by the host CA is required (the handshake fails without one). Right after the handshake the
 * certificate's serial is checked against the database (issued to the host id in its CN, not revoked,
 * not expired); then the agent's hello must name that same host id, or the connection is closed (its
 * host name is the one in the certificate's record, whatever the hello says). An
 * accepted connection joins the AgentFleet (one agent per host id) and is closed once it stays silent
 * for three heartbeat intervals. TCP keepalive is on. A certificate that expires within 30 days is
 * renewed over the link (host-enrollment.ts); a host presenting a renewed one has its older revoked.
 */
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { isUuid } from '../../common/ids.js';
import type { Logger } from '../../common/logger.js';
import { AgentConnection } from '../agent-link/agent-connection.js';
import type { AgentFleet } from '../agent-link/agent-fleet.js';
import type { HostCa } from './host-ca.js';
import type { HostEnrollment } from './host-enrollment.js';

export interface AgentListenerOptions {
  host: string;
  port: number;
  ca: HostCa;
  serverKey: string;
  serverCertificate: string;
  enrollment: HostEnrollment;
  fleet: AgentFleet;
  log: Logger;
  /** The agents' heartbeat interval: a connection silent for three of them is closed. */
  heartbeatSeconds: number;
  /** A connection must say hello within this time. */
  helloTimeoutMs?: number;
  /** The host lease renewed over each connection (RAMPART_HOST_LEASE_SECONDS; host-failover.ts). */
  leaseSeconds?: number;
  /** How often leases are renewed (ms). */
  renewMs?: number;
  /** How often the certificates of open connections are checked again (ms, default 30 s). */
  revalidateMs?: number;
  /**
   * A host whose certificate expires within this time gets a new one over its link (checked at its
   * hello and with every revalidation; at most one attempt per host an hour). Default 30 days; 0: never.
   */
  certificateRenewWithinMs?: number;
  /** After each round of renewals: the hosts renewed (their lastSeenAt is recorded now). */
  onRenewed?: (hostIds: string[]) => void;
  /** A host reported, with a renewal after a lost link, that it fenced itself (killed these VMs). */
  onFenced?: (hostId: string, hostname: string, fenced: { at: string; vmIds: string[] }) => void;
}

interface LinkedHost {
  hostId: string;
  hostname: string;
  /** The agent's clock in its latest answer to a renewal: the next renewal echoes it. */
  agentMs?: number;
}

/** How often leases are renewed: often enough that two renewals fit well in the lease minus 5 s. */
export function leaseRenewMs(leaseSeconds: number): number {
  return Math.max(500, Math.min(2000, Math.floor(((leaseSeconds - 5) * 1000) / 4)));
}

export class AgentListener {
  private server: Server | null = null;
  private readonly sockets = new Map<string, Set<TLSSocket>>();
  /** The certificate serial each accepted socket presented (re-checked by revalidate()). */
  private readonly serials = new Map<TLSSocket, string>();
  private revalidateTimer: NodeJS.Timeout | null = null;
  /** Connections whose host said hello: their leases are renewed. */
  private readonly linked = new Map<AgentConnection, LinkedHost>();
  private renewTimer: NodeJS.Timeout | null = null;
  /** The connection of each socket whose host said hello (certificate renewal goes over it). */
  private readonly helloed = new Map<TLSSocket, AgentConnection>();
  /** When a certificate renewal was last tried, per host. */
  private readonly renewalTriedAt = new Map<string, number>();

  constructor(private readonly options: AgentListenerOptions) {}

  async start(): Promise<number> {
    const o = this.options;
    const server = createServer(
      {
        key: o.serverKey,
        cert: o.serverCertificate,
        ca: [o.ca.certificatePem],
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.3',
      },
      (socket) => void this.onSecure(socket),
    );
    server.on('tlsClientError', (error, socket) => {
      // A client certificate that does not verify: node:tls destroys the socket (reason set here).
      const reason = (socket as TLSSocket & { authorizationError?: Error | string }).authorizationError;
      o.log.warn(
        { err: error.message, reason: reason ? String(reason) : null, peer: socket.remoteAddress },
        'agent TLS handshake refused',
      );
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => resolve());
    });
    const address = server.address();
    if (o.leaseSeconds !== undefined) {
      this.renewTimer = setInterval(() => this.renewAll(), o.renewMs ?? leaseRenewMs(o.leaseSeconds));
      this.renewTimer.unref();
    }
    // A revocation made through another replica is announced (closeHost); this catches one whose
    // announcement was missed.
    this.revalidateTimer = setInterval(() => void this.revalidate(), o.revalidateMs ?? 30_000);
    this.revalidateTimer.unref();
    return typeof address === 'object' && address ? address.port : o.port;
  }

  /**
   * Renews the lease of every linked host (the request is written now; its answer may carry a fence
   * report), then reports the hosts renewed: their lastSeenAt is written after the renewal went out.
   */
  private renewAll(): void {
    const renewed: string[] = [];
    for (const [connection, host] of this.linked) {
      this.renew(connection, host);
      renewed.push(host.hostId);
    }
    if (renewed.length > 0) this.options.onRenewed?.(renewed);
  }

  private renew(connection: AgentConnection, host: LinkedHost): void {
    const o = this.options;
    if (o.leaseSeconds === undefined) return;
    const echo = host.agentMs;
    connection
      .request(
        'lease',
        { leaseSeconds: o.leaseSeconds, ...(echo !== undefined ? { echoMs: echo } : {}) },
        10_000,
      )
      .then(({ fenced, nowMs }) => {
        if (fenced) o.onFenced?.(host.hostId, host.hostname, fenced);
        if (Number.isSafeInteger(nowMs) && nowMs >= 0 && (host.agentMs === undefined || nowMs > host.agentMs))
          host.agentMs = nowMs;
        // A new link's first renewal echoed nothing: the next one, at once, does.
        if (echo === undefined && host.agentMs !== undefined && this.linked.get(connection) === host)
          this.renew(connection, host);
      })
      .catch(() => undefined); // an older agent (no leases) or a closing link
  }

  stop(): void {
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = null;
    if (this.revalidateTimer) clearInterval(this.revalidateTimer);
    this.revalidateTimer = null;
    this.linked.clear();
    this.server?.close();
    for (const set of this.sockets.values()) for (const socket of set) socket.destroy();
    this.sockets.clear();
  }

  /** Closes every connection of a host now (its certificate was revoked). */
  closeHost(hostId: string): void {
    for (const socket of this.sockets.get(hostId) ?? []) socket.destroy();
    this.sockets.delete(hostId);
  }

  /** Closes every connection whose certificate is no longer valid (revoked, expired). */
  async revalidate(): Promise<void> {
    for (const [socket, serial] of [...this.serials]) {
      const hostId = socket.getPeerCertificate().subject?.CN;
      // A database that cannot answer keeps the links (cutting every host off would fence them all).
      const valid =
        typeof hostId === 'string' &&
        (await this.options.enrollment.certificateValid(serial, hostId).catch(() => true));
      if (!valid) {
        this.options.log.warn({ hostId, serial }, 'agent certificate no longer valid; closing');
        socket.destroy();
        continue;
      }
      const connection = this.helloed.get(socket);
      if (connection && typeof hostId === 'string') this.renewIfExpiring(socket, hostId, connection);
    }
  }

  /** Starts a renewal of the host's certificate when it expires soon (see certificateRenewWithinMs). */
  private renewIfExpiring(socket: TLSSocket, hostId: string, connection: AgentConnection): void {
    const o = this.options;
    const expiresAt = new Date(socket.getPeerCertificate().valid_to).getTime();
    const within = o.certificateRenewWithinMs ?? 30 * 86_400_000;
    if (within <= 0 || !(expiresAt - Date.now() < within)) return;
    const tried = this.renewalTriedAt.get(hostId);
    if (tried !== undefined && Date.now() - tried < 3_600_000) return;
    this.renewalTriedAt.set(hostId, Date.now());
    o.log.info(
      { hostId, expiresAt: new Date(expiresAt).toISOString() },
      'renewing an expiring host certificate',
    );
    o.enrollment.renew(hostId, connection).then(
      (renewed) =>
        o.log.info(
          { hostId, serial: renewed.serial, notAfter: renewed.notAfter },
          'host certificate renewed',
        ),
      (error: unknown) =>
        o.log.warn({ hostId, err: (error as Error).message }, 'host certificate renewal failed'),
    );
  }

  private async onSecure(socket: TLSSocket): Promise<void> {
    const o = this.options;
    socket.on('error', () => undefined);
    socket.setKeepAlive(true, 10_000);
    const peer = socket.remoteAddress;
    if (!socket.authorized) {
      o.log.warn({ peer, err: String(socket.authorizationError) }, 'agent certificate not authorized');
      socket.destroy();
      return;
    }
    const cert = socket.getPeerCertificate();
    const cn = cert.subject?.CN;
    if (typeof cn !== 'string' || !isUuid(cn) || typeof cert.serialNumber !== 'string') {
      o.log.warn({ peer }, 'agent certificate has no host id');
      socket.destroy();
      return;
    }
    const hostId = cn;
    // Tracked before the (async) revocation check, so a revocation racing with it still closes it.
    const set = this.sockets.get(hostId) ?? new Set<TLSSocket>();
    set.add(socket);
    this.sockets.set(hostId, set);
    this.serials.set(socket, cert.serialNumber);
    socket.once('close', () => {
      this.serials.delete(socket);
      set.delete(socket);
      if (set.size === 0 && this.sockets.get(hostId) === set) this.sockets.delete(hostId);
    });
    let hostname: string | null = null;
    try {
      hostname = await o.enrollment.certificateHost(cert.serialNumber, hostId);
    } catch (error) {
      o.log.error({ err: (error as Error).message }, 'certificate check failed');
    }
    if (hostname === null || socket.destroyed) {
      o.log.warn({ peer, hostId, serial: cert.serialNumber }, 'agent certificate revoked or unknown');
      socket.destroy();
      return;
    }
    const log = o.log.child({ hostId, peer });
    const connection = new AgentConnection(socket, log);
    const helloTimer = setTimeout(() => {
      log.warn('agent did not say hello in time');
      connection.close();
    }, o.helloTimeoutMs ?? 10_000);
    connection.once('close', () => clearTimeout(helloTimer));
    connection.closeWhenSilent(o.heartbeatSeconds * 3 * 1000);
    connection.once('hello', (host) => {
      clearTimeout(helloTimer);
      if (host.hostId !== hostId) {
        log.warn({ claimed: host.hostId }, 'agent hello names another host than its certificate; refused');
        connection.close();
        return;
      }
      // The host's name is the one it joined with (its certificate), not what it claims now.
      if (host.hostname !== hostname)
        log.info({ claimed: host.hostname, hostname }, 'hostname from the certificate');
      host.hostname = hostname;
      log.info({ hostname }, 'remote agent connected');
      o.fleet.accept(connection, host);
      if (!connection.isOpen) return;
      const linked: LinkedHost = { hostId, hostname };
      this.linked.set(connection, linked);
      this.helloed.set(socket, connection);
      connection.once('close', () => {
        this.linked.delete(connection);
        this.helloed.delete(socket);
      });
      this.renew(connection, linked);
      // A host presenting a renewed certificate: the ones issued before it are revoked.
      o.enrollment.supersede(hostId, cert.serialNumber).then(
        (superseded) => {
          if (superseded > 0) log.info({ superseded }, 'older host certificates revoked (renewed)');
        },
        (error: unknown) =>
          log.warn({ err: (error as Error).message }, 'cannot revoke superseded certificates'),
      );
      this.renewIfExpiring(socket, hostId, connection);
    });
  }
}

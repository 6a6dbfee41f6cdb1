/**
 * The TLS listener remote agents dial (RAMPART_AGENT_LISTEN): TLS 1.3 only, a client certificate
 * signed by the host CA is required (the handshake fails without one). Right after the handshake the
 * certificate's serial is checked against the database (issued to the host id in its CN, not revoked,
 * not expired); then the agent's hello must name that same host id, or the connection is closed (its
 * host name is the one in the certificate's record, whatever the hello says). An
 * accepted connection joins the AgentFleet (one agent per host id) and is closed once it stays silent
 * for three heartbeat intervals. TCP keepalive is on.
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
}

export class AgentListener {
  private server: Server | null = null;
  private readonly sockets = new Map<string, Set<TLSSocket>>();

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
    return typeof address === 'object' && address ? address.port : o.port;
  }

  stop(): void {
    this.server?.close();
    for (const set of this.sockets.values()) for (const socket of set) socket.destroy();
    this.sockets.clear();
  }

  /** Closes every connection of a host now (its certificate was revoked). */
  closeHost(hostId: string): void {
    for (const socket of this.sockets.get(hostId) ?? []) socket.destroy();
    this.sockets.delete(hostId);
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
    socket.once('close', () => {
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
    });
  }
}

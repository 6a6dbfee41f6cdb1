/**
 * Every host agent the server manages: the local one (all-in-one) and any number of external ones,
 * each behind its own supervisor. Connections are indexed by the host id the agent announced in its
 * hello, so the rest of the server asks "the agent of host X" and never cares how many there are. Two
 * endpoints answering with the same host id (one agent data directory reached twice) are refused: a
 * host has exactly one agent.
 */
import { EventEmitter } from 'node:events';
import type { HostInfo } from '../../api/agent-protocol.js';
import type { Logger } from '../../common/logger.js';
import type { AgentConnection } from './agent-connection.js';
import type { AgentChannel } from '../cluster/agent-forwarding.js';
import { AgentSupervisor, type AgentEndpoint } from './agent-supervisor.js';

export interface AgentFleetEvents {
  connected: [AgentConnection, HostInfo];
  disconnected: [HostInfo];
}

export class AgentFleet extends EventEmitter<AgentFleetEvents> {
  private readonly supervisors: AgentSupervisor[];
  private readonly byHost = new Map<string, AgentConnection>();
  private readonly log: Logger;

  constructor(endpoints: readonly AgentEndpoint[], log: Logger) {
    super();
    this.log = log;
    const sockets = new Set<string>();
    for (const endpoint of endpoints) {
      if (sockets.has(endpoint.socket))
        throw new Error(`agent socket ${endpoint.socket} is configured twice`);
      sockets.add(endpoint.socket);
    }
    this.supervisors = endpoints.map((endpoint) => {
      const supervisor = new AgentSupervisor(endpoint, log.child({ socket: endpoint.socket }));
      supervisor.on('connected', (connection, host) => this.onConnected(connection, host, log));
      return supervisor;
    });
  }

  /**
   * Server replicas: a channel to the agent of a host linked to another replica (agent-forwarding.ts),
   * or null when the host is linked nowhere else.
   */
  elsewhere: (hostId: string) => AgentChannel | null = () => null;

  /**
   * The agent of a host: this server's own connection, else a channel through the replica the host
   * is linked to; null while it is connected nowhere.
   */
  connectionFor(hostId: string): AgentChannel | null {
    return this.localConnection(hostId) ?? this.elsewhere(hostId);
  }

  /** This server's own connection to the agent of a host, or null. */
  localConnection(hostId: string): AgentConnection | null {
    const connection = this.byHost.get(hostId);
    return connection?.isOpen ? connection : null;
  }

  /** How many agents are connected now. */
  get connectedCount(): number {
    return [...this.byHost.values()].filter((c) => c.isOpen).length;
  }

  /**
   * A connection that came in (a remote agent over TLS, already authenticated and said hello as
   * `host`): joins the fleet under the same rule, one agent per host id.
   */
  accept(connection: AgentConnection, host: HostInfo): void {
    this.onConnected(connection, host, this.log);
  }

  start(): void {
    for (const supervisor of this.supervisors) supervisor.start();
  }

  stop(): void {
    for (const supervisor of this.supervisors) supervisor.stop();
  }

  private onConnected(connection: AgentConnection, host: HostInfo, log: Logger): void {
    const existing = this.byHost.get(host.hostId);
    if (existing && existing !== connection && existing.isOpen) {
      log.error(
        { hostId: host.hostId, hostname: host.hostname },
        'a second endpoint answered with the id of a connected host; refusing it (one agent per host)',
      );
      connection.close();
      return;
    }
    this.byHost.set(host.hostId, connection);
    connection.once('close', () => {
      if (this.byHost.get(host.hostId) !== connection) return;
      this.byHost.delete(host.hostId);
      this.emit('disconnected', host);
    });
    this.emit('connected', connection, host);
  }
}

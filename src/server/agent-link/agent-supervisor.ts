/**
 * Keeps one connection to one host agent. Connects to its unix socket; when nothing listens there and
 * the agent is the server's local one (mode local, all-in-one) it starts `rampart agent` as a detached
 * process, so the agent and its VMs outlive a server restart. A dropped connection is re-established
 * (restarting a local agent if it died). An external agent (another host) is only connected to.
 */
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { HostInfo } from '../../api/agent-protocol.js';
import type { Logger } from '../../common/logger.js';
import { spawnDetached } from '../../common/subprocess.js';
import { AgentConnection } from './agent-connection.js';

export interface AgentEndpoint {
  mode: 'local' | 'external';
  socket: string;
  dataDir: string;
  env: Record<string, string>;
  logLevel: string;
}

export interface SupervisorEvents {
  connected: [AgentConnection, HostInfo];
  disconnected: [];
}

const CLI_MAIN = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

export class AgentSupervisor extends EventEmitter<SupervisorEvents> {
  private connection: AgentConnection | null = null;
  private stopped = false;
  private lastSpawnAt = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private quickCloses = 0;

  constructor(
    private readonly options: AgentEndpoint,
    private readonly log: Logger,
  ) {
    super();
  }

  /** The current connection once the agent said hello; null while (re)connecting. */
  get current(): AgentConnection | null {
    return this.connection?.isOpen && this.connection.host ? this.connection : null;
  }

  start(): void {
    this.stopped = false;
    this.attempt();
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.connection?.close();
    this.connection = null;
  }

  private attempt(): void {
    if (this.stopped) return;
    const socket: Socket = connect(this.options.socket);
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      const connection = new AgentConnection(socket, this.log);
      this.connection = connection;
      connection.once('hello', (host) => {
        this.log.info({ hostId: host.hostId, accelerator: host.accelerator }, 'agent connected');
        this.emit('connected', connection, host);
      });
      const openedAt = Date.now();
      connection.once('close', () => {
        if (this.connection === connection) this.connection = null;
        this.log.warn({ socket: this.options.socket }, 'agent connection closed');
        this.emit('disconnected');
        // A connection that keeps closing right away (e.g. refused) is retried less and less often.
        this.quickCloses = Date.now() - openedAt < 2000 ? this.quickCloses + 1 : 0;
        this.schedule(Math.min(200 * 2 ** this.quickCloses, 10_000));
      });
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      socket.destroy();
      if (this.options.mode === 'local' && (error.code === 'ENOENT' || error.code === 'ECONNREFUSED')) {
        this.spawnAgent();
      } else {
        this.log.warn({ socket: this.options.socket, err: error.message }, 'cannot reach agent');
      }
      this.schedule(200);
    });
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.attempt();
    }, ms);
  }

  private spawnAgent(): void {
    // An agent that is still starting gets time to bind its socket before another one is tried.
    if (Date.now() - this.lastSpawnAt < 5000) return;
    this.lastSpawnAt = Date.now();
    mkdirSync(this.options.dataDir, { recursive: true, mode: 0o755 });
    const child = spawnDetached(
      process.execPath,
      [CLI_MAIN, 'agent', '--data-dir', this.options.dataDir, '--socket', this.options.socket],
      {
        env: {
          PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
          RAMPART_LOG_LEVEL: this.options.logLevel,
          ...this.options.env,
        },
        logFile: join(this.options.dataDir, 'agent.log'),
      },
    );
    this.log.info({ pid: child.pid }, 'started local agent');
  }
}

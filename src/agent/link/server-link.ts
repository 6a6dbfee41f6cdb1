/**
 * The agent's end of the protocol: listens on a unix socket (mode 0600, root only) and, on a remote
 * host, serves the TLS connection it dials to the server (link/server-dialer.ts); says hello with the
 * host's facts, validates and executes requests, answers each with one reply, and streams VM
 * status and console output. One server connection at a time: a new one replaces the old.
 */
import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import {
  AGENT_PROTOCOL_VERSION,
  MAX_MESSAGE_BYTES,
  agentRequestValidator,
  type AgentRequest,
  type HostInfo,
} from '../../api/agent-protocol.js';
import { readJsonLines, writeJsonLine } from '../../common/json-lines.js';
import type { Logger } from '../../common/logger.js';
import type { HostNetwork } from '../runtime/host-network.js';
import type { VmManager } from '../runtime/vm-manager.js';
import type { VolumeFiles } from '../storage/volume-files.js';
import type { CertificateRenewal } from './certificate-renewal.js';
import type { LeaseFence } from './lease-fence.js';

const CONSOLE_CHUNK_BYTES = 256 * 1024;

export class ServerLink {
  private server: Server | null = null;
  private current: Socket | null = null;
  /** Remote mode: the host lease the server renews (self-fencing); null for a unix-socket agent. */
  fence: LeaseFence | null = null;
  /** Remote mode: renews the host certificate when the server asks (certificate-renewal.ts). */
  certificates: CertificateRenewal | null = null;

  constructor(
    private readonly socketPath: string,
    private readonly host: HostInfo,
    private readonly vms: VmManager,
    private readonly network: HostNetwork,
    private readonly log: Logger,
    private readonly volumes: VolumeFiles | null = null,
  ) {
    vms.on('status', (status) => this.send({ type: 'vm.status', status }));
    vms.on('console', (vmId, data) => {
      for (let offset = 0; offset < data.length; offset += CONSOLE_CHUNK_BYTES) {
        this.send({
          type: 'vm.console',
          vmId,
          dataBase64: data.subarray(offset, offset + CONSOLE_CHUNK_BYTES).toString('base64'),
        });
      }
    });
  }

  async listen(): Promise<void> {
    rmSync(this.socketPath, { force: true });
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => resolve());
    });
    chmodSync(this.socketPath, 0o600);
  }

  close(): void {
    this.current?.destroy();
    this.server?.close();
  }

  /**
   * Serves one server connection: the unix socket's, or a TLS socket the agent dialed (remote mode),
   * which also carries a heartbeat every `heartbeatMs`.
   */
  accept(socket: Socket, options: { heartbeatMs?: number } = {}): void {
    if (this.current) {
      this.log.info('a new server connection replaces the previous one');
      this.current.destroy();
    }
    this.current = socket;
    const heartbeat = options.heartbeatMs
      ? setInterval(() => {
          if (!socket.destroyed) writeJsonLine(socket, { type: 'heartbeat', at: new Date().toISOString() });
        }, options.heartbeatMs)
      : null;
    socket.on('close', () => {
      if (heartbeat) clearInterval(heartbeat);
      if (this.current === socket) this.current = null;
    });
    socket.on('error', () => undefined);
    readJsonLines(socket, {
      maxLineBytes: MAX_MESSAGE_BYTES,
      onValue: (value) => void this.handle(socket, value),
      // A parse error quotes the line, which may carry volume keys: only its kind is logged.
      onError: (error) =>
        this.log.warn(
          { err: error instanceof SyntaxError ? 'not valid JSON' : error.message },
          'bad line from server',
        ),
    });
    writeJsonLine(socket, { type: 'hello', protocolVersion: AGENT_PROTOCOL_VERSION, host: this.host });
  }

  private async handle(socket: Socket, value: unknown): Promise<void> {
    if (!agentRequestValidator.Check(value)) {
      const id = typeof (value as { id?: unknown })?.id === 'number' ? (value as { id: number }).id : 0;
      writeJsonLine(socket, {
        type: 'reply',
        id,
        ok: false,
        error: { code: 'INVALID_REQUEST', message: 'request does not match the protocol' },
      });
      return;
    }
    try {
      const result = await this.execute(value);
      writeJsonLine(socket, { type: 'reply', id: value.id, ok: true, result });
    } catch (error) {
      this.log.warn({ type: value.type, err: (error as Error).message }, 'request failed');
      writeJsonLine(socket, {
        type: 'reply',
        id: value.id,
        ok: false,
        error: { code: 'FAILED', message: (error as Error).message },
      });
    }
  }

  private async execute(request: AgentRequest): Promise<unknown> {
    switch (request.type) {
      case 'sync':
        return { statuses: await this.vms.sync(request.vms) };
      case 'lease':
        return {
          fenced: this.fence?.renew(request.leaseSeconds, request.echoMs) ?? null,
          nowMs: Date.now(),
        };
      case 'apply':
        return { status: await this.vms.reconcile(request.vm) };
      case 'remove':
        return { removed: await this.vms.remove(request.vmId) };
      case 'console.tail': {
        const vm = this.vms.get(request.vmId);
        if (!vm) throw new Error('unknown VM');
        return { dataBase64: vm.consoleTail(request.bytes).toString('base64'), capBytes: vm.consoleCap };
      }
      case 'console.write': {
        const vm = this.vms.get(request.vmId);
        if (!vm) throw new Error('unknown VM');
        return { written: vm.writeConsole(Buffer.from(request.dataBase64, 'base64')) };
      }
      case 'firewall':
        return { generation: await this.network.apply(request.firewall) };
      case 'net.counters':
        return { ports: await this.network.counters() };
      case 'vm.hardening': {
        const vm = this.vms.get(request.vmId);
        if (!vm) throw new Error('unknown VM');
        return vm.hardening();
      }
      case 'volume.erase': {
        if (!this.volumes) throw new Error('this host has no volume storage');
        const user = this.vms.volumeUser(request.volumeId);
        if (user)
          throw new Error(
            `volume ${request.volumeId} is in use by running VM ${user} on this host: not erased`,
          );
        const erased = await this.volumes.eraseVolume(request.volumeId);
        this.log.info({ volumeId: request.volumeId, ...erased }, 'volume erased');
        return erased;
      }
      case 'volume.snapshot':
      case 'volume.restore': {
        if (!this.volumes) throw new Error('this host has no volume storage');
        const user = this.vms.volumeUser(request.volumeId);
        if (user)
          throw new Error(
            `volume ${request.volumeId} is in use by running VM ${user} on this host: stop it first`,
          );
        const done =
          request.type === 'volume.snapshot'
            ? await this.volumes.snapshot(request.volumeId, request.snapshotId)
            : await this.volumes.restore(request.volumeId, request.snapshotId);
        this.log.info({ volumeId: request.volumeId, snapshotId: request.snapshotId, ...done }, request.type);
        return done;
      }
      case 'volume.clone': {
        if (!this.volumes) throw new Error('this host has no volume storage');
        const done = await this.volumes.clone(
          request.snapshotId,
          request.sourceKey,
          request.volume,
          request.volume.backing ? { backing: request.volume.backing } : {},
        );
        this.log.info(
          { volumeId: request.volume.id, snapshotId: request.snapshotId, ...done },
          'volume cloned',
        );
        return done;
      }
      case 'volume.export': {
        if (!this.volumes) throw new Error('this host has no volume storage');
        const user = this.vms.volumeUser(request.volumeId);
        if (user)
          throw new Error(
            `volume ${request.volumeId} is in use by running VM ${user} on this host: stop it first`,
          );
        const done = await this.volumes.exportTo(request.volumeId, request.path, {
          ...(request.key !== undefined ? { key: request.key } : {}),
          ...(request.backing !== undefined ? { backing: request.backing } : {}),
        });
        this.log.info({ volumeId: request.volumeId, ...done }, 'volume exported');
        return done;
      }
      case 'volume.import': {
        if (!this.volumes) throw new Error('this host has no volume storage');
        const done = await this.volumes.importFrom(
          request.path,
          request.sourceKey,
          request.volume,
          request.volume.backing ? { backing: request.volume.backing } : {},
        );
        this.log.info({ volumeId: request.volume.id, ...done }, 'volume imported');
        return done;
      }
      case 'snapshot.erase': {
        if (!this.volumes) throw new Error('this host has no volume storage');
        const erased = await this.volumes.eraseSnapshot(request.snapshotId);
        this.log.info({ snapshotId: request.snapshotId, ...erased }, 'snapshot erased');
        return erased;
      }
      case 'certificate.request':
        if (!this.certificates) throw new Error('this agent has no host certificate to renew');
        return this.certificates.request(request.subject);
      case 'certificate.install': {
        if (!this.certificates) throw new Error('this agent has no host certificate to renew');
        const installed = await this.certificates.install(request.certificate);
        this.log.info(installed, 'new host certificate installed');
        return installed;
      }
      default: {
        // Every request type is handled above (the compiler checks); one that is not is refused, never
        // answered as if done.
        const unknown: never = request;
        throw new Error(`${(unknown as { type: string }).type} is not supported by this agent`);
      }
    }
  }

  /** A host event for the server (e.g. firewall drift repaired). */
  event(kind: string, vmId: string | null, data: Record<string, unknown>): void {
    this.send({ type: 'event', kind, vmId, at: new Date().toISOString(), data });
  }

  private send(message: unknown): void {
    if (this.current && !this.current.destroyed) writeJsonLine(this.current, message);
  }
}

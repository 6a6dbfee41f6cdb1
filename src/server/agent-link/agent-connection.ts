/**
 * The server's end of one agent connection: sends requests (matched to replies by id, each with a
 * timeout), validates every incoming message against the protocol schema, and emits what the agent
 * reports. Transport-agnostic: any Duplex (a unix socket, or TLS for remote hosts).
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import {
  AGENT_PROTOCOL_VERSION,
  MAX_MESSAGE_BYTES,
  agentMessageValidator,
  type AgentEventMessage,
  type AgentRequest,
  type AgentRequestType,
  type AgentResults,
  type HostInfo,
  type VmStatus,
} from '../../api/agent-protocol.js';
import { HostUnavailableError, RampartError } from '../../api/errors.js';
import { readJsonLines, writeJsonLine } from '../../common/json-lines.js';
import type { Logger } from '../../common/logger.js';

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export type RequestBody<T extends AgentRequestType> = Omit<Extract<AgentRequest, { type: T }>, 'id' | 'type'>;

export interface AgentConnectionEvents {
  hello: [HostInfo];
  status: [VmStatus];
  console: [vmId: string, data: Buffer];
  event: [AgentEventMessage];
  close: [];
}

export class AgentConnection extends EventEmitter<AgentConnectionEvents> {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private silenceTimer: NodeJS.Timeout | null = null;
  /** When the agent last sent a valid message (any message counts as a sign of life). */
  lastMessageAt = Date.now();
  host: HostInfo | null = null;

  constructor(
    private readonly stream: Duplex,
    private readonly log: Logger,
    private readonly defaultTimeoutMs = 30_000,
  ) {
    super();
    readJsonLines(stream, {
      maxLineBytes: MAX_MESSAGE_BYTES,
      onValue: (value) => this.onMessage(value),
      onError: (error) => this.log.warn({ err: error.message }, 'bad line from agent'),
    });
    stream.on('close', () => this.onClose());
    stream.on('error', (error) => this.log.warn({ err: error.message }, 'agent connection error'));
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  request<T extends AgentRequestType>(
    type: T,
    body: RequestBody<T>,
    timeoutMs = this.defaultTimeoutMs,
  ): Promise<AgentResults[T]> {
    if (this.closed) return Promise.reject(new HostUnavailableError('the host agent is not connected'));
    const id = this.nextId++;
    return new Promise<AgentResults[T]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new RampartError('RAMPART_TIMEOUT', `the host agent did not answer ${type} within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      writeJsonLine(this.stream, { ...body, type, id });
    });
  }

  close(): void {
    this.stream.destroy();
  }

  /** Closes the connection once the agent has been silent for `ms` (remote agents send heartbeats). */
  closeWhenSilent(ms: number): void {
    if (this.silenceTimer) clearInterval(this.silenceTimer);
    this.silenceTimer = setInterval(
      () => {
        if (Date.now() - this.lastMessageAt <= ms) return;
        this.log.warn({ silentMs: Date.now() - this.lastMessageAt }, 'agent went silent; closing');
        this.close();
      },
      Math.max(100, Math.floor(ms / 6)),
    );
    this.silenceTimer.unref();
  }

  private onMessage(value: unknown): void {
    if (!agentMessageValidator.Check(value)) {
      this.log.warn('agent sent a message that does not match the protocol');
      return;
    }
    this.lastMessageAt = Date.now();
    switch (value.type) {
      case 'heartbeat':
        return;
      case 'hello':
        if (value.protocolVersion !== AGENT_PROTOCOL_VERSION) {
          this.log.error({ version: value.protocolVersion }, 'agent speaks an unsupported protocol version');
          this.close();
          return;
        }
        this.host = value.host;
        this.emit('hello', value.host);
        return;
      case 'vm.status':
        this.emit('status', value.status);
        return;
      case 'vm.console':
        this.emit('console', value.vmId, Buffer.from(value.dataBase64, 'base64'));
        return;
      case 'event':
        this.emit('event', value);
        return;
      case 'reply': {
        const pending = this.pending.get(value.id);
        if (!pending) return;
        this.pending.delete(value.id);
        clearTimeout(pending.timer);
        if (value.ok) pending.resolve(value.result);
        else
          pending.reject(
            new RampartError('RAMPART_INTERNAL', `host agent: ${value.error?.message ?? 'request failed'}`, {
              agentCode: value.error?.code,
            }),
          );
        return;
      }
    }
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.silenceTimer) clearInterval(this.silenceTimer);
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(new HostUnavailableError('the host agent disconnected'));
      this.pending.delete(id);
    }
    this.emit('close');
  }
}

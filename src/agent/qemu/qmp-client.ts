/**
 * In-house client for QMP, the QEMU Machine Protocol, spoken on each VM's monitor unix socket. The
 * agent needs exact control over handshake and per-command timeouts, id-based reply matching with
 * several commands in flight, interleaved asynchronous events and disconnects, so we keep this small
 * implementation instead of depending on an npm QMP library. Framing is src/common/json-lines.ts.
 */
import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { readJsonLines, writeJsonLine } from '../../common/json-lines.js';
import type { Logger } from '../../common/logger.js';
import { QmpCommandError, QmpDisconnectedError, QmpProtocolError, QmpTimeoutError } from './qmp-errors.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;
/** setTimeout's maximum; larger values would fire immediately. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface QmpConnectOptions {
  /** Deadline for socket connect + greeting + `qmp_capabilities` (default 5 s). */
  connectTimeoutMs?: number;
  /** Default per-command timeout for execute() (default 10 s). 0 or Infinity disables it. */
  commandTimeoutMs?: number;
  /** Lines longer than this are dropped (default 1 MiB, see json-lines.ts). */
  maxLineBytes?: number;
  /** Receives warnings about dropped lines and replies that match no pending command. */
  logger?: Pick<Logger, 'warn'>;
}

export interface QmpVersionTriple {
  major: number;
  minor: number;
  micro: number;
}

/** Result of `query-version`, also carried in the greeting. */
export interface QmpVersionInfo {
  qemu: QmpVersionTriple;
  package: string;
}

export interface QmpGreeting {
  QMP: { version: QmpVersionInfo; capabilities: string[] };
}

export interface QmpTimestamp {
  seconds: number;
  microseconds: number;
}

/** An asynchronous QMP event such as SHUTDOWN, STOP, RESUME, RESET or POWERDOWN. */
export interface QmpEvent {
  event: string;
  data?: unknown;
  timestamp: QmpTimestamp;
}

export interface QmpCloseInfo {
  /** True when close() was called or quit() was sent; false when the socket dropped on its own. */
  expected: boolean;
  /** The socket error that ended an unexpected close, if any (a reset after quit() is not reported). */
  error?: Error;
}

/** QMP event names are upper case (SHUTDOWN, STOP, ...), so they never clash with 'event' or 'close'. */
export type QmpEventName = Uppercase<string>;

export type QmpRunState =
  | 'debug'
  | 'inmigrate'
  | 'internal-error'
  | 'io-error'
  | 'paused'
  | 'postmigrate'
  | 'prelaunch'
  | 'finish-migrate'
  | 'restore-vm'
  | 'running'
  | 'save-vm'
  | 'shutdown'
  | 'suspended'
  | 'watchdog'
  | 'guest-panicked'
  | 'colo';

/** Result of `query-status`. */
export interface QmpStatusInfo {
  status: QmpRunState;
  running: boolean;
  singlestep?: boolean;
}

/** One element of `query-cpus-fast`. */
export interface QmpCpuInfoFast {
  'cpu-index': number;
  'qom-path': string;
  'thread-id': number;
  target: string;
  props?: Record<string, number | undefined>;
}

/** One element of `query-blockstats` (only the counters Rampart reads). */
export interface QmpBlockStats {
  device?: string;
  'node-name'?: string;
  stats: { rd_bytes: number; wr_bytes: number; rd_operations: number; wr_operations: number };
}

/** One element of `query-chardev`. */
export interface QmpChardevInfo {
  label: string;
  filename: string;
  'frontend-open': boolean;
}

type Listener = ((event: QmpEvent) => void) | ((info: QmpCloseInfo) => void);

interface PendingCommand {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout | undefined;
  /** quit: QEMU may close the socket before (or instead of) replying; that counts as success. */
  succeedOnDisconnect: boolean;
}

type State = 'greeting' | 'negotiating' | 'ready' | 'closing' | 'closed';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value);
}

function parseGreeting(value: unknown): QmpGreeting {
  const qmp = isRecord(value) ? value.QMP : undefined;
  if (!isRecord(qmp)) {
    throw new QmpProtocolError(`expected a QMP greeting, got ${JSON.stringify(value).slice(0, 200)}`);
  }
  const version = qmp.version;
  const qemu = isRecord(version) ? version.qemu : undefined;
  if (!isRecord(version) || !isRecord(qemu) || !isInteger(qemu.major) || !isInteger(qemu.minor)) {
    throw new QmpProtocolError('QMP greeting has no valid version.qemu');
  }
  if (!isInteger(qemu.micro)) throw new QmpProtocolError('QMP greeting has no valid version.qemu.micro');
  const capabilities = qmp.capabilities;
  if (!Array.isArray(capabilities) || !capabilities.every((c) => typeof c === 'string')) {
    throw new QmpProtocolError('QMP greeting has no valid capabilities list');
  }
  return {
    QMP: {
      version: {
        qemu: { major: qemu.major, minor: qemu.minor, micro: qemu.micro },
        package: typeof version.package === 'string' ? version.package : '',
      },
      capabilities: [...capabilities],
    },
  };
}

function parseTimestamp(value: unknown): QmpTimestamp {
  if (isRecord(value) && typeof value.seconds === 'number' && typeof value.microseconds === 'number') {
    return { seconds: value.seconds, microseconds: value.microseconds };
  }
  const now = Date.now();
  return { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 };
}

function describe(error: Error | undefined): string {
  return error ? `: ${error.message}` : '';
}

/**
 * A connected, capabilities-negotiated QMP session. Create with `QmpClient.connect()`.
 *
 * Emits 'event' (every QMP event), the event's own name (e.g. 'SHUTDOWN') and once 'close' when the
 * socket is gone.
 */
export class QmpClient {
  readonly socketPath: string;
  readonly #socket: Socket;
  readonly #emitter = new EventEmitter();
  readonly #pending = new Map<number, PendingCommand>();
  readonly #commandTimeoutMs: number;
  readonly #logger: Pick<Logger, 'warn'> | undefined;
  #state: State = 'greeting';
  #greeting: QmpGreeting | undefined;
  #nextId = 0;
  #expectedClose = false;
  #socketError: Error | undefined;
  #connectTimer: NodeJS.Timeout | undefined;
  #settleConnect: ((error?: Error) => void) | undefined;
  readonly #closed: Promise<void>;
  #markClosed: () => void = () => {};

  /** Connects to a QMP monitor socket, reads the greeting and negotiates capabilities. */
  static connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    return new Promise((resolve, reject) => {
      const client = new QmpClient(socketPath, options, (error) => (error ? reject(error) : resolve(client)));
    });
  }

  private constructor(socketPath: string, options: QmpConnectOptions, onConnect: (error?: Error) => void) {
    this.socketPath = socketPath;
    this.#commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.#logger = options.logger;
    this.#closed = new Promise((resolve) => (this.#markClosed = resolve));
    this.#settleConnect = (error) => {
      this.#settleConnect = undefined;
      clearTimeout(this.#connectTimer);
      if (error) {
        this.#expectedClose = true;
        this.#socket.destroy();
      }
      onConnect(error);
    };

    const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#connectTimer = setTimeout(
      () => {
        const waitingFor = this.#state === 'greeting' ? 'the QMP greeting' : 'the qmp_capabilities reply';
        this.#settleConnect?.(
          new QmpTimeoutError(
            this.#state === 'greeting' ? 'connect' : 'qmp_capabilities',
            connectTimeoutMs,
            `timed out after ${connectTimeoutMs} ms waiting for ${waitingFor} on ${socketPath}`,
          ),
        );
      },
      Math.min(connectTimeoutMs, MAX_TIMER_MS),
    );

    this.#socket = createConnection({ path: socketPath });
    this.#socket.on('error', (error) => {
      this.#socketError ??= error;
      if (this.#state !== 'closed') this.#state = 'closing';
    });
    this.#socket.on('close', () => this.#onSocketClose());
    readJsonLines(this.#socket, {
      maxLineBytes: options.maxLineBytes,
      onValue: (value) => this.#onValue(value),
      onError: (error) => this.#onLineError(error),
    });
  }

  /** The greeting QEMU sent when the connection opened. */
  get greeting(): QmpGreeting {
    if (!this.#greeting) throw new QmpProtocolError('no QMP greeting received');
    return this.#greeting;
  }

  /** QEMU version from the greeting, "major.minor.micro" (e.g. "7.2.0"). */
  get version(): string {
    const { major, minor, micro } = this.greeting.QMP.version.qemu;
    return `${major}.${minor}.${micro}`;
  }

  /** False once close()/quit() was called or the socket went away. */
  get connected(): boolean {
    return this.#state === 'ready';
  }

  /** Resolves when the socket has closed (for whatever reason). */
  get closed(): Promise<void> {
    return this.#closed;
  }

  on(name: 'event', listener: (event: QmpEvent) => void): this;
  on(name: 'close', listener: (info: QmpCloseInfo) => void): this;
  on(name: QmpEventName, listener: (event: QmpEvent) => void): this;
  on(name: string, listener: Listener): this {
    this.#emitter.on(name, listener);
    return this;
  }

  once(name: 'event', listener: (event: QmpEvent) => void): this;
  once(name: 'close', listener: (info: QmpCloseInfo) => void): this;
  once(name: QmpEventName, listener: (event: QmpEvent) => void): this;
  once(name: string, listener: Listener): this {
    this.#emitter.once(name, listener);
    return this;
  }

  off(name: 'event', listener: (event: QmpEvent) => void): this;
  off(name: 'close', listener: (info: QmpCloseInfo) => void): this;
  off(name: QmpEventName, listener: (event: QmpEvent) => void): this;
  off(name: string, listener: Listener): this {
    this.#emitter.off(name, listener);
    return this;
  }

  /**
   * Runs a QMP command and resolves with its `return` value. Rejects with QmpCommandError when QEMU
   * answers with an error, QmpTimeoutError after `timeoutMs` (default: the client's commandTimeoutMs;
   * a late reply is then ignored) and QmpDisconnectedError when the connection is or becomes closed.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T> {
    return this.#send<T>(command, args, timeoutMs ?? this.#commandTimeoutMs, false);
  }

  /** Closes the connection; pending commands reject with QmpDisconnectedError. Resolves once closed. */
  close(): Promise<void> {
    if (this.#state !== 'closed') {
      this.#expectedClose = true;
      this.#state = 'closing';
      this.#socket.destroy();
    }
    return this.#closed;
  }

  queryStatus(timeoutMs?: number): Promise<QmpStatusInfo> {
    return this.execute<QmpStatusInfo>('query-status', undefined, timeoutMs);
  }

  /** Pauses all vCPUs. */
  async stop(timeoutMs?: number): Promise<void> {
    await this.execute('stop', undefined, timeoutMs);
  }

  /** Resumes vCPUs (also starts a VM launched with -S). */
  async cont(timeoutMs?: number): Promise<void> {
    await this.execute('cont', undefined, timeoutMs);
  }

  /** Sends an ACPI power button press; the guest decides whether to shut down. */
  async systemPowerdown(timeoutMs?: number): Promise<void> {
    await this.execute('system_powerdown', undefined, timeoutMs);
  }

  /** Hard-resets the machine. */
  async systemReset(timeoutMs?: number): Promise<void> {
    await this.execute('system_reset', undefined, timeoutMs);
  }

  /**
   * Makes QEMU exit. QEMU may close the socket before its reply arrives, so a disconnect while quit is
   * pending counts as success, and the resulting 'close' is reported as expected.
   */
  async quit(timeoutMs?: number): Promise<void> {
    const sent = this.#send('quit', undefined, timeoutMs ?? this.#commandTimeoutMs, true);
    this.#expectedClose = true;
    await sent;
  }

  queryCpusFast(timeoutMs?: number): Promise<QmpCpuInfoFast[]> {
    return this.execute<QmpCpuInfoFast[]>('query-cpus-fast', undefined, timeoutMs);
  }

  queryBlockStats(timeoutMs?: number): Promise<QmpBlockStats[]> {
    return this.execute<QmpBlockStats[]>('query-blockstats', undefined, timeoutMs);
  }

  queryVersion(timeoutMs?: number): Promise<QmpVersionInfo> {
    return this.execute<QmpVersionInfo>('query-version', undefined, timeoutMs);
  }

  queryChardev(timeoutMs?: number): Promise<QmpChardevInfo[]> {
    return this.execute<QmpChardevInfo[]>('query-chardev', undefined, timeoutMs);
  }

  #send<T>(
    command: string,
    args: Record<string, unknown> | undefined,
    timeoutMs: number,
    succeedOnDisconnect: boolean,
  ): Promise<T> {
    if (this.#state !== 'ready' && this.#state !== 'negotiating') {
      return Promise.reject(
        new QmpDisconnectedError(`QMP connection to ${this.socketPath} is closed; cannot run ${command}`),
      );
    }
    const id = ++this.#nextId;
    return new Promise<T>((resolve, reject) => {
      const entry: PendingCommand = {
        command,
        resolve: (value) => resolve(value as T),
        reject,
        timer: undefined,
        succeedOnDisconnect,
      };
      if (Number.isFinite(timeoutMs) && timeoutMs > 0) {
        entry.timer = setTimeout(
          () => {
            if (this.#pending.get(id) !== entry) return;
            this.#pending.delete(id);
            reject(new QmpTimeoutError(command, timeoutMs));
          },
          Math.min(timeoutMs, MAX_TIMER_MS),
        );
      }
      this.#pending.set(id, entry);
      const message: Record<string, unknown> = { execute: command };
      if (args !== undefined) message.arguments = args;
      message.id = id;
      writeJsonLine(this.#socket, message);
    });
  }

  #onValue(value: unknown): void {
    if (this.#state === 'closing' || this.#state === 'closed') return;
    if (this.#state === 'greeting') {
      this.#onGreeting(value);
      return;
    }
    if (!isRecord(value)) {
      this.#logger?.warn({ socket: this.socketPath }, 'QMP: ignoring non-object message');
      return;
    }
    if (typeof value.event === 'string') {
      this.#onEvent(value.event, value);
    } else if ('return' in value || 'error' in value) {
      this.#onReply(value);
    } else {
      this.#logger?.warn(
        { socket: this.socketPath },
        'QMP: ignoring message that is neither reply nor event',
      );
    }
  }

  #onGreeting(value: unknown): void {
    try {
      this.#greeting = parseGreeting(value);
    } catch (error) {
      this.#settleConnect?.(error as Error);
      return;
    }
    this.#state = 'negotiating';
    this.#send('qmp_capabilities', undefined, Infinity, false).then(
      () => {
        if (this.#state !== 'negotiating') return;
        this.#state = 'ready';
        this.#settleConnect?.();
      },
      (error: Error) => this.#settleConnect?.(error),
    );
  }

  #onEvent(name: string, message: Record<string, unknown>): void {
    const event: QmpEvent = { event: name, timestamp: parseTimestamp(message.timestamp) };
    if ('data' in message) event.data = message.data;
    this.#emitter.emit('event', event);
    if (/^[A-Z][A-Z0-9_]*$/.test(name)) this.#emitter.emit(name, event);
  }

  #onReply(message: Record<string, unknown>): void {
    const id = message.id;
    const entry = typeof id === 'number' ? this.#pending.get(id) : undefined;
    if (entry === undefined || typeof id !== 'number') {
      // A reply to a command that already timed out, or an id-less error QEMU sends for input it could
      // not parse as a command. Either way no caller is waiting for it.
      this.#logger?.warn(
        { socket: this.socketPath, id },
        'QMP: ignoring reply that matches no pending command',
      );
      return;
    }
    this.#pending.delete(id);
    clearTimeout(entry.timer);
    if ('error' in message) {
      const error = isRecord(message.error) ? message.error : {};
      const errorClass = typeof error.class === 'string' ? error.class : 'GenericError';
      const desc = typeof error.desc === 'string' ? error.desc : JSON.stringify(message.error);
      entry.reject(new QmpCommandError(errorClass, desc, entry.command));
    } else {
      entry.resolve(message.return);
    }
  }

  #onLineError(error: Error): void {
    if (this.#state === 'greeting') {
      this.#settleConnect?.(
        new QmpProtocolError(`invalid QMP greeting line: ${error.message}`, { cause: error }),
      );
      return;
    }
    this.#logger?.warn({ socket: this.socketPath, err: error }, 'QMP: dropped an unreadable line');
  }

  #onSocketClose(): void {
    this.#state = 'closed';
    const error = this.#socketError;
    if (this.#settleConnect) {
      this.#settleConnect(
        new QmpDisconnectedError(
          `QMP socket ${this.socketPath} closed during the handshake${describe(error)}`,
          {
            cause: error,
          },
        ),
      );
    }
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const entry of pending) {
      clearTimeout(entry.timer);
      if (entry.succeedOnDisconnect) {
        entry.resolve(undefined);
      } else {
        entry.reject(
          new QmpDisconnectedError(
            `QMP connection to ${this.socketPath} closed while ${entry.command} was pending${describe(error)}`,
            { cause: error },
          ),
        );
      }
    }
    const info: QmpCloseInfo = { expected: this.#expectedClose };
    if (error && !this.#expectedClose) info.error = error;
    this.#markClosed();
    this.#emitter.emit('close', info);
  }
}

/**
 * Test support (not used by the CLI itself): captured streams and a scriptable stdin for `run`,
 * fixtures, temporary directories, and a tiny fake API server on 127.0.0.1 that records what it receives.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Host } from '../api/host.js';
import type { SessionTokens, WhoAmI } from '../api/iam.js';
import type { Vm } from '../api/vm.js';
import type { CliIo, InStream } from './context.js';

export interface Capture {
  text: string;
  isTTY?: boolean;
  columns?: number;
  write(chunk: string | Uint8Array): boolean;
}

export function capture(isTTY = false): Capture {
  return {
    text: '',
    isTTY,
    write(chunk) {
      this.text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      return true;
    },
  };
}

/**
 * A stdin stand-in: not a terminal unless asked; `type` emits keystrokes at once, `feed` queues input
 * that each later `resume()` delivers, one chunk per resume (a `null` right after a chunk ends the
 * stream), the way a reader that pauses between prompts sees it.
 */
export class FakeStdin extends EventEmitter implements InStream {
  rawModes: boolean[] = [];
  private readonly script: (string | null)[] = [];
  constructor(readonly isTTY = false) {
    super();
  }
  setRawMode(mode: boolean): this {
    this.rawModes.push(mode);
    return this;
  }
  /** Queues input: `feed('secret\n', null)` is a piped password; `feed('alice\r', 'pw\r')` two answers. */
  feed(...chunks: (string | null)[]): this {
    this.script.push(...chunks);
    return this;
  }
  resume(): this {
    if (this.script.length === 0) return this;
    setImmediate(() => {
      const chunk = this.script.shift();
      if (typeof chunk === 'string') this.emit('data', Buffer.from(chunk));
      while (this.script[0] === null) {
        this.script.shift();
        this.emit('end');
      }
      if (chunk === null) this.emit('end');
    });
    return this;
  }
  pause(): this {
    return this;
  }
  type(text: string | Buffer): void {
    this.emit('data', typeof text === 'string' ? Buffer.from(text) : text);
  }
}

export interface TestIo extends CliIo {
  stdout: Capture;
  stderr: Capture;
}

export function testIo(
  env: Record<string, string | undefined> = {},
  stdin: InStream = new FakeStdin(),
): TestIo {
  return {
    stdout: capture(),
    stderr: capture(),
    stdin,
    env,
    now: () => Date.parse('2026-01-01T12:00:00Z'),
    waitIntervalMs: 5,
  };
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface Answer {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Raw text instead of JSON. */
  raw?: string;
}

export type Handler = (req: RecordedRequest) => Answer | undefined;

export interface FakeApi {
  url: string;
  server: Server;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** Starts a fake API on 127.0.0.1, port 0. Unhandled requests answer a Rampart 404. */
export async function startFakeApi(handler: Handler): Promise<FakeApi> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(recorded);
      const answer = handler(recorded) ?? {
        status: 404,
        body: { error: { code: 'RAMPART_NOT_FOUND', message: 'route not found', requestId: 'req-404' } },
      };
      const text = answer.raw ?? (answer.body === undefined ? '' : JSON.stringify(answer.body));
      res.writeHead(answer.status ?? 200, {
        'content-type': answer.raw === undefined ? 'application/json' : 'text/plain',
        ...answer.headers,
      });
      res.end(text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port on 127.0.0.1 that nothing listens on (it was free a moment ago). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function apiError(status: number, code: string, message: string, requestId = 'req-1'): Answer {
  return { status, body: { error: { code, message, requestId } } };
}

export function vmFixture(overrides: Partial<Vm> = {}): Vm {
  return {
    id: '11111111-2222-4333-8444-555555555555',
    tenantId: 'dddddddd-2222-4333-8444-555555555555',
    name: 'web1',
    state: 'running',
    image: { id: 'aaaaaaaa-2222-4333-8444-555555555555', name: 'tiny' },
    flavor: { id: 'bbbbbbbb-2222-4333-8444-555555555555', name: 'small' },
    rootVolume: null,
    generationId: null,
    vcpus: 1,
    memoryMiB: 256,
    diskGiB: 0,
    cpuLimitPercent: null,
    cpuWeight: 100,
    pidsMax: 512,
    networkMbps: null,
    diskIops: null,
    diskMiBps: null,
    pinnedCpus: null,
    restartPolicy: 'never',
    restartCount: 0,
    hostId: 'cccccccc-2222-4333-8444-555555555555',
    accelerator: 'kvm',
    pid: 4242,
    guestIps: ['10.0.2.15/24'],
    lastHeartbeatAt: '2026-01-01T11:59:58Z',
    guestUptimeSeconds: 120,
    bootMs: 3100,
    error: null,
    createdAt: '2026-01-01T11:55:00Z',
    updatedAt: '2026-01-01T11:59:58Z',
    ...overrides,
  };
}

export function hostFixture(overrides: Partial<Host> = {}): Host {
  return {
    id: 'cccccccc-2222-4333-8444-555555555555',
    hostname: 'hv1',
    state: 'online',
    accelerator: 'kvm',
    acceleratorReason: '/dev/kvm is usable',
    qemuVersion: '8.2.2',
    capacity: { cpus: 8, memoryMiB: 16_384, vcpusAllocatable: 16, memoryMiBAllocatable: 15_360 },
    allocated: { vcpus: 2, memoryMiB: 512, vms: 2, pinnedCpus: [] },
    overcommit: { cpu: 2, memory: 1 },
    maintenance: false,
    dedicatedCores: [],
    agentVersion: '0.1.0',
    lastSeenAt: '2026-01-01T11:59:59Z',
    createdAt: '2026-01-01T10:00:00Z',
    ...overrides,
  };
}

/** A temporary directory for a test, removed by the returned function. */
export function tempDir(prefix = 'rampart-cli-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export function sessionTokensFixture(overrides: Partial<SessionTokens> = {}): SessionTokens {
  return {
    token: 'session-token-1',
    expiresAt: '2026-01-01T12:15:00Z',
    refreshToken: 'refresh-token-1',
    refreshExpiresAt: '2026-01-02T12:00:00Z',
    restriction: null,
    user: { id: 'eeeeeeee-2222-4333-8444-555555555555', username: 'alice' },
    ...overrides,
  };
}

export function whoamiFixture(overrides: Partial<WhoAmI> = {}): WhoAmI {
  return {
    user: { id: 'eeeeeeee-2222-4333-8444-555555555555', username: 'alice', mfaEnabled: false },
    via: 'session',
    restriction: null,
    platformRoles: [],
    tenants: [
      { tenant: { id: 'dddddddd-2222-4333-8444-555555555555', name: 'acme' }, roles: ['tenant-admin'] },
    ],
    tenant: { id: 'dddddddd-2222-4333-8444-555555555555', name: 'acme' },
    permissions: ['member:create', 'member:read', 'vm:read'],
    ...overrides,
  };
}

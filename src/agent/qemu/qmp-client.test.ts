/**
 * Tests of the QMP client. Most run against a scripted fake monitor on a unix socket, so ordering,
 * errors, timeouts and disconnects can be produced on demand; one runs against real QEMU (required:
 * it fails, never skips, when qemu-system-x86_64 is missing).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { readJsonLines, writeJsonLine } from '../../common/json-lines.js';
import { connectWhenReady } from './qmp-test-connect.js';
import { QmpClient, type QmpCloseInfo, type QmpConnectOptions, type QmpEvent } from './qmp-client.js';
import {
  QmpCommandError,
  QmpDisconnectedError,
  QmpError,
  QmpProtocolError,
  QmpTimeoutError,
} from './qmp-errors.js';

const TEST_TIMEOUT = { timeout: 15_000 };

const GREETING = {
  QMP: {
    version: { qemu: { micro: 0, minor: 2, major: 7 }, package: 'Debian 1:7.2+dfsg-7' },
    capabilities: ['oob'],
  },
};

interface ReceivedCommand {
  execute: string;
  arguments?: Record<string, unknown>;
  id: unknown;
}

/** Rejects with a clear message if `promise` does not settle in time (so a broken test fails, not hangs). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A queue whose consumers wait for the next item. */
class AsyncQueue<T> {
  readonly #items: T[] = [];
  readonly #waiters: Array<(item: T) => void> = [];

  push(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(item);
    else this.#items.push(item);
  }

  get size(): number {
    return this.#items.length;
  }

  next(ms: number, what: string): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift() as T);
    let waiter!: (item: T) => void;
    const item = new Promise<T>((resolve) => {
      waiter = resolve;
      this.#waiters.push(waiter);
    });
    return within(item, ms, what).finally(() => {
      const index = this.#waiters.indexOf(waiter);
      if (index !== -1) this.#waiters.splice(index, 1);
    });
  }
}

/** The monitor side of one client connection. */
class FakeConnection {
  readonly received: ReceivedCommand[] = [];
  readonly closed: Promise<void>;
  readonly #commands = new AsyncQueue<ReceivedCommand>();

  constructor(readonly socket: Socket) {
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    readJsonLines(socket, {
      onValue: (value) => {
        const command = value as ReceivedCommand;
        this.received.push(command);
        this.#commands.push(command);
      },
    });
  }

  nextCommand(ms = 3_000): Promise<ReceivedCommand> {
    return this.#commands.next(ms, 'a command at the fake monitor');
  }

  /** Commands received but not yet taken with nextCommand(). */
  get unread(): number {
    return this.#commands.size;
  }

  send(value: unknown): void {
    writeJsonLine(this.socket, value);
  }

  sendRaw(text: string): void {
    this.socket.write(text);
  }

  reply(command: ReceivedCommand, value: unknown = {}): void {
    this.send({ return: value, id: command.id });
  }

  fail(command: ReceivedCommand, errorClass: string, desc: string): void {
    this.send({ error: { class: errorClass, desc }, id: command.id });
  }

  event(name: string, data?: unknown, seconds = 1_700_000_000): void {
    this.send({
      event: name,
      ...(data === undefined ? {} : { data }),
      timestamp: { seconds, microseconds: 42 },
    });
  }
}

/** A QMP monitor stand-in on a unix socket; each test scripts what it says. */
class FakeMonitor {
  readonly #connections = new AsyncQueue<FakeConnection>();
  readonly #all: FakeConnection[] = [];

  private constructor(
    readonly path: string,
    readonly server: Server,
  ) {
    server.on('connection', (socket) => {
      const connection = new FakeConnection(socket);
      this.#all.push(connection);
      this.#connections.push(connection);
    });
  }

  static async start(dir: string): Promise<FakeMonitor> {
    const path = join(dir, 'qmp.sock');
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    return new FakeMonitor(path, server);
  }

  nextConnection(ms = 3_000): Promise<FakeConnection> {
    return this.#connections.next(ms, 'a client to connect to the fake monitor');
  }

  async close(): Promise<void> {
    for (const connection of this.#all) connection.socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function waitForEvent(client: QmpClient, name: Uppercase<string>, ms = 5_000): Promise<QmpEvent> {
  return within(new Promise<QmpEvent>((resolve) => client.once(name, resolve)), ms, `QMP event ${name}`);
}

function waitForClose(client: QmpClient, ms = 5_000): Promise<QmpCloseInfo> {
  return within(
    new Promise<QmpCloseInfo>((resolve) => client.once('close', resolve)),
    ms,
    "the 'close' event",
  );
}

function isDisconnected(error: unknown): boolean {
  assert.ok(error instanceof QmpDisconnectedError, `expected QmpDisconnectedError, got ${String(error)}`);
  assert.ok(error instanceof QmpError);
  assert.equal(error.name, 'QmpDisconnectedError');
  return true;
}

void describe('QmpClient against a fake monitor', () => {
  let dir: string;
  let monitor: FakeMonitor;
  let clients: QmpClient[];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rampart-qmp-'));
    monitor = await FakeMonitor.start(dir);
    clients = [];
  });

  afterEach(async () => {
    try {
      await Promise.all(clients.map((client) => client.close()));
      await monitor?.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  /** Connects and completes the greeting + qmp_capabilities handshake from the fake side. */
  async function connectReady(
    options: QmpConnectOptions = {},
  ): Promise<{ client: QmpClient; conn: FakeConnection; caps: ReceivedCommand }> {
    const connecting = QmpClient.connect(monitor.path, { connectTimeoutMs: 3_000, ...options });
    connecting.catch(() => {}); // awaited below; avoid an unhandled rejection if the fake side fails first
    const conn = await monitor.nextConnection();
    conn.send(GREETING);
    const caps = await conn.nextCommand();
    assert.equal(caps.execute, 'qmp_capabilities');
    conn.reply(caps);
    const client = await connecting;
    clients.push(client);
    return { client, conn, caps };
  }

  void test(
    'connects: greeting, qmp_capabilities handshake, version, then commands',
    TEST_TIMEOUT,
    async () => {
      const { client, conn, caps } = await connectReady();
      assert.deepEqual(caps, { execute: 'qmp_capabilities', id: caps.id });
      assert.equal(typeof caps.id, 'number');
      assert.deepEqual(client.greeting, GREETING);
      assert.equal(client.version, '7.2.0');
      assert.equal(client.connected, true);

      const status = client.queryStatus();
      const query = await conn.nextCommand();
      assert.deepEqual(query, { execute: 'query-status', id: query.id });
      assert.equal(typeof query.id, 'number');
      assert.notEqual(query.id, caps.id);
      conn.reply(query, { status: 'running', singlestep: false, running: true });
      assert.deepEqual(await status, { status: 'running', singlestep: false, running: true });

      const hmp = client.execute<string>('human-monitor-command', { 'command-line': 'info status' });
      const hmpCommand = await conn.nextCommand();
      assert.deepEqual(hmpCommand, {
        execute: 'human-monitor-command',
        arguments: { 'command-line': 'info status' },
        id: hmpCommand.id,
      });
      conn.reply(hmpCommand, 'VM status: running\r\n');
      assert.equal(await hmp, 'VM status: running\r\n');
    },
  );

  void test('typed methods send the right QMP commands and return the replies', TEST_TIMEOUT, async () => {
    const { client, conn } = await connectReady();
    const cases: Array<[() => Promise<unknown>, string, unknown, unknown]> = [
      [() => client.stop(), 'stop', {}, undefined],
      [() => client.cont(), 'cont', {}, undefined],
      [() => client.systemPowerdown(), 'system_powerdown', {}, undefined],
      [() => client.systemReset(), 'system_reset', {}, undefined],
      [
        () => client.queryCpusFast(),
        'query-cpus-fast',
        [
          {
            'cpu-index': 0,
            'qom-path': '/machine/unattached/device[0]',
            'thread-id': 4242,
            target: 'x86_64',
          },
        ],
        [
          {
            'cpu-index': 0,
            'qom-path': '/machine/unattached/device[0]',
            'thread-id': 4242,
            target: 'x86_64',
          },
        ],
      ],
      [
        () => client.queryVersion(),
        'query-version',
        { qemu: { major: 7, minor: 2, micro: 22 }, package: '' },
        { qemu: { major: 7, minor: 2, micro: 22 }, package: '' },
      ],
      [
        () => client.queryChardev(),
        'query-chardev',
        [{ label: 'qmp0', filename: 'unix:/x/qmp.sock,server=on', 'frontend-open': true }],
        [{ label: 'qmp0', filename: 'unix:/x/qmp.sock,server=on', 'frontend-open': true }],
      ],
    ];
    for (const [call, command, reply, expected] of cases) {
      const result = call();
      const received = await conn.nextCommand();
      assert.deepEqual(received, { execute: command, id: received.id });
      conn.reply(received, reply);
      assert.deepEqual(await result, expected, command);
    }
  });

  void test('matches replies by id when the monitor answers out of order', TEST_TIMEOUT, async () => {
    const { client, conn } = await connectReady();
    const status = client.queryStatus();
    const version = client.queryVersion();
    const custom = client.execute<{ n: number }>('x-custom', { n: 3 });
    const [statusCmd, versionCmd, customCmd] = [
      await conn.nextCommand(),
      await conn.nextCommand(),
      await conn.nextCommand(),
    ];
    assert.deepEqual(
      [statusCmd.execute, versionCmd.execute, customCmd.execute],
      ['query-status', 'query-version', 'x-custom'],
    );
    const ids = [statusCmd.id, versionCmd.id, customCmd.id];
    assert.ok(ids.every((id) => typeof id === 'number'));
    assert.equal(new Set(ids).size, 3, 'ids are unique');

    conn.reply(customCmd, { n: 3 });
    conn.reply(versionCmd, { qemu: { major: 7, minor: 2, micro: 5 }, package: 'p' });
    conn.reply(statusCmd, { status: 'paused', running: false });

    assert.deepEqual(await custom, { n: 3 });
    assert.deepEqual(await version, { qemu: { major: 7, minor: 2, micro: 5 }, package: 'p' });
    assert.deepEqual(await status, { status: 'paused', running: false });
  });

  void test('delivers interleaved events without mistaking them for replies', TEST_TIMEOUT, async () => {
    const { client, conn } = await connectReady();
    const all: QmpEvent[] = [];
    const stops: QmpEvent[] = [];
    const resumes: QmpEvent[] = [];
    client.on('event', (event) => all.push(event));
    client.on('STOP', (event) => stops.push(event));
    client.on('RESUME', (event) => resumes.push(event));

    // An event while nothing is pending.
    const firstShutdown = waitForEvent(client, 'SHUTDOWN');
    conn.event('SHUTDOWN', { guest: true, reason: 'guest-shutdown' });
    assert.deepEqual(await firstShutdown, {
      event: 'SHUTDOWN',
      data: { guest: true, reason: 'guest-shutdown' },
      timestamp: { seconds: 1_700_000_000, microseconds: 42 },
    });

    const stopped = client.stop();
    const status = client.queryStatus();
    const stopCmd = await conn.nextCommand();
    const statusCmd = await conn.nextCommand();

    conn.event('STOP');
    // An event whose data carries an "id" and a "return" must still be an event.
    conn.event('RESUME', { id: statusCmd.id, return: { status: 'bogus' } });
    // Event and reply in one chunk, then a reply split across writes with an event before its end.
    conn.sendRaw(
      `${JSON.stringify({ event: 'RESET', data: { guest: false }, timestamp: { seconds: 1, microseconds: 2 } })}\n` +
        `${JSON.stringify({ return: { status: 'paused', running: false }, id: statusCmd.id })}\n`,
    );
    assert.deepEqual(await status, { status: 'paused', running: false });
    const stopReply = JSON.stringify({ return: {}, id: stopCmd.id });
    conn.sendRaw(stopReply.slice(0, 5));
    await delay(20);
    conn.sendRaw(`${stopReply.slice(5)}\n`);
    await stopped;
    const powerdown = waitForEvent(client, 'POWERDOWN');
    conn.event('POWERDOWN');
    await powerdown;

    assert.deepEqual(
      all.map((event) => event.event),
      ['SHUTDOWN', 'STOP', 'RESUME', 'RESET', 'POWERDOWN'],
    );
    assert.equal(stops.length, 1);
    assert.equal(stops[0]?.data, undefined);
    assert.equal(resumes.length, 1);
    assert.deepEqual(resumes[0]?.data, { id: statusCmd.id, return: { status: 'bogus' } });
    assert.deepEqual(all[3], {
      event: 'RESET',
      data: { guest: false },
      timestamp: { seconds: 1, microseconds: 2 },
    });
  });

  void test('rejects with QmpCommandError on an error reply and keeps working', TEST_TIMEOUT, async () => {
    const { client, conn } = await connectReady();
    const failing = client.execute('no-such-command');
    const rejected = assert.rejects(failing, (error: unknown) => {
      assert.ok(error instanceof QmpCommandError, `expected QmpCommandError, got ${String(error)}`);
      assert.ok(error instanceof QmpError);
      assert.equal(error.name, 'QmpCommandError');
      assert.equal(error.errorClass, 'CommandNotFound');
      assert.equal(error.desc, 'The command no-such-command has not been found');
      assert.equal(error.command, 'no-such-command');
      assert.match(error.message, /no-such-command.*CommandNotFound/);
      return true;
    });
    const cmd = await conn.nextCommand();
    conn.fail(cmd, 'CommandNotFound', 'The command no-such-command has not been found');
    await rejected;

    const status = client.queryStatus();
    conn.reply(await conn.nextCommand(), { status: 'running', running: true });
    assert.deepEqual(await status, { status: 'running', running: true });
  });

  void test('times out a command, ignores its late reply, and keeps working', TEST_TIMEOUT, async () => {
    const { client, conn } = await connectReady({ commandTimeoutMs: 200 });

    // Default timeout from connect options.
    const started = Date.now();
    const slow = assert.rejects(client.execute('x-slow'), (error: unknown) => {
      assert.ok(error instanceof QmpTimeoutError, `expected QmpTimeoutError, got ${String(error)}`);
      assert.ok(error instanceof QmpError);
      assert.equal(error.name, 'QmpTimeoutError');
      assert.equal(error.command, 'x-slow');
      assert.equal(error.timeoutMs, 200);
      return true;
    });
    const slowCmd = await conn.nextCommand();
    await slow;
    assert.ok(Date.now() - started >= 190, 'did not time out early');

    // Per-call timeout overrides the default.
    const overridden = assert.rejects(client.execute('x-slower', undefined, 50), (error: unknown) => {
      assert.ok(error instanceof QmpTimeoutError);
      assert.equal(error.timeoutMs, 50);
      return true;
    });
    const slowerCmd = await conn.nextCommand();
    await overridden;

    // Late replies arrive while another command is pending: they must not be taken as its reply.
    const status = client.queryStatus(5_000);
    const statusCmd = await conn.nextCommand();
    conn.reply(slowCmd, { late: true });
    conn.fail(slowerCmd, 'GenericError', 'late failure');
    await delay(50);
    conn.reply(statusCmd, { status: 'running', running: true });
    assert.deepEqual(await status, { status: 'running', running: true });
    assert.equal(client.connected, true);
  });

  void test(
    'rejects every pending command with QmpDisconnectedError when the socket closes',
    TEST_TIMEOUT,
    async () => {
      const { client, conn } = await connectReady();
      const closed = waitForClose(client);
      const pending = [client.queryStatus(), client.execute('x-one'), client.execute('x-two', undefined, 0)];
      const checks = pending.map((promise) => assert.rejects(promise, isDisconnected));
      for (let i = 0; i < pending.length; i++) await conn.nextCommand();

      conn.socket.destroy();
      await within(Promise.all(checks), 2_000, 'pending commands to reject');
      assert.deepEqual(await closed, { expected: false });
      assert.equal(client.connected, false);

      // After the close, execute() fails at once without touching the socket.
      await within(
        assert.rejects(client.queryStatus(), isDisconnected),
        100,
        'execute() after close to reject',
      );
      await assert.rejects(client.quit(), isDisconnected);
    },
  );

  void test(
    'close(): pending commands reject, close is expected, execute rejects at once',
    TEST_TIMEOUT,
    async () => {
      const { client, conn } = await connectReady();
      const closed = waitForClose(client);
      const pending = assert.rejects(client.execute('x-pending'), isDisconnected);
      await conn.nextCommand();

      const closing = client.close();
      await assert.rejects(client.queryStatus(), isDisconnected);
      await closing;
      await pending;
      assert.deepEqual(await closed, { expected: true });
      await within(conn.closed, 2_000, 'the fake monitor to see the socket close');
      await client.close(); // idempotent
      assert.equal(conn.unread, 0, 'nothing was sent after close');
    },
  );

  void test('quit() succeeds when QEMU closes the socket without replying', TEST_TIMEOUT, async () => {
    const { client, conn } = await connectReady();
    const closed = waitForClose(client);
    const quitting = client.quit();
    const other = assert.rejects(client.execute('x-other'), isDisconnected);
    assert.equal((await conn.nextCommand()).execute, 'quit');
    await conn.nextCommand();
    conn.socket.destroy();
    await quitting;
    await other;
    assert.deepEqual(await closed, { expected: true });
  });

  void test('quit() succeeds when QEMU replies and then closes', TEST_TIMEOUT, async () => {
    const { client, conn } = await connectReady();
    const closed = waitForClose(client);
    const quitting = client.quit();
    const quitCmd = await conn.nextCommand();
    assert.deepEqual(quitCmd, { execute: 'quit', id: quitCmd.id });
    conn.reply(quitCmd);
    conn.socket.end();
    await quitting;
    assert.deepEqual(await closed, { expected: true });
  });

  void test('connect times out when no greeting arrives', TEST_TIMEOUT, async () => {
    const started = Date.now();
    const connecting = QmpClient.connect(monitor.path, { connectTimeoutMs: 200 });
    const rejected = assert.rejects(connecting, (error: unknown) => {
      assert.ok(error instanceof QmpTimeoutError, `expected QmpTimeoutError, got ${String(error)}`);
      assert.equal(error.command, 'connect');
      assert.equal(error.timeoutMs, 200);
      assert.match(error.message, /greeting/);
      return true;
    });
    const conn = await monitor.nextConnection();
    await rejected;
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 190 && elapsed < 2_000, `timed out after ${elapsed} ms`);
    await within(conn.closed, 2_000, 'the client to drop the socket');
  });

  void test('connect times out when qmp_capabilities gets no reply', TEST_TIMEOUT, async () => {
    const connecting = QmpClient.connect(monitor.path, { connectTimeoutMs: 300 });
    const rejected = assert.rejects(connecting, (error: unknown) => {
      assert.ok(error instanceof QmpTimeoutError, `expected QmpTimeoutError, got ${String(error)}`);
      assert.equal(error.command, 'qmp_capabilities');
      return true;
    });
    const conn = await monitor.nextConnection();
    conn.send(GREETING);
    assert.equal((await conn.nextCommand()).execute, 'qmp_capabilities');
    await rejected;
    await within(conn.closed, 2_000, 'the client to drop the socket');
  });

  for (const [label, greeting] of [
    ['a JSON object that is not a greeting', '{"hello":"world"}\n'],
    ['a reply instead of a greeting', '{"return":{}}\n'],
    ['a greeting without a version', '{"QMP":{"capabilities":[]}}\n'],
    ['a greeting without capabilities', '{"QMP":{"version":{"qemu":{"major":7,"minor":2,"micro":0}}}}\n'],
    ['a non-JSON line', 'Welcome to the HMP monitor\n'],
  ] as const) {
    void test(`connect fails with QmpProtocolError on ${label}`, TEST_TIMEOUT, async () => {
      const connecting = QmpClient.connect(monitor.path, { connectTimeoutMs: 3_000 });
      const rejected = assert.rejects(connecting, (error: unknown) => {
        assert.ok(error instanceof QmpProtocolError, `expected QmpProtocolError, got ${String(error)}`);
        assert.ok(error instanceof QmpError);
        assert.equal(error.name, 'QmpProtocolError');
        return true;
      });
      const conn = await monitor.nextConnection();
      conn.sendRaw(greeting);
      await within(rejected, 2_000, 'connect() to reject');
      await within(conn.closed, 2_000, 'the client to drop the socket');
      assert.equal(conn.received.length, 0, 'no qmp_capabilities sent after a bad greeting');
    });
  }

  void test('connect fails with QmpCommandError when qmp_capabilities is refused', TEST_TIMEOUT, async () => {
    const connecting = QmpClient.connect(monitor.path, { connectTimeoutMs: 3_000 });
    const rejected = assert.rejects(connecting, (error: unknown) => {
      assert.ok(error instanceof QmpCommandError);
      assert.equal(error.command, 'qmp_capabilities');
      assert.equal(error.errorClass, 'GenericError');
      return true;
    });
    const conn = await monitor.nextConnection();
    conn.send(GREETING);
    conn.fail(await conn.nextCommand(), 'GenericError', 'Capability negotiation is already complete');
    await rejected;
    await within(conn.closed, 2_000, 'the client to drop the socket');
  });

  void test(
    'connect fails with QmpDisconnectedError when the monitor hangs up first',
    TEST_TIMEOUT,
    async () => {
      const connecting = QmpClient.connect(monitor.path, { connectTimeoutMs: 3_000 });
      const rejected = assert.rejects(connecting, isDisconnected);
      (await monitor.nextConnection()).socket.destroy();
      await within(rejected, 2_000, 'connect() to reject');
    },
  );

  void test(
    'connect fails with QmpDisconnectedError when the socket does not exist',
    TEST_TIMEOUT,
    async () => {
      await assert.rejects(QmpClient.connect(join(dir, 'missing.sock')), (error: unknown) => {
        isDisconnected(error);
        assert.equal((error as Error & { cause?: NodeJS.ErrnoException }).cause?.code, 'ENOENT');
        return true;
      });
    },
  );
});

function findOnPath(command: string): string | undefined {
  for (const directory of (process.env.PATH ?? '').split(delimiter)) {
    if (directory && existsSync(join(directory, command))) return join(directory, command);
  }
  return undefined;
}

void describe('QmpClient against real QEMU', () => {
  void test('handshake, query-status prelaunch, queries, events, quit', { timeout: 60_000 }, async (t) => {
    const qemu = findOnPath('qemu-system-x86_64');
    assert.ok(
      qemu,
      'qemu-system-x86_64 is not on PATH. This test requires QEMU (Debian: apt-get install qemu-system-x86); it is not skipped.',
    );
    const dir = await mkdtemp(join(tmpdir(), 'rampart-qmp-qemu-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const socketPath = join(dir, 'qmp.sock');

    const child = spawn(
      qemu,
      [
        '-M',
        'pc',
        '-accel',
        'tcg',
        '-m',
        '64',
        '-nodefaults',
        '-no-user-config',
        '-display',
        'none',
        '-S',
        '-chardev',
        `socket,id=qmp0,path=${socketPath},server=on,wait=off`,
        '-mon',
        'chardev=qmp0,mode=control',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    let spawnError: Error | undefined;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (error) => {
        spawnError = error;
        resolve({ code: null, signal: null });
      });
    });

    let client: QmpClient | undefined;
    try {
      client = await connectWhenReady({
        child,
        qemu,
        socketPath,
        stderr: () => stderr,
        spawnError: () => spawnError,
      });

      assert.match(client.version, /^\d+\.\d+\.\d+$/);
      assert.ok(client.greeting.QMP.version.qemu.major >= 7, `QEMU ${client.version} is older than 7`);

      const status = await client.queryStatus();
      assert.equal(status.status, 'prelaunch');
      assert.equal(status.running, false);

      const version = await client.queryVersion();
      assert.ok(version.qemu.major >= 7, `query-version major ${version.qemu.major}`);
      assert.equal(`${version.qemu.major}.${version.qemu.minor}.${version.qemu.micro}`, client.version);

      const cpus = await client.queryCpusFast();
      assert.equal(cpus.length, 1);
      assert.equal(cpus[0]?.['cpu-index'], 0);
      assert.ok(Number.isInteger(cpus[0]?.['thread-id']) && (cpus[0]?.['thread-id'] ?? 0) > 0);

      const chardevs = await client.queryChardev();
      assert.ok(
        chardevs.some((chardev) => chardev.label === 'qmp0' && chardev.filename.includes(socketPath)),
        JSON.stringify(chardevs),
      );

      await assert.rejects(client.execute('no-such-command'), (error: unknown) => {
        assert.ok(error instanceof QmpCommandError);
        assert.equal(error.errorClass, 'CommandNotFound');
        return true;
      });

      // Several commands in flight at once.
      const [a, b] = await Promise.all([client.queryStatus(), client.queryVersion()]);
      assert.equal(a.status, 'prelaunch');
      assert.deepEqual(b, version);

      const resumed = waitForEvent(client, 'RESUME');
      await client.cont();
      const resume = await resumed;
      assert.ok(resume.timestamp.seconds > 0);
      assert.equal((await client.queryStatus()).running, true);

      const stopped = waitForEvent(client, 'STOP');
      await client.stop();
      await stopped;
      assert.equal((await client.queryStatus()).status, 'paused');

      const reset = waitForEvent(client, 'RESET');
      await client.systemReset();
      await reset;

      const powerdown = waitForEvent(client, 'POWERDOWN');
      await client.systemPowerdown();
      await powerdown;

      const closed = waitForClose(client);
      await client.quit();
      const exit = await within(exited, 10_000, 'QEMU to exit after quit');
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.deepEqual(await closed, { expected: true });
      await assert.rejects(client.queryStatus(), isDisconnected);
    } finally {
      await client?.close();
      if (child.exitCode === null && child.signalCode === null && !spawnError) {
        child.kill('SIGKILL');
        await exited;
      }
    }
  });
});

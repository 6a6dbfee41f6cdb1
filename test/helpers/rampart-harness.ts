/**
 * Starts a real all-in-one Rampart (server + local agent + QEMU under TCG) in a fresh data directory
 * for a test file, and tears every piece of it down again — VMs, QEMU processes, the agent, the server
 * and the directory — pass or fail (also from a process 'exit' hook as the last resort).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Vm } from '../../src/api/vm.js';
import { CLI_MAIN, GUEST_IMAGE_DIR } from './repo.js';

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}

export interface HarnessOptions {
  env?: Record<string, string>;
  /**
   * Further hosts: each an external `rampart agent` with its own data directory (inside the
   * harness's), uid range and name, started before the server, which connects to all of them.
   */
  extraHosts?: readonly { name: string; env?: Record<string, string> }[];
  /** Extra arguments of `rampart server` (e.g. ['--database', 'postgres://...']). */
  serverArgs?: readonly string[];
  /** The first admin's password (a second server replica on a shared database must use the first's). */
  adminPassword?: string;
  /**
   * A data directory whose secrets/ (session, audit, platform signing and master keys) this server
   * starts with: server replicas on one database share them.
   */
  secretsFrom?: string;
  /**
   * false: no agent of its own (RAMPART_AGENT_MODE=none, a control-plane-only replica whose hosts
   * join remotely); start() then waits for no host.
   */
  localAgent?: false;
  /** How many hosts must be online before start() returns (default: its own, plus extraHosts). */
  onlineHosts?: number;
}

/** uids per extra host (each host's VMs get uids no other host on this machine hands out). */
const EXTRA_HOST_UIDS = 250;

const live = new Set<RampartHarness>();
process.on('exit', () => {
  for (const harness of live) harness.killEverythingSync();
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const harness of live) harness.killEverythingSync();
    process.exit(130);
  });
}

export class RampartHarness {
  /** The first admin's password (set through RAMPART_ADMIN_PASSWORD, so no forced change). */
  readonly adminPassword: string;
  /** The parent cgroup of this run's VMs (unique, so runs never collide; removed at cleanup). */
  readonly cgroupParent = `rampart-test-${randomBytes(4).toString('hex')}`;
  /** A session token of `admin` (platform admin; acts in any tenant with ?tenant=). */
  token = '';
  readonly dataDir: string;
  url = '';
  private server: ChildProcess | null = null;
  serverOutput = '';
  /** The local agent's uid range starts here (random per run, so concurrent runs never collide). */
  private readonly uidSlot = Math.floor(Math.random() * 1000);
  private readonly extraAgents = new Map<string, ChildProcess>();

  private constructor(private readonly options: HarnessOptions) {
    this.adminPassword = options.adminPassword ?? `Adm1n-${randomBytes(18).toString('base64url')}`;
    this.dataDir = mkdtempSync(join(tmpdir(), 'rampart-test-'));
    chmodSync(this.dataDir, 0o755);
    live.add(this);
  }

  static async start(options: HarnessOptions = {}): Promise<RampartHarness> {
    const harness = new RampartHarness(options);
    const extra = options.extraHosts ?? [];
    if (options.secretsFrom) {
      const secrets = join(harness.dataDir, 'secrets');
      cpSync(join(options.secretsFrom, 'secrets'), secrets, { recursive: true });
      chmodSync(secrets, 0o700);
      for (const file of readdirSync(secrets)) chmodSync(join(secrets, file), 0o600);
    }
    try {
      for (const host of extra) harness.startExtraAgent(host.name);
      await harness.startServer();
      harness.token = await harness.login('admin', harness.adminPassword);
      const expected = options.onlineHosts ?? (options.localAgent === false ? 0 : 1) + extra.length;
      await harness.waitFor(
        async () => {
          const hosts = await harness.api<{ items: { state: string }[] }>('GET', '/v1/hosts');
          return hosts.body.items.filter((h) => h.state === 'online').length === expected;
        },
        60_000,
        `${expected} host(s) online`,
      );
    } catch (error) {
      await harness.cleanup();
      throw error;
    }
    return harness;
  }

  get agentDir(): string {
    return join(this.dataDir, 'agent');
  }

  /** The data directory of an extra host's agent. */
  hostDir(name: string): string {
    return join(this.dataDir, 'hosts', name);
  }

  /** The first uid of an extra host's range (see EXTRA_HOST_UIDS). */
  extraHostUidBase(name: string): number {
    const index = (this.options.extraHosts ?? []).findIndex((h) => h.name === name);
    if (index < 0) throw new Error(`no extra host ${name}`);
    return 3_400_000 + (this.uidSlot * 4 + index) * EXTRA_HOST_UIDS;
  }

  /** Starts (or restarts) the agent of an extra host; the server reconnects to it by itself. */
  startExtraAgent(name: string): void {
    const host = (this.options.extraHosts ?? []).find((h) => h.name === name);
    if (!host) throw new Error(`no extra host ${name}`);
    const dir = this.hostDir(name);
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const log = openSync(join(this.dataDir, `agent-${name}.log`), 'a');
    const agent = spawn(
      process.execPath,
      [CLI_MAIN, 'agent', '--data-dir', dir, '--socket', join(dir, 'agent.sock')],
      {
        env: {
          PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
          RAMPART_HOST_NAME: name,
          RAMPART_ACCEL: 'tcg',
          RAMPART_UID_BASE: String(this.extraHostUidBase(name)),
          RAMPART_UID_COUNT: String(EXTRA_HOST_UIDS),
          RAMPART_CGROUP_PARENT: this.cgroupParent,
          // The hosts share this machine's CPUs: only the local agent may pin them.
          RAMPART_DEDICATED_CPUS: 'none',
          RAMPART_LOG_LEVEL: 'info',
          ...host.env,
        },
        stdio: ['ignore', log, log],
        detached: true,
      },
    );
    closeSync(log);
    agent.unref();
    this.extraAgents.set(name, agent);
  }

  /** Kills an extra host's agent (its QEMUs keep running, as when an agent crashes). */
  killExtraAgent(name: string): void {
    this.extraAgents.get(name)?.kill('SIGKILL');
    this.extraAgents.delete(name);
  }

  get serverPid(): number | undefined {
    return this.server?.pid;
  }

  agentPid(): number | null {
    const file = join(this.agentDir, 'agent.pid');
    if (!existsSync(file)) return null;
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) ? pid : null;
  }

  /** Starts (or restarts) the server; `env` adds to or overrides the harness's environment for this run. */
  async startServer(overrides: Record<string, string> = {}): Promise<void> {
    // A second server beside a running one would lose track of the first (cleanup could not kill it,
    // and it would keep the test file's process alive): a test that failed before killing it ends here.
    if (this.server && this.server.exitCode === null && this.server.signalCode === null)
      throw new Error('the server is running already: kill it (killServer) before starting it again');
    const extraSockets = (this.options.extraHosts ?? []).map((h) => join(this.hostDir(h.name), 'agent.sock'));
    const env: Record<string, string> = {
      ...(extraSockets.length > 0 ? { RAMPART_AGENT_SOCKETS: extraSockets.join(',') } : {}),
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      RAMPART_DATA_DIR: this.dataDir,
      RAMPART_LISTEN: '127.0.0.1:0',
      RAMPART_ADMIN_PASSWORD: this.adminPassword,
      // Long enough for any test file: the harness's admin session never needs a refresh.
      RAMPART_SESSION_TTL_SECONDS: '7200',
      RAMPART_GUEST_IMAGE_DIR: GUEST_IMAGE_DIR,
      RAMPART_ACCEL_CACHE: join(tmpdir(), 'rampart-test-accel-cache.json'),
      RAMPART_UID_BASE: String(3_100_000 + this.uidSlot * 100),
      RAMPART_CGROUP_PARENT: this.cgroupParent,
      RAMPART_LOG_LEVEL: 'info',
      ...(this.options.localAgent === false ? { RAMPART_AGENT_MODE: 'none' } : {}),
      ...this.options.env,
      ...overrides,
    };
    const server = spawn(process.execPath, [CLI_MAIN, 'server', ...(this.options.serverArgs ?? [])], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.server = server;
    this.serverOutput = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`server did not start:\n${this.serverOutput}`)),
        30_000,
      );
      const onData = (chunk: Buffer) => {
        this.serverOutput += chunk.toString('utf8');
        const match = /listening on (http:\/\/[0-9.]+:\d+)/.exec(this.serverOutput);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]!);
        }
      };
      server.stdout.on('data', onData);
      server.stderr.on('data', onData);
      server.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`server exited with ${code}:\n${this.serverOutput}`));
      });
    });
    this.url = url;
  }

  /** Logs in as `username` and answers the session token. */
  async login(username: string, password: string, extra: Record<string, string> = {}): Promise<string> {
    const response = await this.api<{ token: string }>(
      'POST',
      '/v1/auth/login',
      { username, password, ...extra },
      { authorization: '' },
    );
    if (response.status !== 200)
      throw new Error(`login ${username}: ${response.status} ${JSON.stringify(response.body)}`);
    return response.body.token;
  }

  /** Creates a user (no forced password change), binds it to `tenant` with `role`, and logs it in. */
  async createMember(username: string, password: string, tenant: string, role: string): Promise<string> {
    const created = await this.api('POST', '/v1/users', { username, password, mustChangePassword: false });
    if (created.status !== 201)
      throw new Error(`user ${username}: ${created.status} ${JSON.stringify(created.body)}`);
    const bound = await this.api('POST', `/v1/tenants/${tenant}/members`, { user: username, role });
    if (bound.status !== 201)
      throw new Error(`bind ${username}: ${bound.status} ${JSON.stringify(bound.body)}`);
    return this.login(username, password);
  }

  /**
   * TEST DATA: inserts a private kernel+initrd image owned by `tenant` straight into the database (for
   * visibility tests before uploads exist). Its files do not exist; it is never booted.
   */
  insertTestImage(tenant: string, image: { id: string; name: string }): void {
    const db = new Database(join(this.dataDir, 'db', 'rampart.db'));
    try {
      const owner = db.prepare('SELECT id FROM tenants WHERE name = ?').get(tenant) as { id: string };
      const sha = createHash('sha256').update(`test data: ${tenant}/${image.name}`).digest('hex');
      db.prepare(
        `INSERT INTO images (id, name, format, sha256, size_bytes, kernel_path, initrd_path, kernel_sha256,
           initrd_sha256, description, created_at, tenant_id, visibility)
         VALUES (?, ?, 'kernel-initrd', ?, 1, '/nonexistent/k', '/nonexistent/i', ?, ?, 'test data', ?, ?, 'private')`,
      ).run(image.id, image.name, sha, sha, sha, new Date().toISOString(), owner.id);
    } finally {
      db.close();
    }
  }

  /** Kills the server process (SIGKILL by default) without touching the agent or VMs. */
  async killServer(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const server = this.server;
    if (!server || server.exitCode !== null || server.signalCode !== null) {
      this.server = null;
      return;
    }
    await new Promise<void>((resolve) => {
      server.once('exit', () => resolve());
      server.kill(signal);
    });
    this.server = null;
  }

  async api<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<ApiResponse<T>> {
    const allHeaders: Record<string, string> = { authorization: `Bearer ${this.token}`, ...headers };
    if (allHeaders.authorization === '') delete allHeaders.authorization;
    const init: RequestInit = { method, headers: allHeaders };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] = 'application/json';
    }
    const response = await fetch(`${this.url}${path}`, init);
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON (e.g. /metrics)
    }
    return { status: response.status, body: parsed as T, headers: response.headers };
  }

  async vm(ref: string): Promise<Vm> {
    const response = await this.api<Vm>('GET', `/v1/vms/${ref}`);
    if (response.status !== 200)
      throw new Error(`GET vm ${ref}: ${response.status} ${JSON.stringify(response.body)}`);
    return response.body;
  }

  async waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown = null;
    while (Date.now() < deadline) {
      try {
        if (await check()) return;
      } catch (error) {
        lastError = error;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `timed out after ${timeoutMs} ms waiting for ${what}${lastError instanceof Error ? `: ${lastError.message}` : ''}`,
    );
  }

  async waitForState(ref: string, state: Vm['state'], timeoutMs = 90_000): Promise<Vm> {
    let last: Vm | null = null;
    await this.waitFor(
      async () => {
        last = await this.vm(ref);
        return last.state === state;
      },
      timeoutMs,
      `VM ${ref} to be ${state} (last: ${JSON.stringify(last)})`,
    );
    return last!;
  }

  /** Pids of QEMU processes started for this data directory. */
  qemuPids(): number[] {
    const pids: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
        // Ours: its command line names our data directory, or (jailed) its root lies inside it.
        const root = readlinkSync(`/proc/${entry}/root`);
        const ours = cmdline.includes(this.dataDir) || root.startsWith(`${this.dataDir}/`);
        if (cmdline.includes('qemu-system') && ours && state !== 'Z') pids.push(Number(entry));
      } catch {
        // process went away
      }
    }
    return pids;
  }

  /** Deletes all VMs through the API (best effort), then kills everything and removes the directory. */
  async cleanup(): Promise<void> {
    try {
      if (this.server && this.url) {
        const list = await this.api<{ items: Vm[] }>('GET', '/v1/vms');
        for (const vm of list.body.items ?? []) await this.api('DELETE', `/v1/vms/${vm.id}`);
        await this.waitFor(
          async () => (await this.api<{ items: Vm[] }>('GET', '/v1/vms')).body.items.length === 0,
          30_000,
          'VMs deleted',
        );
      }
    } catch {
      // fall through to the hard cleanup
    }
    await this.killServer('SIGTERM').catch(() => undefined);
    this.killEverythingSync();
  }

  killEverythingSync(): void {
    this.server?.kill('SIGKILL');
    for (const name of [...this.extraAgents.keys()]) this.killExtraAgent(name);
    const agent = this.agentPid();
    if (agent) {
      try {
        process.kill(agent, 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (const pid of this.qemuPids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    this.removeCgroups();
    rmSync(this.dataDir, { recursive: true, force: true });
    live.delete(this);
  }

  /** The VM cgroups (`<hierarchy>/<parent>/vm-<id>`) that exist now, across every hierarchy. */
  vmCgroups(): string[] {
    const found: string[] = [];
    for (const dir of this.parentCgroupDirs()) {
      for (const entry of readdirSync(dir)) if (entry.startsWith('vm-')) found.push(join(dir, entry));
    }
    return found;
  }

  private parentCgroupDirs(): string[] {
    return parentCgroupDirs(this.cgroupParent);
  }

  /** Removes this run's cgroups (their processes were killed just before; retries while they exit). */
  private removeCgroups(): void {
    removeCgroupTree(this.cgroupParent);
  }
}

/** `<hierarchy>/<parent>` for every cgroup hierarchy (and the unified root) where it exists now. */
export function parentCgroupDirs(parent: string): string[] {
  const root = '/sys/fs/cgroup';
  const candidates = [join(root, parent)];
  try {
    for (const entry of readdirSync(root)) candidates.push(join(root, entry, parent));
  } catch {
    // no cgroup filesystem
  }
  return candidates.filter((dir) => existsSync(dir));
}

/**
 * Removes the VM cgroups under `parent` and `parent` itself in every hierarchy (their processes were
 * killed just before; retries while they exit).
 */
export function removeCgroupTree(parent: string): void {
  for (let attempt = 0; attempt < 50; attempt++) {
    let left = 0;
    for (const dir of parentCgroupDirs(parent)) {
      for (const child of readdirSync(dir).filter((e) => e.startsWith('vm-'))) {
        try {
          rmdirSync(join(dir, child));
        } catch {
          left++;
        }
      }
      try {
        rmdirSync(dir);
      } catch {
        left++;
      }
    }
    if (left === 0) return;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
}

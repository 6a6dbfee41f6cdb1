/**
 * BENCHMARK MODE ONLY — never part of the product. Simulated host agents for the control-plane scale
 * benchmark (bench/control-plane.bench.ts): one node process serves N fake hosts, each on its own unix
 * socket `<dir>/host-0001.sock`, ... and speaking the real agent protocol (src/api/agent-protocol.ts)
 * so that a real `rampart server` with RAMPART_AGENT_MODE=external and RAMPART_AGENT_SOCKETS=<those
 * sockets> manages them as it would real hosts. Nothing is booted, no tap, cgroup or file is made:
 *
 *   node dist/bench/lib/simulated-hosts.js --dir /tmp/x --hosts 1000 [--cpus 64] [--memory-mib 262144]
 *
 * Each host says hello with a stable host id (derived from --seed and its number), hostname sim-0001...,
 * the given capacity and accelerator tcg, then answers every request with a schema-valid success: an
 * `apply` that wants the VM on answers `starting` and reports `running` by `vm.status` right after, or
 * --boot-ms later (as the real agent does once the guest's first heartbeat arrives); stopped/paused likewise; `remove`
 * forgets the VM; firewall, counters, console and volume requests succeed without doing anything.
 * Every message it sends is checked against the server's own validator (agentMessageValidator): the
 * server drops invalid messages silently, so a mismatch here stops the simulator loudly instead.
 *
 * Prints one banner line, then `ready <n> <dir>` once every socket listens. With --hold-hello the hosts
 * say hello only once the line `go` arrives on stdin. SIGTERM/SIGINT close the sockets and remove them.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  AGENT_PROTOCOL_VERSION,
  MAX_MESSAGE_BYTES,
  agentMessageValidator,
  agentRequestValidator,
  type AgentRequest,
  type HostInfo,
  type VmIntent,
  type VmPhase,
  type VmStatus,
} from '../../src/api/agent-protocol.js';
import { hardeningNotRunning } from '../../src/api/hardening.js';
import { readJsonLines, writeJsonLine } from '../../src/common/json-lines.js';

export const SIMULATOR_BANNER =
  'BENCHMARK SIMULATOR: simulated host agents (no VM is booted; for bench/control-plane.bench.ts only)';

/** The socket path of simulated host `index` (0-based) in `dir`. */
export function simulatedSocket(dir: string, index: number): string {
  return join(dir, `host-${String(index + 1).padStart(4, '0')}.sock`);
}

/** A stable UUID (version 4 layout) from a seed and a host number. */
function stableUuid(seed: string, index: number): string {
  const h = createHash('sha256').update(`rampart-bench-sim:${seed}:${index}`).digest('hex');
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

interface SimVm {
  intent: VmIntent;
  phase: VmPhase;
  bootId: number;
  rebootId: number;
  uid: number;
  pid: number | null;
  startedAt: number | null;
}

/**
 * --hold-hello: connections are accepted but no host says hello before the line `go` arrives on stdin
 * (lets the benchmark start every server replica before any host announces itself).
 */
let helloGate: Promise<void> = Promise.resolve();

/** --boot-ms: how long a simulated guest takes from `starting` to `running` (0: the next event-loop turn). */
let bootMs = 0;
function afterBoot(run: () => void): void {
  if (bootMs > 0) setTimeout(run, bootMs);
  else setImmediate(run);
}

/** Counts across all hosts (printed on exit). */
const totals = { requests: 0, applies: 0, removes: 0, invalidRequests: 0 };

class SimulatedHost {
  private readonly vms = new Map<string, SimVm>();
  private current: Socket | null = null;
  private server: Server | null = null;
  private nextUid: number;
  private nextPid: number;

  constructor(
    readonly socketPath: string,
    readonly info: HostInfo,
    index: number,
  ) {
    this.nextUid = 5_000_000 + index * 10_000;
    this.nextPid = 100_000 + index * 10_000;
  }

  async listen(): Promise<void> {
    rmSync(this.socketPath, { force: true });
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => resolve());
    });
  }

  close(): void {
    this.current?.destroy();
    this.server?.close();
    rmSync(this.socketPath, { force: true });
  }

  /** One server connection at a time, as the real agent: a new one replaces the old. */
  private accept(socket: Socket): void {
    this.current?.destroy();
    this.current = socket;
    socket.on('close', () => {
      if (this.current === socket) this.current = null;
    });
    socket.on('error', () => undefined);
    readJsonLines(socket, {
      maxLineBytes: MAX_MESSAGE_BYTES,
      onValue: (value) => this.handle(socket, value),
      onError: (error) => console.error(`${this.info.hostname}: bad line from server: ${error.message}`),
    });
    void helloGate.then(() =>
      send(socket, { type: 'hello', protocolVersion: AGENT_PROTOCOL_VERSION, host: this.info }),
    );
  }

  private handle(socket: Socket, value: unknown): void {
    totals.requests++;
    if (!agentRequestValidator.Check(value)) {
      totals.invalidRequests++;
      const id = typeof (value as { id?: unknown })?.id === 'number' ? (value as { id: number }).id : 0;
      send(socket, {
        type: 'reply',
        id,
        ok: false,
        error: { code: 'INVALID_REQUEST', message: 'request does not match the protocol' },
      });
      return;
    }
    let result: unknown;
    try {
      result = this.execute(value);
    } catch (error) {
      send(socket, {
        type: 'reply',
        id: value.id,
        ok: false,
        error: { code: 'FAILED', message: (error as Error).message },
      });
      return;
    }
    send(socket, { type: 'reply', id: value.id, ok: true, result });
  }

  private execute(request: AgentRequest): unknown {
    switch (request.type) {
      case 'sync': {
        const wanted = new Set(request.vms.map((vm) => vm.id));
        for (const id of [...this.vms.keys()]) if (!wanted.has(id)) this.vms.delete(id);
        return { statuses: request.vms.map((intent) => this.reconcile(intent)) };
      }
      case 'lease':
        return { fenced: null, nowMs: Date.now() };
      case 'apply':
        totals.applies++;
        return { status: this.reconcile(request.vm) };
      case 'remove':
        totals.removes++;
        return { removed: this.vms.delete(request.vmId) };
      case 'console.tail':
        this.vm(request.vmId);
        return { dataBase64: '', capBytes: 1024 * 1024 };
      case 'console.write':
        this.vm(request.vmId);
        return { written: Buffer.from(request.dataBase64, 'base64').length };
      case 'firewall':
        return { generation: request.firewall.generation };
      case 'net.counters':
        return { ports: [] };
      case 'vm.hardening':
        this.vm(request.vmId);
        return hardeningNotRunning('simulated host (benchmark): no QEMU runs here');
      case 'volume.erase':
      case 'snapshot.erase':
        return { existed: false, bytes: 0 };
      case 'volume.snapshot':
      case 'volume.restore':
      case 'volume.clone':
      case 'volume.export':
      case 'volume.import':
        return { bytes: 0 };
      case 'certificate.request':
      case 'certificate.install':
        throw new Error('simulated hosts have no certificate');
      default: {
        const unknown: never = request;
        throw new Error(`${(unknown as { type: string }).type} is not supported by the simulator`);
      }
    }
  }

  private vm(id: string): SimVm {
    const vm = this.vms.get(id);
    if (!vm) throw new Error('unknown VM');
    return vm;
  }

  /**
   * The real agent's reconcile without QEMU: a VM wanted on and not running for this bootId starts
   * (answered `starting`, then `running` by vm.status on the next turn of the event loop).
   */
  private reconcile(intent: VmIntent): VmStatus {
    let vm = this.vms.get(intent.id);
    if (!vm) {
      vm = {
        intent,
        phase: 'stopped',
        bootId: 0,
        rebootId: intent.rebootId,
        uid: this.nextUid++,
        pid: null,
        startedAt: null,
      };
      this.vms.set(intent.id, vm);
    }
    vm.intent = intent;
    if (intent.power === 'stopped') {
      vm.phase = 'stopped';
      vm.pid = null;
      vm.startedAt = null;
      return this.status(vm);
    }
    if (vm.pid === null || intent.bootId > vm.bootId) {
      vm.bootId = Math.max(vm.bootId, intent.bootId);
      vm.pid = this.nextPid++;
      vm.startedAt = Date.now();
      vm.phase = 'starting';
      const answered = this.status(vm);
      const boot = vm.bootId;
      afterBoot(() => {
        const now = this.vms.get(intent.id);
        if (now !== vm || vm.bootId !== boot || vm.phase !== 'starting') return;
        vm.phase = vm.intent.power === 'paused' ? 'paused' : 'running';
        this.report(vm);
      });
      return answered;
    }
    if (intent.rebootId > vm.rebootId) vm.rebootId = intent.rebootId;
    if (intent.power === 'paused' && vm.phase !== 'paused') vm.phase = 'paused';
    else if (intent.power === 'running' && vm.phase === 'paused') vm.phase = 'running';
    return this.status(vm);
  }

  private status(vm: SimVm): VmStatus {
    const up = vm.phase === 'running' || vm.phase === 'paused';
    return {
      id: vm.intent.id,
      phase: vm.phase,
      bootId: vm.bootId,
      rebootId: vm.rebootId,
      pid: vm.pid,
      uid: vm.uid,
      accelerator: vm.pid === null ? null : 'tcg',
      guestIps: [],
      lastHeartbeatAt: up ? new Date().toISOString() : null,
      guestUptimeSeconds: up && vm.startedAt !== null ? (Date.now() - vm.startedAt) / 1000 : null,
      bootMs: up && vm.startedAt !== null ? Math.max(1, Date.now() - vm.startedAt) : null,
      error: null,
      resources: null,
      fatal: false,
    };
  }

  private report(vm: SimVm): void {
    if (this.current && !this.current.destroyed)
      send(this.current, { type: 'vm.status', status: this.status(vm) });
  }
}

/** Every outgoing message passes the server's own validator first (the server drops invalid ones). */
function send(socket: Socket, message: unknown): void {
  if (!agentMessageValidator.Check(message)) {
    const errors = [...agentMessageValidator.Errors(message)].slice(0, 3);
    console.error(
      `simulated-hosts: BUG: a message the server would drop: ${JSON.stringify(message).slice(0, 300)} ` +
        JSON.stringify(errors).slice(0, 600),
    );
    process.exit(70);
  }
  if (!socket.destroyed) writeJsonLine(socket, message);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string' },
      hosts: { type: 'string', default: '1000' },
      cpus: { type: 'string', default: '64' },
      'memory-mib': { type: 'string', default: String(256 * 1024) },
      seed: { type: 'string', default: 'rampart' },
      'hold-hello': { type: 'boolean', default: false },
      'boot-ms': { type: 'string', default: '0' },
    },
  });
  const count = Number(values.hosts);
  const cpus = Number(values.cpus);
  const memoryMiB = Number(values['memory-mib']);
  bootMs = Number(values['boot-ms']);
  if (!Number.isInteger(bootMs) || bootMs < 0 || bootMs > 600_000)
    throw new Error('--boot-ms must be 0..600000');
  if (!values.dir) throw new Error('--dir is required');
  if (!Number.isInteger(count) || count < 1 || count > 9999) throw new Error('--hosts must be 1..9999');
  if (!Number.isInteger(cpus) || cpus < 1) throw new Error('--cpus must be a positive integer');
  if (!Number.isInteger(memoryMiB) || memoryMiB < 1024) throw new Error('--memory-mib must be >= 1024');
  const dir = values.dir;
  console.log(SIMULATOR_BANNER);
  if (values['hold-hello'])
    helloGate = new Promise<void>((release) => {
      let buffered = '';
      process.stdin.setEncoding('utf8');
      process.stdin.on('data', (chunk: string) => {
        buffered += chunk;
        if (/^go$/m.test(buffered)) {
          console.log('hello released');
          release();
        }
      });
    });
  mkdirSync(dir, { recursive: true, mode: 0o700 });

  const hosts: SimulatedHost[] = [];
  for (let i = 0; i < count; i++) {
    const info: HostInfo = {
      hostId: stableUuid(values.seed, i),
      hostname: `sim-${String(i + 1).padStart(4, '0')}`,
      agentVersion: 'simulated',
      qemuVersion: 'none (simulated host)',
      accelerator: 'tcg',
      acceleratorReason: 'simulated host (benchmark): nothing is booted',
      capacity: {
        cpus,
        memoryMiB,
        vcpusAllocatable: cpus * 4,
        memoryMiBAllocatable: memoryMiB - 512,
      },
      dedicatedCores: [],
    };
    hosts.push(new SimulatedHost(simulatedSocket(dir, i), info, i));
  }
  await Promise.all(hosts.map((h) => h.listen()));
  console.log(`ready ${count} ${dir}`);

  const shutdown = () => {
    for (const host of hosts) host.close();
    console.log(
      `simulated-hosts: stopped (${totals.requests} requests, ${totals.applies} applies, ` +
        `${totals.removes} removes, ${totals.invalidRequests} invalid)`,
    );
    process.exit(0);
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

// Run as a program only (the benchmark imports simulatedSocket and the banner from here).
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  main().catch((error: unknown) => {
    console.error(`simulated-hosts failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });

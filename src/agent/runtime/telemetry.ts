/**
 * The agent's reports for the security engine (src/api/telemetry.ts), every RAMPART_TELEMETRY_SECONDS:
 *
 * - anti-spoofing drops: the growth of each port's per-reason nft counters since the last read (the
 *   first read after a start is only a baseline: counters carried over from before are not new);
 * - denied flows: the elements of the `denied_*` sets that were not there at the last read (nft keeps
 *   each flow a minute, so one flow is reported at most once a minute);
 * - one sample per running VM: CPU time from its cgroup over the interval (as a share of its vCPUs),
 *   memory, packets and bytes of its taps from `/proc/<qemu pid>/net/dev` (the tap counters of
 *   QEMU's own network namespace; a tap receives what the guest sends), and bytes and operations
 *   read and written on its disks (QMP `query-blockstats`).
 */
import { readFile } from 'node:fs/promises';
import type { VmIntent } from '../../api/agent-protocol.js';
import type { PortCounters } from '../../api/host-network.js';
import {
  MAX_DENIED_PER_REPORT,
  type DeniedFlowReport,
  type SpoofDropReport,
  type TelemetryReport,
  type VmSampleReport,
} from '../../api/telemetry.js';
import type { Logger } from '../../common/logger.js';
import type { CgroupUsage } from '../cgroups/cgroup-driver.js';
import type { FirewallTelemetry } from '../net/firewall.js';
import type { DiskUsage } from './vm-instance.js';

/** Per-interface counters of one network namespace, from the host's view of the interface. */
export interface InterfaceCounters {
  rxBytes: number;
  rxPackets: number;
  txBytes: number;
  txPackets: number;
}

/** Parses `/proc/<pid>/net/dev`. */
export function parseNetDev(text: string): Map<string, InterfaceCounters> {
  const out = new Map<string, InterfaceCounters>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const fields = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map(Number);
    if (name === '' || fields.length < 16 || fields.some((f) => !Number.isFinite(f))) continue;
    out.set(name, { rxBytes: fields[0]!, rxPackets: fields[1]!, txBytes: fields[8]!, txPackets: fields[9]! });
  }
  return out;
}

/** What telemetry needs of a VM. */
export interface SampledVm {
  readonly id: string;
  readonly pid: number | null;
  readonly intent: Pick<VmIntent, 'vcpus' | 'ports'>;
  resourceUsage(): CgroupUsage | null;
  diskUsage(): Promise<DiskUsage | null>;
}

export interface HostTelemetryDeps {
  firewall: () => Promise<FirewallTelemetry>;
  vms: () => readonly SampledVm[];
  /** Told every report that has something in it. */
  report: (report: TelemetryReport) => void;
  log: Pick<Logger, 'warn' | 'error'>;
  intervalMs: number;
  /** Default: read `/proc/<pid>/net/dev`. */
  readNetDev?: (pid: number) => Promise<string>;
  now?: () => number;
}

interface VmBaseline {
  pid: number;
  at: number;
  cpuUsageUsec: number | null;
  guestTx: { packets: number; bytes: number };
  guestRx: { packets: number; bytes: number };
  disk: DiskUsage | null;
}

const deniedKey = (f: DeniedFlowReport) =>
  `${f.deniedBy} ${f.srcTag} ${f.dstTag ?? 0} ${f.protocol} ${f.dstIp} ${f.dstPort}`;

const growth = (now: number, before: number | undefined) =>
  before === undefined || now < before ? now : now - before;

export class HostTelemetry {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** Spoof counters by port tap+tag and reason at the last read (null: no read yet). */
  private spoofBaseline: Map<string, number> | null = null;
  private deniedBaseline = new Set<string>();
  private readonly vmBaseline = new Map<string, VmBaseline>();
  private readonly now: () => number;
  private readonly readNetDev: (pid: number) => Promise<string>;

  constructor(private readonly deps: HostTelemetryDeps) {
    this.now = deps.now ?? Date.now;
    this.readNetDev = deps.readNetDev ?? ((pid) => readFile(`/proc/${pid}/net/dev`, 'utf8'));
  }

  start(): void {
    if (this.deps.intervalMs <= 0 || this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.deps.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One read and report (a read still running makes this one a no-op). */
  async tick(): Promise<TelemetryReport | null> {
    if (this.running) return null;
    this.running = true;
    try {
      const report = await this.collect();
      if (report.spoofDrops.length + report.denied.length + report.samples.length > 0)
        this.deps.report(report);
      return report;
    } catch (error) {
      this.deps.log.error({ err: (error as Error).message }, 'telemetry failed');
      return null;
    } finally {
      this.running = false;
    }
  }

  private async collect(): Promise<TelemetryReport> {
    const firewall = await this.deps.firewall();
    const spoofDrops = this.spoofDrops(firewall.counters);
    const { denied, truncated } = this.newDenials(firewall);
    const samples = await this.samples();
    return { spoofDrops, denied, deniedTruncated: truncated, samples };
  }

  private spoofDrops(counters: readonly PortCounters[]): SpoofDropReport[] {
    const current = new Map<string, number>();
    const drops: SpoofDropReport[] = [];
    for (const port of counters) {
      for (const [reason, packets] of Object.entries(port.spoofDrops)) {
        const key = `${port.tap}/${port.tag}/${reason}`;
        current.set(key, packets);
        if (this.spoofBaseline === null) continue;
        // A port new since the last read starts from zero: all its drops are new.
        const delta = growth(packets, this.spoofBaseline.get(key) ?? 0);
        if (delta > 0)
          drops.push({ tag: port.tag, reason: reason as SpoofDropReport['reason'], packets: delta });
      }
    }
    this.spoofBaseline = current;
    return drops;
  }

  private newDenials(firewall: FirewallTelemetry): { denied: DeniedFlowReport[]; truncated: number } {
    const current = new Set<string>();
    const denied: DeniedFlowReport[] = [];
    let truncated = 0;
    for (const flow of firewall.denied) {
      const key = deniedKey(flow);
      current.add(key);
      if (this.deniedBaseline.has(key)) continue;
      if (denied.length < MAX_DENIED_PER_REPORT) denied.push(flow);
      else truncated += 1;
    }
    this.deniedBaseline = current;
    return { denied, truncated };
  }

  private async samples(): Promise<VmSampleReport[]> {
    const now = this.now();
    const samples: VmSampleReport[] = [];
    const seen = new Set<string>();
    for (const vm of this.deps.vms()) {
      const pid = vm.pid;
      if (pid === null) continue;
      seen.add(vm.id);
      let interfaces: Map<string, InterfaceCounters>;
      try {
        interfaces = parseNetDev(await this.readNetDev(pid));
      } catch {
        continue; // QEMU went away meanwhile
      }
      // The guest sends what its taps receive.
      const guestTx = { packets: 0, bytes: 0 };
      const guestRx = { packets: 0, bytes: 0 };
      for (const port of vm.intent.ports) {
        const c = interfaces.get(port.tap);
        if (!c) continue;
        guestTx.packets += c.rxPackets;
        guestTx.bytes += c.rxBytes;
        guestRx.packets += c.txPackets;
        guestRx.bytes += c.txBytes;
      }
      const usage = vm.resourceUsage();
      const disk = await vm.diskUsage();
      const current: VmBaseline = {
        pid,
        at: now,
        cpuUsageUsec: usage?.cpuUsageUsec ?? null,
        guestTx,
        guestRx,
        disk,
      };
      const before = this.vmBaseline.get(vm.id);
      this.vmBaseline.set(vm.id, current);
      // A first sight or a new QEMU (restart) is only a baseline.
      if (!before || before.pid !== pid || now <= before.at) continue;
      const seconds = (now - before.at) / 1000;
      const cpuUsec =
        current.cpuUsageUsec !== null && before.cpuUsageUsec !== null
          ? growth(current.cpuUsageUsec, before.cpuUsageUsec)
          : 0;
      const cpuPercent = Math.min(100, (cpuUsec / (seconds * 1e6 * Math.max(1, vm.intent.vcpus))) * 100);
      const txPackets = growth(guestTx.packets, before.guestTx.packets);
      const txBytes = growth(guestTx.bytes, before.guestTx.bytes);
      const rxPackets = growth(guestRx.packets, before.guestRx.packets);
      const rxBytes = growth(guestRx.bytes, before.guestRx.bytes);
      const round = (v: number) => Math.round(v * 100) / 100;
      const diskGrowth = (key: keyof DiskUsage) =>
        disk && before.disk ? growth(disk[key], before.disk[key]) : 0;
      const diskReadBytes = diskGrowth('readBytes');
      const diskWriteBytes = diskGrowth('writeBytes');
      samples.push({
        vmId: vm.id,
        intervalSeconds: round(seconds),
        cpuPercent: round(cpuPercent),
        memoryBytes: usage?.memoryBytes ?? null,
        txPackets,
        txBytes,
        rxPackets,
        rxBytes,
        txPps: round(txPackets / seconds),
        txBps: round(txBytes / seconds),
        rxPps: round(rxPackets / seconds),
        rxBps: round(rxBytes / seconds),
        diskReadBytes,
        diskWriteBytes,
        diskReadOps: diskGrowth('readOps'),
        diskWriteOps: diskGrowth('writeOps'),
        diskReadBps: round(diskReadBytes / seconds),
        diskWriteBps: round(diskWriteBytes / seconds),
      });
    }
    for (const id of [...this.vmBaseline.keys()]) if (!seen.has(id)) this.vmBaseline.delete(id);
    return samples;
  }
}

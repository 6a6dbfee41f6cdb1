/**
 * Turns an agent's telemetry report (src/api/telemetry.ts) into security events for the detection
 * engine, and VM samples for the console's charts:
 *
 * - each port's anti-spoofing drops of forged frames -> `port.spoof_drop` (one per port and reason per
 *   report);
 * - each denied TCP/UDP flow of a local sender -> `port.egress_denied` (the port-scan rule counts the
 *   distinct destination ports of one VM);
 * - each VM sample -> the VM's sample ring (GET /v1/vms/{vm}/samples) and, when the VM is busy (CPU
 *   at least BUSY_CPU_PERCENT or BUSY_PPS packets/s either way), a `vm.sample` event: idle samples would
 *   only push older evidence out of the bounded event table, and every shipped sample rule needs a busy
 *   VM.
 *
 * A report is checked against its schema, and tags and VM ids are resolved against the ports and VMs
 * the server placed on the reporting host: an agent cannot speak for another host's VMs. The
 * high-volume kinds are recorded without a log line each.
 */
import {
  telemetryReportValidator,
  type DeniedFlowReport,
  type SpoofDropReport,
  type TelemetryReport,
  type VmSampleReport,
} from '../../api/telemetry.js';
import type { Logger } from '../../common/logger.js';
import type { VmSampleStore } from '../compute/vm-samples.js';
import { nowIso, type Db } from '../store/database.js';
import type { SecurityEventInput, SecurityEventLog } from './security-events.js';

export const BUSY_CPU_PERCENT = 50;
/**
 * Anti-spoofing reasons that mean a forged or rogue frame (a foreign MAC or IP, a rogue DHCP server or
 * router advertisement). `ethertype` (a protocol not offered, e.g. IPv6) is counted on the port but is
 * no event: every guest with IPv6 on sends some.
 */
export const FORGED_REASONS: ReadonlySet<string> = new Set([
  'mac',
  'ip',
  'arp',
  'dhcp-server',
  'router-advert',
]);
export const BUSY_PPS = 1000;

interface PortOnHost {
  id: string;
  tag: number;
  tenantId: string;
  vmId: string;
  vmName: string;
}

export interface TelemetryIngestDeps {
  db: Db;
  events: Pick<SecurityEventLog, 'record'>;
  samples: VmSampleStore;
  log: Pick<Logger, 'warn' | 'error'>;
}

export class TelemetryIngest {
  constructor(private readonly deps: TelemetryIngestDeps) {}

  /** Handles one report of `hostId`'s agent; answers the events recorded (tests). */
  async ingest(hostId: string, data: unknown): Promise<SecurityEventInput[]> {
    if (!telemetryReportValidator.Check(data)) {
      const first = [...telemetryReportValidator.Errors(data)][0];
      this.deps.log.warn(
        { hostId, error: first ? `${first.instancePath} ${first.message}` : 'invalid' },
        'telemetry report refused',
      );
      return [];
    }
    const report: TelemetryReport = data;
    const ports = await this.portsOnHost(hostId);
    const events: SecurityEventInput[] = [];
    for (const drop of report.spoofDrops) {
      // Frames of a protocol not offered (IPv6 chatter of a booting guest) are dropped, not forged.
      if (!FORGED_REASONS.has(drop.reason)) continue;
      const port = ports.get(drop.tag);
      if (port) events.push(spoofEvent(hostId, port, drop));
    }
    for (const flow of report.denied) {
      const port = ports.get(flow.srcTag);
      if (port)
        events.push(
          deniedEvent(hostId, port, flow, flow.dstTag === null ? undefined : ports.get(flow.dstTag)),
        );
    }
    if (report.deniedTruncated > 0)
      this.deps.log.warn(
        { hostId, left: report.deniedTruncated },
        'more denied flows than one report carries',
      );
    const vms = await this.vmsOnHost(hostId);
    const at = nowIso();
    for (const sample of report.samples) {
      const vm = vms.get(sample.vmId);
      if (!vm) continue;
      this.deps.samples.add({ ...sample, at, hostId });
      if (sample.cpuPercent >= BUSY_CPU_PERCENT || sample.txPps >= BUSY_PPS || sample.rxPps >= BUSY_PPS)
        events.push(sampleEvent(hostId, vm, sample));
    }
    for (const event of events) {
      await this.deps.events
        .record(event, { quiet: event.kind !== 'port.spoof_drop' })
        .catch((error: unknown) =>
          this.deps.log.error({ err: (error as Error).message, kind: event.kind }, 'security event failed'),
        );
    }
    return events;
  }

  private async portsOnHost(hostId: string): Promise<Map<number, PortOnHost>> {
    const rows = await this.deps.db
      .selectFrom('ports')
      .innerJoin('vms', 'vms.id', 'ports.vmId')
      .select(['ports.id', 'ports.tag', 'ports.tenantId', 'ports.vmId', 'vms.name as vmName'])
      .where('vms.hostId', '=', hostId)
      .execute();
    return new Map(rows.map((r) => [r.tag, r]));
  }

  private async vmsOnHost(
    hostId: string,
  ): Promise<Map<string, { id: string; name: string; tenantId: string }>> {
    const rows = await this.deps.db
      .selectFrom('vms')
      .select(['id', 'name', 'tenantId'])
      .where('hostId', '=', hostId)
      .execute();
    return new Map(rows.map((r) => [r.id, r]));
  }
}

function spoofEvent(hostId: string, port: PortOnHost, drop: SpoofDropReport): SecurityEventInput {
  return {
    kind: 'port.spoof_drop',
    severity: 'medium',
    tenantId: port.tenantId,
    subjectType: 'vm',
    subjectId: port.vmId,
    summary: `VM ${port.vmName} sent ${drop.packets} frame(s) dropped by anti-spoofing (${drop.reason})`,
    detail: {
      vmId: port.vmId,
      vmName: port.vmName,
      portId: port.id,
      hostId,
      reason: drop.reason,
      packets: drop.packets,
    },
  };
}

function deniedEvent(
  hostId: string,
  port: PortOnHost,
  flow: DeniedFlowReport,
  receiver: PortOnHost | undefined,
): SecurityEventInput {
  // The receiving VM is named only inside the sender's tenant (no ids of other tenants leak).
  const dstVmId = receiver && receiver.tenantId === port.tenantId ? receiver.vmId : null;
  return {
    kind: 'port.egress_denied',
    severity: 'low',
    tenantId: port.tenantId,
    subjectType: 'vm',
    subjectId: port.vmId,
    summary: `VM ${port.vmName} was refused ${flow.protocol} to ${flow.dstIp}:${flow.dstPort} (${flow.deniedBy} rules)`,
    detail: {
      vmId: port.vmId,
      vmName: port.vmName,
      portId: port.id,
      hostId,
      deniedBy: flow.deniedBy,
      protocol: flow.protocol,
      dstIp: flow.dstIp,
      dstPort: flow.dstPort,
      dstVmId,
      packets: 1,
    },
  };
}

function sampleEvent(
  hostId: string,
  vm: { id: string; name: string; tenantId: string },
  sample: VmSampleReport,
): SecurityEventInput {
  return {
    kind: 'vm.sample',
    severity: 'info',
    tenantId: vm.tenantId,
    subjectType: 'vm',
    subjectId: vm.id,
    summary: `VM ${vm.name}: CPU ${Math.round(sample.cpuPercent)}%, ${Math.round(sample.txPps)} packets/s out`,
    detail: { ...sample, hostId },
  };
}

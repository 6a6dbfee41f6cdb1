/**
 * What an agent reports every RAMPART_TELEMETRY_SECONDS for the security engine (agent event kind
 * `telemetry`): anti-spoofing drops since the last report, TCP/UDP flows its security groups refused in
 * the last minute, and one resource sample per running VM. The server checks a report against this
 * schema before using it (an agent is trusted for its own host only: tags are resolved against the
 * ports the server placed on that host).
 */
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { UUID_PATTERN } from '../common/ids.js';
import { IPV4_PATTERN, type SpoofReason } from './host-network.js';

/** Kind of the agent event that carries a TelemetryReport. */
export const TELEMETRY_EVENT_KIND = 'telemetry';
/** Denied flows per report; the rest are counted in `deniedTruncated`. */
export const MAX_DENIED_PER_REPORT = 4096;

const Tag = Type.Integer({ minimum: 1, maximum: 65_535 });
const Count = Type.Integer({ minimum: 0 });
const Rate = Type.Number({ minimum: 0 });

export const SpoofDropReport = Type.Object(
  {
    tag: Tag,
    reason: Type.Union([
      Type.Literal('mac'),
      Type.Literal('ip'),
      Type.Literal('arp'),
      Type.Literal('dhcp-server'),
      Type.Literal('router-advert'),
      Type.Literal('ethertype'),
    ]),
    /** Frames dropped for this reason since the last report. */
    packets: Type.Integer({ minimum: 1 }),
  },
  { additionalProperties: false },
);
export type SpoofDropReport = Static<typeof SpoofDropReport>;
// The literals above are exactly the anti-spoofing reasons (a compile error otherwise).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const reasonsMatch: Same<SpoofDropReport['reason'], SpoofReason> = true;
void reasonsMatch;

export const DeniedFlowReport = Type.Object(
  {
    /** Refused by the sender's egress rules, or by the local receiver's ingress rules. */
    deniedBy: Type.Union([Type.Literal('egress'), Type.Literal('ingress')]),
    /** The sending port. */
    srcTag: Tag,
    /** The receiving local port, when known. */
    dstTag: Type.Union([Tag, Type.Null()]),
    protocol: Type.Union([Type.Literal('tcp'), Type.Literal('udp')]),
    dstIp: Type.String({ pattern: IPV4_PATTERN }),
    dstPort: Type.Integer({ minimum: 0, maximum: 65_535 }),
  },
  { additionalProperties: false },
);
export type DeniedFlowReport = Static<typeof DeniedFlowReport>;

export const VmSampleReport = Type.Object(
  {
    vmId: Type.String({ pattern: UUID_PATTERN }),
    /** Seconds the counters below cover. */
    intervalSeconds: Type.Number({ exclusiveMinimum: 0, maximum: 86_400 }),
    /** CPU time of the VM's QEMU over the interval, as a share of its vCPUs (0-100). */
    cpuPercent: Type.Number({ minimum: 0, maximum: 100 }),
    /** Memory charged to the VM's cgroup now (null without cgroup limits). */
    memoryBytes: Type.Union([Count, Type.Null()]),
    /** Sent and received by the guest over the interval (all its ports). */
    txPackets: Count,
    txBytes: Count,
    rxPackets: Count,
    rxBytes: Count,
    txPps: Rate,
    txBps: Rate,
    rxPps: Rate,
    rxBps: Rate,
    /** Read and written by the guest on all its disks over the interval. */
    diskReadBytes: Count,
    diskWriteBytes: Count,
    diskReadOps: Count,
    diskWriteOps: Count,
    diskReadBps: Rate,
    diskWriteBps: Rate,
  },
  { additionalProperties: false },
);
export type VmSampleReport = Static<typeof VmSampleReport>;

export const TelemetryReport = Type.Object(
  {
    spoofDrops: Type.Array(SpoofDropReport, { maxItems: 65_535 }),
    denied: Type.Array(DeniedFlowReport, { maxItems: MAX_DENIED_PER_REPORT }),
    /** Denied flows left out of this report (over MAX_DENIED_PER_REPORT). */
    deniedTruncated: Count,
    samples: Type.Array(VmSampleReport, { maxItems: 65_535 }),
  },
  { additionalProperties: false },
);
export type TelemetryReport = Static<typeof TelemetryReport>;

export const telemetryReportValidator = Compile(TelemetryReport);

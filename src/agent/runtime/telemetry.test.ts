import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PortCounters } from '../../api/host-network.js';
import {
  MAX_DENIED_PER_REPORT,
  telemetryReportValidator,
  type TelemetryReport,
} from '../../api/telemetry.js';
import type { DeniedFlow } from '../net/firewall.js';
import { HostTelemetry, parseNetDev, type SampledVm } from './telemetry.js';

const NET_DEV = (
  tapRx: [number, number],
  tapTx: [number, number],
) => `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
rpt1a2b3c: ${tapRx[0]} ${tapRx[1]}    0    0    0     0          0         0 ${tapTx[0]} ${tapTx[1]}    0    0    0     0       0          0
`;

function counters(tag: number, ip: number, mac = 0): PortCounters {
  return {
    tag,
    tap: `rpt${tag}`,
    fromGuestPackets: 0,
    spoofDrops: { mac, ip, arp: 0, 'dhcp-server': 0, 'router-advert': 0, ethertype: 0 },
    ingressDenied: 0,
    egressDenied: 0,
  };
}

const flow = (dstPort: number, srcTag = 7): DeniedFlow => ({
  deniedBy: 'ingress',
  srcTag,
  dstTag: 9,
  protocol: 'tcp',
  dstIp: '10.0.0.9',
  dstPort,
});

test('parseNetDev reads bytes and packets both ways per interface', () => {
  const parsed = parseNetDev(NET_DEV([1000, 10], [2000, 20]));
  assert.deepEqual(parsed.get('rpt1a2b3c'), { rxBytes: 1000, rxPackets: 10, txBytes: 2000, txPackets: 20 });
  assert.deepEqual(parsed.get('lo'), { rxBytes: 0, rxPackets: 0, txBytes: 0, txPackets: 0 });
  assert.equal(parsed.size, 2, 'header lines are not interfaces');
});

test('spoof drops: the first read is a baseline, then only growth is reported; new ports start at zero', async () => {
  let ports = [counters(7, 50)];
  const reports: TelemetryReport[] = [];
  const t = new HostTelemetry({
    firewall: () => Promise.resolve({ counters: ports, denied: [] }),
    vms: () => [],
    report: (r) => reports.push(r),
    log: { warn: () => undefined, error: () => undefined },
    intervalMs: 0,
  });
  await t.tick();
  assert.equal(reports.length, 0, 'drops from before the agent started are not new');
  ports = [counters(7, 53, 2), counters(8, 4)];
  await t.tick();
  assert.deepEqual(reports[0]!.spoofDrops, [
    { tag: 7, reason: 'mac', packets: 2 },
    { tag: 7, reason: 'ip', packets: 3 },
    { tag: 8, reason: 'ip', packets: 4 },
  ]);
  assert.ok(telemetryReportValidator.Check(reports[0]), 'the report matches the wire schema');
  await t.tick();
  assert.equal(reports.length, 1, 'no growth, no report');
});

test('denied flows are reported once while they stay in the set, again after they expired', async () => {
  let denied = [flow(22), flow(23)];
  const reports: TelemetryReport[] = [];
  const t = new HostTelemetry({
    firewall: () => Promise.resolve({ counters: [], denied }),
    vms: () => [],
    report: (r) => reports.push(r),
    log: { warn: () => undefined, error: () => undefined },
    intervalMs: 0,
  });
  await t.tick();
  assert.deepEqual(
    reports[0]!.denied.map((d) => d.dstPort),
    [22, 23],
  );
  denied = [flow(22), flow(23), flow(24)];
  await t.tick();
  assert.deepEqual(
    reports[1]!.denied.map((d) => d.dstPort),
    [24],
  );
  denied = [flow(24)];
  await t.tick();
  denied = [flow(22), flow(24)];
  await t.tick();
  assert.deepEqual(
    reports[2]!.denied.map((d) => d.dstPort),
    [22],
    'a flow that expired and came back is new',
  );
  denied = Array.from({ length: MAX_DENIED_PER_REPORT + 5 }, (_, i) =>
    flow(i % 65_536, 1 + Math.floor(i / 65_536)),
  );
  await t.tick();
  assert.equal(reports[3]!.denied.length, MAX_DENIED_PER_REPORT);
  assert.equal(reports[3]!.deniedTruncated, 5);
});

test('VM samples: CPU as a share of the vCPUs, the tap counters reversed to the guest view', async () => {
  let now = 1_000_000;
  let cpuUsec = 5_000_000;
  let diskRead = 1024;
  let netDev = NET_DEV([1000, 10], [2000, 20]);
  let pid = 4242;
  const vm: SampledVm = {
    id: '00000000-0000-4000-8000-000000000001',
    get pid() {
      return pid;
    },
    intent: { vcpus: 2, ports: [{ tap: 'rpt1a2b3c' } as never] },
    resourceUsage: () => ({ cpuUsageUsec: cpuUsec, memoryBytes: 64 << 20, pids: 5 }),
    diskUsage: () =>
      Promise.resolve({ readBytes: diskRead, writeBytes: 4096, readOps: diskRead / 512, writeOps: 1 }),
  };
  const reports: TelemetryReport[] = [];
  const t = new HostTelemetry({
    firewall: () => Promise.resolve({ counters: [], denied: [] }),
    vms: () => [vm],
    report: (r) => reports.push(r),
    log: { warn: () => undefined, error: () => undefined },
    intervalMs: 0,
    now: () => now,
    readNetDev: () => Promise.resolve(netDev),
  });
  await t.tick();
  assert.equal(reports.length, 0, 'the first sight is a baseline');
  now += 10_000;
  cpuUsec += 15_000_000; // 1.5 CPU-seconds per second of 2 vCPUs: 75%
  netDev = NET_DEV([1000 + 500_000, 10 + 1000], [2000 + 1000, 20 + 10]);
  diskRead += 1_048_576;
  await t.tick();
  const sample = reports[0]!.samples[0]!;
  assert.equal(sample.intervalSeconds, 10);
  assert.equal(sample.cpuPercent, 75);
  assert.equal(sample.txPackets, 1000, 'what the tap received, the guest sent');
  assert.equal(sample.txPps, 100);
  assert.equal(sample.txBps, 50_000);
  assert.equal(sample.rxPackets, 10);
  assert.equal(sample.memoryBytes, 64 << 20);
  assert.equal(sample.diskReadBytes, 1_048_576);
  assert.equal(sample.diskReadBps, 104_857.6);
  assert.equal(sample.diskReadOps, 2048);
  assert.equal(sample.diskWriteBytes, 0, 'nothing written in the interval');
  assert.ok(telemetryReportValidator.Check(reports[0]));
  pid = 4343; // QEMU restarted: counters start over, a new baseline
  now += 10_000;
  await t.tick();
  assert.equal(reports.length, 1, 'no sample across a QEMU restart');
});

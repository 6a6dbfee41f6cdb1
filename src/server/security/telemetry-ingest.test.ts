import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TelemetryReport } from '../../api/telemetry.js';
import { VmSampleStore } from '../compute/vm-samples.js';
import type { Db } from '../store/database.js';
import type { SecurityEventInput } from './security-events.js';
import { TelemetryIngest } from './telemetry-ingest.js';

const VM_A = '00000000-0000-4000-8000-00000000000a';
const VM_B = '00000000-0000-4000-8000-00000000000b';
const VM_X = '00000000-0000-4000-8000-0000000000ff';

/** Answers the two queries of the ingest (ports joined with VMs; VMs) for host h1 only. */
function fakeDb(): Db {
  const ports = [
    { id: 'p-a', tag: 7, tenantId: 't1', vmId: VM_A, vmName: 'scanner' },
    { id: 'p-b', tag: 9, tenantId: 't1', vmId: VM_B, vmName: 'target' },
    { id: 'p-x', tag: 11, tenantId: 't2', vmId: VM_X, vmName: 'other-tenant' },
  ];
  const vms = [
    { id: VM_A, name: 'scanner', tenantId: 't1' },
    { id: VM_B, name: 'target', tenantId: 't1' },
  ];
  const query = (table: string) => {
    let host: unknown;
    const chain = {
      innerJoin: () => chain,
      select: () => chain,
      where: (_c: string, _op: string, value: unknown) => {
        host = value;
        return chain;
      },
      execute: () => Promise.resolve(host !== 'h1' ? [] : table === 'ports' ? ports : vms),
    };
    return chain;
  };
  return { selectFrom: query } as unknown as Db;
}

function setup() {
  const recorded: { event: SecurityEventInput; quiet: boolean }[] = [];
  const warnings: string[] = [];
  const samples = new VmSampleStore(3);
  const ingest = new TelemetryIngest({
    db: fakeDb(),
    events: {
      record: (event, options) => {
        recorded.push({ event, quiet: options?.quiet === true });
        return Promise.resolve({} as never);
      },
    },
    samples,
    log: { warn: ((_o: unknown, m: string) => warnings.push(m)) as never, error: () => undefined },
  });
  return { ingest, recorded, warnings, samples };
}

const sample = (vmId: string, cpuPercent: number, txPps = 0) => ({
  vmId,
  intervalSeconds: 10,
  cpuPercent,
  memoryBytes: null,
  txPackets: txPps * 10,
  txBytes: txPps * 600,
  rxPackets: 0,
  rxBytes: 0,
  txPps,
  txBps: txPps * 60,
  rxPps: 0,
  rxBps: 0,
  diskReadBytes: 0,
  diskWriteBytes: 0,
  diskReadOps: 0,
  diskWriteOps: 0,
  diskReadBps: 0,
  diskWriteBps: 0,
});

test('spoof drops and denied flows become events about the sending VM, resolved on the reporting host', async () => {
  const { ingest, recorded } = setup();
  const report: TelemetryReport = {
    spoofDrops: [
      { tag: 7, reason: 'ip', packets: 3 },
      { tag: 9, reason: 'ethertype', packets: 5 },
    ],
    denied: [
      { deniedBy: 'ingress', srcTag: 7, dstTag: 9, protocol: 'tcp', dstIp: '10.0.0.9', dstPort: 22 },
      { deniedBy: 'ingress', srcTag: 7, dstTag: 11, protocol: 'udp', dstIp: '10.0.0.11', dstPort: 53 },
      { deniedBy: 'egress', srcTag: 99, dstTag: null, protocol: 'tcp', dstIp: '10.0.0.1', dstPort: 80 },
    ],
    deniedTruncated: 0,
    samples: [],
  };
  const events = await ingest.ingest('h1', report);
  assert.deepEqual(
    events.map((e) => e.kind),
    ['port.spoof_drop', 'port.egress_denied', 'port.egress_denied'],
    'a tag not on this host is ignored; IPv6 frames (ethertype) are not forged',
  );
  const [spoof, toPeer, toForeign] = events as [SecurityEventInput, SecurityEventInput, SecurityEventInput];
  assert.equal(spoof.subjectId, VM_A);
  assert.equal(spoof.tenantId, 't1');
  assert.equal(spoof.detail?.['reason'], 'ip');
  assert.equal(spoof.detail?.['packets'], 3);
  assert.equal(toPeer.detail?.['dstPort'], 22);
  assert.equal(toPeer.detail?.['dstVmId'], VM_B);
  assert.equal(toForeign.detail?.['dstVmId'], null, "another tenant's VM id is never named");
  assert.deepEqual(
    recorded.map((r) => r.quiet),
    [false, true, true],
    'denied flows are recorded without a log line each',
  );
  assert.deepEqual(
    await ingest.ingest('h2', report),
    [],
    "another host's agent cannot speak for these ports",
  );
});

test('samples go to the ring; only busy ones become vm.sample events', async () => {
  const { ingest, samples } = setup();
  const events = await ingest.ingest('h1', {
    spoofDrops: [],
    denied: [],
    deniedTruncated: 0,
    samples: [sample(VM_A, 3), sample(VM_B, 99, 5), sample(VM_X, 100), sample(VM_A, 10, 150_000)],
  });
  assert.deepEqual(
    events.map((e) => [e.kind, e.subjectId, e.detail?.['cpuPercent']]),
    [
      ['vm.sample', VM_B, 99],
      ['vm.sample', VM_A, 10],
    ],
  );
  assert.equal(samples.list(VM_A).length, 2);
  assert.equal(samples.list(VM_X).length, 0, 'a VM not on the reporting host is ignored');
  for (let i = 0; i < 5; i++)
    await ingest.ingest('h1', { spoofDrops: [], denied: [], deniedTruncated: 0, samples: [sample(VM_B, 1)] });
  assert.equal(samples.list(VM_B).length, 3, 'the ring is bounded');
});

test('a report that does not match the schema is refused whole', async () => {
  const { ingest, recorded, warnings } = setup();
  const events = await ingest.ingest('h1', {
    spoofDrops: [{ tag: 7, reason: 'ip', packets: 3 }],
    denied: [
      {
        deniedBy: 'ingress',
        srcTag: 7,
        dstTag: 9,
        protocol: 'tcp',
        dstIp: '10.0.0.9; rm -rf /',
        dstPort: 22,
      },
    ],
    deniedTruncated: 0,
    samples: [],
  });
  assert.deepEqual(events, []);
  assert.equal(recorded.length, 0);
  assert.deepEqual(warnings, ['telemetry report refused']);
});

/**
 * Host failure: the host state machine (online -> suspected -> failed -> online), which VMs of a failed
 * host start elsewhere, and the failover loop over a real (SQLite) hosts table.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createLogger } from '../../common/logger.js';
import { newId } from '../../common/ids.js';
import type { AuditLog } from '../audit/audit-log.js';
import { recordHostHello } from '../compute/host-registry.js';
import type { VmService } from '../compute/vm-service.js';
import type { SecurityEventInput, SecurityEventLog } from '../security/security-events.js';
import { openDatabase } from '../store/database.js';
import {
  FAILOVER_MARGIN_MS,
  HostFailover,
  SUSPECT_AFTER_MS,
  markHostDisconnected,
  nextHostState,
  planFailover,
  recordLeaseRenewals,
  stateOnDisconnect,
  type FailoverCandidate,
} from './host-failover.js';
import { FENCE_MARGIN_MS } from '../../agent/link/lease-fence.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-failover-'));
after(() => rmSync(root, { recursive: true, force: true }));

const LEASE = 30_000;

test('the host state machine: online -> suspected -> failed, only for hosts that fence', () => {
  const at = (state: 'online' | 'offline' | 'suspected' | 'failed', silentMs: number, fencing = true) =>
    nextHostState({ state, lastSeenMs: 0, nowMs: silentMs, fencing, leaseMs: LEASE });
  assert.equal(stateOnDisconnect(true), 'suspected');
  assert.equal(stateOnDisconnect(false), 'offline');
  // Linked and renewed: nothing changes.
  assert.equal(at('online', 1000), null);
  // Nobody renews an online host (its replica died): suspected.
  assert.equal(at('online', SUSPECT_AFTER_MS + 1), 'suspected');
  assert.equal(at('suspected', LEASE), null);
  assert.equal(at('suspected', LEASE + FAILOVER_MARGIN_MS), null, 'not one millisecond early');
  assert.equal(at('suspected', LEASE + FAILOVER_MARGIN_MS + 1), 'failed');
  // An online host past its lease goes through suspected first.
  assert.equal(at('online', LEASE + FAILOVER_MARGIN_MS + 1), 'suspected');
  assert.equal(at('failed', 10 * LEASE), null, 'failed until it says hello');
  // Hosts that do not fence (local agent) are never suspected or failed by time.
  assert.equal(at('online', 10 * LEASE, false), null);
  assert.equal(at('offline', 10 * LEASE, false), null);
  // The order that prevents two copies: the agent fences well before the server fails the host.
  assert.ok(LEASE - FENCE_MARGIN_MS + 5000 <= LEASE + FAILOVER_MARGIN_MS);
});

test('failover selection: running VMs with a restart policy and no volumes move', () => {
  const vm = (name: string, patch: Partial<FailoverCandidate> = {}): FailoverCandidate => ({
    id: name,
    name,
    state: 'running',
    power: 'running',
    restartPolicy: 'on-failure',
    hasVolumes: false,
    ...patch,
  });
  const plan = planFailover([
    vm('a'),
    vm('b', { restartPolicy: 'always', state: 'starting' }),
    vm('never', { restartPolicy: 'never' }),
    vm('vol', { hasVolumes: true }),
    vm('stopped', { power: 'stopped', state: 'stopped' }),
    vm('gone', { state: 'deleting' }),
  ]);
  assert.deepEqual(
    plan.move.map((v) => v.name),
    ['a', 'b'],
  );
  assert.deepEqual(
    plan.stay.map((s) => s.vm.name),
    ['never', 'vol'],
  );
  assert.match(plan.stay[0]!.reason, /restart policy never/);
  assert.match(plan.stay[1]!.reason, /volumes live on that host/);
});

test('the failover loop fails a silent remote host once, after the lease, and never a local one', async () => {
  const db = await openDatabase(join(root, 'rampart.db'));
  try {
    const hello = (hostId: string, hostname: string) =>
      recordHostHello(db, {
        hostId,
        hostname,
        accelerator: 'tcg',
        acceleratorReason: 'test',
        qemuVersion: '8',
        agentVersion: 'test',
        capacity: { cpus: 2, memoryMiB: 2048, vcpusAllocatable: 2, memoryMiBAllocatable: 2048 },
      });
    const remote = newId();
    const local = newId();
    await hello(remote, 'remote-1');
    await hello(local, 'local-1');
    const now = new Date().toISOString();
    await db
      .insertInto('hostCertificates')
      .values({
        serial: 'AB01',
        hostId: remote,
        hostname: 'remote-1',
        notBefore: now,
        notAfter: now,
        createdAt: now,
        revokedAt: null,
      })
      .execute();
    const failedOver: string[] = [];
    const events: SecurityEventInput[] = [];
    const audits: { action: string; target: string; actor: string }[] = [];
    let clock = Date.now();
    const failover = new HostFailover({
      db,
      vms: {
        failoverHost: (hostId: string) => {
          failedOver.push(hostId);
          return Promise.resolve({
            moved: [{ vmId: 'v1', name: 'v1', tenantId: 't', toHostId: local, toHostname: 'local-1' }],
            stayed: [{ vmId: 'v2', name: 'v2', tenantId: 't', reason: 'restart policy never' }],
          });
        },
      } as unknown as VmService,
      audit: {
        append: (entry: { action: string; target: string; actor: string }) => {
          audits.push(entry);
          return Promise.resolve();
        },
      } as unknown as AuditLog,
      securityEvents: {
        record: (event: SecurityEventInput) => {
          events.push(event);
          return Promise.resolve();
        },
      } as unknown as SecurityEventLog,
      log: createLogger('test', 'silent'),
      leaseSeconds: 30,
      now: () => clock,
    });
    const state = async (id: string) =>
      (await db.selectFrom('hosts').select('state').where('id', '=', id).executeTakeFirstOrThrow()).state;

    assert.equal(await markHostDisconnected(db, remote), 'suspected');
    assert.equal(await markHostDisconnected(db, local), 'offline');
    clock += LEASE;
    assert.deepEqual(await failover.tick(), []);
    assert.equal(await state(remote), 'suspected');
    clock += FAILOVER_MARGIN_MS + 1000;
    assert.deepEqual(await failover.tick(), [remote]);
    assert.equal(await state(remote), 'failed');
    assert.equal(await state(local), 'offline');
    assert.deepEqual(failedOver, [remote]);
    assert.deepEqual(
      events.map((e) => e.kind),
      ['host.failed'],
    );
    assert.deepEqual(
      audits.map((a) => [a.action, a.target, a.actor]),
      [
        ['host:failover', 'v1', 'system'],
        ['host:failover', 'v2', 'system'],
      ],
    );
    clock += LEASE;
    assert.deepEqual(await failover.tick(), [], 'failed once');
    // Renewals do not revive a failed host; its hello does.
    await recordLeaseRenewals(db, [remote]);
    assert.equal(await state(remote), 'failed');
    await hello(remote, 'remote-1');
    assert.equal(await state(remote), 'online');
    // A host marked suspected while it is linked (an old link's close came late) is online again
    // at the next renewal.
    await markHostDisconnected(db, remote);
    await recordLeaseRenewals(db, [remote]);
    assert.equal(await state(remote), 'online');
  } finally {
    await db.destroy();
  }
});

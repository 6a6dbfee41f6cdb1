/**
 * Host failure. A remote host (one that joined with a certificate: its agent fences itself) whose link
 * closed or went silent is `suspected` at once; once its lease has expired since the server last
 * renewed it (hosts.lastSeenAt: refreshed by the replica holding its link right after each renewal,
 * and set when the link closes) plus FAILOVER_MARGIN_MS, it is `failed`, and only then are its running
 * VMs with a restart policy (on-failure, always) started on another host. The order that prevents two
 * copies:
 *
 *   agent fences   at  last renewal it received + lease - 5 s   (agent/link/lease-fence.ts)
 *   server fails   at  lastSeenAt                + lease + 5 s   (here)
 *
 * and lastSeenAt is never earlier than the last renewal sent (a renewal is sent before lastSeenAt is
 * written, and a renewal in flight when a replica dies is at most LEASE_RENEW_MS older), so the host
 * has killed its QEMUs at least 10 s - LEASE_RENEW_MS before any copy starts elsewhere (durations on
 * each side's monotonic-enough clock; the clocks need not agree).
 *
 * Hosts without self-fencing (the local agent, external unix-socket agents) go `offline` when their
 * agent goes and are never failed over: their VMs may well still run.
 *
 * A failed host that comes back says hello (online again); its sync lists only the VMs still placed on
 * it, so the agent removes its stale copies of the moved ones, and its reports about them are ignored.
 */
import { newId } from '../../common/ids.js';
import type { Logger } from '../../common/logger.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { VmService } from '../compute/vm-service.js';
import type { SecurityEventLog } from '../security/security-events.js';
import { nowIso, type Db } from '../store/database.js';
import type { HostsTable } from '../store/schema.js';

/** The server fails a host this long after its lease ran out. */
export const FAILOVER_MARGIN_MS = 5000;
/** How often the replica holding a remote host's link renews its lease. */
export const LEASE_RENEW_MS = 2000;
/** An online remote host whose lease nobody renewed for this long is suspected (its replica died). */
export const SUSPECT_AFTER_MS = 3 * LEASE_RENEW_MS + 2000;

export type HostState = HostsTable['state'];

/**
 * The host state machine (online -> suspected -> failed; back to online at the next hello, which is
 * recordHostHello's). `fencing`: the host is a remote one whose agent fences itself.
 */
export function nextHostState(input: {
  state: HostState;
  lastSeenMs: number;
  fencing: boolean;
  nowMs: number;
  leaseMs: number;
}): HostState | null {
  if (!input.fencing || input.state === 'failed' || input.state === 'offline') return null;
  const silentMs = input.nowMs - input.lastSeenMs;
  if (silentMs > input.leaseMs + FAILOVER_MARGIN_MS)
    return input.state === 'suspected' ? 'failed' : 'suspected';
  if (input.state === 'online' && silentMs > SUSPECT_AFTER_MS) return 'suspected';
  return null;
}

/** The state a host goes to when its agent's link closes. */
export function stateOnDisconnect(fencing: boolean): HostState {
  return fencing ? 'suspected' : 'offline';
}

export interface FailoverCandidate {
  id: string;
  name: string;
  state: string;
  power: string;
  restartPolicy: string;
  hasVolumes: boolean;
}

/**
 * Which VMs of a failed host start elsewhere: running ones (desired power running) with a restart
 * policy and no volumes. The others stay; those that were running get a reason (they go to error).
 */
export function planFailover<T extends FailoverCandidate>(
  vms: readonly T[],
): { move: T[]; stay: { vm: T; reason: string }[] } {
  const move: T[] = [];
  const stay: { vm: T; reason: string }[] = [];
  for (const vm of vms) {
    if (vm.state === 'deleting' || vm.power !== 'running') continue;
    if (vm.restartPolicy !== 'on-failure' && vm.restartPolicy !== 'always')
      stay.push({
        vm,
        reason: `its host failed (lease expired); restart policy ${vm.restartPolicy}: not started elsewhere`,
      });
    else if (vm.hasVolumes)
      stay.push({
        vm,
        reason:
          'its host failed (lease expired); its volumes live on that host, so it is not started elsewhere (it starts again when the host returns)',
      });
    else move.push(vm);
  }
  return { move, stay };
}

export interface HostFailoverOptions {
  db: Db;
  vms: VmService;
  audit: AuditLog;
  securityEvents: SecurityEventLog;
  log: Logger;
  leaseSeconds: number;
  now?: () => number;
  checkMs?: number;
}

/** Hosts that fence themselves: those that joined (a certificate was issued to them). */
export async function fencingHosts(db: Db): Promise<Set<string>> {
  const rows = await db.selectFrom('hostCertificates').select('hostId').distinct().execute();
  return new Set(rows.map((r) => r.hostId));
}

/** Marks a host whose link closed: suspected (remote) or offline (local), lastSeenAt now. */
export async function markHostDisconnected(db: Db, hostId: string): Promise<HostState> {
  const state = stateOnDisconnect((await fencingHosts(db)).has(hostId));
  await db
    .updateTable('hosts')
    .set({ state, lastSeenAt: nowIso() })
    .where('id', '=', hostId)
    .where('state', '!=', 'failed')
    .execute();
  return state;
}

/**
 * After renewing the leases of the hosts linked to this replica: their lastSeenAt is now, and a host
 * marked suspected while linked (an old link's close recorded after the new link's hello) is online.
 */
export async function recordLeaseRenewals(db: Db, hostIds: readonly string[]): Promise<void> {
  if (hostIds.length === 0) return;
  await db
    .updateTable('hosts')
    .set({ lastSeenAt: nowIso(), state: 'online' })
    .where('id', 'in', [...hostIds])
    .where('state', 'in', ['online', 'suspected'])
    .execute();
}

/** The singleton loop (leader only) that suspects and fails hosts and restarts their VMs elsewhere. */
export class HostFailover {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private readonly now: () => number;

  constructor(private readonly options: HostFailoverOptions) {
    this.now = options.now ?? Date.now;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.options.checkMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One pass over the hosts; answers the hosts that failed in it. */
  async tick(): Promise<string[]> {
    if (this.running) return [];
    this.running = true;
    try {
      return await this.pass();
    } catch (error) {
      this.options.log.error({ err: (error as Error).message }, 'host failover pass failed');
      return [];
    } finally {
      this.running = false;
    }
  }

  private async pass(): Promise<string[]> {
    const o = this.options;
    const hosts = await o.db
      .selectFrom('hosts')
      .select(['id', 'hostname', 'state', 'lastSeenAt'])
      .where('state', 'in', ['online', 'suspected'])
      .execute();
    if (hosts.length === 0) return [];
    const fencing = await fencingHosts(o.db);
    const failed: string[] = [];
    for (const host of hosts) {
      const next = nextHostState({
        state: host.state,
        lastSeenMs: Date.parse(host.lastSeenAt),
        fencing: fencing.has(host.id),
        nowMs: this.now(),
        leaseMs: o.leaseSeconds * 1000,
      });
      if (!next) continue;
      // Only if nothing changed meanwhile (the host may have said hello again).
      const updated = await o.db
        .updateTable('hosts')
        .set({ state: next })
        .where('id', '=', host.id)
        .where('state', '=', host.state)
        .where('lastSeenAt', '=', host.lastSeenAt)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) continue;
      o.log.warn({ hostId: host.id, hostname: host.hostname, from: host.state, to: next }, 'host state');
      if (next === 'failed') {
        failed.push(host.id);
        await this.failHost(host);
      }
    }
    return failed;
  }

  private async failHost(host: { id: string; hostname: string; lastSeenAt: string }): Promise<void> {
    const o = this.options;
    const result = await o.vms.failoverHost(host.id);
    await o.securityEvents
      .record({
        kind: 'host.failed',
        severity: 'high',
        tenantId: null,
        subjectType: 'host',
        subjectId: host.id,
        summary: `host ${host.hostname} failed: its lease expired (${o.leaseSeconds} s); ${result.moved.length} VM(s) restarted elsewhere, ${result.stayed.length} not`,
        detail: {
          hostId: host.id,
          hostname: host.hostname,
          lastSeenAt: host.lastSeenAt,
          leaseSeconds: o.leaseSeconds,
          moved: result.moved.map((m) => m.vmId),
          stayed: result.stayed.map((s) => ({ vmId: s.vmId, reason: s.reason })),
        },
      })
      .catch((error: unknown) => o.log.error({ err: (error as Error).message }, 'security event failed'));
    for (const entry of [...result.moved, ...result.stayed]) {
      const moved = 'toHostId' in entry;
      await o.audit
        .append({
          actorId: null,
          actor: 'system',
          tenantId: entry.tenantId,
          action: 'host:failover',
          target: entry.vmId,
          outcome: moved ? 'success' : 'failure',
          status: 0,
          source: host.id,
          requestId: newId(),
          detail: moved
            ? `restarted on host ${entry.toHostname} (${entry.toHostId}): host ${host.hostname} failed`
            : entry.reason,
        })
        .catch((error: unknown) => o.log.error({ err: (error as Error).message }, 'audit append failed'));
    }
  }
}

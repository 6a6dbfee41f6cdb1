/**
 * Notices running VMs whose guest agent went silent: a VM that sent heartbeats (so its agent works)
 * and has sent none for `lostAfterMs` is recorded once as `vm.heartbeat_lost` (detail { vmId, vmName,
 * hostId, lastSeenAt, missed }, `missed` counting one-second beats), until it beats again or reboots.
 * A dead agent can be a crash, a hang, or someone inside the guest silencing it.
 */
import type { Logger } from '../../common/logger.js';
import type { Db } from '../store/database.js';
import type { SecurityEventInput } from './security-events.js';

export interface HeartbeatWatchDeps {
  db: Db;
  record: (event: SecurityEventInput) => Promise<unknown>;
  log: Logger;
  /** Silence that counts as lost (default 60 s; RAMPART_HEARTBEAT_LOST_SECONDS). */
  lostAfterMs?: number;
  /** How often to look (default a quarter of lostAfterMs, at most 15 s). */
  intervalMs?: number;
  now?: () => number;
}

export class HeartbeatWatch {
  /** VM id -> the last heartbeat already reported as lost (one event per silence). */
  private readonly reported = new Map<string, string>();
  private timer: NodeJS.Timeout | null = null;
  readonly lostAfterMs: number;

  constructor(private readonly deps: HeartbeatWatchDeps) {
    this.lostAfterMs = deps.lostAfterMs ?? 60_000;
  }

  start(): void {
    const every = this.deps.intervalMs ?? Math.min(15_000, Math.max(1_000, this.lostAfterMs / 4));
    this.timer = setInterval(() => {
      void this.check().catch((error: unknown) =>
        this.deps.log.error({ err: (error as Error).message }, 'heartbeat check failed'),
      );
    }, every);
    this.timer.unref();
    this.deps.log.info({ lostAfterMs: this.lostAfterMs, everyMs: every }, 'guest heartbeat watch started');
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One look at every running VM; answers how many silences it reported. */
  async check(): Promise<number> {
    const now = (this.deps.now ?? Date.now)();
    const rows = await this.deps.db
      .selectFrom('vms')
      .select(['id', 'name', 'tenantId', 'hostId', 'lastHeartbeatAt'])
      .where('state', '=', 'running')
      .where('lastHeartbeatAt', 'is not', null)
      .execute();
    const running = new Set(rows.map((r) => r.id));
    for (const id of this.reported.keys()) if (!running.has(id)) this.reported.delete(id);
    let count = 0;
    for (const vm of rows) {
      const last = vm.lastHeartbeatAt!;
      const age = now - Date.parse(last);
      if (age < this.lostAfterMs) {
        this.reported.delete(vm.id);
        continue;
      }
      if (this.reported.get(vm.id) === last) continue;
      this.reported.set(vm.id, last);
      count += 1;
      await this.deps.record({
        kind: 'vm.heartbeat_lost',
        severity: 'medium',
        tenantId: vm.tenantId,
        subjectType: 'vm',
        subjectId: vm.id,
        summary: `the guest agent of VM ${vm.name} has been silent for ${Math.round(age / 1000)} s`,
        detail: {
          vmId: vm.id,
          vmName: vm.name,
          hostId: vm.hostId,
          lastSeenAt: last,
          missed: Math.floor(age / 1000),
        },
      });
    }
    return count;
  }
}

/** RAMPART_HEARTBEAT_LOST_SECONDS (15..3600, default 60), in milliseconds. Hosts report beats every 5 s. */
export function heartbeatLostAfterMs(env: NodeJS.ProcessEnv): number {
  const raw = env['RAMPART_HEARTBEAT_LOST_SECONDS'];
  if (raw === undefined || raw === '') return 60_000;
  const seconds = Number(raw);
  if (!Number.isInteger(seconds) || seconds < 15 || seconds > 3600)
    throw new Error('RAMPART_HEARTBEAT_LOST_SECONDS must be an integer from 15 to 3600');
  return seconds * 1000;
}

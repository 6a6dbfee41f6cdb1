/**
 * Self-fencing of a remote host. The server renews the host's lease over the TLS link every second
 * or two (the `lease` request, with the lease length). Each renewal echoes this agent's clock from its
 * answer to the previous renewal; the lease counts from that echoed instant (a renewal delayed on the
 * way, or read late by a host that was frozen, extends nothing beyond what the server had heard when
 * it sent it). When the lease minus FENCE_MARGIN_MS has run out, this host can no longer be sure the
 * server still counts it as alive, so it kills all its QEMUs at once (SIGKILL) and remembers that it
 * did. The server restarts VMs elsewhere only once the lease plus its own margin
 * (server/cluster/host-failover.ts) has passed since it recorded its last renewal, which came after
 * the echoed instant: the fence always comes first.
 *
 * Fencing happens once per outage; the next renewal re-arms it. What was fenced is handed to the
 * server with the first renewal after the link is back (`lease` reply), and logged here. Between the
 * fence and that renewal no VM is started (startRefusal). The lease is kept in a file, so an agent
 * restarted during an outage still fences the QEMUs it adopted.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from '../../common/logger.js';

/** The agent fences this long before its lease runs out. */
export const FENCE_MARGIN_MS = 5000;

export interface FenceRecord {
  at: string;
  vmIds: string[];
}

export interface LeaseFenceOptions {
  /** Kills every VM of this host; resolves with the ids of those that were running. */
  fence: () => Promise<string[]>;
  log: Logger;
  now?: () => number;
  /** How often the lease is checked (ms). */
  checkMs?: number;
  /** Where the lease is kept across agent restarts (JSON: leaseSeconds, renewedAt). */
  stateFile?: string;
}

export class LeaseFence {
  private leaseMs: number | null = null;
  /** The latest echoed instant (this agent's clock), or null: no lease yet. */
  private renewedAt: number | null = null;
  private fencing = false;
  private fenced = false;
  private record: FenceRecord | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly now: () => number;

  constructor(private readonly options: LeaseFenceOptions) {
    this.now = options.now ?? Date.now;
    const file = options.stateFile;
    if (file && existsSync(file)) {
      try {
        const saved = JSON.parse(readFileSync(file, 'utf8')) as {
          leaseSeconds?: unknown;
          renewedAt?: unknown;
        };
        if (Number.isSafeInteger(saved.leaseSeconds) && Number.isSafeInteger(saved.renewedAt)) {
          this.leaseMs = (saved.leaseSeconds as number) * 1000;
          this.renewedAt = saved.renewedAt as number;
        }
      } catch (error) {
        options.log.warn({ err: (error as Error).message }, 'lease file unreadable; no lease until renewed');
      }
    }
  }

  private persist(): void {
    const file = this.options.stateFile;
    if (!file || this.leaseMs === null || this.renewedAt === null) return;
    try {
      writeFileSync(
        `${file}.tmp`,
        JSON.stringify({ leaseSeconds: this.leaseMs / 1000, renewedAt: this.renewedAt }),
        {
          mode: 0o600,
        },
      );
      renameSync(`${file}.tmp`, file);
    } catch (error) {
      this.options.log.warn({ err: (error as Error).message }, 'lease file not written');
    }
  }

  /** Why no VM may start now (fenced, or the lease ran out), or null. */
  startRefusal(): string | null {
    const deadline = this.deadline();
    if (this.fencing || this.fenced || (deadline !== null && this.now() >= deadline))
      return 'this host has fenced itself (no lease renewal from the server): no VM starts until the lease is renewed';
    return null;
  }

  /**
   * A renewal from the server: the lease runs for `leaseSeconds` from `echoMs` (this agent's clock,
   * as it answered the previous renewal; absent on a new link's first renewal, which extends nothing).
   * Returns the fence record not yet reported, with the first renewal that extends the lease again.
   */
  renew(leaseSeconds: number, echoMs?: number): FenceRecord | null {
    this.leaseMs = leaseSeconds * 1000;
    // A renewal read after the lease had run out (a frozen host reading its buffer): fence first.
    void this.check();
    let extended = false;
    if (echoMs !== undefined) {
      const at = Math.min(echoMs, this.now());
      if (this.renewedAt === null || at > this.renewedAt) {
        this.renewedAt = at;
        if (!this.fencing && this.now() < this.deadline()!) {
          this.fenced = false;
          extended = true;
        }
        this.persist();
      }
    }
    // The record goes only with a renewal that extended the lease: a stale one (a dead link's last
    // data, delivered late) must not take it, its answer would go nowhere.
    if (!extended || this.fencing) return null;
    const record = this.record;
    this.record = null;
    return record;
  }

  /** When this host fences if no renewal comes (ms since the epoch of `now`), or null: no lease yet. */
  deadline(): number | null {
    return this.leaseMs === null || this.renewedAt === null
      ? null
      : this.renewedAt + this.leaseMs - FENCE_MARGIN_MS;
  }

  /** Fences when the lease (minus the margin) has run out; resolves true when it fenced now. */
  async check(): Promise<boolean> {
    const deadline = this.deadline();
    if (deadline === null || this.fenced || this.fencing || this.now() < deadline) return false;
    this.fencing = true;
    const silentMs = this.now() - this.renewedAt!;
    this.options.log.error(
      { silentMs, leaseMs: this.leaseMs },
      'self-fencing: no lease renewal from the server; killing every VM on this host',
    );
    try {
      const vmIds = await this.options.fence();
      const at = new Date().toISOString();
      this.record = { at, vmIds: [...(this.record?.vmIds ?? []), ...vmIds] };
      this.options.log.error({ vmIds, at }, 'self-fenced: VMs killed');
    } catch (error) {
      this.options.log.error({ err: (error as Error).message }, 'self-fencing failed');
    } finally {
      this.fencing = false;
      // Re-armed only by a renewal that echoes an instant after the fence's deadline passed.
      this.fenced = true;
    }
    return true;
  }

  start(): void {
    if (this.timer) return;
    const tick = () => void this.check();
    this.timer = setInterval(tick, this.options.checkMs ?? 250);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

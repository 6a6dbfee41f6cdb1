/**
 * Leader lease for singleton work (the scheduler's and reconciler's loops, compliance runs, checkpoints)
 * when several server replicas share one PostgreSQL database: the replica holding a SESSION advisory lock
 * (pg_try_advisory_lock) on one pooled connection is the leader; the others retry every `retryMs`. On
 * SQLite there is one server per database, so it is always the leader.
 *
 * Why a session lock on a held connection: PostgreSQL releases it by itself when that session ends
 * (process killed, connection lost, server restarted), so a dead leader never blocks the others, and at
 * most one session holds it. The leader checks its connection every `checkMs`; when the check fails it
 * stops being the leader at once (emits 'change' false) and competes again. Before acting on something
 * that must never happen twice, call confirm(): it asks PostgreSQL whether this session still holds the
 * lock (pg_locks), which closes the window between a lost session and the next periodic check.
 */
import { EventEmitter } from 'node:events';
import { sql } from 'kysely';
import type { Logger } from '../../common/logger.js';
import { engineOf, type Db } from '../store/database.js';

/** The advisory lock class of leases (the first key of pg_try_advisory_lock(int, int)). */
const LEASE_CLASS = 0x52_41_10;

export interface LeaderLeaseOptions {
  /** What is led, e.g. 'singletons' (one lock per name). */
  name: string;
  /** How often a replica that is not the leader tries again (default 2000 ms). */
  retryMs?: number;
  /** How often the leader checks its session (default 2000 ms). */
  checkMs?: number;
  log?: Pick<Logger, 'info' | 'warn'>;
}

export interface LeaderLeaseEvents {
  change: [leader: boolean];
}

export class LeaderLease extends EventEmitter<LeaderLeaseEvents> {
  readonly #db: Db;
  readonly #name: string;
  readonly #retryMs: number;
  readonly #checkMs: number;
  readonly #log: Pick<Logger, 'info' | 'warn'> | undefined;
  #leader = false;
  #stopped = true;
  #timer: NodeJS.Timeout | null = null;
  /** Resolves the held connection's callback (releases the lock and the connection). */
  #release: (() => void) | null = null;
  #held: Promise<void> | null = null;
  /** Runs a query on the held connection (the leader's session). */
  #onHeld: (<T>(run: (conn: Db) => Promise<T>) => Promise<T>) | null = null;

  constructor(db: Db, options: LeaderLeaseOptions) {
    super();
    this.#db = db;
    this.#name = options.name;
    this.#retryMs = options.retryMs ?? 2000;
    this.#checkMs = options.checkMs ?? 2000;
    this.#log = options.log;
  }

  get isLeader(): boolean {
    return this.#leader;
  }

  /** Starts competing (on SQLite: leader at once). */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    if (engineOf(this.#db) === 'sqlite') {
      this.#set(true);
      return;
    }
    void this.#attempt();
  }

  /** Whether this replica leads right now, asked of PostgreSQL (always true on SQLite while started). */
  async confirm(): Promise<boolean> {
    if (!this.#leader) return false;
    if (engineOf(this.#db) === 'sqlite') return true;
    const onHeld = this.#onHeld;
    if (!onHeld) return false;
    try {
      const held = await onHeld(async (conn) => {
        const result = await sql<{ held: boolean }>`SELECT EXISTS (SELECT 1 FROM pg_locks
          WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
            AND classid = ${LEASE_CLASS} AND objid = hashtext(${this.#name})::oid AND objsubid = 2) AS held`.execute(
          conn,
        );
        return result.rows[0]?.held === true;
      });
      if (!held) this.#lost('the lock is no longer held');
      return held;
    } catch (error) {
      this.#lost((error as Error).message);
      return false;
    }
  }

  /** Gives the lease up (the lock and its connection) and stops competing. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#release?.();
    await this.#held;
    this.#set(false);
  }

  #set(leader: boolean): void {
    if (leader === this.#leader) return;
    this.#leader = leader;
    this.#log?.info(
      { lease: this.#name, leader },
      leader ? 'leader lease acquired' : 'leader lease released',
    );
    this.emit('change', leader);
  }

  #lost(reason: string): void {
    if (!this.#leader) return;
    this.#log?.warn({ lease: this.#name, reason }, 'leader lease lost');
    this.#release?.();
    this.#set(false);
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#attempt(), this.#retryMs);
    this.#timer.unref();
  }

  /** One try: take a pooled connection, try the lock; keep the connection while it is held. */
  async #attempt(): Promise<void> {
    this.#timer = null;
    if (this.#stopped) return;
    const held = this.#db
      .connection()
      .execute(async (conn) => {
        const result = await sql<{
          ok: boolean;
        }>`SELECT pg_try_advisory_lock(${LEASE_CLASS}, hashtext(${this.#name})) AS ok`.execute(conn);
        if (result.rows[0]?.ok !== true) return;
        // Queries on this session, one at a time (the connection is not shared with anything else).
        let chain: Promise<unknown> = Promise.resolve();
        this.#onHeld = <T>(run: (c: Db) => Promise<T>): Promise<T> => {
          const next = chain.then(() => run(conn));
          chain = next.catch(() => undefined);
          return next;
        };
        const released = new Promise<void>((resolve) => (this.#release = resolve));
        this.#set(true);
        const check = setInterval(() => void this.confirm(), this.#checkMs);
        check.unref();
        try {
          await released;
        } finally {
          clearInterval(check);
          this.#onHeld = null;
          this.#release = null;
          // Unlock (a broken session has lost it anyway; then this fails and the pool drops it).
          await sql`SELECT pg_advisory_unlock(${LEASE_CLASS}, hashtext(${this.#name}))`
            .execute(conn)
            .catch(() => undefined);
        }
      })
      .catch((error: unknown) => {
        this.#log?.warn({ lease: this.#name, err: (error as Error).message }, 'leader lease: attempt failed');
      });
    this.#held = held;
    // Resolves at once when another replica leads; when this one led, once the lease ended.
    await held;
    this.#set(false);
    this.#schedule();
  }
}

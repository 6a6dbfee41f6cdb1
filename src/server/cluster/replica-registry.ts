/**
 * The server replicas on one database. Each replica has a fresh id per run and a row in
 * `server_replicas` it renews every couple of seconds (a row not renewed for `staleMs` is a replica
 * that is gone), with the endpoint remote agents dial it at. A host's agent is linked to exactly one
 * replica at a time (`hosts.linked_replica`, set at its hello, cleared when its link closes there):
 * any replica finds where to send a host's requests (agent-forwarding.ts), and a starting replica
 * leaves the hosts of the other live replicas alone. On SQLite there is one replica and nothing else
 * to find.
 */
import type { Logger } from '../../common/logger.js';
import { newId } from '../../common/ids.js';
import type { ChangeFeed } from './change-feed.js';
import { engineOf, type Db } from '../store/database.js';

/** The change-feed topic announced when a host's link moved (hello or close on some replica). */
export const HOSTS_LINKED_TOPIC = 'hosts.linked';

export interface ReplicaRegistryOptions {
  /** Where remote agents dial this replica (host:port), or null without an agent listener. */
  agentEndpoint?: string | null;
  feed?: ChangeFeed;
  log?: Pick<Logger, 'warn'>;
  renewMs?: number;
  staleMs?: number;
}

export class ReplicaRegistry {
  /** This replica's id for this run. */
  readonly id = newId();
  readonly #db: Db;
  readonly #options: ReplicaRegistryOptions;
  readonly #renewMs: number;
  readonly #staleMs: number;
  #agentEndpoint: string | null;
  #timer: NodeJS.Timeout | null = null;
  /** Hosts linked to another live replica: host id -> replica id. */
  #elsewhere = new Map<string, string>();
  #refreshing: Promise<void> | null = null;

  constructor(db: Db, options: ReplicaRegistryOptions = {}) {
    this.#db = db;
    this.#options = options;
    this.#renewMs = options.renewMs ?? 2000;
    this.#staleMs = options.staleMs ?? 10_000;
    this.#agentEndpoint = options.agentEndpoint ?? null;
  }

  /** Registers this replica and starts renewing its row (and the map of hosts linked elsewhere). */
  async start(): Promise<void> {
    const now = new Date().toISOString();
    await this.#db
      .insertInto('serverReplicas')
      .values({ id: this.id, agentEndpoint: this.#agentEndpoint, startedAt: now, lastSeenAt: now })
      .execute();
    // Rows of replicas long gone (stopped by a kill) are removed by whoever starts next. A SQLite
    // database has one server: any other row is this server's previous run.
    const sqlite = engineOf(this.#db) === 'sqlite';
    await this.#db
      .deleteFrom('serverReplicas')
      .where('id', '!=', this.id)
      .$if(!sqlite, (q) => q.where('lastSeenAt', '<', new Date(Date.now() - 24 * 3600_000).toISOString()))
      .execute();
    if (sqlite) await this.#db.updateTable('hosts').set({ linkedReplica: null }).execute();
    await this.refresh();
    this.#options.feed?.on('change', (topic) => {
      if (topic === HOSTS_LINKED_TOPIC || topic === '*') void this.refresh();
    });
    this.#timer = setInterval(() => void this.#renew(), this.#renewMs);
    this.#timer.unref();
  }

  /** Stops renewing, unlinks this replica's hosts and removes its row. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#db
      .updateTable('hosts')
      .set({ linkedReplica: null })
      .where('linkedReplica', '=', this.id)
      .execute();
    await this.#db.deleteFrom('serverReplicas').where('id', '=', this.id).execute();
    await this.#announce();
  }

  /** Once the agent listener is up: where agents dial this replica. */
  async setAgentEndpoint(endpoint: string): Promise<void> {
    this.#agentEndpoint = endpoint;
    await this.#db
      .updateTable('serverReplicas')
      .set({ agentEndpoint: endpoint })
      .where('id', '=', this.id)
      .execute();
  }

  /** The ids of the live replicas (this one included). */
  async liveReplicas(): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('serverReplicas')
      .select('id')
      .where('lastSeenAt', '>=', this.#staleSince())
      .execute();
    return rows.map((r) => r.id);
  }

  /** Where agents can dial: this replica's endpoint first, then the other live replicas'. */
  async agentEndpoints(): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('serverReplicas')
      .select(['id', 'agentEndpoint'])
      .where('lastSeenAt', '>=', this.#staleSince())
      .where('agentEndpoint', 'is not', null)
      .orderBy('startedAt')
      .execute();
    const others = rows.filter((r) => r.id !== this.id).map((r) => r.agentEndpoint!);
    const endpoints = this.#agentEndpoint ? [this.#agentEndpoint, ...others] : others;
    return [...new Set(endpoints)];
  }

  /** A host's agent said hello here: it is linked to this replica. */
  async link(hostId: string): Promise<void> {
    await this.#db.updateTable('hosts').set({ linkedReplica: this.id }).where('id', '=', hostId).execute();
    await this.linkedHere(hostId);
  }

  /**
   * A host's link to this replica was recorded already (by its hello: `recordHostHello(db, info,
   * replicas.id)`): forgotten as linked elsewhere, and announced to the other replicas.
   */
  async linkedHere(hostId: string): Promise<void> {
    this.#elsewhere.delete(hostId);
    await this.#announce();
  }

  /**
   * A host's link closed here: unlinked, unless it is linked to another replica already (its agent
   * dialed another one first). True when it was still linked here.
   */
  async unlink(hostId: string): Promise<boolean> {
    const result = await this.#db
      .updateTable('hosts')
      .set({ linkedReplica: null })
      .where('id', '=', hostId)
      .where('linkedReplica', '=', this.id)
      .executeTakeFirst();
    const mine = Number(result.numUpdatedRows) === 1;
    if (mine) await this.#announce();
    return mine;
  }

  /** The other live replica a host is linked to, or null (linked here, or nowhere). */
  replicaOf(hostId: string): string | null {
    return this.#elsewhere.get(hostId) ?? null;
  }

  /** Hosts linked to other live replicas (a starting replica must not mark them offline). */
  linkedElsewhere(): string[] {
    return [...this.#elsewhere.keys()];
  }

  /** Reloads which hosts are linked to which other live replica. */
  refresh(): Promise<void> {
    // One reload at a time; a change heard meanwhile is covered by the next renewal's reload.
    this.#refreshing ??= this.#load().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  async #load(): Promise<void> {
    try {
      const rows = await this.#db
        .selectFrom('hosts')
        .innerJoin('serverReplicas', 'serverReplicas.id', 'hosts.linkedReplica')
        .select(['hosts.id as hostId', 'serverReplicas.id as replicaId'])
        .where('serverReplicas.id', '!=', this.id)
        .where('serverReplicas.lastSeenAt', '>=', this.#staleSince())
        .execute();
      this.#elsewhere = new Map(rows.map((r) => [r.hostId, r.replicaId]));
    } catch (error) {
      this.#options.log?.warn({ err: (error as Error).message }, 'replica registry: reload failed');
    }
  }

  async #renew(): Promise<void> {
    try {
      const result = await this.#db
        .updateTable('serverReplicas')
        .set({ lastSeenAt: new Date().toISOString() })
        .where('id', '=', this.id)
        .executeTakeFirst();
      // Removed while this replica was unreachable for a day: registered again.
      if (Number(result.numUpdatedRows) === 0) {
        const now = new Date().toISOString();
        await this.#db
          .insertInto('serverReplicas')
          .values({ id: this.id, agentEndpoint: this.#agentEndpoint, startedAt: now, lastSeenAt: now })
          .execute();
      }
    } catch (error) {
      this.#options.log?.warn({ err: (error as Error).message }, 'replica registry: renewal failed');
    }
    await this.refresh();
  }

  #staleSince(): string {
    return new Date(Date.now() - this.#staleMs).toISOString();
  }

  async #announce(): Promise<void> {
    await this.#options.feed?.notify(HOSTS_LINKED_TOPIC).catch(() => undefined);
  }
}

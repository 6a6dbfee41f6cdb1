/**
 * Change notifications between server replicas on one PostgreSQL database (LISTEN/NOTIFY): a replica
 * that changed something another replica caches in memory (the role bindings and custom roles behind
 * every authorization decision) announces a topic; every replica, itself included, hears it and
 * reloads. One pooled client stays checked out for LISTEN; when it is lost the feed reconnects and
 * announces '*' locally (anything may have changed meanwhile). On SQLite (one server) notify() is a
 * no-op and nothing is ever heard.
 */
import { EventEmitter } from 'node:events';
import type pg from 'pg';
import type { Logger } from '../../common/logger.js';
import { engineOf, postgresPool, type Db } from '../store/database.js';

const CHANNEL = 'rampart_changes';
/** Live console output relayed between replicas (console-relay.ts): `<origin>:<vm id>:<base64>`. */
const CONSOLE_CHANNEL = 'rampart_console';
/** Topics: lowercase words (a NOTIFY payload is text; nothing else is sent). */
const TOPIC_RE = /^[a-z][a-z0-9_.-]{0,63}$/;
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const CONSOLE_RE = new RegExp(`^(${UUID}):(${UUID}):([A-Za-z0-9+/]*={0,2})$`);
/** Console bytes per notification (NOTIFY payloads must stay under 8,000 bytes). */
export const CONSOLE_CHUNK_BYTES = 5000;

export interface ChangeFeedEvents {
  /** A topic, or '*' after a reconnect (reload everything). */
  change: [topic: string];
  /** Console output of a VM relayed by the replica `origin`. */
  console: [origin: string, vmId: string, data: Buffer];
}

export class ChangeFeed extends EventEmitter<ChangeFeedEvents> {
  readonly #db: Db;
  readonly #log: Pick<Logger, 'info' | 'warn'> | undefined;
  readonly #retryMs: number;
  #client: pg.PoolClient | null = null;
  #stopped = true;
  #timer: NodeJS.Timeout | null = null;
  #connected: Promise<void> | null = null;

  constructor(db: Db, options: { log?: Pick<Logger, 'info' | 'warn'>; retryMs?: number } = {}) {
    super();
    this.#db = db;
    this.#log = options.log;
    this.#retryMs = options.retryMs ?? 1000;
  }

  get postgres(): boolean {
    return engineOf(this.#db) === 'postgres';
  }

  /** Starts listening (resolves once the first LISTEN is in place; a no-op on SQLite). */
  async start(): Promise<void> {
    if (!this.#stopped) return this.#connected ?? undefined;
    this.#stopped = false;
    if (!this.postgres) return;
    this.#connected = this.#connect(false);
    return this.#connected;
  }

  /** Announces a change to every replica (after the change committed). */
  async notify(topic: string): Promise<void> {
    if (!TOPIC_RE.test(topic)) throw new TypeError(`invalid change topic: ${topic}`);
    if (!this.postgres) return;
    await postgresPool(this.#db).query('SELECT pg_notify($1, $2)', [CHANNEL, topic]);
  }

  /** Relays console output of a VM to every replica (at most CONSOLE_CHUNK_BYTES at once). */
  async publishConsole(origin: string, vmId: string, data: Buffer): Promise<void> {
    if (!this.postgres) return;
    if (data.length > CONSOLE_CHUNK_BYTES) throw new RangeError('console chunk too large');
    const payload = `${origin}:${vmId}:${data.toString('base64')}`;
    if (!CONSOLE_RE.test(payload)) throw new TypeError('invalid console relay payload');
    await postgresPool(this.#db).query('SELECT pg_notify($1, $2)', [CONSOLE_CHANNEL, payload]);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const client = this.#client;
    this.#client = null;
    if (client) {
      await client.query('UNLISTEN *').catch(() => undefined);
      client.release();
    }
  }

  async #connect(reconnect: boolean): Promise<void> {
    let client: pg.PoolClient | null = null;
    try {
      client = await postgresPool(this.#db).connect();
      client.on('notification', (message) => {
        if (!message.payload) return;
        if (message.channel === CHANNEL && TOPIC_RE.test(message.payload)) {
          this.emit('change', message.payload);
          return;
        }
        const relayed = message.channel === CONSOLE_CHANNEL ? CONSOLE_RE.exec(message.payload) : null;
        if (relayed) this.emit('console', relayed[1]!, relayed[2]!, Buffer.from(relayed[3]!, 'base64'));
      });
      const lost = (client_: pg.PoolClient, reason: string) => {
        if (this.#client !== client_) return;
        this.#client = null;
        client_.release(new Error(reason));
        this.#log?.warn({ reason }, 'change feed: connection lost; reconnecting');
        this.#retry();
      };
      const held = client;
      client.on('error', (error) => lost(held, error.message));
      client.on('end', () => lost(held, 'connection ended'));
      await client.query(`LISTEN ${CHANNEL}`);
      await client.query(`LISTEN ${CONSOLE_CHANNEL}`);
      if (this.#stopped) {
        client.release();
        return;
      }
      this.#client = client;
      // What was announced while nobody listened is lost: the listeners reload everything.
      if (reconnect) this.emit('change', '*');
    } catch (error) {
      client?.release(error as Error);
      this.#log?.warn({ err: (error as Error).message }, 'change feed: cannot listen; retrying');
      this.#retry();
    }
  }

  #retry(): void {
    if (this.#stopped || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#connect(true);
    }, this.#retryMs);
    this.#timer.unref();
  }
}

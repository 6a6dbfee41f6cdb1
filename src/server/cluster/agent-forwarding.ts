/**
 * Any replica serves any request, but a host's agent is linked to one replica only. A request for
 * the agent of a host linked to another live replica is forwarded through the database: a row in
 * `agent_forwards` plus a change-feed topic addressed to the target replica, which takes the row,
 * sends the request to its agent, writes the answer and announces it to the origin. PostgreSQL is the
 * only channel between replicas: no extra listener, port or credential exists for this, and a
 * replica that cannot write the database could not serve the request anyway.
 *
 * Requests may carry secrets (a volume's LUKS passphrase, unwrapped for that request): bodies and
 * answers are stored sealed with AES-256-GCM under a key derived from a secret the replicas share
 * (never stored in the database), bound to their row id, and the rows are deleted once answered.
 *
 * Failures stay what they were: the origin waits as long as the agent request's own timeout (plus a
 * margin) and then fails with RAMPART_TIMEOUT; the target answers RAMPART_HOST_UNAVAILABLE when the
 * host is no longer linked to it; an agent's error comes back with its code. Every replica also polls
 * once a second, so a notification lost to a reconnect only delays a request.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { ERROR_CODES, RampartError, type ErrorCode } from '../../api/errors.js';
import type { AgentRequestType, AgentResults } from '../../api/agent-protocol.js';
import { newId } from '../../common/ids.js';
import type { Logger } from '../../common/logger.js';
import type { AgentConnection, RequestBody } from '../agent-link/agent-connection.js';
import type { Db } from '../store/database.js';
import type { ChangeFeed } from './change-feed.js';

/** What services call on a host's agent: a local connection or a forwarding channel. */
export interface AgentChannel {
  /**
   * True through another replica: VM statuses in answers may be older than what the host has
   * reported since (to the replica it is linked to, which records them in order), so they are not
   * recorded from the answer.
   */
  readonly forwarded?: boolean;
  request<T extends AgentRequestType>(
    type: T,
    body: RequestBody<T>,
    timeoutMs?: number,
  ): Promise<AgentResults[T]>;
}

export interface AgentForwardingOptions {
  db: Db;
  /** A secret every replica has and the database does not (the session signing key). */
  secret: Uint8Array;
  feed: ChangeFeed;
  replicaId: string;
  /** This replica's own connection to a host's agent. */
  local: (hostId: string) => AgentConnection | null;
  log: Pick<Logger, 'warn' | 'error'>;
  /** The agent request timeout when a caller gives none (AgentConnection's default). */
  defaultTimeoutMs?: number;
  pollMs?: number;
}

type Answer =
  | { ok: true; result: unknown }
  | { ok: false; error: { code: string; message: string; details?: Record<string, unknown> } };

const errorCode = (code: string | undefined): ErrorCode =>
  code !== undefined && Object.hasOwn(ERROR_CODES, code) ? (code as ErrorCode) : 'RAMPART_INTERNAL';

interface Waiting {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** The sealing key of forwarded requests, derived from the replicas' shared secret. */
function sealingKey(secret: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'rampart agent forwarding v1', 32));
}

/** `v1.<iv>.<ciphertext>.<tag>` (base64), bound to the row id. */
function seal(key: Buffer, id: string, text: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(id));
  const sealed = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
  return ['v1', iv, sealed, cipher.getAuthTag()]
    .map((p) => (typeof p === 'string' ? p : p.toString('base64')))
    .join('.');
}

function unseal(key: Buffer, id: string, sealed: string): string {
  const [version, iv, text, tag] = sealed.split('.');
  if (version !== 'v1' || iv === undefined || text === undefined || tag === undefined)
    throw new Error('a forwarded request is not sealed');
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64'));
  decipher.setAAD(Buffer.from(id));
  decipher.setAuthTag(Buffer.from(tag, 'base64'));
  return Buffer.concat([decipher.update(Buffer.from(text, 'base64')), decipher.final()]).toString('utf8');
}

/**
 * Runs `work` one pass at a time; a call during a pass runs one more pass after it (what was
 * announced meanwhile may have been written after the pass read).
 */
function coalesced(work: () => Promise<void>, onError: (error: Error) => void): () => void {
  let running = false;
  let again = false;
  const run = (): void => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    again = false;
    void work()
      .catch((error: unknown) => onError(error as Error))
      .finally(() => {
        running = false;
        if (again) run();
      });
  };
  return run;
}

const requestTopic = (replicaId: string) => `fwd.${replicaId}`;
const answerTopic = (replicaId: string) => `fwd-done.${replicaId}`;

export class AgentForwarding {
  readonly #o: AgentForwardingOptions;
  readonly #waiting = new Map<string, Waiting>();
  #timer: NodeJS.Timeout | null = null;
  /** Takes and runs the requests addressed to this replica. */
  readonly #serve = coalesced(
    () => (this.#stopped ? Promise.resolve() : this.#servePending()),
    (error) => this.#o.log.error({ err: error.message }, 'agent forwarding: serving failed'),
  );
  /** Picks up the answers to this replica's forwarded requests. */
  readonly #collect = coalesced(
    () => (this.#stopped ? Promise.resolve() : this.#collectDone()),
    (error) => this.#o.log.error({ err: error.message }, 'agent forwarding: collecting failed'),
  );
  #stopped = true;
  #seq = 0;
  /** Per host, the last insert: a host's rows are written one after another (in request order). */
  readonly #inserts = new Map<string, Promise<unknown>>();

  readonly #key: Buffer;

  constructor(options: AgentForwardingOptions) {
    this.#o = options;
    this.#key = sealingKey(options.secret);
  }

  start(): void {
    if (!this.#o.feed.postgres) return;
    this.#stopped = false;
    this.#o.feed.on('change', this.#onChange);
    this.#timer = setInterval(() => {
      this.#serve();
      if (this.#waiting.size > 0) this.#collect();
    }, this.#o.pollMs ?? 1000);
    this.#timer.unref();
    this.#serve();
    // Rows left by replicas that died mid-request.
    void this.#o.db
      .deleteFrom('agentForwards')
      .where('createdAt', '<', new Date(Date.now() - 3600_000).toISOString())
      .execute()
      .catch(() => undefined);
  }

  stop(): void {
    this.#stopped = true;
    this.#o.feed.off('change', this.#onChange);
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    for (const [id, waiting] of this.#waiting) {
      clearTimeout(waiting.timer);
      waiting.reject(new RampartError('RAMPART_HOST_UNAVAILABLE', 'the server is shutting down'));
      this.#waiting.delete(id);
    }
  }

  /** A channel to the agent of `hostId`, linked to the replica `targetReplica`. */
  channel(hostId: string, targetReplica: string): AgentChannel {
    return {
      forwarded: true,
      request: <T extends AgentRequestType>(type: T, body: RequestBody<T>, timeoutMs?: number) =>
        this.#forward(hostId, targetReplica, type, body, timeoutMs) as Promise<AgentResults[T]>,
    };
  }

  readonly #onChange = (topic: string): void => {
    if (topic === requestTopic(this.#o.replicaId)) this.#serve();
    else if (topic === answerTopic(this.#o.replicaId)) this.#collect();
    else if (topic === '*') {
      this.#serve();
      this.#collect();
    }
  };

  async #forward(
    hostId: string,
    targetReplica: string,
    type: AgentRequestType,
    body: unknown,
    timeoutMs?: number,
  ): Promise<unknown> {
    if (this.#stopped)
      throw new RampartError('RAMPART_HOST_UNAVAILABLE', 'the host agent is not connected to this server');
    const agentTimeoutMs = timeoutMs ?? this.#o.defaultTimeoutMs ?? 30_000;
    const id = newId();
    const answered = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        void this.#o.db
          .deleteFrom('agentForwards')
          .where('id', '=', id)
          .execute()
          .catch(() => undefined);
        reject(
          new RampartError(
            'RAMPART_TIMEOUT',
            `the host agent (linked to another server replica) did not answer ${type} within ${agentTimeoutMs} ms`,
          ),
        );
      }, agentTimeoutMs + 2000);
      this.#waiting.set(id, { resolve, reject, timer });
    });
    // Written in the order the requests were made (a console's keystrokes stay in order), and
    // announced once written.
    const seq = ++this.#seq;
    const previous = this.#inserts.get(hostId) ?? Promise.resolve();
    const inserted = previous
      .catch(() => undefined)
      .then(() =>
        this.#o.db
          .insertInto('agentForwards')
          .values({
            id,
            originReplica: this.#o.replicaId,
            targetReplica,
            hostId,
            seq,
            type,
            body: seal(this.#key, id, JSON.stringify(body)),
            timeoutMs: agentTimeoutMs,
            state: 'pending',
            result: null,
            createdAt: new Date().toISOString(),
          })
          .execute(),
      );
    this.#inserts.set(hostId, inserted);
    try {
      await inserted;
      await this.#o.feed.notify(requestTopic(targetReplica));
    } catch (error) {
      const waiting = this.#waiting.get(id);
      if (waiting) {
        clearTimeout(waiting.timer);
        this.#waiting.delete(id);
      }
      throw error;
    } finally {
      if (this.#inserts.get(hostId) === inserted) this.#inserts.delete(hostId);
    }
    return answered;
  }

  async #servePending(): Promise<void> {
    const rows = await this.#o.db
      .selectFrom('agentForwards')
      .selectAll()
      .where('targetReplica', '=', this.#o.replicaId)
      .where('state', '=', 'pending')
      .orderBy('originReplica')
      .orderBy('seq')
      .execute();
    if (rows.length === 0) return;
    // Taken in one statement (only this replica serves them; the state guards a repeated pass).
    const taken = await this.#o.db
      .updateTable('agentForwards')
      .set({ state: 'running' })
      .where(
        'id',
        'in',
        rows.map((row) => row.id),
      )
      .where('state', '=', 'pending')
      .returning('id')
      .execute();
    const mine = new Set(taken.map((row) => row.id));
    for (const row of rows) {
      if (!mine.has(row.id)) continue;
      // Requests run concurrently, like requests on a connection, and are sent to the agent in order
      // (#run sends before its first await).
      void this.#run(row.id, row.originReplica, row.hostId, row.type, row.body, row.timeoutMs, row.createdAt);
    }
  }

  async #run(
    id: string,
    origin: string,
    hostId: string,
    type: string,
    body: string,
    timeoutMs: number,
    createdAt: string,
  ): Promise<void> {
    let answer: Answer;
    const remainingMs = Date.parse(createdAt) + timeoutMs - Date.now();
    const agent = this.#o.local(hostId);
    if (remainingMs <= 0) {
      answer = { ok: false, error: { code: 'RAMPART_TIMEOUT', message: 'the forwarded request expired' } };
    } else if (!agent) {
      answer = {
        ok: false,
        error: { code: 'RAMPART_HOST_UNAVAILABLE', message: 'the host agent is not connected' },
      };
    } else {
      try {
        const result = await agent.request(
          type as AgentRequestType,
          JSON.parse(unseal(this.#key, id, body)) as RequestBody<AgentRequestType>,
          remainingMs,
        );
        answer = { ok: true, result: result ?? null };
      } catch (error) {
        answer =
          error instanceof RampartError
            ? {
                ok: false,
                error: {
                  code: error.code,
                  message: error.message,
                  ...(error.details ? { details: error.details } : {}),
                },
              }
            : { ok: false, error: { code: 'RAMPART_INTERNAL', message: (error as Error).message } };
      }
    }
    try {
      await this.#o.db
        .updateTable('agentForwards')
        .set({ state: 'done', result: seal(this.#key, id, JSON.stringify(answer)) })
        .where('id', '=', id)
        .execute();
      await this.#o.feed.notify(answerTopic(origin));
    } catch (error) {
      this.#o.log.warn({ err: (error as Error).message, type }, 'agent forwarding: answer not written');
    }
  }

  async #collectDone(): Promise<void> {
    const rows = await this.#o.db
      .selectFrom('agentForwards')
      .select(['id', 'result'])
      .where('originReplica', '=', this.#o.replicaId)
      .where('state', '=', 'done')
      .execute();
    if (rows.length === 0) return;
    await this.#o.db
      .deleteFrom('agentForwards')
      .where(
        'id',
        'in',
        rows.map((r) => r.id),
      )
      .execute();
    for (const row of rows) {
      const waiting = this.#waiting.get(row.id);
      if (!waiting) continue;
      this.#waiting.delete(row.id);
      clearTimeout(waiting.timer);
      let answer: Answer | null;
      try {
        answer = row.result ? (JSON.parse(unseal(this.#key, row.id, row.result)) as Answer) : null;
      } catch {
        answer = null; // not sealed with this replica's key: reported as a failed request
      }
      if (answer?.ok) waiting.resolve(answer.result);
      else
        waiting.reject(
          new RampartError(
            errorCode(answer?.error.code),
            answer?.error.message ?? 'the forwarded request failed',
            answer?.error.details,
          ),
        );
    }
  }
}

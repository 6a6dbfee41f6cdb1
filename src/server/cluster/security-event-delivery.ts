/**
 * One security event stream for every server replica on PostgreSQL. Each replica writes its own events
 * (seq assigned under an advisory lock held until commit, so events commit in seq order and a reader of
 * `seq > cursor` never sees a gap filled later); this delivery tails the table and hands every
 * replica's events to this replica's listeners (the WebSocket stream, the detection engine on the
 * leader, the login throttle) in seq order, each exactly once, marked 'local' or 'remote'.
 *
 * It reads when this replica committed an event (at once), when another replica announced one on the
 * change feed (topic `security-events`, at most one NOTIFY per `announceEveryMs` from each replica),
 * after a change-feed reconnect, and every `pollMs` in case a NOTIFY was lost. It starts at the end of
 * the stream: what was recorded before this replica started is history, read through the API.
 */
import type { Logger } from '../../common/logger.js';
import type { SecurityEventDistributor, SecurityEventLog } from '../security/security-events.js';
import type { ChangeFeed } from './change-feed.js';

export const SECURITY_EVENTS_TOPIC = 'security-events';
/** Events read at once (the list API's maximum). */
const BATCH = 1000;

export interface SecurityEventDeliveryOptions {
  events: SecurityEventLog;
  feed: ChangeFeed;
  log: Pick<Logger, 'warn'>;
  pollMs?: number;
  announceEveryMs?: number;
}

export class SecurityEventDelivery implements SecurityEventDistributor {
  readonly #events: SecurityEventLog;
  readonly #feed: ChangeFeed;
  readonly #log: Pick<Logger, 'warn'>;
  readonly #pollMs: number;
  readonly #announceEveryMs: number;
  /** The largest seq delivered (or skipped as history). */
  #cursor = 0;
  #started = false;
  #stopped = false;
  /** Seqs this replica is committing or committed and that were not delivered yet. */
  readonly #local = new Set<number>();
  #reading: Promise<void> | null = null;
  #again = false;
  #poll: NodeJS.Timeout | null = null;
  #announce: NodeJS.Timeout | null = null;
  readonly #onChange = (topic: string) => {
    if (topic === SECURITY_EVENTS_TOPIC || topic === '*') this.wake();
  };

  constructor(options: SecurityEventDeliveryOptions) {
    this.#events = options.events;
    this.#feed = options.feed;
    this.#log = options.log;
    this.#pollMs = options.pollMs ?? 1000;
    this.#announceEveryMs = options.announceEveryMs ?? 50;
  }

  /** Takes over delivery from the event log, starting after its last event. */
  async start(): Promise<void> {
    this.#events.distributeThrough(this);
    this.#cursor = await this.#events.lastSeq();
    this.#started = true;
    this.#feed.on('change', this.#onChange);
    this.#poll = setInterval(() => this.wake(), this.#pollMs);
    this.#poll.unref();
    this.wake();
  }

  /** Stops reading; the events recorded after this are delivered locally again. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#feed.off('change', this.#onChange);
    if (this.#poll) clearInterval(this.#poll);
    if (this.#announce) clearTimeout(this.#announce);
    this.#poll = this.#announce = null;
    await this.#reading;
    this.#events.distributeThrough(null);
  }

  /** Resolves once everything committed so far has been read and delivered (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#reading) await this.#reading;
  }

  pending(seq: number): void {
    this.#local.add(seq);
  }

  abandoned(seq: number): void {
    this.#local.delete(seq);
  }

  committed(seq: number): void {
    this.#local.add(seq);
    this.wake();
    if (this.#announce || this.#stopped) return;
    this.#announce = setTimeout(() => {
      this.#announce = null;
      this.#feed
        .notify(SECURITY_EVENTS_TOPIC)
        .catch((error: unknown) =>
          this.#log.warn({ err: (error as Error).message }, 'security events: cannot announce'),
        );
    }, this.#announceEveryMs);
  }

  /** Reads now, or once more after the read in progress. */
  wake(): void {
    if (!this.#started || this.#stopped) return;
    if (this.#reading) {
      this.#again = true;
      return;
    }
    this.#reading = this.#read()
      .catch((error: unknown) =>
        this.#log.warn({ err: (error as Error).message }, 'security events: cannot read the stream'),
      )
      .finally(() => {
        this.#reading = null;
        if (this.#again) {
          this.#again = false;
          this.wake();
        }
      });
  }

  async #read(): Promise<void> {
    for (;;) {
      this.#again = false;
      const batch = await this.#events.list({ afterSeq: this.#cursor, limit: BATCH });
      for (const event of batch) {
        this.#cursor = event.seq;
        this.#events.deliver(event, this.#local.delete(event.seq) ? 'local' : 'remote');
      }
      // Local seqs behind the cursor were pruned before they were read: nothing to deliver any more.
      for (const seq of this.#local) if (seq <= this.#cursor) this.#local.delete(seq);
      if (batch.length < BATCH || this.#stopped) return;
    }
  }
}

/**
 * Live consoles across server replicas. A VM's console output reaches only the replica its host is
 * linked to; a replica with a console listener for a VM asks for it (`console-want.<vm id>` on the
 * change feed, at once and every few seconds while someone listens), and the linked replica then
 * relays that VM's output over a NOTIFY channel, in order, in chunks of at most CONSOLE_CHUNK_BYTES,
 * until the asks stop for `wantTtlMs`. A replica ignores what it relayed itself. Nothing happens on
 * SQLite (one server).
 */
import type { Logger } from '../../common/logger.js';
import type { ConsoleHub } from '../console/console-hub.js';
import { CONSOLE_CHUNK_BYTES, type ChangeFeed } from './change-feed.js';

const WANT_PREFIX = 'console-want.';

export interface ConsoleRelayOptions {
  feed: ChangeFeed;
  hub: ConsoleHub;
  replicaId: string;
  log: Pick<Logger, 'warn'>;
  /** How often asks are repeated while a listener stays (ms). */
  askMs?: number;
  /** How long an ask holds (ms). */
  wantTtlMs?: number;
}

export class ConsoleRelay {
  readonly #o: ConsoleRelayOptions;
  /** VM id -> until when another replica wants its output. */
  readonly #wanted = new Map<string, number>();
  #timer: NodeJS.Timeout | null = null;
  /** Relayed chunks are sent one after another, so they arrive in order. */
  #sending: Promise<void> = Promise.resolve();

  constructor(options: ConsoleRelayOptions) {
    this.#o = options;
  }

  start(): void {
    const { feed, hub } = this.#o;
    if (!feed.postgres) return;
    feed.on('change', this.#onChange);
    feed.on('console', this.#onConsole);
    hub.onSubscribe = (vmId) => this.#ask(vmId);
    this.#timer = setInterval(() => {
      for (const vmId of hub.watchedVms()) this.#ask(vmId);
      const now = Date.now();
      for (const [vmId, until] of this.#wanted) if (until < now) this.#wanted.delete(vmId);
    }, this.#o.askMs ?? 5000);
    this.#timer.unref();
  }

  stop(): void {
    this.#o.feed.off('change', this.#onChange);
    this.#o.feed.off('console', this.#onConsole);
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Output of a VM whose host is linked here: relayed when another replica wants it. */
  publish(vmId: string, data: Buffer): void {
    if ((this.#wanted.get(vmId) ?? 0) < Date.now()) return;
    for (let at = 0; at < data.length; at += CONSOLE_CHUNK_BYTES) {
      const chunk = data.subarray(at, at + CONSOLE_CHUNK_BYTES);
      this.#sending = this.#sending
        .then(() => this.#o.feed.publishConsole(this.#o.replicaId, vmId, chunk))
        .catch((error: unknown) =>
          this.#o.log.warn({ vmId, err: (error as Error).message }, 'console relay: not sent'),
        );
    }
  }

  #ask(vmId: string): void {
    void this.#o.feed.notify(`${WANT_PREFIX}${vmId}`).catch(() => undefined);
  }

  readonly #onChange = (topic: string): void => {
    if (topic.startsWith(WANT_PREFIX))
      this.#wanted.set(topic.slice(WANT_PREFIX.length), Date.now() + (this.#o.wantTtlMs ?? 15_000));
  };

  readonly #onConsole = (origin: string, vmId: string, data: Buffer): void => {
    if (origin !== this.#o.replicaId) this.#o.hub.publish(vmId, data);
  };
}

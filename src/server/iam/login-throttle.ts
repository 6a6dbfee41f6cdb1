/**
 * Login throttling against password guessing, kept in memory. With several server replicas each also
 * applies the logins recorded by the others, from the security event stream (applyLoginEvent).
 *
 * Two counters of consecutive failures: per account (guessing one user's password from many
 * addresses) and per source (one address trying many accounts). Past its threshold a counter blocks
 * for an exponentially growing delay after the last failure, capped at `maxDelayMs`: guessing slows to
 * a crawl, but nobody is ever locked out for good, so a lock is never a denial of service that needs
 * an administrator. Counters are forgotten `forgetAfterMs` (at least `maxDelayMs`) after their last
 * failure.
 *
 * A source that recently logged in to an account successfully is exempt from that account's lock (not
 * from its own source limit): an attacker hammering the admin account from elsewhere must not lock the
 * admin out. Memory is bounded: each table keeps at most `maxKeys` entries and drops the least recently
 * touched first. An attacker who wants a counter evicted must first fail `maxKeys` logins, which the
 * per-source limit slows down.
 *
 * `recordFailure` must only follow a real credential check that failed: a request refused by `check`
 * is not a guess and must not extend the block.
 */
import type { SecurityEvent } from '../../api/security.js';

export interface LoginThrottleOptions {
  accountThreshold?: number;
  sourceThreshold?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  forgetAfterMs?: number;
  /** Entries kept per table (failures by account, by source, known sources). */
  maxKeys?: number;
  now?: () => number;
}

export type ThrottleDecision =
  { allowed: true } | { allowed: false; retryAfterMs: number; scope: 'account' | 'source' };

interface Failures {
  count: number;
  lastAt: number;
}

/** How many times longer than failures a successful source stays known. */
const KNOWN_SOURCE_FACTOR = 24;

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer`);
  return value;
}

/** Moves `key` to the end of the insertion order (most recently touched) and enforces the bound. */
function touch<V>(map: Map<string, V>, key: string, value: V, maxKeys: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > maxKeys) {
    const oldest = map.keys().next();
    if (oldest.done) break;
    map.delete(oldest.value);
  }
}

export class LoginThrottle {
  private readonly accountThreshold: number;
  private readonly sourceThreshold: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly forgetAfterMs: number;
  private readonly maxKeys: number;
  private readonly now: () => number;
  private readonly accounts = new Map<string, Failures>();
  private readonly sources = new Map<string, Failures>();
  /** knownKey(account, source) -> expiry time. */
  private readonly knownSources = new Map<string, number>();

  constructor(options: LoginThrottleOptions = {}) {
    this.accountThreshold = positiveInteger('accountThreshold', options.accountThreshold ?? 5);
    this.sourceThreshold = positiveInteger('sourceThreshold', options.sourceThreshold ?? 20);
    this.baseDelayMs = positiveInteger('baseDelayMs', options.baseDelayMs ?? 1000);
    this.maxDelayMs = positiveInteger('maxDelayMs', options.maxDelayMs ?? 900_000);
    // Never shorter than the longest block: a counter forgotten while it still blocks would cut the
    // back-off short. (A base delay above the maximum is simply capped by it.)
    this.forgetAfterMs = Math.max(
      positiveInteger('forgetAfterMs', options.forgetAfterMs ?? 3_600_000),
      this.maxDelayMs,
    );
    this.maxKeys = positiveInteger('maxKeys', options.maxKeys ?? 100_000);
    this.now = options.now ?? Date.now;
  }

  /** May a login attempt for `account` from `source` go ahead now? */
  check(account: string, source: string): ThrottleDecision {
    const now = this.now();
    const key = account.toLowerCase();
    const sourceWait = this.waitFor(this.sources, source, this.sourceThreshold, now);
    const accountWait = this.isKnownSource(key, source, now)
      ? 0
      : this.waitFor(this.accounts, key, this.accountThreshold, now);
    if (sourceWait === 0 && accountWait === 0) return { allowed: true };
    return accountWait > sourceWait
      ? { allowed: false, retryAfterMs: accountWait, scope: 'account' }
      : { allowed: false, retryAfterMs: sourceWait, scope: 'source' };
  }

  /** A credential check for `account` from `source` failed. */
  recordFailure(account: string, source: string): void {
    const now = this.now();
    this.bump(this.accounts, account.toLowerCase(), now);
    this.bump(this.sources, source, now);
  }

  /** A login for `account` from `source` succeeded: both counters reset, and the source becomes known. */
  recordSuccess(account: string, source: string): void {
    const now = this.now();
    const key = account.toLowerCase();
    this.accounts.delete(key);
    this.sources.delete(source);
    touch(
      this.knownSources,
      knownKey(key, source),
      now + this.forgetAfterMs * KNOWN_SOURCE_FACTOR,
      this.maxKeys,
    );
    // All entries live equally long, so the table is ordered by expiry too.
    for (const [oldestKey, expiresAt] of this.knownSources) {
      if (now < expiresAt) break;
      this.knownSources.delete(oldestKey);
    }
  }

  /** Entries currently held, all tables together (for tests and metrics). */
  get trackedKeys(): number {
    return this.accounts.size + this.sources.size + this.knownSources.size;
  }

  private expired(failures: Failures, now: number): boolean {
    return now - failures.lastAt >= this.forgetAfterMs;
  }

  /** Milliseconds until `key` may try again; 0 when it may now. */
  private waitFor(map: Map<string, Failures>, key: string, threshold: number, now: number): number {
    const failures = map.get(key);
    if (!failures) return 0;
    if (this.expired(failures, now)) {
      map.delete(key);
      return 0;
    }
    if (failures.count < threshold) return 0;
    // The exponent is capped so the power stays finite; the delay is capped anyway.
    const delay = Math.min(this.baseDelayMs * 2 ** Math.min(failures.count - threshold, 64), this.maxDelayMs);
    // min(): a clock that stepped backwards must not stretch the block beyond its own delay.
    return Math.max(0, Math.min(failures.lastAt + delay - now, delay));
  }

  private bump(map: Map<string, Failures>, key: string, now: number): void {
    const previous = map.get(key);
    const count = previous && !this.expired(previous, now) ? previous.count + 1 : 1;
    touch(map, key, { count, lastAt: now }, this.maxKeys);
    // The table is ordered by last failure: drop what has been forgotten from the front.
    for (const [oldestKey, oldest] of map) {
      if (!this.expired(oldest, now)) break;
      map.delete(oldestKey);
    }
  }

  private isKnownSource(account: string, source: string, now: number): boolean {
    const key = knownKey(account, source);
    const expiresAt = this.knownSources.get(key);
    if (expiresAt === undefined) return false;
    if (now < expiresAt) return true;
    this.knownSources.delete(key);
    return false;
  }
}

/** Length-prefixed so no pair of (account, source) strings can collide with another. */
function knownKey(account: string, source: string): string {
  return `${account.length}:${account}:${source}`;
}

/** Failed logins that were a real credential check (a throttled attempt is not a guess). */
const GUESS_REASONS = new Set(['unknown-user', 'bad-password', 'disabled', 'bad-otp']);

/**
 * Applies a login recorded by another server replica (its auth.login_failed / auth.login_succeeded
 * security event) to this replica's throttle, so a guesser gains nothing by spreading attempts over
 * replicas. Other events, and login events without a username or source, are ignored.
 */
export function applyLoginEvent(throttle: LoginThrottle, event: SecurityEvent): void {
  const { username, sourceIp, reason } = event.detail;
  if (typeof username !== 'string' || typeof sourceIp !== 'string') return;
  if (event.kind === 'auth.login_failed' && typeof reason === 'string' && GUESS_REASONS.has(reason))
    throttle.recordFailure(username, sourceIp);
  else if (event.kind === 'auth.login_succeeded') throttle.recordSuccess(username, sourceIp);
}

/**
 * API rate limits: token buckets, kept in memory (one server process), checked by access-control.ts.
 *
 * Why three kinds of bucket: one client must not be able to starve the others, and neither must one
 * tenant. So every authenticated request takes a token from its principal's bucket (the user for
 * sessions, so opening many sessions does not multiply the allowance; the token id for API tokens) and,
 * once it acts in a tenant, from that tenant's bucket (all its principals together). Requests without a
 * principal (public routes, a missing or failing token, unknown routes) take one from their source
 * address's bucket instead, so a flood of bad tokens is limited too. IPv6 sources are keyed by their /64
 * prefix: one host usually owns a whole /64 and could otherwise pick a fresh address per request.
 *
 * A bucket holds up to `burst` tokens and refills at `ratePerSecond`; a request with no whole token left
 * is refused with the time until the next one (Retry-After, whole seconds, at least 1). A refused
 * request takes nothing, so a client that waits as told always gets through. Memory is bounded: each
 * table keeps at most `maxKeys` buckets and drops the least recently used first; a dropped bucket
 * comes back full, which costs an attacker `maxKeys` other keys first.
 *
 * Audit suppression: every refusal is a denial and would be audited, so a flood would become an
 * audit-log flood. Each bucket therefore also remembers when its last refusal was recorded: the first
 * refusal of a key is recorded, later ones only once per `auditWindowMs`, and that record's detail
 * carries how many refusals went unrecorded since the previous one (`rate limited (principal): 134
 * more refused since last record`). Refusals after the last record of a flood are reported by the
 * key's next record; they are always counted in the request metrics (status 429).
 */

/** A limit: `ratePerSecond` 0 means no limit. */
export interface RateLimit {
  ratePerSecond: number;
  burst: number;
}

export const NO_LIMIT: RateLimit = { ratePerSecond: 0, burst: 0 };

export interface RateLimitConfig {
  /** Per user (sessions) or API token. */
  principal: RateLimit;
  /** Per tenant, all its principals together. */
  tenant: RateLimit;
  /** Per source address, for requests without a principal. */
  anonymous: RateLimit;
  /** At most one audit record per bucket key per this many seconds. */
  auditWindowSeconds: number;
}

export const DEFAULT_RATE_LIMITS: RateLimitConfig = {
  principal: { ratePerSecond: 20, burst: 60 },
  tenant: { ratePerSecond: 100, burst: 300 },
  anonymous: { ratePerSecond: 10, burst: 100 },
  auditWindowSeconds: 60,
};

export type RateLimitScope = 'principal' | 'tenant' | 'source';

export type RateDecision =
  | { allowed: true }
  | {
      allowed: false;
      retryAfterSeconds: number;
      /** The audit detail of this refusal, or null when it falls in the key's window (no record). */
      auditDetail: string | null;
    };

const ALLOWED: RateDecision = { allowed: true };
const UNITS: Record<string, number> = { s: 1, min: 60, h: 3600 };
const MAX_COUNT = 1_000_000;
export const RATE_LIMIT_FORMAT = '"<n>/s", "<n>/min" or "<n>/h", optionally followed by " burst <m>", or 0';

/**
 * Parses `20/s burst 60` (also `/min`, `/h`; the burst defaults to n) or `0`/`off` (no limit). Throws
 * a RangeError naming the expected format.
 */
export function parseRateLimit(text: string): RateLimit {
  const trimmed = text.trim().toLowerCase();
  if (trimmed === '0' || trimmed === 'off') return NO_LIMIT;
  const match = /^(\d{1,7})\s*\/\s*(s|min|h)(?:\s+burst\s+(\d{1,7}))?$/.exec(trimmed);
  const count = match ? Number(match[1]) : NaN;
  const burst = match?.[3] === undefined ? count : Number(match[3]);
  if (!match || count < 1 || count > MAX_COUNT || burst < 1 || burst > MAX_COUNT)
    throw new RangeError(
      `expected ${RATE_LIMIT_FORMAT} (n and m from 1 to ${MAX_COUNT}, e.g. "20/s burst 60"), got ${JSON.stringify(text)}`,
    );
  return { ratePerSecond: count / UNITS[match[2]!]!, burst };
}

/** The key of a source address: IPv4 as is (also when IPv4-mapped), IPv6 by its /64 prefix. */
export function sourceKey(ip: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!ip.includes(':')) return ip;
  const hextets = expandIPv6(ip.split('%')[0]!);
  return hextets ? `${hextets.slice(0, 4).join(':')}::/64` : ip;
}

/** The eight hextets of an IPv6 address (with `::` and a trailing dotted IPv4 part), or null. */
function expandIPv6(ip: string): string[] | null {
  let text = ip.toLowerCase();
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  if (!all.every((h) => /^[0-9a-f]{1,4}$/.test(h))) return null;
  return all.map((h) => h.replace(/^0+(?=.)/, ''));
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date. */
  updatedAt: number;
  /** When this key's last refusal was audited (null: never). */
  recordedAt: number | null;
  /** Refusals not audited since then. */
  unrecorded: number;
}

export interface TokenBucketsOptions {
  /** Buckets kept; the least recently used is dropped beyond this. */
  maxKeys?: number;
  auditWindowMs?: number;
  now?: () => number;
}

/** One table of token buckets under one limit, e.g. all principals' buckets. */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  private readonly maxKeys: number;
  private readonly auditWindowMs: number;
  private readonly now: () => number;

  constructor(
    private readonly scope: RateLimitScope,
    private readonly limit: RateLimit,
    options: TokenBucketsOptions = {},
  ) {
    if (!(limit.ratePerSecond >= 0) || !(limit.burst >= (limit.ratePerSecond > 0 ? 1 : 0)))
      throw new RangeError(`invalid ${scope} rate limit`);
    this.perMs = limit.ratePerSecond / 1000;
    this.maxKeys = options.maxKeys ?? 100_000;
    if (!Number.isSafeInteger(this.maxKeys) || this.maxKeys < 1)
      throw new RangeError('maxKeys must be a positive integer');
    this.auditWindowMs = options.auditWindowMs ?? 60_000;
    this.now = options.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.perMs > 0;
  }

  /** Buckets currently held (for tests). */
  get size(): number {
    return this.buckets.size;
  }

  /** Takes one token from `key`'s bucket, or says how long to wait and whether to audit the refusal. */
  take(key: string): RateDecision {
    if (!this.enabled) return ALLOWED;
    const now = this.now();
    const bucket = this.buckets.get(key) ?? {
      tokens: this.limit.burst,
      updatedAt: now,
      recordedAt: null,
      unrecorded: 0,
    };
    // max(0): a clock that stepped backwards refills nothing (and does not drain either).
    const elapsed = Math.max(0, now - bucket.updatedAt);
    bucket.tokens = Math.min(this.limit.burst, bucket.tokens + elapsed * this.perMs);
    bucket.updatedAt = now;
    // Re-inserted: the Map's order is least recently used first.
    this.buckets.delete(key);
    this.buckets.set(key, bucket);
    while (this.buckets.size > this.maxKeys) {
      const oldest = this.buckets.keys().next();
      if (oldest.done) break;
      this.buckets.delete(oldest.value);
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return ALLOWED;
    }
    const retryAfterSeconds = Math.max(1, Math.ceil((1 - bucket.tokens) / this.perMs / 1000));
    return { allowed: false, retryAfterSeconds, auditDetail: this.auditDetail(bucket, now) };
  }

  private auditDetail(bucket: Bucket, now: number): string | null {
    const since = bucket.recordedAt === null ? Infinity : now - bucket.recordedAt;
    // since < 0: the clock stepped backwards; record rather than stay silent for long.
    if (since >= 0 && since < this.auditWindowMs) {
      bucket.unrecorded += 1;
      return null;
    }
    const detail =
      bucket.unrecorded > 0
        ? `rate limited (${this.scope}): ${bucket.unrecorded} more refused since last record`
        : `rate limited (${this.scope})`;
    bucket.recordedAt = now;
    bucket.unrecorded = 0;
    return detail;
  }
}

/** The three tables the API uses. */
export class RateLimiter {
  private readonly tables: Record<RateLimitScope, TokenBuckets>;

  constructor(config: RateLimitConfig, options: Omit<TokenBucketsOptions, 'auditWindowMs'> = {}) {
    const shared = { ...options, auditWindowMs: config.auditWindowSeconds * 1000 };
    this.tables = {
      principal: new TokenBuckets('principal', config.principal, shared),
      tenant: new TokenBuckets('tenant', config.tenant, shared),
      source: new TokenBuckets('source', config.anonymous, shared),
    };
  }

  take(scope: RateLimitScope, key: string): RateDecision {
    return this.tables[scope].take(key);
  }
}

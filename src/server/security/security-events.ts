/**
 * The security event stream: a bounded, append-only table (security_events, migration
 * 0009_protected_images) of things a security engineer or the detection engine wants to see, in one
 * total order (`seq`) across all tenants. Unlike the audit log it is not tamper-evident and old events
 * are dropped once the table holds more than `maxEvents` (env RAMPART_SECURITY_EVENTS_MAX, default
 * 100000); the audit log stays the record of who did what.
 *
 * - record() assigns id, seq (previous max + 1, inside a transaction) and occurredAt, stores the
 *   detail as JSON, logs one line (kind, severity, ids and the summary; never the detail) and emits
 *   the event as 'event' on this object (for streaming to WebSocket clients and the detection engine);
 *   with several replicas a distributor delivers every replica's events instead, in seq order.
 *   Calls in one process are serialized, so seq is strictly increasing in the order record() resolves.
 *   Do not await record() while holding a database transaction: it takes the connection itself.
 * - list() answers newest first; with `afterSeq` it answers the events after that seq oldest first,
 *   so a reader tails the stream by passing the largest seq it has seen.
 *
 * THE STABLE SCHEMA. `kind` names what happened, `subjectType`/`subjectId` what it happened to, and
 * `detail` carries the kind-specific fields below. Kinds and their fields only ever gain optional
 * fields; a changed meaning gets a new kind.
 *
 *   image.quarantined            subjectType 'image', subjectId the image id, tenantId its owner.
 *                                detail: { trigger: 'import'|'rescan', imageName, verdict,
 *                                          signatures: string[], engine, database }
 *                                A malware scan hit: the image cannot boot or be downloaded.
 *   image.scan_error             subjectType 'image', subjectId the image id.
 *                                detail: as image.quarantined plus { error: string }
 *                                The scanner could not decide; an import then fails closed.
 *   image.verification_failed    subjectType 'vm', subjectId the VM id, tenantId its tenant.
 *                                detail: { vmName, imageId, hostId, reason }
 *                                A digest, ciphertext, key or trust-policy check failed before a boot.
 *   host.firewall_drift          subjectType 'host', subjectId the host id, tenantId null.
 *                                detail: { differences: string[] }
 *                                The host's live ruleset differed from its intent and was repaired.
 *   auth.login_failed, auth.login_succeeded, api.denied, auth.privilege_denied, guest.console, vm.exit,
 *   vm.heartbeat_lost, host.heartbeat_lost, port.spoof_drop, port.egress_denied, vm.sample,
 *   volume.snapshot_created, volume.cloned
 *                                The detection engine's inputs: their fields are documented in
 *                                detection/shipped-rules.ts (producers: event-producers.ts,
 *                                console-watch.ts, heartbeat-watch.ts, telemetry-ingest.ts).
 *   admin.change                 subjectType 'user', subjectId the actor's id; tenantId the request's.
 *                                detail: { actorId, actor, action (e.g. member:create,
 *                                          platform:user:update), target, detail, sourceIp, requestId }
 *                                A successful administrative request (members, roles, users, tenants,
 *                                quotas, image trust and signing, hosts, tokens, security responses),
 *                                from its audit record.
 *   alert.raised                 subjectType 'alert', subjectId the alert id (alerts.ts).
 *                                detail: { ruleId, groupKey, action, target, outcome }
 *
 * Details must never contain secrets (tokens, passwords, key material): they are shown to tenant
 * members holding security:read and to platform admins.
 */
import { EventEmitter } from 'node:events';
import type { SecurityEvent, SecuritySeverity } from '../../api/security.js';
import { SECURITY_EVENT_KIND_PATTERN, SECURITY_SEVERITIES } from '../../api/security.js';
import { newId } from '../../common/ids.js';
import { createLogger, type Logger } from '../../common/logger.js';
import { LOCK_CLASS, lockOnPostgres, nowIso, type Db } from '../store/database.js';
import type { SecurityEventsTable } from '../store/schema.js';

export type { SecurityEvent, SecuritySeverity };

/** The kinds recorded by the control plane today (see the schema above). */
export const SECURITY_EVENT_KINDS = {
  imageQuarantined: 'image.quarantined',
  imageVerificationFailed: 'image.verification_failed',
  imageScanError: 'image.scan_error',
  hostFirewallDrift: 'host.firewall_drift',
  loginFailed: 'auth.login_failed',
  loginSucceeded: 'auth.login_succeeded',
  apiDenied: 'api.denied',
  privilegeDenied: 'auth.privilege_denied',
  guestConsole: 'guest.console',
  vmExit: 'vm.exit',
  alertRaised: 'alert.raised',
} as const;

export const SECURITY_EVENTS_MAX_ENV = 'RAMPART_SECURITY_EVENTS_MAX';
export const DEFAULT_MAX_EVENTS = 100_000;
/** The oldest events are deleted every this many records (or every maxEvents, if smaller). */
export const PRUNE_EVERY_RECORDS = 100;
/** A detail larger than this (as JSON) is replaced by `{ truncated: true, bytes }`. */
export const MAX_DETAIL_BYTES = 16 * 1024;
export const LIST_LIMIT_MAX = 1000;
export const LIST_LIMIT_DEFAULT = 100;

const KIND_RE = new RegExp(SECURITY_EVENT_KIND_PATTERN);
const SEVERITIES = new Set<string>(SECURITY_SEVERITIES);

export interface SecurityEventInput {
  kind: string;
  severity: SecuritySeverity;
  /** The tenant the event belongs to; null for platform-wide events. */
  tenantId: string | null;
  subjectType: string;
  subjectId: string | null;
  /** One line for people; no secrets. */
  summary: string;
  detail?: Record<string, unknown>;
}

export interface SecurityEventFilter {
  /** A tenant id; null: platform-wide events only; undefined: every event (the platform view). */
  tenantId?: string | null;
  kind?: string;
  /** Only events with seq greater than this, ascending (tailing). Without it: newest first. */
  afterSeq?: number;
  /** 1..1000, default 100 (clamped). */
  limit?: number;
}

export type SecurityEventLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

/** 'local': recorded by this process; 'remote': by another server replica. */
export type SecurityEventOrigin = 'local' | 'remote';
export type SecurityEventListener = (event: SecurityEvent, origin: SecurityEventOrigin) => void;

/**
 * Told of each event this process writes (security-event-delivery.ts), and delivers it in stream order:
 * `pending` before the commit (so a concurrent reader already knows it for a local one), then
 * `committed` or, when the transaction failed, `abandoned`.
 */
export interface SecurityEventDistributor {
  pending(seq: number): void;
  committed(seq: number): void;
  abandoned(seq: number): void;
}

export interface SecurityEventLogOptions {
  /** Keep at most about this many events (default: env RAMPART_SECURITY_EVENTS_MAX, else 100000). */
  maxEvents?: number;
  /** Default: a logger named rampart-security-events at RAMPART_LOG_LEVEL. */
  log?: SecurityEventLogger;
}

/** The bound from RAMPART_SECURITY_EVENTS_MAX (a positive integer), else the default. */
export function maxEventsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[SECURITY_EVENTS_MAX_ENV];
  if (raw === undefined || raw.trim() === '') return DEFAULT_MAX_EVENTS;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1)
    throw new Error(`${SECURITY_EVENTS_MAX_ENV} must be a positive integer, not ${JSON.stringify(raw)}`);
  return value;
}

function toEvent(row: SecurityEventsTable): SecurityEvent {
  let detail: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(row.detail);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed))
      detail = parsed as Record<string, unknown>;
  } catch {
    // A row written by hand with bad JSON: shown with an empty detail rather than failing the list.
  }
  return {
    id: row.id,
    seq: row.seq,
    occurredAt: row.occurredAt,
    kind: row.kind,
    severity: row.severity,
    tenantId: row.tenantId,
    subjectType: row.subjectType,
    subjectId: row.subjectId,
    summary: row.summary,
    detail,
  };
}

function serializeDetail(detail: Record<string, unknown> | undefined): string {
  if (detail === undefined) return '{}';
  if (detail === null || typeof detail !== 'object' || Array.isArray(detail))
    throw new TypeError('security event detail must be a plain object');
  const json = JSON.stringify(detail);
  const bytes = Buffer.byteLength(json, 'utf8');
  return bytes > MAX_DETAIL_BYTES ? JSON.stringify({ truncated: true, bytes }) : json;
}

export class SecurityEventLog {
  readonly maxEvents: number;
  private readonly pruneEvery: number;
  private readonly log: SecurityEventLogger;
  private readonly emitter = new EventEmitter();
  /** The tail of the chain that serializes record() calls. */
  private tail: Promise<unknown> = Promise.resolve();
  private prunedOnce = false;
  private distributor: SecurityEventDistributor | null = null;

  constructor(
    private readonly db: Db,
    opts: SecurityEventLogOptions = {},
  ) {
    const max = opts.maxEvents ?? maxEventsFromEnv();
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError('maxEvents must be a positive integer');
    this.maxEvents = max;
    this.pruneEvery = Math.min(PRUNE_EVERY_RECORDS, max);
    this.log = opts.log ?? createLogger('rampart-security-events');
    // Many readers (WebSocket clients) may listen; the default limit of 10 would warn.
    this.emitter.setMaxListeners(0);
  }

  /**
   * Calls `listener` with every event after it was committed: the events this process recorded, and,
   * once a distributor is set (several replicas on PostgreSQL), every replica's events in seq order.
   * `origin` tells which. A throwing listener is logged, not fatal.
   */
  on(event: 'event', listener: SecurityEventListener): this {
    this.emitter.on(event, listener);
    return this;
  }

  off(event: 'event', listener: SecurityEventListener): this {
    this.emitter.off(event, listener);
    return this;
  }

  /**
   * From now on committed events are handed to `distributor` (which delivers them, with the other
   * replicas' events, through deliver()) instead of straight to the listeners.
   */
  distributeThrough(distributor: SecurityEventDistributor | null): void {
    this.distributor = distributor;
  }

  /** Hands one committed event to every listener. */
  deliver(event: SecurityEvent, origin: SecurityEventOrigin): void {
    // Each listener on its own: one that throws neither fails the caller nor starves the others.
    for (const listener of this.emitter.listeners('event') as SecurityEventListener[]) {
      try {
        listener(event, origin);
      } catch (error) {
        this.log.error({ err: (error as Error).message, seq: event.seq }, 'security event listener failed');
      }
    }
  }

  /** The largest seq stored (0 when there is none). */
  async lastSeq(): Promise<number> {
    const last = await this.db
      .selectFrom('securityEvents')
      .select((eb) => eb.fn.max('seq').as('maxSeq'))
      .executeTakeFirst();
    return Number(last?.maxSeq ?? 0);
  }

  /** The seq of the first event that occurred at or after `iso` (null when there is none). */
  async firstSeqSince(iso: string): Promise<number | null> {
    const first = await this.db
      .selectFrom('securityEvents')
      .select((eb) => eb.fn.min('seq').as('minSeq'))
      .where('occurredAt', '>=', iso)
      .executeTakeFirst();
    return first?.minSeq === null || first?.minSeq === undefined ? null : Number(first.minSeq);
  }

  /**
   * Stores one event and answers it as stored (with id, seq and occurredAt). `quiet`: no log line
   * (high-volume kinds such as denied flows and VM samples; they stay queryable and streamed).
   */
  async record(input: SecurityEventInput, options: { quiet?: boolean } = {}): Promise<SecurityEvent> {
    // Validated before queueing (an async function runs synchronously up to its first await), so a bad
    // call fails alone and at once, and the queue position is taken at call time.
    if (!KIND_RE.test(input.kind)) throw new TypeError(`invalid security event kind: ${input.kind}`);
    if (!SEVERITIES.has(input.severity))
      throw new TypeError(`invalid security event severity: ${String(input.severity)}`);
    const detail = serializeDetail(input.detail);
    const run = this.tail.then(() => this.write(input, detail, options.quiet === true));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async write(input: SecurityEventInput, detail: string, quiet: boolean): Promise<SecurityEvent> {
    const distributor = this.distributor;
    let pendingSeq: number | null = null;
    const row = await this.db
      .transaction()
      .execute(async (trx) => {
        // seq = max + 1: on PostgreSQL several replicas write, so the read and the insert are serialized by
        // an advisory lock (SQLite serializes writers itself).
        await lockOnPostgres(trx, LOCK_CLASS.securityEvents);
        const last = await trx
          .selectFrom('securityEvents')
          .select((eb) => eb.fn.max('seq').as('maxSeq'))
          .executeTakeFirst();
        const seq = Number(last?.maxSeq ?? 0) + 1;
        const values: SecurityEventsTable = {
          id: newId(),
          seq,
          occurredAt: nowIso(),
          kind: input.kind,
          severity: input.severity,
          tenantId: input.tenantId,
          subjectType: input.subjectType,
          subjectId: input.subjectId,
          summary: input.summary,
          detail,
        };
        if (distributor) distributor.pending((pendingSeq = seq));
        await trx.insertInto('securityEvents').values(values).execute();
        // Bounded: every pruneEvery records (and once per process, after a lowered bound) drop the oldest.
        if (!this.prunedOnce || seq % this.pruneEvery === 0) {
          await trx
            .deleteFrom('securityEvents')
            .where('seq', '<=', seq - this.maxEvents)
            .execute();
          this.prunedOnce = true;
        }
        return values;
      })
      .catch((error: unknown) => {
        if (distributor && pendingSeq !== null) distributor.abandoned(pendingSeq);
        throw error;
      });
    const event = toEvent(row);
    if (!quiet)
      this.log.info(
        {
          securityEvent: {
            id: event.id,
            seq: event.seq,
            kind: event.kind,
            severity: event.severity,
            tenantId: event.tenantId,
            subjectType: event.subjectType,
            subjectId: event.subjectId,
          },
        },
        `security event: ${event.summary}`,
      );
    if (distributor) distributor.committed(event.seq);
    else this.deliver(event, 'local');
    return event;
  }

  /**
   * Events matching `filter`: newest first, or with `afterSeq` the events after it oldest first.
   * `tenantId` undefined lists every tenant's and the platform-wide events (platform view only).
   */
  async list(filter: SecurityEventFilter = {}): Promise<SecurityEvent[]> {
    const wanted = filter.limit ?? LIST_LIMIT_DEFAULT;
    const limit = Number.isFinite(wanted)
      ? Math.min(LIST_LIMIT_MAX, Math.max(1, Math.floor(wanted)))
      : LIST_LIMIT_DEFAULT;
    let query = this.db.selectFrom('securityEvents').selectAll();
    if (filter.tenantId === null) query = query.where('tenantId', 'is', null);
    else if (filter.tenantId !== undefined) query = query.where('tenantId', '=', filter.tenantId);
    if (filter.kind !== undefined) query = query.where('kind', '=', filter.kind);
    if (filter.afterSeq !== undefined) {
      query = query.where('seq', '>', filter.afterSeq).orderBy('seq', 'asc');
    } else {
      query = query.orderBy('seq', 'desc');
    }
    const rows = await query.limit(limit).execute();
    return rows.map(toEvent);
  }

  /** Resolves once every record() called so far has finished (for an orderly shutdown and tests). */
  async flush(): Promise<void> {
    await this.tail;
  }
}

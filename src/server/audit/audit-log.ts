/**
 * The tamper-evident audit log: an append-only SHA-256 hash chain in the audit_records table (see
 * src/common/audit-chain.ts for the format), plus Ed25519-signed checkpoints in audit_checkpoints.
 *
 * Why it is built this way:
 * - Durable before acknowledged. append() resolves only after the record's transaction committed, and
 *   database.ts runs SQLite with synchronous=FULL, so commit means on disk. To make that affordable,
 *   appends are GROUP-COMMITTED: everything appended in one event-loop turn is written by one
 *   transaction (one fsync), through prepared statements on the raw better-sqlite3 connection.
 * - The chain stays consistent. Seq and hashes are assigned inside the writer, and the in-memory head only
 *   moves once a transaction committed; after a failed write it is re-read from the database, so the next
 *   record links to the last committed one.
 * - Fail closed. assertWritable() is a cheap probe (insert a row inside a SAVEPOINT, roll it back) that
 *   the HTTP layer runs before every mutating request, so nothing changes while the log cannot record it.
 * - One writer at a time on the shared connection. Writes take Kysely's connection lock, so a batch never
 *   lands inside somebody else's open Kysely transaction (it would commit or roll back with theirs).
 *   Consequence: never await append() while holding a database transaction — that would deadlock.
 * - Checkpoints every `checkpointEveryRecords` records (inside the same transaction) and every
 *   `checkpointIntervalMs` when records arrived since the last one, and on close().
 * - verify() and the export read in pages, so neither memory nor the event loop depends on the log size.
 *
 * On PostgreSQL (cluster mode, several server replicas on one database) the same design runs through
 * Kysely: a batch is one transaction that first takes pg_advisory_xact_lock(LOCK_CLASS.auditChain), then
 * reads the chain head and the last checkpoint FROM THE DATABASE and appends after them, so the records
 * of all replicas form one chain. The in-memory head is then only this replica's last known head; verify()
 * and the export read the head from the database. The fail-closed probe is an INSERT in a transaction
 * that is rolled back. Durability: synchronous_commit=on (database.ts), so a commit is on disk.
 */
import { randomInt } from 'node:crypto';
import type SqliteDatabase from 'better-sqlite3';
import { sql } from 'kysely';
import { AuditUnavailableError, InvalidInputError } from '../../api/errors.js';
import type { AuditVerification } from '../../api/audit.js';
import {
  AUDIT_RECORD_OUTCOMES,
  ChainVerifier,
  GENESIS_HASH,
  canonicalLine,
  checkpointLine,
  escapeControl,
  recordHash,
  signCheckpoint,
  type AuditRecordFields,
  type CheckpointFields,
} from '../../common/audit-chain.js';
import type { Logger } from '../../common/logger.js';
import { LOCK_CLASS, engineOf, lockOnPostgres, rawSqlite, type Db } from '../store/database.js';
import type { AuditRecordsTable } from '../store/schema.js';
import { loadOrCreateAuditKeys, type AuditKeys } from './audit-keys.js';

export type AuditLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

export interface AuditLogOptions {
  /** Sign a checkpoint once this many records were added since the last one (default 1000). */
  checkpointEveryRecords?: number;
  /** Sign a checkpoint this often when records were added since the last one (default 10 s). */
  checkpointIntervalMs?: number;
  log?: AuditLogger;
}

/** A stored record; the outcome is one of the three (append() accepts nothing else). */
export type AuditRecordRow = AuditRecordsTable & { outcome: AuditRecordFields['outcome'] };

/** What a caller records; seq, the hashes and (by default) the time are assigned by the log. */
export type AuditEntry = Omit<AuditRecordFields, 'seq' | 'time'> & { time?: string };

export interface AuditQueryFilter {
  /** A tenant id; null: records outside any tenant; undefined: all records. */
  tenantId?: string | null;
  /** Matches the actor name or the actor id. */
  actor?: string;
  action?: string;
  outcome?: AuditRecordFields['outcome'];
  /** Inclusive lower bound on time (any ISO 8601 instant). */
  since?: string;
  /** Exclusive upper bound on time. */
  until?: string;
  /** Only records with seq greater than this (paging forward). */
  after?: number;
  /** Default 100, at most 1000. */
  limit?: number;
}

export interface AuditPageResult {
  items: AuditRecordRow[];
  /** Pass as `after` for the next page; null when this page was the last. */
  next: string | null;
}

/**
 * A consistent cut of the log for an export: records 1..records and checkpoints 1..lastCheckpointId.
 * Export both files from the SAME cut, or (two separate requests) the checkpoints BEFORE the records: a
 * checkpoint written after the records were exported could cover records the file lacks, which a
 * verifier must (and does) report as a truncation.
 */
export interface AuditExportCut {
  records: number;
  lastCheckpointId: number;
}

interface Pending {
  fields: AuditRecordFields;
  resolve: (row: AuditRecordRow) => void;
  reject: (error: Error) => void;
}

interface CheckpointRow {
  id: number;
  count: number;
  head: string;
  time: string;
  signature: string;
}

const DEFAULT_CHECKPOINT_EVERY = 1000;
const DEFAULT_CHECKPOINT_INTERVAL_MS = 10_000;
const DEFAULT_QUERY_LIMIT = 100;
const MAX_QUERY_LIMIT = 1000;
/** Rows per page of verify() and the export: bounded memory, short event-loop slices. */
const PAGE_ROWS = 4096;
/** Rows per INSERT on PostgreSQL (14 parameters a row, at most 65535 parameters a statement). */
const PG_INSERT_ROWS = 1000;
/** Thrown to roll back the PostgreSQL probe's transaction. */
const PROBE_DONE = new Error('audit probe rolled back');
const ID_MAX = 128;
const DETAIL_MAX = 2000;

const RECORD_COLUMNS = `seq, time, actor_id AS actorId, actor, tenant_id AS tenantId, action, target, outcome,
  status, source, request_id AS requestId, detail, prev_hash AS prevHash, hash`;

const NO_LOG: AuditLogger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function unavailable(error: unknown): AuditUnavailableError {
  if (error instanceof AuditUnavailableError) return error;
  return new AuditUnavailableError(`audit log cannot be written: ${errorMessage(error)}`, error);
}

/** Any ISO 8601 instant -> UTC with milliseconds (the only form stored, so strings compare as times). */
function isoTime(value: string, what: string): string {
  const ms = Date.parse(value);
  if (!Number.isFinite(ms)) throw new InvalidInputError(`${what} is not a valid time`);
  return new Date(ms).toISOString();
}

function optionalText(value: string | null | undefined, max: number): string | null {
  return value === null || value === undefined ? null : escapeControl(String(value), max);
}

function positiveInteger(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${what} must be a positive integer`);
  return value;
}

/**
 * Checkpoints in id order, read a page at a time up to a fixed id. fill(n) reads until the buffer
 * holds a checkpoint covering more than n records (or none are left).
 */
class CheckpointCursor {
  private buffer: CheckpointRow[] = [];
  private next = 0;
  private afterId = 0;
  private done = false;

  constructor(
    private readonly page: (afterId: number, lastId: number, limit: number) => Promise<CheckpointRow[]>,
    private readonly lastId: number,
  ) {}

  async fill(coverUpTo: number): Promise<void> {
    while (!this.done && (this.next === this.buffer.length || this.buffer.at(-1)!.count <= coverUpTo)) {
      const rows = await this.page(this.afterId, this.lastId, PAGE_ROWS);
      if (rows.length === 0) {
        this.done = true;
        return;
      }
      this.buffer = [...this.buffer.slice(this.next), ...rows];
      this.next = 0;
      this.afterId = rows.at(-1)!.id;
      if (coverUpTo === Number.MAX_SAFE_INTEGER) return; // one page at a time at the end
    }
  }

  peek(): CheckpointRow | undefined {
    return this.buffer[this.next];
  }

  shift(): void {
    this.next++;
  }
}

function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class AuditLog {
  /** SQLite only (null on PostgreSQL, where every statement goes through Kysely). */
  private readonly sqlite!: SqliteDatabase.Database;
  private readonly postgres: boolean;
  private readonly log: AuditLogger;
  private readonly checkpointEvery: number;
  private readonly timer: NodeJS.Timeout;

  private readonly insertRecord!: SqliteDatabase.Statement;
  private readonly insertCheckpoint!: SqliteDatabase.Statement;
  private readonly selectHead!: SqliteDatabase.Statement;
  private readonly selectLastCheckpoint!: SqliteDatabase.Statement;
  private readonly selectRecordPage!: SqliteDatabase.Statement;
  private readonly selectLinePage!: SqliteDatabase.Statement;
  private readonly selectNextRecord!: SqliteDatabase.Statement;
  private readonly selectCheckpointPage!: SqliteDatabase.Statement;
  private readonly probeBegin!: SqliteDatabase.Statement;
  private readonly probeInsert!: SqliteDatabase.Statement;
  private readonly probeRollbackTo!: SqliteDatabase.Statement;
  private readonly probeRollback!: SqliteDatabase.Statement;
  private readonly probeRelease!: SqliteDatabase.Statement;
  private readonly writeRows!: SqliteDatabase.Transaction<
    (rows: AuditRecordsTable[], cp: CheckpointFields | null) => void
  >;

  /** The last committed record (seq 0 and GENESIS_HASH for an empty log). */
  private headSeq = 0;
  private headHash = GENESIS_HASH;
  /** True when a failed write left the head unknown: re-read before the next write. */
  private headStale = false;
  /** Records covered by the last checkpoint. */
  private checkpointedCount = 0;
  /**
   * Whether this log signs the periodic checkpoints. Server replicas on one database set it on the
   * holder of the leader lease only (the others still sign every `checkpointEveryRecords` and at close).
   */
  periodicCheckpoints = true;

  private queue: Pending[] = [];
  private flushScheduled = false;
  private writeTail: Promise<void> = Promise.resolve();
  private closed = false;
  private closing: Promise<void> | null = null;
  private lastWriteError: string | null = null;

  /** Loads (or creates) the signing key and the chain head, and starts the checkpoint timer. */
  static async open(db: Db, dataDir: string, options: AuditLogOptions = {}): Promise<AuditLog> {
    const log = new AuditLog(db, loadOrCreateAuditKeys(dataDir), options);
    if (log.postgres) {
      try {
        await log.loadPostgres();
      } catch (error) {
        clearInterval(log.timer);
        throw error;
      }
    }
    return log;
  }

  private constructor(
    private readonly db: Db,
    private readonly keys: AuditKeys,
    options: AuditLogOptions,
  ) {
    this.postgres = engineOf(db) === 'postgres';
    this.log = options.log ?? NO_LOG;
    this.checkpointEvery = positiveInteger(
      options.checkpointEveryRecords,
      DEFAULT_CHECKPOINT_EVERY,
      'checkpointEveryRecords',
    );
    const interval = options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    if (!Number.isFinite(interval) || interval < 1)
      throw new Error('checkpointIntervalMs must be a number of milliseconds >= 1');
    this.timer = setInterval(() => {
      if (this.closed || !this.periodicCheckpoints) return;
      if (!this.postgres && this.headSeq <= this.checkpointedCount) return;
      this.checkpoint().catch((error: unknown) =>
        this.log.error({ err: errorMessage(error) }, 'audit log: periodic checkpoint failed'),
      );
    }, interval);
    this.timer.unref();
    if (this.postgres) return;
    this.sqlite = rawSqlite(db);
    const s = this.sqlite;
    this.insertRecord = s.prepare(
      `INSERT INTO audit_records (seq, time, actor_id, actor, tenant_id, action, target, outcome, status, source,
        request_id, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.insertCheckpoint = s.prepare(
      'INSERT INTO audit_checkpoints (record_count, head_hash, time, signature) VALUES (?, ?, ?, ?)',
    );
    this.selectHead = s.prepare('SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1');
    this.selectLastCheckpoint = s.prepare(
      'SELECT id, record_count AS count, head_hash AS head FROM audit_checkpoints ORDER BY id DESC LIMIT 1',
    );
    this.selectRecordPage = s.prepare(
      `SELECT ${RECORD_COLUMNS} FROM audit_records WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?`,
    );
    this.selectLinePage = s
      .prepare(
        `SELECT seq, prev_hash, hash, json_object('prev', prev_hash, 'seq', seq, 'time', time, 'actorId', actor_id,
          'actor', actor, 'tenantId', tenant_id, 'action', action, 'target', target, 'outcome', outcome,
          'status', status, 'source', source, 'requestId', request_id, 'detail', detail)
        FROM audit_records WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?`,
      )
      .raw(true);
    this.selectNextRecord = s.prepare(
      `SELECT ${RECORD_COLUMNS} FROM audit_records WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT 1`,
    );
    this.selectCheckpointPage = s.prepare(
      `SELECT id, record_count AS count, head_hash AS head, time, signature FROM audit_checkpoints
        WHERE id > ? AND id <= ? ORDER BY id LIMIT ?`,
    );
    this.probeBegin = s.prepare('SAVEPOINT rampart_audit_probe');
    this.probeInsert = s.prepare(
      `INSERT INTO audit_records (time, actor, action, outcome, status, source, request_id, prev_hash, hash)
        VALUES ('', '', 'audit.probe', 'failure', 0, '', '', '', '')`,
    );
    this.probeRollbackTo = s.prepare('ROLLBACK TO rampart_audit_probe');
    this.probeRollback = s.prepare('ROLLBACK');
    this.probeRelease = s.prepare('RELEASE rampart_audit_probe');
    this.writeRows = s.transaction((rows: AuditRecordsTable[], cp: CheckpointFields | null) => {
      for (const r of rows) {
        this.insertRecord.run(
          r.seq,
          r.time,
          r.actorId,
          r.actor,
          r.tenantId,
          r.action,
          r.target,
          r.outcome,
          r.status,
          r.source,
          r.requestId,
          r.detail,
          r.prevHash,
          r.hash,
        );
      }
      if (cp) this.insertCheckpoint.run(cp.count, cp.head, cp.time, cp.signature);
    });

    const synchronous = Number(s.pragma('synchronous', { simple: true }));
    if (synchronous < 2)
      this.log.warn(
        { synchronous },
        'audit log: SQLite synchronous is below FULL; a commit may not be durable',
      );
    this.loadHead();
    const last = this.selectLastCheckpoint.get() as CheckpointRow | undefined;
    this.checkpointedCount = Math.min(last?.count ?? 0, this.headSeq);
    if (last && last.count > this.headSeq) {
      this.log.error(
        { checkpoint: last.id, covers: last.count, records: this.headSeq },
        'audit log: records are missing: the last checkpoint covers more records than the database holds',
      );
    }
  }

  /** PostgreSQL: the head and the last checkpoint, read at open. */
  private async loadPostgres(): Promise<void> {
    const head = await this.readHeadPg(this.db);
    this.headSeq = head.seq;
    this.headHash = head.hash;
    const last = await this.lastCheckpointPg(this.db);
    this.checkpointedCount = Math.min(last?.count ?? 0, this.headSeq);
    if (last && last.count > this.headSeq) {
      this.log.error(
        { checkpoint: last.id, covers: last.count, records: this.headSeq },
        'audit log: records are missing: the last checkpoint covers more records than the database holds',
      );
    }
  }

  private async readHeadPg(db: Db): Promise<{ seq: number; hash: string }> {
    const row = await db
      .selectFrom('auditRecords')
      .select(['seq', 'hash'])
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
    return { seq: Number(row?.seq ?? 0), hash: row?.hash ?? GENESIS_HASH };
  }

  private async lastCheckpointPg(db: Db): Promise<CheckpointRow | undefined> {
    const row = await db
      .selectFrom('auditCheckpoints')
      .select(['id', 'recordCount as count', 'headHash as head', 'time', 'signature'])
      .orderBy('id', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? { ...row, id: Number(row.id), count: Number(row.count) } : undefined;
  }

  private async checkpointPagePg(afterId: number, lastId: number, limit: number): Promise<CheckpointRow[]> {
    const rows = await this.db
      .selectFrom('auditCheckpoints')
      .select(['id', 'recordCount as count', 'headHash as head', 'time', 'signature'])
      .where('id', '>', afterId)
      .where('id', '<=', lastId)
      .orderBy('id')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ ...r, id: Number(r.id), count: Number(r.count) }));
  }

  private async recordPagePg(after: number, upTo: number, limit: number): Promise<AuditRecordsTable[]> {
    const rows = await this.db
      .selectFrom('auditRecords')
      .selectAll()
      .where('seq', '>', after)
      .where('seq', '<=', upTo)
      .orderBy('seq')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ ...r, seq: Number(r.seq), status: Number(r.status) }));
  }

  /** SPKI PEM of the checkpoint signing key (what `rampart audit export` writes next to the files). */
  get publicKeyPem(): string {
    return this.keys.publicKeyPem;
  }

  /** The last committed record: its seq (0 when empty) and hash. */
  get head(): { seq: number; hash: string } {
    return { seq: this.headSeq, hash: this.headHash };
  }

  // ---------------------------------------------------------------- writing

  /**
   * Appends a record; resolves with the stored row once its transaction committed, rejects with
   * AuditUnavailableError when it could not be written. String fields are escaped and capped.
   */
  append(entry: AuditEntry): Promise<AuditRecordRow> {
    if (this.closed)
      return Promise.reject(new AuditUnavailableError('audit log cannot be written: it is closed'));
    let fields: AuditRecordFields;
    try {
      fields = this.normalize(entry);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    return new Promise<AuditRecordRow>((resolve, reject) => {
      this.queue.push({ fields, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => {
          this.flushScheduled = false;
          const write = this.postgres
            ? this.serialize(() => this.writeBatchPg())
            : this.serialize(() => this.writeBatch());
          write.catch((error: unknown) => this.rejectQueued(error));
        });
      }
    });
  }

  /**
   * Fail-closed probe, run before every mutating request: inserts a row into audit_records inside a
   * SAVEPOINT and rolls it back. Throws AuditUnavailableError when the log cannot be written. On
   * PostgreSQL the probe is asynchronous (a transaction that is rolled back): await the result.
   */
  assertWritable(): void | Promise<void> {
    if (this.closed) throw new AuditUnavailableError('audit log cannot be written: it is closed');
    if (this.postgres) return this.probePg();
    const sqlite = this.sqlite;
    // Inside somebody's open transaction the savepoint nests and is released; otherwise the savepoint
    // opened the transaction and a plain ROLLBACK ends it (RELEASE would commit: an fsync per request).
    const nested = sqlite.inTransaction;
    try {
      this.probeBegin.run();
      try {
        this.probeInsert.run();
      } finally {
        if (nested) {
          this.probeRollbackTo.run();
          this.probeRelease.run();
        } else if (sqlite.inTransaction) {
          this.probeRollback.run();
        }
      }
    } catch (error) {
      const previous = this.lastWriteError ? ` (last write failed: ${this.lastWriteError})` : '';
      throw new AuditUnavailableError(
        `audit log cannot be written: ${errorMessage(error)}${previous}`,
        error,
      );
    }
  }

  private async probePg(): Promise<void> {
    try {
      await this.db
        .transaction()
        .execute(async (trx) => {
          // An explicit negative seq that no record has: the identity default would collide with the
          // explicit seqs, and a shared constant would make concurrent probes wait on each other.
          const seq = -1 - randomInt(0, 2 ** 47);
          await sql`INSERT INTO audit_records (seq, time, actor, action, outcome, status, source, request_id,
            prev_hash, hash) VALUES (${seq}, '', '', 'audit.probe', 'failure', 0, '', '', '', '')`.execute(
            trx,
          );
          throw PROBE_DONE;
        })
        .catch((error: unknown) => {
          if (error !== PROBE_DONE) throw error;
        });
    } catch (error) {
      const previous = this.lastWriteError ? ` (last write failed: ${this.lastWriteError})` : '';
      throw new AuditUnavailableError(
        `audit log cannot be written: ${errorMessage(error)}${previous}`,
        error,
      );
    }
  }

  /** Writes pending appends, then signs a checkpoint over every committed record (if any are new). */
  async checkpoint(): Promise<void> {
    if (this.postgres) {
      await this.serialize(async () => {
        await this.writeBatchPg();
        await this.writeCheckpointPg();
      });
      return;
    }
    await this.serialize(() => {
      this.writeBatch();
      this.writeCheckpoint();
    });
  }

  /** Writes pending appends and a final checkpoint, and stops the timer. The database stays open. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    clearInterval(this.timer);
    this.closing = this.checkpoint().catch((error: unknown) => {
      this.log.error({ err: errorMessage(error) }, 'audit log: final checkpoint failed');
    });
    return this.closing;
  }

  /** The record's fields, seq still 0 (assigned by the writer). */
  private normalize(entry: AuditEntry): AuditRecordFields {
    if (!AUDIT_RECORD_OUTCOMES.includes(entry.outcome))
      throw new TypeError(`audit outcome must be one of ${AUDIT_RECORD_OUTCOMES.join(', ')}`);
    if (!Number.isSafeInteger(entry.status) || entry.status < 0)
      throw new TypeError('audit status must be a non-negative integer');
    return {
      seq: 0,
      time: entry.time === undefined ? new Date().toISOString() : isoTime(entry.time, 'audit time'),
      actorId: optionalText(entry.actorId, ID_MAX),
      actor: escapeControl(String(entry.actor)),
      tenantId: optionalText(entry.tenantId, ID_MAX),
      action: escapeControl(String(entry.action)),
      target: optionalText(entry.target, DETAIL_MAX),
      outcome: entry.outcome,
      status: entry.status,
      source: escapeControl(String(entry.source)),
      requestId: escapeControl(String(entry.requestId), ID_MAX),
      detail: optionalText(entry.detail, DETAIL_MAX),
    };
  }

  /**
   * Runs a write after every earlier one: on SQLite a synchronous one holding Kysely's connection lock;
   * on PostgreSQL an asynchronous one (its transaction takes a pool connection of its own).
   */
  private serialize<T>(op: () => T | Promise<T>): Promise<T> {
    const run = this.postgres ? async () => op() : () => this.db.connection().execute(async () => op());
    const result = this.writeTail.then(run, run);
    this.writeTail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  private rejectQueued(error: unknown): void {
    const batch = this.queue;
    this.queue = [];
    const failure = unavailable(error);
    for (const p of batch) p.reject(failure);
  }

  private loadHead(): void {
    const row = this.selectHead.get() as { seq: number; hash: string } | undefined;
    this.headSeq = row?.seq ?? 0;
    this.headHash = row?.hash ?? GENESIS_HASH;
    this.headStale = false;
  }

  private ensureHead(): void {
    if (!this.headStale) return;
    this.loadHead();
  }

  private foreignTransactionCheck(): void {
    if (this.sqlite.inTransaction)
      throw new Error('the database connection is inside a transaction not started by the audit log');
  }

  /** Writes every queued append in one transaction; settles each one's promise. Never throws. */
  private writeBatch(): void {
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    let rows: AuditRecordRow[];
    let checkpoint: CheckpointFields | null = null;
    let seq: number;
    let hash: string;
    try {
      this.foreignTransactionCheck();
      this.ensureHead();
      seq = this.headSeq;
      hash = this.headHash;
      rows = new Array<AuditRecordRow>(batch.length);
      for (let i = 0; i < batch.length; i++) {
        const fields = batch[i]!.fields;
        fields.seq = ++seq;
        const prevHash = hash;
        hash = recordHash(canonicalLine(prevHash, fields));
        rows[i] = { ...fields, prevHash, hash };
      }
      if (seq - this.checkpointedCount >= this.checkpointEvery) checkpoint = this.signedCheckpoint(seq, hash);
      this.writeRows.immediate(rows, checkpoint);
    } catch (error) {
      this.writeFailed(error);
      const failure = unavailable(error);
      for (const p of batch) p.reject(failure);
      return;
    }
    this.headSeq = seq;
    this.headHash = hash;
    if (checkpoint) this.checkpointedCount = checkpoint.count;
    this.lastWriteError = null;
    for (let i = 0; i < batch.length; i++) batch[i]!.resolve(rows[i]!);
  }

  /**
   * PostgreSQL: writes every queued append in one transaction, after the head read under the chain lock
   * (shared by every replica). Settles each one's promise. Never throws.
   */
  private async writeBatchPg(): Promise<void> {
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    let rows: AuditRecordRow[] = [];
    let checkpoint: CheckpointFields | null = null;
    let seq = 0;
    let hash = GENESIS_HASH;
    try {
      await this.db.transaction().execute(async (trx) => {
        await lockOnPostgres(trx, LOCK_CLASS.auditChain);
        const head = await this.readHeadPg(trx);
        const last = await this.lastCheckpointPg(trx);
        seq = head.seq;
        hash = head.hash;
        checkpoint = null;
        rows = new Array<AuditRecordRow>(batch.length);
        for (let i = 0; i < batch.length; i++) {
          const fields = { ...batch[i]!.fields };
          fields.seq = ++seq;
          const prevHash = hash;
          hash = recordHash(canonicalLine(prevHash, fields));
          rows[i] = { ...fields, prevHash, hash };
        }
        for (let i = 0; i < rows.length; i += PG_INSERT_ROWS)
          await trx
            .insertInto('auditRecords')
            .values(rows.slice(i, i + PG_INSERT_ROWS))
            .execute();
        if (seq - (last?.count ?? 0) >= this.checkpointEvery) {
          checkpoint = this.signedCheckpoint(seq, hash);
          await this.insertCheckpointPg(trx, checkpoint);
        }
      });
    } catch (error) {
      this.lastWriteError = errorMessage(error);
      this.log.error({ err: this.lastWriteError }, 'audit log: write failed; mutating requests fail closed');
      const failure = unavailable(error);
      for (const p of batch) p.reject(failure);
      return;
    }
    this.headSeq = seq;
    this.headHash = hash;
    if (checkpoint) this.checkpointedCount = (checkpoint as CheckpointFields).count;
    this.lastWriteError = null;
    for (let i = 0; i < batch.length; i++) batch[i]!.resolve(rows[i]!);
  }

  private async insertCheckpointPg(trx: Db, cp: CheckpointFields): Promise<void> {
    // (The id numbers itself: an identity column, like SQLite's INTEGER PRIMARY KEY.)
    await sql`INSERT INTO audit_checkpoints (record_count, head_hash, time, signature)
      VALUES (${cp.count}, ${cp.head}, ${cp.time}, ${cp.signature})`.execute(trx);
  }

  /** PostgreSQL: a checkpoint over the chain's head in the database, unless the last one covers it. */
  private async writeCheckpointPg(): Promise<void> {
    try {
      await this.db.transaction().execute(async (trx) => {
        await lockOnPostgres(trx, LOCK_CLASS.auditChain);
        const head = await this.readHeadPg(trx);
        const last = await this.lastCheckpointPg(trx);
        this.headSeq = head.seq;
        this.headHash = head.hash;
        this.checkpointedCount = Math.min(last?.count ?? 0, head.seq);
        if (head.seq <= (last?.count ?? 0)) return;
        const cp = this.signedCheckpoint(head.seq, head.hash);
        await this.insertCheckpointPg(trx, cp);
        this.checkpointedCount = cp.count;
      });
    } catch (error) {
      this.lastWriteError = errorMessage(error);
      this.log.error({ err: this.lastWriteError }, 'audit log: write failed; mutating requests fail closed');
      throw unavailable(error);
    }
  }

  /** Signs and stores a checkpoint over all committed records, unless the last one already covers them. */
  private writeCheckpoint(): void {
    try {
      this.foreignTransactionCheck();
      this.ensureHead();
      if (this.headSeq <= this.checkpointedCount) return;
      const cp = this.signedCheckpoint(this.headSeq, this.headHash);
      this.insertCheckpoint.run(cp.count, cp.head, cp.time, cp.signature);
      this.checkpointedCount = cp.count;
    } catch (error) {
      this.writeFailed(error);
      throw unavailable(error);
    }
  }

  private signedCheckpoint(count: number, head: string): CheckpointFields {
    const time = new Date().toISOString();
    return { count, head, time, signature: signCheckpoint(count, head, time, this.keys.privateKey) };
  }

  /** After a failed write: the head goes back to the last committed record. */
  private writeFailed(error: unknown): void {
    this.lastWriteError = errorMessage(error);
    this.log.error({ err: this.lastWriteError }, 'audit log: write failed; mutating requests fail closed');
    try {
      const before = this.headSeq;
      this.loadHead();
      if (this.headSeq !== before)
        this.log.warn(
          { memory: before, database: this.headSeq },
          'audit log: head re-read from the database',
        );
    } catch {
      this.headStale = true;
    }
  }

  // ---------------------------------------------------------------- reading

  async query(filter: AuditQueryFilter = {}): Promise<AuditPageResult> {
    let limit = filter.limit ?? DEFAULT_QUERY_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new InvalidInputError('limit must be a positive integer');
    limit = Math.min(limit, MAX_QUERY_LIMIT);
    let q = this.db
      .selectFrom('auditRecords')
      .selectAll()
      .orderBy('seq')
      .limit(limit + 1);
    if (filter.tenantId === null) q = q.where('tenantId', 'is', null);
    else if (filter.tenantId !== undefined) q = q.where('tenantId', '=', filter.tenantId);
    if (filter.actor !== undefined) {
      const actor = filter.actor;
      q = q.where((eb) => eb.or([eb('actor', '=', actor), eb('actorId', '=', actor)]));
    }
    if (filter.action !== undefined) q = q.where('action', '=', filter.action);
    if (filter.outcome !== undefined) q = q.where('outcome', '=', filter.outcome);
    if (filter.since !== undefined) q = q.where('time', '>=', isoTime(filter.since, 'since'));
    if (filter.until !== undefined) q = q.where('time', '<', isoTime(filter.until, 'until'));
    if (filter.after !== undefined) {
      if (!Number.isSafeInteger(filter.after) || filter.after < 0)
        throw new InvalidInputError('after must be a non-negative integer');
      q = q.where('seq', '>', filter.after);
    }
    const rows = await q.execute();
    const more = rows.length > limit;
    const items = (more ? rows.slice(0, limit) : rows) as AuditRecordRow[];
    return { items, next: more ? String(items[items.length - 1]!.seq) : null };
  }

  /**
   * Re-walks the chain and every checkpoint up to the head committed when it started (records and
   * checkpoints added meanwhile are left for the next run), in pages that yield to the event loop.
   */
  async verify(): Promise<AuditVerification> {
    if (this.postgres) return this.verifyPg();
    const endSeq = this.headSeq;
    const endHash = this.headHash;
    const verifier = new ChainVerifier();
    const key = this.keys.publicKey;
    const checkpoints = new CheckpointCursor(
      async (afterId, lastId, limit) =>
        this.selectCheckpointPage.all(afterId, lastId, limit) as CheckpointRow[],
      this.lastCheckpointId(),
    );
    /** Checks the checkpoints due after the records verified so far (all of them when final). */
    const due = (final: boolean): boolean => {
      for (let cp = checkpoints.peek(); cp; cp = checkpoints.peek()) {
        if (!final && cp.count > verifier.records) return true;
        if (!verifier.checkCheckpoint(cp, key, cp.id)) return false;
        checkpoints.shift();
      }
      return true;
    };

    let after = 0;
    let good = true;
    while (good && after < endSeq) {
      const upTo = Math.min(endSeq, after + PAGE_ROWS);
      // Checkpoints are read before the page: no statement may run while iterate() is open.
      await checkpoints.fill(upTo);
      good = due(false);
      // Fast path: SQLite builds each canonical line (json_object, same bytes as canonicalLine for any
      // record append() wrote). The first row it does not accept goes through the JavaScript check,
      // which decides what (if anything) is wrong with it.
      let fastPathStopped = false;
      try {
        for (const [seq, prevHash, hash, line] of this.selectLinePage.iterate(
          after,
          upTo,
          PAGE_ROWS,
        ) as Iterable<[number, string, string, string]>) {
          if (!good) break;
          if (!verifier.tryAddRecordLine(seq, prevHash, hash, line)) {
            fastPathStopped = true;
            break;
          }
          good = due(false);
        }
      } catch {
        fastPathStopped = true; // e.g. a BLOB smuggled into a column: json_object() refuses it
      }
      if (good && fastPathStopped) {
        const row = this.selectNextRecord.get(verifier.records, upTo) as AuditRecordsTable;
        good = verifier.addRecord(row as unknown as AuditRecordFields, row.prevHash, row.hash) && due(false);
        after = row.seq;
        continue;
      }
      after = upTo;
      if (good) await tick();
    }
    // Checkpoints left once the records ran out report a truncated tail.
    while (good) {
      await checkpoints.fill(Number.MAX_SAFE_INTEGER);
      if (!checkpoints.peek()) break;
      good = due(true);
    }
    if (good) verifier.checkEnd(endSeq, endHash, 'the audit log');
    return verifier.result();
  }

  /** PostgreSQL: the same walk, up to the head in the database (any replica's records), row by row. */
  private async verifyPg(): Promise<AuditVerification> {
    const { endSeq, endHash, lastCheckpointId } = await this.db.transaction().execute(async (trx) => {
      await lockOnPostgres(trx, LOCK_CLASS.auditChain);
      const head = await this.readHeadPg(trx);
      const last = await this.lastCheckpointPg(trx);
      return { endSeq: head.seq, endHash: head.hash, lastCheckpointId: last?.id ?? 0 };
    });
    const verifier = new ChainVerifier();
    const key = this.keys.publicKey;
    const checkpoints = new CheckpointCursor(
      (afterId, lastId, limit) => this.checkpointPagePg(afterId, lastId, limit),
      lastCheckpointId,
    );
    const due = (final: boolean): boolean => {
      for (let cp = checkpoints.peek(); cp; cp = checkpoints.peek()) {
        if (!final && cp.count > verifier.records) return true;
        if (!verifier.checkCheckpoint(cp, key, cp.id)) return false;
        checkpoints.shift();
      }
      return true;
    };
    let after = 0;
    let good = true;
    while (good && after < endSeq) {
      const upTo = Math.min(endSeq, after + PAGE_ROWS);
      await checkpoints.fill(upTo);
      good = due(false);
      const page = await this.recordPagePg(after, upTo, PAGE_ROWS);
      for (const row of page) {
        if (!good) break;
        good = verifier.addRecord(row as unknown as AuditRecordFields, row.prevHash, row.hash) && due(false);
      }
      after = upTo;
    }
    while (good) {
      await checkpoints.fill(Number.MAX_SAFE_INTEGER);
      if (!checkpoints.peek()) break;
      good = due(true);
    }
    if (good) verifier.checkEnd(endSeq, endHash, 'the audit log');
    return verifier.result();
  }

  /** A consistent cut for the exports, on either engine (on PostgreSQL: the database's head). */
  async exportCutAsync(): Promise<AuditExportCut> {
    if (!this.postgres) return this.exportCut();
    const head = await this.readHeadPg(this.db);
    const last = await this.lastCheckpointPg(this.db);
    return { records: head.seq, lastCheckpointId: last?.id ?? 0 };
  }

  /** exportRecords() on either engine (what the HTTP export streams). */
  async *exportRecordsAsync(cut?: AuditExportCut): AsyncIterable<string> {
    const at = cut ?? (await this.exportCutAsync());
    if (!this.postgres) {
      yield* this.exportRecords(at);
      return;
    }
    let after = 0;
    while (after < at.records) {
      const upTo = Math.min(at.records, after + PAGE_ROWS);
      const page = await this.recordPagePg(after, upTo, PAGE_ROWS);
      for (const row of page) yield canonicalLine(row.prevHash, row as unknown as AuditRecordFields);
      after = upTo;
    }
  }

  /** exportCheckpoints() on either engine. */
  async *exportCheckpointsAsync(cut?: AuditExportCut): AsyncIterable<string> {
    const at = cut ?? (await this.exportCutAsync());
    if (!this.postgres) {
      yield* this.exportCheckpoints(at);
      return;
    }
    let after = 0;
    for (;;) {
      const page = await this.checkpointPagePg(after, at.lastCheckpointId, PAGE_ROWS);
      if (page.length === 0) return;
      for (const cp of page) yield checkpointLine(cp);
      after = page[page.length - 1]!.id;
    }
  }

  /** A consistent cut for exportRecords() and exportCheckpoints() (SQLite; see exportCutAsync()). */
  exportCut(): AuditExportCut {
    return { records: this.headSeq, lastCheckpointId: this.lastCheckpointId() };
  }

  /** records.jsonl: the canonical line of each record (no newline), in seq order. */
  *exportRecords(cut: AuditExportCut = this.exportCut()): Iterable<string> {
    // .all() per page: the generator may be suspended across awaits, and an open iterate() would block
    // every other statement on the shared connection.
    let after = 0;
    while (after < cut.records) {
      const upTo = Math.min(cut.records, after + PAGE_ROWS);
      const page = this.selectRecordPage.all(after, upTo, PAGE_ROWS) as AuditRecordsTable[];
      for (const row of page) yield canonicalLine(row.prevHash, row as unknown as AuditRecordFields);
      after = upTo;
    }
  }

  /** checkpoints.jsonl: {"count","head","time","message","signature"} per checkpoint, in order. */
  *exportCheckpoints(cut: AuditExportCut = this.exportCut()): Iterable<string> {
    let after = 0;
    for (;;) {
      const page = this.selectCheckpointPage.all(after, cut.lastCheckpointId, PAGE_ROWS) as CheckpointRow[];
      if (page.length === 0) return;
      for (const cp of page) yield checkpointLine(cp);
      after = page[page.length - 1]!.id;
    }
  }

  private lastCheckpointId(): number {
    if (this.postgres)
      throw new Error('audit log: the synchronous export is SQLite only (use the async one)');
    return (this.selectLastCheckpoint.get() as CheckpointRow | undefined)?.id ?? 0;
  }
}

/**
 * The audit log's hash chain, shared by the server (which writes and verifies it) and the CLI (which
 * verifies an export offline). Pure: node:crypto only, no I/O.
 *
 * Each record is serialised to one canonical JSON line whose first key is the previous record's hash:
 *
 *   {"prev":"<64 hex>","seq":1,"time":"...","actorId":...,...,"detail":...}
 *
 * and its hash is the SHA-256 of exactly those UTF-8 bytes. Record 1's prev is GENESIS_HASH. An export is
 * these lines, so a shell can re-walk the chain with sha256sum alone (scripts/verify-audit-export.sh).
 * Every so often the server signs a checkpoint "count=N head=<hash of record N>" with Ed25519; a
 * signature makes a rewritten or truncated chain detectable even by someone who can edit the database,
 * as long as they do not hold the signing key.
 *
 * ChainVerifier walks records in seq order and checkpoints in order, stopping at the FIRST bad item.
 */
import * as nodeCrypto from 'node:crypto';
import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

export const GENESIS_HASH = '0'.repeat(64);

/** The default cap of escapeControl(), in UTF-16 code units. */
export const DEFAULT_FIELD_MAX = 500;

export const AUDIT_RECORD_OUTCOMES = ['success', 'denied', 'failure'] as const;
export type AuditRecordOutcome = (typeof AUDIT_RECORD_OUTCOMES)[number];

/** The hashed fields of one record (prev and the record's own hash are kept beside them). */
export interface AuditRecordFields {
  seq: number;
  /** UTC, ISO 8601 with milliseconds: 2025-01-31T12:00:00.000Z. */
  time: string;
  actorId: string | null;
  actor: string;
  tenantId: string | null;
  action: string;
  target: string | null;
  outcome: AuditRecordOutcome;
  status: number;
  source: string;
  requestId: string;
  detail: string | null;
}

export interface CheckpointFields {
  /** The number of records covered: records 1..count. */
  count: number;
  /** The hash of record `count` (GENESIS_HASH when count is 0). */
  head: string;
  time: string;
  /** Base64 Ed25519 signature over checkpointMessage(count, head, time). */
  signature: string;
}

export interface ChainBadItem {
  kind: 'record' | 'checkpoint';
  /** The record's seq (1-based) or the checkpoint's number (1-based). */
  index: number;
  reason: string;
}

/** The same shape as AuditVerification in src/api/audit.ts. */
export interface ChainVerification {
  ok: boolean;
  /** Records verified good (all of them when ok). */
  records: number;
  /** Checkpoints verified good (all of them when ok). */
  checkpoints: number;
  /** The hash of the last record verified good. */
  head: string;
  firstBad: ChainBadItem | null;
}

// ------------------------------------------------------------------ escaping

// C0 and C1 controls, DEL, the JavaScript line terminators U+2028/U+2029, and (u flag) lone surrogates,
// which SQLite would silently replace with U+FFFD and so break the record's hash.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]|[\ud800-\udfff]/u;

function escapeUnit(code: number): string {
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, '0')}`
    : `\\u${code.toString(16).padStart(4, '0')}`;
}

function isUnsafeUnit(code: number): boolean {
  return code <= 0x1f || (code >= 0x7f && code <= 0x9f) || code === 0x2028 || code === 0x2029;
}

/**
 * Makes a string safe to keep in a record and to print on a terminal: every C0/C1 control character,
 * DEL, U+2028, U+2029 and lone surrogate becomes visible text (`\x0a`, `\u2028`, `\ud800`), and the
 * result is at most maxLength code units (a cut string ends in `…`; escapes and surrogate pairs are never
 * split). Backslashes themselves are kept as they are.
 */
export function escapeControl(s: string, maxLength = DEFAULT_FIELD_MAX): string {
  if (s.length <= maxLength && !UNSAFE.test(s)) return s;
  const max = Math.max(1, Math.floor(maxLength));
  let out = '';
  let beforeLast = 0; // out.length before the last piece appended
  for (let i = 0; i < s.length;) {
    const code = s.charCodeAt(i);
    let piece: string;
    let step = 1;
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (next >= 0xdc00 && next <= 0xdfff) {
        piece = s.slice(i, i + 2);
        step = 2;
      } else {
        piece = escapeUnit(code);
      }
    } else if ((code >= 0xdc00 && code <= 0xdfff) || isUnsafeUnit(code)) {
      piece = escapeUnit(code);
    } else {
      piece = s[i]!;
    }
    if (out.length + piece.length > max) {
      // Room for the ellipsis: drop the last piece if the string is already full.
      if (out.length > max - 1) out = out.slice(0, beforeLast);
      return `${out}…`;
    }
    beforeLast = out.length;
    out += piece;
    i += step;
  }
  return out;
}

// ------------------------------------------------------------------ records and checkpoints

/** The canonical line of a record: JSON with the keys in exactly this order, prev first. */
export function canonicalLine(prev: string, r: AuditRecordFields): string {
  return JSON.stringify({
    prev,
    seq: r.seq,
    time: r.time,
    actorId: r.actorId,
    actor: r.actor,
    tenantId: r.tenantId,
    action: r.action,
    target: r.target,
    outcome: r.outcome,
    status: r.status,
    source: r.source,
    requestId: r.requestId,
    detail: r.detail,
  });
}

// crypto.hash() (Node >= 20.12) skips the Hash object; fall back to createHash on older releases.
const oneShotHash = (nodeCrypto as { hash?: typeof nodeCrypto.hash }).hash;

/** SHA-256 (hex) of the line's UTF-8 bytes. */
export function recordHash(line: string): string {
  return oneShotHash
    ? oneShotHash('sha256', line, 'hex')
    : nodeCrypto.createHash('sha256').update(line, 'utf8').digest('hex');
}

/** The exact bytes a checkpoint signs (no trailing newline). */
export function checkpointMessage(count: number, head: string, time: string): string {
  return `rampart-audit-checkpoint v1 count=${count} head=${head} time=${time}`;
}

export function signCheckpoint(count: number, head: string, time: string, privateKey: KeyObject): string {
  return sign(null, Buffer.from(checkpointMessage(count, head, time), 'utf8'), privateKey).toString('base64');
}

export function checkpointSignatureValid(cp: CheckpointFields, publicKey: KeyObject): boolean {
  try {
    const signature = Buffer.from(cp.signature, 'base64');
    if (signature.length !== 64) return false;
    return verify(
      null,
      Buffer.from(checkpointMessage(cp.count, cp.head, cp.time), 'utf8'),
      publicKey,
      signature,
    );
  } catch {
    return false;
  }
}

/** A JSON line of checkpoints.jsonl. */
export function checkpointLine(cp: CheckpointFields): string {
  return JSON.stringify({
    count: cp.count,
    head: cp.head,
    time: cp.time,
    message: checkpointMessage(cp.count, cp.head, cp.time),
    signature: cp.signature,
  });
}

export function toPublicKey(key: KeyObject | string): KeyObject {
  return typeof key === 'string' ? createPublicKey({ key, format: 'pem' }) : key;
}

// ------------------------------------------------------------------ verification

const HEX64 = /^[0-9a-f]{64}$/;
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function missingReason(from: number, to: number, because: string): string {
  return `${from === to ? `record ${from}` : `records ${from}..${to}`} missing (${because})`;
}

/** The fields of a parsed export line, if they have the right types (key order is checked apart). */
function recordFromJson(value: unknown): (AuditRecordFields & { prev: string }) | null {
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  const str = (x: unknown) => typeof x === 'string';
  const strOrNull = (x: unknown) => x === null || typeof x === 'string';
  if (
    !str(v.prev) ||
    !Number.isSafeInteger(v.seq) ||
    !str(v.time) ||
    !strOrNull(v.actorId) ||
    !str(v.actor) ||
    !strOrNull(v.tenantId) ||
    !str(v.action) ||
    !strOrNull(v.target) ||
    !AUDIT_RECORD_OUTCOMES.includes(v.outcome as AuditRecordOutcome) ||
    !Number.isSafeInteger(v.status) ||
    !str(v.source) ||
    !str(v.requestId) ||
    !strOrNull(v.detail)
  )
    return null;
  return v as unknown as AuditRecordFields & { prev: string };
}

const PREFIX = '{"prev":"';
const SEQ_KEY = '","seq":';

/** Whether the line starts with {"prev":"<head>","seq":<seq>, (compared in place: no string built). */
function linksTo(line: string, head: string, seq: number): boolean {
  const digits = String(seq);
  const seqAt = PREFIX.length + head.length + SEQ_KEY.length;
  return (
    line.startsWith(PREFIX) &&
    line.startsWith(head, PREFIX.length) &&
    line.startsWith(SEQ_KEY, PREFIX.length + head.length) &&
    line.startsWith(digits, seqAt) &&
    line.charCodeAt(seqAt + digits.length) === 0x2c // ','
  );
}

/**
 * Streaming verifier: feed records in seq order (addRecord for database rows, which carry their stored
 * hash; addLine for export lines, whose hash is the next line's prev) and, once exactly `count` records
 * have been fed, each checkpoint covering `count` (checkCheckpoint). If the records run out first, feed
 * the remaining checkpoints anyway: they report the missing tail. Every method returns false from the
 * first bad item on, and result() names that item.
 *
 * Who is blamed when the link between records N and N+1 breaks: if N+1 is consistent in itself (its
 * stored hash matches its content, or in an export it is canonical), N+1 still carries N's original
 * hash, so N is the altered one (edited, hash recomputed) — unless a verified checkpoint covers
 * exactly N, which proves N authentic and leaves N+1 to blame.
 */
export class ChainVerifier {
  private count = 0;
  private headHash = GENESIS_HASH;
  /** Hash of record count-1: the head once record `count` turns out to be the bad one. */
  private previousHead = GENESIS_HASH;
  private checkpointsOk = 0;
  /** Records covered by the last verified checkpoint. */
  private signedCount = -1;
  private bad: ChainBadItem | null = null;
  private readonly keys = new Map<string, KeyObject>();

  get records(): number {
    return this.count;
  }

  get checkpoints(): number {
    return this.checkpointsOk;
  }

  get head(): string {
    return this.headHash;
  }

  get firstBad(): ChainBadItem | null {
    return this.bad;
  }

  get ok(): boolean {
    return this.bad === null;
  }

  result(): ChainVerification {
    return {
      ok: this.bad === null,
      records: this.count,
      checkpoints: this.checkpointsOk,
      head: this.headHash,
      firstBad: this.bad,
    };
  }

  /** A database row: its hashed fields, its stored prev hash and its stored hash. */
  addRecord(fields: AuditRecordFields, prevHash: string, storedHash: string): boolean {
    if (this.bad) return false;
    if (!this.checkSeq(fields.seq)) return false;
    const selfConsistent = recordHash(canonicalLine(prevHash, fields)) === storedHash;
    if (prevHash !== this.headHash) return this.brokenLink(selfConsistent);
    if (!selfConsistent)
      return this.fail('record', fields.seq, `record ${fields.seq}: content does not match its hash`);
    this.advance(storedHash);
    return true;
  }

  /**
   * Fast path for a row whose canonical line the caller built itself (e.g. in SQL): accepts the record
   * when its seq, link and hash all match. Otherwise returns false WITHOUT a verdict; the caller then
   * passes the row to addRecord(), the authority on what is wrong.
   */
  tryAddRecordLine(seq: number, prevHash: string, storedHash: string, line: string): boolean {
    if (this.bad || seq !== this.count + 1 || prevHash !== this.headHash) return false;
    if (recordHash(line) !== storedHash) return false;
    this.advance(storedHash);
    return true;
  }

  /** One line of records.jsonl, without its newline. */
  addLine(line: string): boolean {
    if (this.bad) return false;
    const expected = this.count + 1;
    // The chain covers the exact bytes, so a line that links up needs no parsing to be verified; only a
    // line that does not is parsed, to say what is wrong with it.
    if (linksTo(line, this.headHash, expected)) {
      this.advance(recordHash(line));
      return true;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      return this.fail('record', expected, `record ${expected}: line is not valid JSON`);
    }
    const fields = recordFromJson(parsed);
    if (!fields)
      return this.fail('record', expected, `record ${expected}: line lacks a field or has a wrong type`);
    if (!this.checkSeq(fields.seq)) return false;
    if (fields.prev !== this.headHash) return this.brokenLink(canonicalLine(fields.prev, fields) === line);
    return this.fail('record', expected, `record ${expected}: line is not in canonical form`);
  }

  /**
   * A checkpoint, once exactly cp.count records were fed (or when the records ran out). `index` is its
   * number (default: the next one); a skipped number reports the missing checkpoint.
   */
  checkCheckpoint(cp: CheckpointFields, publicKey: KeyObject | string, index?: number): boolean {
    if (this.bad) return false;
    const expected = this.checkpointsOk + 1;
    const k = index ?? expected;
    if (k > expected) return this.fail('checkpoint', expected, `checkpoint ${expected} missing`);
    if (
      !Number.isSafeInteger(cp.count) ||
      cp.count < 0 ||
      !HEX64.test(cp.head) ||
      !ISO_MS.test(cp.time) ||
      typeof cp.signature !== 'string'
    )
      return this.fail('checkpoint', k, `checkpoint ${k}: malformed`);
    if (cp.count < this.signedCount)
      return this.fail(
        'checkpoint',
        k,
        `checkpoint ${k}: covers ${cp.count} records, fewer than the ${this.signedCount} of checkpoint ${k - 1}`,
      );
    if (cp.count > this.count)
      return this.fail(
        'record',
        this.count + 1,
        missingReason(this.count + 1, cp.count, `checkpoint ${k} covers ${cp.count}`),
      );
    if (cp.count < this.count)
      return this.fail('checkpoint', k, `checkpoint ${k}: out of order (covers ${cp.count} records)`);
    if (!checkpointSignatureValid(cp, this.key(publicKey)))
      return this.fail('checkpoint', k, `checkpoint ${k}: signature does not verify`);
    if (cp.head !== this.headHash)
      return this.fail(
        'checkpoint',
        k,
        `checkpoint ${k}: head does not match the hash of record ${cp.count}`,
      );
    this.checkpointsOk++;
    this.signedCount = cp.count;
    return true;
  }

  /**
   * After the last record: the chain must end at `count` records with hash `head` (what the writer
   * knows it committed). `who` names that writer in the reason.
   */
  checkEnd(count: number, head: string, who: string): boolean {
    if (this.bad) return false;
    if (this.count < count)
      return this.fail(
        'record',
        this.count + 1,
        missingReason(this.count + 1, count, `${who} committed ${count}`),
      );
    if (this.count === count && count > 0 && head !== this.headHash)
      return this.fail('record', count, `record ${count}: hash differs from the head ${who} committed`);
    return true;
  }

  private checkSeq(seq: number): boolean {
    const expected = this.count + 1;
    if (seq === expected) return true;
    if (seq > expected)
      return this.fail('record', expected, missingReason(expected, seq - 1, `next is ${seq}`));
    return this.fail('record', expected, `record ${expected}: out of order (found seq ${seq})`);
  }

  private brokenLink(nextSelfConsistent: boolean): boolean {
    const n = this.count;
    if (n > 0 && nextSelfConsistent && this.signedCount !== n) {
      this.count = n - 1;
      this.headHash = this.previousHead;
      return this.fail(
        'record',
        n,
        `record ${n}: altered (its hash differs from the prev hash that record ${n + 1} carries)`,
      );
    }
    return this.fail(
      'record',
      n + 1,
      `record ${n + 1}: prev hash does not match the hash of ${n === 0 ? 'the genesis' : `record ${n}`}`,
    );
  }

  private advance(hash: string): void {
    this.previousHead = this.headHash;
    this.headHash = hash;
    this.count++;
  }

  /** Records a bad item found outside the verifier (e.g. an unreadable line); false like the checks. */
  reject(kind: ChainBadItem['kind'], index: number, reason: string): false {
    if (!this.bad) this.bad = { kind, index, reason };
    return false;
  }

  private fail(kind: ChainBadItem['kind'], index: number, reason: string): false {
    this.bad = { kind, index, reason };
    return false;
  }

  private key(publicKey: KeyObject | string): KeyObject {
    if (typeof publicKey !== 'string') return publicKey;
    let key = this.keys.get(publicKey);
    if (!key) {
      key = toPublicKey(publicKey);
      this.keys.set(publicKey, key);
    }
    return key;
  }
}

// ------------------------------------------------------------------ offline verification of an export

function* linesOf(input: string | Iterable<string>): Generator<string> {
  if (typeof input !== 'string') {
    yield* input;
    return;
  }
  let start = 0;
  while (start < input.length) {
    let end = input.indexOf('\n', start);
    if (end === -1) end = input.length;
    yield input.slice(start, end);
    start = end + 1;
  }
}

/** A checkpoints.jsonl line, or the reason it is unusable. */
function parseCheckpointLine(line: string, index: number): CheckpointFields | string {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return `checkpoint ${index}: line is not valid JSON`;
  }
  if (typeof v !== 'object' || v === null) return `checkpoint ${index}: malformed`;
  const { count, head, time, message, signature } = v as Record<string, unknown>;
  if (
    typeof count !== 'number' ||
    typeof head !== 'string' ||
    typeof time !== 'string' ||
    typeof signature !== 'string'
  )
    return `checkpoint ${index}: malformed`;
  if (message !== checkpointMessage(count, head, time))
    return `checkpoint ${index}: message does not match its count, head and time`;
  return { count, head, time, signature };
}

/**
 * Verifies an export (the lines of records.jsonl and checkpoints.jsonl, as strings with newlines or as
 * iterables of lines) against the audit public key. Records after the last checkpoint are chained but
 * not signed: a verifier should compare the reported head with a fresh one, or export right after a
 * checkpoint.
 */
export function verifyExport(
  recordsJsonl: string | Iterable<string>,
  checkpointsJsonl: string | Iterable<string>,
  publicKeyPem: string,
): ChainVerification {
  const key = toPublicKey(publicKeyPem);
  const verifier = new ChainVerifier();
  const checkpoints = linesOf(checkpointsJsonl)[Symbol.iterator]();
  let cpIndex = 0;
  let pending: CheckpointFields | null = null;
  let exhausted = false;

  /** Checks every checkpoint due before the next record (all of them when final); false on a bad one. */
  const drain = (final: boolean): boolean => {
    for (;;) {
      if (!pending) {
        if (exhausted) return true;
        const next = checkpoints.next();
        if (next.done) {
          exhausted = true;
          return true;
        }
        cpIndex++;
        const parsed = parseCheckpointLine(next.value, cpIndex);
        if (typeof parsed === 'string') return verifier.reject('checkpoint', cpIndex, parsed);
        pending = parsed;
      }
      if (!final && pending.count > verifier.records) return true;
      if (!verifier.checkCheckpoint(pending, key, cpIndex)) return false;
      pending = null;
    }
  };

  if (drain(false)) {
    for (const line of linesOf(recordsJsonl)) {
      if (!verifier.addLine(line) || !drain(false)) break;
    }
    if (verifier.ok) drain(true);
  }
  return verifier.result();
}

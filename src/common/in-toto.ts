/**
 * Image signatures: an in-toto Statement v1 whose one subject is the image's SHA-256, with a small Rampart
 * predicate, carried in a DSSE envelope (./dsse.ts) signed with Ed25519. A signature says "the holder of
 * this key vouches for the image with exactly this digest", so it is checked against the digest of the
 * bytes actually at hand: a valid signature moved onto another image fails (verifyImageSignature).
 * Pure: node:crypto only, no I/O; used by the CLI (`rampart image sign`), later the server and the agent.
 *
 * Rampart accepts only the statements it writes, byte for byte: the payload must be the canonical
 * serialisation (serializeStatement: compact JSON, fixed key order, no other fields) of a statement with
 * exactly one subject whose digest is exactly {sha256}. Duplicate keys, a second subject, extra digest
 * algorithms or whitespace would each let two parsers (this one, a shell script, a future Go agent) read
 * different subjects from the same signed bytes, so they are refused rather than interpreted.
 */
import type { KeyObject } from 'node:crypto';
import { signDsse, verifyDsse, type DsseEnvelope, type TrustedKey } from './dsse.js';

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const IMAGE_SIGNATURE_PREDICATE_TYPE = 'https://rampart.dev/image-signature/v1';

/** The image formats a signature may name (kernel-initrd today; disk images come with protected images). */
export const IMAGE_SIGNATURE_FORMATS = ['kernel-initrd', 'raw', 'qcow2'] as const;
export type ImageSignatureFormat = (typeof IMAGE_SIGNATURE_FORMATS)[number];

const SHA256_RE = /^[0-9a-f]{64}$/;
const MAX_NAME_LENGTH = 255;
// Control characters and line separators: a name is shown to humans and must stay on its line.
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

export interface ImageSignaturePredicate {
  /** The image name the signer meant (a hint for humans; the digest is what binds). */
  imageName?: string;
  format: ImageSignatureFormat;
  sizeBytes: number;
  /** UTC, ISO 8601 with milliseconds, as Date.prototype.toISOString writes it. */
  signedAt: string;
}

export interface StatementSubject {
  name: string;
  digest: { sha256: string };
}

export interface ImageStatement {
  _type: typeof STATEMENT_TYPE;
  subject: [StatementSubject];
  predicateType: typeof IMAGE_SIGNATURE_PREDICATE_TYPE;
  predicate: ImageSignaturePredicate;
}

export type ImageStatementInput = {
  /** Lowercase hex SHA-256 of the image bytes. */
  sha256: string;
  /** The subject name: the image name, else the file name. */
  subjectName: string;
} & ImageSignaturePredicate;

export type StatementVerification =
  { ok: true; keyid: string; statement: ImageStatement } | { ok: false; reason: string };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function validName(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length > 0 &&
    value.length <= MAX_NAME_LENGTH &&
    !CONTROL_RE.test(value)
  );
}

function validTimestamp(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const ms = Date.parse(value);
  return !Number.isNaN(ms) && new Date(ms).toISOString() === value;
}

/** Builds a statement; throws on an invalid field (the signer's own input, so a bug or a bad flag). */
export function imageStatement(input: ImageStatementInput): ImageStatement {
  const predicate: ImageSignaturePredicate = {
    ...(input.imageName === undefined ? {} : { imageName: input.imageName }),
    format: input.format,
    sizeBytes: input.sizeBytes,
    signedAt: input.signedAt,
  };
  const statement: ImageStatement = {
    _type: STATEMENT_TYPE,
    subject: [{ name: input.subjectName, digest: { sha256: input.sha256 } }],
    predicateType: IMAGE_SIGNATURE_PREDICATE_TYPE,
    predicate,
  };
  const checked = checkStatement(statement);
  if (!checked.ok) throw new Error(checked.reason);
  return checked.statement;
}

/** The canonical payload bytes of a statement: compact JSON in a fixed key order. */
export function serializeStatement(statement: ImageStatement): Buffer {
  const [subject] = statement.subject;
  const p = statement.predicate;
  const canonical = {
    _type: statement._type,
    subject: [{ name: subject.name, digest: { sha256: subject.digest.sha256 } }],
    predicateType: statement.predicateType,
    predicate: {
      ...(p.imageName === undefined ? {} : { imageName: p.imageName }),
      format: p.format,
      sizeBytes: p.sizeBytes,
      signedAt: p.signedAt,
    },
  };
  return Buffer.from(JSON.stringify(canonical), 'utf8');
}

/** The digest a statement vouches for. */
export function subjectDigest(statement: ImageStatement): string {
  return statement.subject[0].digest.sha256;
}

function exactKeys(
  value: Record<string, unknown>,
  required: readonly string[],
  optional: readonly string[] = [],
) {
  const keys = Object.keys(value);
  return (
    required.every((k) => Object.hasOwn(value, k)) &&
    keys.every((k) => required.includes(k) || optional.includes(k))
  );
}

/** Checks a parsed value field by field (not yet its encoding). */
function checkStatement(
  value: unknown,
): { ok: true; statement: ImageStatement } | { ok: false; reason: string } {
  const fail = (reason: string) => ({ ok: false as const, reason });
  if (!isRecord(value)) return fail('statement is not a JSON object');
  if (value._type !== STATEMENT_TYPE) return fail(`statement _type must be ${STATEMENT_TYPE}`);
  if (!exactKeys(value, ['_type', 'subject', 'predicateType', 'predicate'])) {
    return fail('statement must have exactly _type, subject, predicateType and predicate');
  }
  const subjects = value.subject;
  if (!Array.isArray(subjects) || subjects.length !== 1) {
    return fail('statement must have exactly one subject');
  }
  const subject: unknown = subjects[0];
  if (!isRecord(subject) || !exactKeys(subject, ['name', 'digest'])) {
    return fail('the subject must have exactly name and digest');
  }
  if (!validName(subject.name)) return fail('the subject name is invalid');
  const digest = subject.digest;
  if (!isRecord(digest) || !exactKeys(digest, ['sha256']) || typeof digest.sha256 !== 'string') {
    return fail('the subject digest must be exactly {sha256}');
  }
  if (!SHA256_RE.test(digest.sha256)) return fail('the subject sha256 is not 64 lowercase hex digits');
  if (value.predicateType !== IMAGE_SIGNATURE_PREDICATE_TYPE) {
    return fail(`predicateType must be ${IMAGE_SIGNATURE_PREDICATE_TYPE}`);
  }
  const predicate = value.predicate;
  if (!isRecord(predicate) || !exactKeys(predicate, ['format', 'sizeBytes', 'signedAt'], ['imageName'])) {
    return fail('the predicate must have format, sizeBytes, signedAt and optionally imageName');
  }
  if (predicate.imageName !== undefined && !validName(predicate.imageName)) {
    return fail('the predicate imageName is invalid');
  }
  if (!(IMAGE_SIGNATURE_FORMATS as readonly unknown[]).includes(predicate.format)) {
    return fail(`the predicate format must be one of ${IMAGE_SIGNATURE_FORMATS.join(', ')}`);
  }
  const size = predicate.sizeBytes;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    return fail('the predicate sizeBytes is not a non-negative integer');
  }
  if (!validTimestamp(predicate.signedAt)) return fail('the predicate signedAt is not an ISO 8601 UTC time');
  return { ok: true, statement: value as unknown as ImageStatement };
}

/** Parses payload bytes into a statement, refusing anything but the canonical encoding. */
export function parseStatement(
  payload: Uint8Array,
): { ok: true; statement: ImageStatement } | { ok: false; reason: string } {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch {
    return { ok: false, reason: 'payload is not UTF-8 JSON' };
  }
  const checked = checkStatement(value);
  if (!checked.ok) return checked;
  if (!serializeStatement(checked.statement).equals(payload)) {
    return { ok: false, reason: 'payload is not the canonical encoding of its statement' };
  }
  return checked;
}

/** Signs a statement on the signer's machine: the private key is only used here, never sent anywhere. */
export function signStatement(statement: ImageStatement, privateKey: KeyObject): DsseEnvelope {
  const checked = checkStatement(statement);
  if (!checked.ok) throw new Error(checked.reason);
  return signDsse(IN_TOTO_PAYLOAD_TYPE, serializeStatement(statement), privateKey);
}

/**
 * Verifies an envelope (JSON text, bytes or a parsed value): DSSE structure and size, payload type, a
 * signature by a trusted key over PAE, then the statement. Says nothing about which image it is for.
 */
export function verifyEnvelope(envelope: unknown, trustedKeys: readonly TrustedKey[]): StatementVerification {
  const opened = verifyDsse(envelope, IN_TOTO_PAYLOAD_TYPE, trustedKeys);
  if (!opened.ok) return opened;
  const parsed = parseStatement(opened.payload);
  if (!parsed.ok) return parsed;
  return { ok: true, keyid: opened.keyid, statement: parsed.statement };
}

/**
 * verifyEnvelope, and the statement's subject must be the image whose SHA-256 (computed by the caller
 * from the bytes it is about to use) is `expectedSha256`.
 */
export function verifyImageSignature(
  envelope: unknown,
  expectedSha256: string,
  trustedKeys: readonly TrustedKey[],
): StatementVerification {
  if (!SHA256_RE.test(expectedSha256)) {
    return { ok: false, reason: 'the expected sha256 is not 64 lowercase hex digits' };
  }
  const verified = verifyEnvelope(envelope, trustedKeys);
  if (!verified.ok) return verified;
  const signed = subjectDigest(verified.statement);
  if (signed !== expectedSha256) {
    return {
      ok: false,
      reason: `the signature is for sha256:${signed}, not this image (sha256:${expectedSha256})`,
    };
  }
  return verified;
}

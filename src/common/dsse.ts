/**
 * DSSE v1 envelopes (https://github.com/secure-systems-lab/dsse) signed with Ed25519: the container
 * Rampart uses for image signatures, shared by the CLI (which signs on the user's machine), the server
 * (which checks uploads against a tenant's trusted keys) and the agent (which re-checks before every
 * boot). Pure: node:crypto only, no I/O.
 *
 * What is signed is never the JSON envelope but the pre-authentication encoding of the payload:
 *
 *   PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
 *
 * with lengths as ASCII decimal byte counts, so the payload type is bound to the signature and a shell
 * can rebuild the signed bytes with printf (docs/image-signatures.md).
 *
 * A key id is the lowercase hex SHA-256 of the public key's SPKI DER encoding, which anyone can compute
 * with `openssl pkey -pubin -in key.pub -outform DER | sha256sum`.
 *
 * Verification is deliberately stricter than the DSSE spec requires, because every byte an attacker may
 * choose is a place for parsers to disagree: the envelope is bounded (64 KiB), has exactly the three
 * DSSE fields, base64 must be canonical standard base64 with padding (what Rampart emits and `base64 -d`
 * reads), every signature names its key, no key id appears twice, and a signature from a trusted key that
 * does not verify fails the whole envelope rather than being skipped. Signatures from keys the verifier
 * does not know are ignored (another party may co-sign), but at least one trusted signature must verify.
 */
import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

/** The largest envelope accepted, in bytes of its JSON text (a real one is well under 2 KiB). */
export const DSSE_MAX_ENVELOPE_BYTES = 64 * 1024;
/** At most this many signatures per envelope. */
export const DSSE_MAX_SIGNATURES = 8;

const ED25519_SIGNATURE_BYTES = 64;
const KEY_ID_RE = /^[0-9a-f]{64}$/;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const PAYLOAD_TYPE_RE = /^[\x21-\x7e]{1,128}$/;

export interface DsseSignature {
  /** Lowercase hex SHA-256 of the signer's SPKI DER public key. */
  keyid: string;
  /** Base64 of the Ed25519 signature over PAE(payloadType, payload). */
  sig: string;
}

export interface DsseEnvelope {
  payloadType: string;
  /** Base64 of the payload bytes. */
  payload: string;
  signatures: DsseSignature[];
}

/** A public key the verifier trusts, with its key id. Build one with trustedKey(). */
export interface TrustedKey {
  keyid: string;
  publicKey: KeyObject;
}

export type DsseVerification =
  { ok: true; keyid: string; payloadType: string; payload: Buffer } | { ok: false; reason: string };

/** The DSSE v1 pre-authentication encoding: the exact bytes that are signed. */
export function pae(payloadType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `, 'ascii'),
    type,
    Buffer.from(` ${payload.length} `, 'ascii'),
    payload,
  ]);
}

/** The key id of a public (or private) Ed25519 key: hex SHA-256 of its SPKI DER encoding. */
export function keyIdOf(key: KeyObject): string {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex');
}

/** A trusted-key entry for a public key; throws unless it is an Ed25519 public key. */
export function trustedKey(publicKey: KeyObject): TrustedKey {
  if (publicKey.type !== 'public' || publicKey.asymmetricKeyType !== 'ed25519') {
    throw new Error('a trusted key must be an Ed25519 public key');
  }
  return { keyid: keyIdOf(publicKey), publicKey };
}

/** Signs a payload into a one-signature envelope. */
export function signDsse(payloadType: string, payload: Uint8Array, privateKey: KeyObject): DsseEnvelope {
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') {
    throw new Error('the signing key must be an Ed25519 private key');
  }
  if (!PAYLOAD_TYPE_RE.test(payloadType)) throw new Error('invalid payload type');
  const sig = sign(null, pae(payloadType, payload), privateKey);
  return {
    payloadType,
    payload: Buffer.from(payload).toString('base64'),
    signatures: [{ keyid: keyIdOf(privateKey), sig: sig.toString('base64') }],
  };
}

/** The envelope as a file holds it: indented JSON and a final newline. */
export function serializeEnvelope(envelope: DsseEnvelope): string {
  return `${JSON.stringify(envelope, null, 2)}\n`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function hasExactKeys(value: Record<string, unknown>, keys: readonly string[]): boolean {
  const own = Object.keys(value);
  return own.length === keys.length && keys.every((k) => Object.hasOwn(value, k));
}

/** Decodes canonical, padded, standard base64 only; undefined otherwise. */
export function decodeBase64Strict(text: string): Buffer | undefined {
  if (!BASE64_RE.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  // Non-zero padding bits decode to the same bytes as another text: refuse them too.
  return bytes.toString('base64') === text ? bytes : undefined;
}

/**
 * Parses and structurally checks an envelope given as JSON text, bytes or an already-parsed value
 * (whose size is then measured as its JSON re-serialisation).
 */
export function parseEnvelope(
  input: unknown,
): { ok: true; envelope: DsseEnvelope } | { ok: false; reason: string } {
  let value: unknown = input;
  if (typeof input === 'string' || input instanceof Uint8Array) {
    const size = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
    if (size > DSSE_MAX_ENVELOPE_BYTES) {
      return { ok: false, reason: `envelope is larger than ${DSSE_MAX_ENVELOPE_BYTES} bytes` };
    }
    try {
      value = JSON.parse(typeof input === 'string' ? input : Buffer.from(input).toString('utf8'));
    } catch {
      return { ok: false, reason: 'envelope is not valid JSON' };
    }
  } else {
    let text: string | undefined;
    try {
      text = JSON.stringify(input);
    } catch {
      text = undefined;
    }
    if (text === undefined) return { ok: false, reason: 'envelope is not a JSON object' };
    if (Buffer.byteLength(text, 'utf8') > DSSE_MAX_ENVELOPE_BYTES) {
      return { ok: false, reason: `envelope is larger than ${DSSE_MAX_ENVELOPE_BYTES} bytes` };
    }
  }
  if (!isRecord(value) || !hasExactKeys(value, ['payloadType', 'payload', 'signatures'])) {
    return {
      ok: false,
      reason: 'envelope must be an object with exactly payloadType, payload and signatures',
    };
  }
  const { payloadType, payload, signatures } = value;
  if (typeof payloadType !== 'string' || !PAYLOAD_TYPE_RE.test(payloadType)) {
    return { ok: false, reason: 'envelope payloadType is invalid' };
  }
  if (typeof payload !== 'string') return { ok: false, reason: 'envelope payload is not a string' };
  if (!Array.isArray(signatures) || signatures.length === 0) {
    return { ok: false, reason: 'envelope has no signatures' };
  }
  if (signatures.length > DSSE_MAX_SIGNATURES) {
    return { ok: false, reason: `envelope has more than ${DSSE_MAX_SIGNATURES} signatures` };
  }
  const seen = new Set<string>();
  const checked: DsseSignature[] = [];
  for (const entry of signatures as unknown[]) {
    if (!isRecord(entry) || !hasExactKeys(entry, ['keyid', 'sig'])) {
      return { ok: false, reason: 'each signature must be an object with exactly keyid and sig' };
    }
    const { keyid, sig } = entry;
    if (typeof keyid !== 'string' || !KEY_ID_RE.test(keyid)) {
      return { ok: false, reason: 'a signature keyid is not 64 lowercase hex digits' };
    }
    if (typeof sig !== 'string') return { ok: false, reason: `signature by key ${keyid} is not a string` };
    if (seen.has(keyid)) return { ok: false, reason: `key ${keyid} signs more than once` };
    seen.add(keyid);
    checked.push({ keyid, sig });
  }
  return { ok: true, envelope: { payloadType, payload, signatures: checked } };
}

/**
 * Verifies an envelope: its structure, that the payload type is exactly `expectedPayloadType`, and that
 * at least one signature by a trusted key verifies over PAE (a trusted signature that does not verify is
 * a failure). Returns the decoded payload and the key id that vouches for it.
 */
export function verifyDsse(
  input: unknown,
  expectedPayloadType: string,
  trustedKeys: readonly TrustedKey[],
): DsseVerification {
  const parsed = parseEnvelope(input);
  if (!parsed.ok) return parsed;
  const { envelope } = parsed;
  if (envelope.payloadType !== expectedPayloadType) {
    return { ok: false, reason: `payloadType must be ${expectedPayloadType}` };
  }
  const payload = decodeBase64Strict(envelope.payload);
  if (payload === undefined) return { ok: false, reason: 'envelope payload is not canonical base64' };
  const signed = pae(envelope.payloadType, payload);
  // Only entries whose key id really is their key's: a mislabelled entry must not vouch for another key.
  const keys = trustedKeys.filter(
    (k) =>
      k.publicKey.type === 'public' &&
      k.publicKey.asymmetricKeyType === 'ed25519' &&
      keyIdOf(k.publicKey) === k.keyid,
  );
  let vouching: string | undefined;
  for (const signature of envelope.signatures) {
    const key = keys.find((k) => k.keyid === signature.keyid);
    if (key === undefined) continue;
    const sig = decodeBase64Strict(signature.sig);
    if (sig === undefined || sig.length !== ED25519_SIGNATURE_BYTES) {
      return { ok: false, reason: `signature by key ${signature.keyid} is malformed` };
    }
    let good: boolean;
    try {
      good = verify(null, signed, key.publicKey, sig);
    } catch {
      good = false;
    }
    if (!good) return { ok: false, reason: `signature by key ${signature.keyid} does not verify` };
    vouching ??= signature.keyid;
  }
  if (vouching === undefined) {
    const ids = envelope.signatures.map((s) => s.keyid).join(', ');
    return { ok: false, reason: `no signature by a trusted key (signed by ${ids})` };
  }
  return { ok: true, keyid: vouching, payloadType: envelope.payloadType, payload };
}

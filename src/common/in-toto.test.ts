import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { keyIdOf, signDsse, trustedKey } from './dsse.js';
import {
  IMAGE_SIGNATURE_PREDICATE_TYPE,
  IN_TOTO_PAYLOAD_TYPE,
  STATEMENT_TYPE,
  imageStatement,
  parseStatement,
  serializeStatement,
  signStatement,
  subjectDigest,
  verifyEnvelope,
  verifyImageSignature,
} from './in-toto.js';

const alice = generateKeyPairSync('ed25519');
const mallory = generateKeyPairSync('ed25519');
const trusted = [trustedKey(alice.publicKey)];
const image = Buffer.from('pretend this is a kernel+initrd bundle');
const digest = createHash('sha256').update(image).digest('hex');
const otherDigest = createHash('sha256').update('another image').digest('hex');

function statementFor(sha256 = digest) {
  return imageStatement({
    sha256,
    subjectName: 'tiny',
    imageName: 'tiny',
    format: 'kernel-initrd',
    sizeBytes: image.length,
    signedAt: '2026-01-01T12:00:00.000Z',
  });
}

/** Signs arbitrary payload bytes as an in-toto envelope, as a forger with a trusted key could. */
function signRaw(value: unknown) {
  return signDsse(IN_TOTO_PAYLOAD_TYPE, Buffer.from(JSON.stringify(value)), alice.privateKey);
}

function reason(result: ReturnType<typeof verifyEnvelope>): string {
  assert.equal(result.ok, false);
  return result.ok ? '' : result.reason;
}

void describe('in-toto image statements', () => {
  void it('writes the in-toto v1 statement in canonical form', () => {
    const statement = statementFor();
    assert.equal(
      serializeStatement(statement).toString(),
      `{"_type":"${STATEMENT_TYPE}","subject":[{"name":"tiny","digest":{"sha256":"${digest}"}}],` +
        `"predicateType":"${IMAGE_SIGNATURE_PREDICATE_TYPE}","predicate":{"imageName":"tiny",` +
        `"format":"kernel-initrd","sizeBytes":${image.length},"signedAt":"2026-01-01T12:00:00.000Z"}}`,
    );
    assert.equal(subjectDigest(statement), digest);
    assert.throws(
      () => imageStatement({ ...statementFor().predicate, sha256: 'ABC', subjectName: 'x' }),
      /sha256/,
    );
    assert.throws(
      () =>
        imageStatement({ sha256: digest, subjectName: 'x', format: 'raw', sizeBytes: -1, signedAt: 'now' }),
      /sizeBytes/,
    );
  });

  void it('round-trips through a DSSE envelope and checks the image digest', () => {
    const envelope = signStatement(statementFor(), alice.privateKey);
    assert.equal(envelope.payloadType, 'application/vnd.in-toto+json');
    const result = verifyImageSignature(JSON.stringify(envelope), digest, trusted);
    assert.ok(result.ok);
    assert.equal(result.keyid, keyIdOf(alice.publicKey));
    assert.deepEqual(result.statement, statementFor());
  });

  void it('refuses a valid signature moved onto another image', () => {
    const envelope = signStatement(statementFor(), alice.privateKey);
    const result = verifyImageSignature(envelope, otherDigest, trusted);
    assert.match(reason(result), new RegExp(`signature is for sha256:${digest}, not this image`));
    assert.match(reason(verifyImageSignature(envelope, digest.toUpperCase(), trusted)), /expected sha256/);
  });

  void it('refuses untrusted signers and tampered envelopes', () => {
    const envelope = signStatement(statementFor(), mallory.privateKey);
    assert.match(reason(verifyImageSignature(envelope, digest, trusted)), /no signature by a trusted key/);
    const good = signStatement(statementFor(), alice.privateKey);
    const payload = Buffer.from(good.payload, 'base64').toString().replace(digest, otherDigest);
    const swapped = { ...good, payload: Buffer.from(payload).toString('base64') };
    assert.match(reason(verifyImageSignature(swapped, otherDigest, trusted)), /does not verify/);
    const retyped = { ...good, payloadType: 'application/json' };
    assert.match(
      reason(verifyEnvelope(retyped, trusted)),
      /payloadType must be application\/vnd\.in-toto\+json/,
    );
  });

  void it('refuses duplicated, missing or extra subjects and digests, even when validly signed', () => {
    const base = JSON.parse(serializeStatement(statementFor()).toString()) as Record<string, unknown>;
    const subject = { name: 'tiny', digest: { sha256: digest } };
    const other = { name: 'evil', digest: { sha256: otherDigest } };
    const cases: [unknown, RegExp][] = [
      [{ ...base, subject: [subject, other] }, /exactly one subject/],
      [{ ...base, subject: [subject, subject] }, /exactly one subject/],
      [{ ...base, subject: [] }, /exactly one subject/],
      [
        { ...base, subject: [{ ...subject, digest: { sha256: digest, sha512: 'ab' } }] },
        /exactly \{sha256\}/,
      ],
      [{ ...base, subject: [{ ...subject, digest: { sha512: 'ab' } }] }, /exactly \{sha256\}/],
      [{ ...base, subject: [{ ...subject, uri: 'x' }] }, /exactly name and digest/],
      [{ ...base, _type: 'https://in-toto.io/Statement/v0.1' }, /_type must be/],
      [{ ...base, predicateType: 'https://slsa.dev/provenance/v1' }, /predicateType must be/],
      [{ ...base, extra: true }, /exactly _type/],
      [{ ...base, predicate: { format: 'iso' } }, /predicate/],
    ];
    for (const [value, expected] of cases)
      assert.match(reason(verifyEnvelope(signRaw(value), trusted)), expected);

    // Duplicate keys: JSON.parse keeps the last, a naive scanner the first: not canonical, refused.
    const text = serializeStatement(statementFor()).toString();
    const dup = text.replace('"subject":', `"subject":[${JSON.stringify(other)}],"subject":`);
    const dupEnv = signDsse(IN_TOTO_PAYLOAD_TYPE, Buffer.from(dup), alice.privateKey);
    assert.match(reason(verifyImageSignature(dupEnv, digest, trusted)), /not the canonical encoding/);
    // Whitespace or reordering is refused too.
    const pretty = signRaw(JSON.parse(text));
    assert.ok(verifyEnvelope(pretty, trusted).ok);
    const spaced = signDsse(IN_TOTO_PAYLOAD_TYPE, Buffer.from(`${text}\n`), alice.privateKey);
    assert.match(reason(verifyEnvelope(spaced, trusted)), /not the canonical encoding/);
    assert.match(
      reason(verifyEnvelope(signDsse(IN_TOTO_PAYLOAD_TYPE, Buffer.from([0xff]), alice.privateKey), trusted)),
      /UTF-8 JSON/,
    );
  });

  void it('parses only what it serialises', () => {
    const bytes = serializeStatement(statementFor());
    const parsed = parseStatement(bytes);
    assert.ok(parsed.ok);
    assert.ok(serializeStatement(parsed.statement).equals(bytes));
    const noName = imageStatement({
      sha256: digest,
      subjectName: 'a.img',
      format: 'raw',
      sizeBytes: 0,
      signedAt: '2026-01-01T00:00:00.000Z',
    });
    assert.equal('imageName' in noName.predicate, false);
    assert.ok(parseStatement(serializeStatement(noName)).ok);
  });
});

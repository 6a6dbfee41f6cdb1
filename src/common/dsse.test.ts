import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import {
  DSSE_MAX_ENVELOPE_BYTES,
  decodeBase64Strict,
  keyIdOf,
  pae,
  parseEnvelope,
  serializeEnvelope,
  signDsse,
  trustedKey,
  verifyDsse,
  type DsseEnvelope,
} from './dsse.js';

const TYPE = 'application/vnd.example+json';
const alice = generateKeyPairSync('ed25519');
const mallory = generateKeyPairSync('ed25519');
const trusted = [trustedKey(alice.publicKey)];

function flipBase64(text: string, index = 0): string {
  const bytes = Buffer.from(text, 'base64');
  bytes[index] = (bytes[index] ?? 0) ^ 0x01;
  return bytes.toString('base64');
}

function reason(result: ReturnType<typeof verifyDsse>): string {
  assert.equal(result.ok, false);
  return result.ok ? '' : result.reason;
}

void describe('dsse', () => {
  void it('encodes PAE like the DSSE spec, with byte lengths', () => {
    assert.equal(
      pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString(),
      'DSSEv1 29 http://example.com/HelloWorld 11 hello world',
    );
    assert.equal(pae('t', Buffer.from('é', 'utf8')).toString('utf8'), 'DSSEv1 1 t 2 é');
  });

  void it('derives the key id from the SPKI DER public key, for the private and the public half', () => {
    const der = alice.publicKey.export({ type: 'spki', format: 'der' });
    const expected = createHash('sha256').update(der).digest('hex');
    assert.equal(keyIdOf(alice.publicKey), expected);
    assert.equal(keyIdOf(alice.privateKey), expected);
    assert.throws(() => trustedKey(alice.privateKey), /Ed25519 public key/);
    assert.throws(() => trustedKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey));
  });

  void it('round-trips: sign, serialise, verify from text, bytes and a parsed object', () => {
    const env = signDsse(TYPE, Buffer.from('{"a":1}'), alice.privateKey);
    assert.equal(env.signatures[0]?.keyid, keyIdOf(alice.publicKey));
    const text = serializeEnvelope(env);
    for (const input of [text, Buffer.from(text), JSON.parse(text) as unknown]) {
      const result = verifyDsse(input, TYPE, trusted);
      assert.ok(result.ok);
      assert.equal(result.keyid, keyIdOf(alice.publicKey));
      assert.equal(result.payload.toString(), '{"a":1}');
    }
  });

  void it('fails on a flipped byte in the payload, the signature or the payload type', () => {
    const env = signDsse(TYPE, Buffer.from('{"a":1}'), alice.privateKey);
    const sig = env.signatures[0]!;
    assert.match(
      reason(verifyDsse({ ...env, payload: flipBase64(env.payload) }, TYPE, trusted)),
      /does not verify/,
    );
    assert.match(
      reason(verifyDsse({ ...env, signatures: [{ ...sig, sig: flipBase64(sig.sig, 10) }] }, TYPE, trusted)),
      /does not verify/,
    );
    // A different type is refused outright, and a signature is bound to its type even if expected.
    const other = 'application/vnd.example+jsoN';
    assert.match(reason(verifyDsse({ ...env, payloadType: other }, TYPE, trusted)), /payloadType must be/);
    assert.match(reason(verifyDsse({ ...env, payloadType: other }, other, trusted)), /does not verify/);
  });

  void it('refuses envelopes signed only by unknown keys, and mislabelled trusted keys', () => {
    const env = signDsse(TYPE, Buffer.from('x'), mallory.privateKey);
    assert.match(reason(verifyDsse(env, TYPE, trusted)), /no signature by a trusted key/);
    assert.match(reason(verifyDsse(env, TYPE, [])), /no signature by a trusted key/);
    // Mallory relabels her own signature with Alice's key id: Alice's key does not verify it.
    const relabelled: DsseEnvelope = {
      ...env,
      signatures: [{ ...env.signatures[0]!, keyid: trusted[0]!.keyid }],
    };
    assert.match(reason(verifyDsse(relabelled, TYPE, trusted)), /does not verify/);
    // A trust entry whose key id is not its key's does not vouch.
    const lying = [{ keyid: keyIdOf(mallory.publicKey), publicKey: alice.publicKey }];
    assert.match(reason(verifyDsse(env, TYPE, lying)), /no signature by a trusted key/);
  });

  void it('accepts a co-signature by an unknown key but not a bad or duplicated trusted one', () => {
    const env = signDsse(TYPE, Buffer.from('x'), alice.privateKey);
    const co = signDsse(TYPE, Buffer.from('x'), mallory.privateKey).signatures[0]!;
    const good = verifyDsse({ ...env, signatures: [co, ...env.signatures] }, TYPE, trusted);
    assert.ok(good.ok);
    const sig = env.signatures[0]!;
    assert.match(
      reason(verifyDsse({ ...env, signatures: [sig, sig] }, TYPE, trusted)),
      /signs more than once/,
    );
  });

  void it('is strict about structure and base64', () => {
    const env = signDsse(TYPE, Buffer.from('hello'), alice.privateKey);
    const sig = env.signatures[0]!;
    const cases: [unknown, RegExp][] = [
      ['not json', /not valid JSON/],
      [[], /exactly payloadType/],
      [{ ...env, extra: 1 }, /exactly payloadType/],
      [{ ...env, signatures: [] }, /no signatures/],
      [{ ...env, signatures: [{ ...sig, extra: 1 }] }, /exactly keyid and sig/],
      [{ ...env, signatures: [{ sig: sig.sig }] }, /exactly keyid and sig/],
      [{ ...env, signatures: [{ ...sig, keyid: sig.keyid.toUpperCase() }] }, /64 lowercase hex/],
      [{ ...env, payload: env.payload.replace(/=+$/, '') }, /canonical base64/],
      [{ ...env, payload: Buffer.from([0xfb, 0xff]).toString('base64url') }, /canonical base64/],
      [{ ...env, signatures: [{ ...sig, sig: sig.sig.slice(4) }] }, /malformed/],
      [{ ...env, signatures: Array.from({ length: 9 }, () => sig) }, /more than 8/],
    ];
    for (const [input, expected] of cases) assert.match(reason(verifyDsse(input, TYPE, trusted)), expected);
    assert.equal(decodeBase64Strict('aGVsbG8=')?.toString(), 'hello');
    assert.equal(decodeBase64Strict('aGVsbG9='), undefined); // non-zero padding bits
    assert.equal(decodeBase64Strict('aGVs bG8='), undefined);
    assert.equal(decodeBase64Strict('aGVsbG8'), undefined);
  });

  void it(`refuses envelopes over ${DSSE_MAX_ENVELOPE_BYTES} bytes before parsing them`, () => {
    const env = signDsse(TYPE, Buffer.alloc(DSSE_MAX_ENVELOPE_BYTES), alice.privateKey);
    assert.match(reason(verifyDsse(serializeEnvelope(env), TYPE, trusted)), /larger than 65536 bytes/);
    assert.match(reason(verifyDsse(env, TYPE, trusted)), /larger than 65536 bytes/);
    assert.ok(parseEnvelope(serializeEnvelope(signDsse(TYPE, Buffer.alloc(1024), alice.privateKey))).ok);
  });
});

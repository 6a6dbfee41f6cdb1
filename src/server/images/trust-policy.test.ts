import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { serializeEnvelope, trustedKey } from '../../common/dsse.js';
import { imageStatement, signStatement } from '../../common/in-toto.js';
import { DEFAULT_TRUST_POLICY, evaluateTrust, type TrustPolicyRules } from './trust-policy.js';

const alice = generateKeyPairSync('ed25519');
const mallory = generateKeyPairSync('ed25519');
const trusted = [trustedKey(alice.publicKey)];
const digest = createHash('sha256').update('pretend this is an image').digest('hex');
const otherDigest = createHash('sha256').update('another image').digest('hex');

function envelopeFor(sha256: string, privateKey = alice.privateKey) {
  return signStatement(
    imageStatement({
      sha256,
      subjectName: 'app',
      imageName: 'app',
      format: 'raw',
      sizeBytes: 1024,
      signedAt: new Date().toISOString(),
    }),
    privateKey,
  );
}

const on: TrustPolicyRules = { requireSignatures: true, acceptPlatformImages: true };
const strict: TrustPolicyRules = { requireSignatures: true, acceptPlatformImages: false };
const off: TrustPolicyRules = { requireSignatures: false, acceptPlatformImages: true };
const tenantImage = (signatureEnvelope?: unknown) => ({ tenantId: 't1', sha256: digest, signatureEnvelope });

void describe('evaluateTrust', () => {
  void it('defaults to requiring signatures and accepting platform images', () => {
    assert.deepEqual({ ...DEFAULT_TRUST_POLICY }, on);
  });

  void it('accepts platform images when the policy accepts them, signed or not', () => {
    const decision = evaluateTrust(on, { tenantId: null, sha256: digest }, []);
    assert.equal(decision.allowed, true);
    assert.match(decision.reason, /platform/);
  });

  void it('refuses an unsigned platform image when platform images are not accepted', () => {
    const decision = evaluateTrust(strict, { tenantId: null, sha256: digest }, trusted);
    assert.equal(decision.allowed, false);
    assert.match(decision.reason, /not signed/);
  });

  void it('accepts a platform image signed by a trusted key even when platform images are not accepted', () => {
    const decision = evaluateTrust(
      strict,
      { tenantId: null, sha256: digest, signatureEnvelope: envelopeFor(digest) },
      trusted,
    );
    assert.equal(decision.allowed, true);
  });

  void it('accepts a valid signature by a trusted key (parsed or serialised envelope)', () => {
    const envelope = envelopeFor(digest);
    for (const form of [envelope, serializeEnvelope(envelope)]) {
      const decision = evaluateTrust(on, tenantImage(form), trusted);
      assert.equal(decision.allowed, true, decision.reason);
      assert.equal(decision.reason, `signed by trusted key ${trusted[0]!.keyid}`);
    }
  });

  void it('refuses an unsigned tenant image when signatures are required', () => {
    const decision = evaluateTrust(on, tenantImage(), trusted);
    assert.deepEqual(decision, {
      allowed: false,
      reason: 'signatures are required and the image is not signed',
    });
  });

  void it('refuses a signature by an untrusted key', () => {
    const decision = evaluateTrust(on, tenantImage(envelopeFor(digest, mallory.privateKey)), trusted);
    assert.equal(decision.allowed, false);
    assert.match(decision.reason, /signature is not valid/);
  });

  void it('refuses when the tenant trusts no keys at all', () => {
    const decision = evaluateTrust(on, tenantImage(envelopeFor(digest)), []);
    assert.equal(decision.allowed, false);
    assert.match(decision.reason, /trusts no signing keys/);
  });

  void it('refuses a valid signature moved onto another image', () => {
    const decision = evaluateTrust(
      on,
      { tenantId: 't1', sha256: otherDigest, signatureEnvelope: envelopeFor(digest) },
      trusted,
    );
    assert.equal(decision.allowed, false);
    assert.match(decision.reason, new RegExp(`for sha256:${digest}, not this image`));
  });

  void it('refuses a tampered envelope (one flipped character in the signature or payload)', () => {
    const envelope = envelopeFor(digest);
    const sig = envelope.signatures[0]!.sig;
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    const badSig = { ...envelope, signatures: [{ ...envelope.signatures[0]!, sig: flip(sig, 5) }] };
    const badPayload = { ...envelope, payload: flip(envelope.payload, 40) };
    for (const bad of [badSig, badPayload, 'not json', { payloadType: 'x' }]) {
      const decision = evaluateTrust(on, tenantImage(bad), trusted);
      assert.equal(decision.allowed, false, JSON.stringify(bad));
    }
  });

  void it('accepts unsigned or badly signed images when signatures are not required, saying why', () => {
    const unsigned = evaluateTrust(off, tenantImage(), []);
    assert.equal(unsigned.allowed, true);
    assert.match(unsigned.reason, /not required.*not signed/);
    const untrusted = evaluateTrust(off, tenantImage(envelopeFor(digest, mallory.privateKey)), trusted);
    assert.equal(untrusted.allowed, true);
    assert.match(untrusted.reason, /not required.*not valid/);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { serializeEnvelope, trustedKey } from './dsse.js';
import { imageStatement, signStatement } from './in-toto.js';
import {
  DEFAULT_TRUST_POLICY,
  evaluateImageTrust,
  evaluateTrust,
  type TrustPolicyRules,
} from './trust-policy.js';

const alice = generateKeyPairSync('ed25519');
const mallory = generateKeyPairSync('ed25519');
const platform = generateKeyPairSync('ed25519');
const trusted = [trustedKey(alice.publicKey)];
const platformKeys = [trustedKey(platform.publicKey)];
const digest = createHash('sha256').update('pretend this is an image').digest('hex');
const otherDigest = createHash('sha256').update('another image').digest('hex');

function envelopeFor(sha256: string, privateKey: KeyObject = alice.privateKey) {
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

const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);

const on: TrustPolicyRules = { requireSignatures: true, acceptPlatformImages: true };
const strict: TrustPolicyRules = { requireSignatures: true, acceptPlatformImages: false };
const off: TrustPolicyRules = { requireSignatures: false, acceptPlatformImages: true };
const tenantImage = (signatureEnvelope?: unknown) => ({ tenantId: 't1', sha256: digest, signatureEnvelope });
const platformImage = (platformSignature?: unknown, signatureEnvelope?: unknown) => ({
  tenantId: null,
  sha256: digest,
  platformSignature,
  signatureEnvelope,
});
const platformSigned = serializeEnvelope(envelopeFor(digest, platform.privateKey));

void describe('evaluateTrust', () => {
  void it('defaults to requiring signatures and accepting platform images', () => {
    assert.deepEqual({ ...DEFAULT_TRUST_POLICY }, on);
  });

  void it('accepts a platform image with a valid platform signature when the policy accepts those', () => {
    for (const form of [platformSigned, JSON.parse(platformSigned) as unknown]) {
      const decision = evaluateTrust(on, platformImage(form), [], platformKeys);
      assert.equal(decision.allowed, true, decision.reason);
      assert.equal(
        decision.reason,
        `a platform-published image signed by platform key ${platformKeys[0]!.keyid}, and the policy accepts those`,
      );
    }
  });

  void it('refuses a platform image without a platform signature when signatures are required', () => {
    const decision = evaluateTrust(on, platformImage(), trusted, platformKeys);
    assert.deepEqual(decision, {
      allowed: false,
      reason:
        'signatures are required and the image is not signed; the platform image has no platform signature',
    });
  });

  void it('refuses a platform image when no platform key is known', () => {
    const decision = evaluateTrust(on, platformImage(platformSigned), trusted, []);
    assert.equal(decision.allowed, false);
    assert.match(decision.reason, /no platform signing key is known/);
  });

  void it('refuses a platform image whose platform signature is tampered, moved or by another key', () => {
    const envelope = envelopeFor(digest, platform.privateKey);
    const sig = envelope.signatures[0]!.sig;
    const badSig = { ...envelope, signatures: [{ ...envelope.signatures[0]!, sig: flip(sig, 5) }] };
    const cases: [unknown, RegExp][] = [
      [badSig, /the platform signature is not valid: signature by key [0-9a-f]{64} does not verify/],
      [
        envelopeFor(otherDigest, platform.privateKey),
        /the platform signature is not valid: .*not this image/,
      ],
      [
        envelopeFor(digest, mallory.privateKey),
        /the platform signature is not valid: no signature by a trusted key/,
      ],
      // A tenant-trusted key is not a platform key.
      [envelopeFor(digest), /the platform signature is not valid: no signature by a trusted key/],
      ['not json', /the platform signature is not valid: envelope is not valid JSON/],
    ];
    for (const [bad, reason] of cases) {
      const decision = evaluateTrust(on, platformImage(bad), trusted, platformKeys);
      assert.equal(decision.allowed, false, JSON.stringify(bad));
      assert.match(decision.reason, reason);
      assert.match(decision.reason, /^signatures are required and the image is not signed; /);
    }
  });

  void it('does not look at the platform signature of a tenant image', () => {
    const decision = evaluateTrust(
      on,
      { ...tenantImage(), platformSignature: platformSigned },
      [],
      platformKeys,
    );
    assert.deepEqual(decision, {
      allowed: false,
      reason: 'signatures are required and the image is not signed',
    });
  });

  void it('refuses a platform-signed platform image when platform images are not accepted', () => {
    const decision = evaluateTrust(strict, platformImage(platformSigned), trusted, platformKeys);
    assert.equal(decision.allowed, false);
    assert.equal(decision.reason, 'signatures are required and the image is not signed');
  });

  void it('accepts a platform image when the tenant trusts the platform key itself', () => {
    const trustsPlatform = [...trusted, ...platformKeys];
    for (const policy of [on, strict]) {
      const decision = evaluateTrust(
        policy,
        platformImage(undefined, platformSigned),
        trustsPlatform,
        platformKeys,
      );
      assert.equal(decision.allowed, true, decision.reason);
      assert.equal(decision.reason, `signed by trusted key ${platformKeys[0]!.keyid}`);
    }
  });

  void it('accepts a platform image signed by a trusted key even when platform images are not accepted', () => {
    const decision = evaluateTrust(
      strict,
      platformImage(undefined, envelopeFor(digest)),
      trusted,
      platformKeys,
    );
    assert.equal(decision.allowed, true);
  });

  void it('accepts an unsigned platform image when signatures are not required, saying why', () => {
    const decision = evaluateTrust(off, platformImage(), [], platformKeys);
    assert.equal(decision.allowed, true);
    assert.equal(
      decision.reason,
      "signatures are not required by the tenant's policy " +
        '(the image is not signed; the platform image has no platform signature)',
    );
  });

  void it('accepts a valid signature by a trusted key (parsed or serialised envelope)', () => {
    const envelope = envelopeFor(digest);
    for (const form of [envelope, serializeEnvelope(envelope)]) {
      const decision = evaluateTrust(on, tenantImage(form), trusted, platformKeys);
      assert.equal(decision.allowed, true, decision.reason);
      assert.equal(decision.reason, `signed by trusted key ${trusted[0]!.keyid}`);
    }
  });

  void it('refuses an unsigned tenant image when signatures are required', () => {
    const decision = evaluateTrust(on, tenantImage(), trusted, platformKeys);
    assert.deepEqual(decision, {
      allowed: false,
      reason: 'signatures are required and the image is not signed',
    });
  });

  void it('refuses a signature by an untrusted key', () => {
    const decision = evaluateTrust(on, tenantImage(envelopeFor(digest, mallory.privateKey)), trusted, []);
    assert.equal(decision.allowed, false);
    assert.match(decision.reason, /signature is not valid/);
  });

  void it('refuses a tenant image signed only by the platform key when the tenant does not trust it', () => {
    const decision = evaluateTrust(on, tenantImage(platformSigned), trusted, platformKeys);
    assert.equal(decision.allowed, false);
    assert.match(decision.reason, /signature is not valid: no signature by a trusted key/);
  });

  void it('refuses when the tenant trusts no keys at all', () => {
    const decision = evaluateTrust(on, tenantImage(envelopeFor(digest)), [], platformKeys);
    assert.equal(decision.allowed, false);
    assert.match(decision.reason, /trusts no signing keys/);
  });

  void it('refuses a valid signature moved onto another image', () => {
    const decision = evaluateTrust(
      on,
      { tenantId: 't1', sha256: otherDigest, signatureEnvelope: envelopeFor(digest) },
      trusted,
      platformKeys,
    );
    assert.equal(decision.allowed, false);
    assert.match(decision.reason, new RegExp(`for sha256:${digest}, not this image`));
  });

  void it('refuses a tampered envelope (one flipped character in the signature or payload)', () => {
    const envelope = envelopeFor(digest);
    const sig = envelope.signatures[0]!.sig;
    const badSig = { ...envelope, signatures: [{ ...envelope.signatures[0]!, sig: flip(sig, 5) }] };
    const badPayload = { ...envelope, payload: flip(envelope.payload, 40) };
    for (const bad of [badSig, badPayload, 'not json', { payloadType: 'x' }]) {
      const decision = evaluateTrust(on, tenantImage(bad), trusted, platformKeys);
      assert.equal(decision.allowed, false, JSON.stringify(bad));
    }
  });

  void it('accepts unsigned or badly signed images when signatures are not required, saying why', () => {
    const unsigned = evaluateTrust(off, tenantImage(), [], []);
    assert.equal(unsigned.allowed, true);
    assert.match(unsigned.reason, /not required.*not signed/);
    const untrusted = evaluateTrust(off, tenantImage(envelopeFor(digest, mallory.privateKey)), trusted, []);
    assert.equal(untrusted.allowed, true);
    assert.match(untrusted.reason, /not required.*not valid/);
  });
});

void describe('evaluateImageTrust', () => {
  void it('judges an image without attestations as unsigned', () => {
    const decision = evaluateImageTrust(on, { tenantId: 't1', sha256: digest }, [], trusted, platformKeys);
    assert.deepEqual(decision, {
      allowed: false,
      reason: 'signatures are required and the image is not signed',
    });
  });

  void it('lets any attestation by a trusted key win over invalid ones', () => {
    const bad = envelopeFor(digest, mallory.privateKey);
    const good = envelopeFor(digest);
    const decision = evaluateImageTrust(on, { tenantId: 't1', sha256: digest }, [bad, good], trusted, []);
    assert.equal(decision.reason, `signed by trusted key ${trusted[0]!.keyid}`);
  });

  void it('accepts a platform image on its platform signature whatever its attestations', () => {
    for (const attestation of [envelopeFor(digest), envelopeFor(digest, mallory.privateKey)]) {
      const decision = evaluateImageTrust(
        on,
        { tenantId: null, sha256: digest, platformSignature: platformSigned },
        [attestation],
        trusted,
        platformKeys,
      );
      assert.equal(decision.allowed, true);
      assert.match(decision.reason, /^a platform-published image signed by platform key/);
    }
  });

  void it('accepts a platform image with a bad platform signature on a trusted attestation', () => {
    const decision = evaluateImageTrust(
      on,
      { tenantId: null, sha256: digest, platformSignature: 'not json' },
      [envelopeFor(digest, mallory.privateKey), envelopeFor(digest)],
      trusted,
      platformKeys,
    );
    assert.equal(decision.reason, `signed by trusted key ${trusted[0]!.keyid}`);
  });

  void it('answers the first refusal when nothing vouches', () => {
    const decision = evaluateImageTrust(
      on,
      { tenantId: 't1', sha256: digest },
      [envelopeFor(otherDigest), envelopeFor(digest, mallory.privateKey)],
      trusted,
      platformKeys,
    );
    assert.equal(decision.allowed, false);
    assert.match(decision.reason, /not this image/);
  });
});

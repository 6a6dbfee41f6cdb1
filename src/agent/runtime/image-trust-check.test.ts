import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import { Compile } from 'typebox/compile';
import {
  ImageTrustMaterial as ImageTrustMaterialSchema,
  type ImageTrustKey,
  type ImageTrustMaterial,
  type VmIntent,
} from '../../api/agent-protocol.js';
import { keyIdOf, serializeEnvelope } from '../../common/dsse.js';
import { imageStatement, signStatement } from '../../common/in-toto.js';
import { checkImageTrustOnAgent, imageTrustDecisionOnAgent } from './image-trust-check.js';

const platform = generateKeyPairSync('ed25519');
const alice = generateKeyPairSync('ed25519');
const mallory = generateKeyPairSync('ed25519');
const digest = createHash('sha256').update('a bundle').digest('hex');
const otherDigest = createHash('sha256').update('another bundle').digest('hex');

function keyOf(publicKey: KeyObject): ImageTrustKey {
  return {
    keyid: keyIdOf(publicKey),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

function envelope(sha256: string, privateKey: KeyObject): string {
  const statement = imageStatement({
    sha256,
    subjectName: 'tiny',
    imageName: 'tiny',
    format: 'kernel-initrd',
    sizeBytes: 1,
    signedAt: new Date().toISOString(),
  });
  return serializeEnvelope(signStatement(statement, privateKey));
}

const material = (over: Partial<ImageTrustMaterial> = {}): ImageTrustMaterial => ({
  rules: { requireSignatures: true, acceptPlatformImages: true },
  trustedKeys: [keyOf(alice.publicKey)],
  attestations: [],
  platformKeys: [keyOf(platform.publicKey)],
  platformSignature: null,
  platformImage: false,
  ...over,
});

function imageWith(trust?: ImageTrustMaterial): VmIntent['image'] {
  // An intent without trust material cannot pass the schema; the agent must still fail closed on it.
  return {
    format: 'kernel-initrd',
    sha256: digest,
    kernelPath: '/images/k',
    initrdPath: '/images/i',
    kernelSha256: '0'.repeat(64),
    initrdSha256: '1'.repeat(64),
    ...(trust === undefined ? {} : { trust }),
  } as VmIntent['image'];
}

function flipSignatureByte(text: string): string {
  const parsed = JSON.parse(text) as { signatures: { sig: string }[] };
  const sig = Buffer.from(parsed.signatures[0]!.sig, 'base64');
  sig[10]! ^= 0x01;
  parsed.signatures[0]!.sig = sig.toString('base64');
  return JSON.stringify(parsed);
}

void describe('checkImageTrustOnAgent', () => {
  void it('fails closed without trust material', () => {
    assert.equal(checkImageTrustOnAgent(imageWith()), 'image trust material missing from the intent');
  });

  void it('passes a platform image with a valid platform signature', () => {
    const trust = material({ platformImage: true, platformSignature: envelope(digest, platform.privateKey) });
    assert.equal(checkImageTrustOnAgent(imageWith(trust)), null);
    assert.match(
      imageTrustDecisionOnAgent(imageWith(trust)).reason,
      /^a platform-published image signed by platform key/,
    );
  });

  void it('refuses a platform image whose platform signature has a flipped byte', () => {
    const trust = material({
      platformImage: true,
      platformSignature: flipSignatureByte(envelope(digest, platform.privateKey)),
    });
    assert.match(
      checkImageTrustOnAgent(imageWith(trust)) ?? '',
      /^image trust check failed on the host: signatures are required and the image is not signed; the platform signature is not valid: signature by key [0-9a-f]{64} does not verify$/,
    );
  });

  void it('refuses a platform image without a platform signature, or signed for another digest', () => {
    for (const platformSignature of [null, envelope(otherDigest, platform.privateKey)]) {
      const problem = checkImageTrustOnAgent(imageWith(material({ platformImage: true, platformSignature })));
      assert.match(problem ?? '', /^image trust check failed on the host: .*platform/);
    }
  });

  void it('does not accept a platform signature on a tenant image', () => {
    const trust = material({ platformSignature: envelope(digest, platform.privateKey) });
    assert.equal(
      checkImageTrustOnAgent(imageWith(trust)),
      'image trust check failed on the host: signatures are required and the image is not signed',
    );
  });

  void it('passes a tenant image with an attestation by a trusted key (among invalid ones)', () => {
    const trust = material({
      attestations: [envelope(digest, mallory.privateKey), envelope(digest, alice.privateKey)],
    });
    assert.equal(checkImageTrustOnAgent(imageWith(trust)), null);
    assert.equal(
      imageTrustDecisionOnAgent(imageWith(trust)).reason,
      `signed by trusted key ${keyIdOf(alice.publicKey)}`,
    );
  });

  void it('refuses an attestation for another digest (a moved signature)', () => {
    const trust = material({ attestations: [envelope(otherDigest, alice.privateKey)] });
    assert.match(
      checkImageTrustOnAgent(imageWith(trust)) ?? '',
      new RegExp(
        `^image trust check failed on the host: .*the signature is for sha256:${otherDigest}, not this image`,
      ),
    );
  });

  void it('refuses an attestation by an untrusted signer', () => {
    const trust = material({ attestations: [envelope(digest, mallory.privateKey)] });
    assert.match(checkImageTrustOnAgent(imageWith(trust)) ?? '', /no signature by a trusted key/);
  });

  void it('passes anything when the policy does not require signatures, saying why', () => {
    const trust = material({ rules: { requireSignatures: false, acceptPlatformImages: true } });
    assert.equal(checkImageTrustOnAgent(imageWith(trust)), null);
    const decision = imageTrustDecisionOnAgent(imageWith(trust));
    assert.equal(decision.allowed, true);
    assert.equal(
      decision.reason,
      "signatures are not required by the tenant's policy (the image is not signed)",
    );
  });

  void it('refuses malformed key material', () => {
    const wrongId = material({
      trustedKeys: [{ ...keyOf(alice.publicKey), keyid: keyIdOf(mallory.publicKey) }],
    });
    assert.match(checkImageTrustOnAgent(imageWith(wrongId)) ?? '', /does not match its key id/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    const notEd = material({
      platformKeys: [
        { keyid: '0'.repeat(64), publicKeyPem: rsa.export({ type: 'spki', format: 'pem' }).toString() },
      ],
    });
    assert.match(
      checkImageTrustOnAgent(imageWith(notEd)) ?? '',
      /a platform key is not an Ed25519 public key/,
    );
    const priv = material({
      trustedKeys: [
        {
          keyid: keyIdOf(alice.publicKey),
          publicKeyPem: alice.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        },
      ],
    });
    assert.match(checkImageTrustOnAgent(imageWith(priv)) ?? '', /a trusted key is not a public key PEM/);
    const garbage = material({
      trustedKeys: [
        {
          keyid: '0'.repeat(64),
          publicKeyPem: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
        },
      ],
    });
    assert.match(
      checkImageTrustOnAgent(imageWith(garbage)) ?? '',
      /a trusted key is not a valid public key PEM/,
    );
  });

  void it('has a bounded protocol schema', () => {
    const check = Compile(ImageTrustMaterialSchema);
    const attestation = envelope(digest, alice.privateKey);
    assert.equal(check.Check(material({ attestations: [attestation] })), true);
    assert.equal(check.Check(material({ attestations: Array<string>(17).fill(attestation) })), false);
    assert.equal(check.Check(material({ platformSignature: 'x'.repeat(64 * 1024 + 1) })), false);
    const key = keyOf(alice.publicKey);
    assert.equal(check.Check(material({ trustedKeys: Array<ImageTrustKey>(33).fill(key) })), false);
    assert.equal(check.Check(material({ trustedKeys: [{ ...key, publicKeyPem: 'x'.repeat(4097) }] })), false);
    assert.equal(check.Check({ ...material(), extra: 1 }), false);
  });
});

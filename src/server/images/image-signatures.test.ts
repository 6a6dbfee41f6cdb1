/**
 * checkImageTrust (the server's decision) and imageTrustMaterial + checkImageTrustOnAgent (the agent's,
 * from the intent) on a real SQLite database: they agree, and the platform rule needs a platform signature.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { VmIntent } from '../../api/agent-protocol.js';
import { serializeEnvelope, type TrustedKey } from '../../common/dsse.js';
import { imageStatement, signStatement } from '../../common/in-toto.js';
import { imageTrustDecisionOnAgent } from '../../agent/runtime/image-trust-check.js';
import { openDatabase, type Db } from '../store/database.js';
import type { ImagesTable } from '../store/schema.js';
import { attachSignature, checkImageTrust, imageTrustMaterial } from './image-signatures.js';
import { PlatformSigner } from './platform-signer.js';
import { addTrustedKey, updateTrustPolicy } from './trust-store.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-image-trust-'));
after(() => rmSync(root, { recursive: true, force: true }));

const alice = generateKeyPairSync('ed25519');
const pem = (key: KeyObject) => key.export({ type: 'spki', format: 'pem' }).toString();

function sign(sha256: string, privateKey: KeyObject): string {
  const statement = imageStatement({
    sha256,
    subjectName: 'img',
    format: 'kernel-initrd',
    sizeBytes: 1,
    signedAt: new Date().toISOString(),
  });
  return serializeEnvelope(signStatement(statement, privateKey));
}

function imageRow(id: string, tenantId: string | null, platformSignature: string | null = null): ImagesTable {
  const sha256 = createHash('sha256').update(id).digest('hex');
  return {
    id,
    name: id,
    format: 'kernel-initrd',
    sha256,
    sizeBytes: 1,
    kernelPath: '',
    initrdPath: '',
    kernelSha256: '0'.repeat(64),
    initrdSha256: '1'.repeat(64),
    description: '',
    createdAt: new Date().toISOString(),
    tenantId,
    visibility: 'public',
    status: 'active',
    statusReason: '',
    diskSha256: null,
    scanVerdict: null,
    scanSignatures: '[]',
    scanEngine: null,
    scanDatabase: null,
    scannedAt: null,
    platformSignature,
  };
}

function agentImage(image: ImagesTable, trust: VmIntent['image']['trust']): VmIntent['image'] {
  return {
    format: 'kernel-initrd',
    sha256: image.sha256,
    kernelPath: '/k',
    initrdPath: '/i',
    kernelSha256: image.kernelSha256,
    initrdSha256: image.initrdSha256,
    trust,
  };
}

let db: Db;
let signer: PlatformSigner;
let platformKeys: TrustedKey[];

/** The server's and the agent's decisions for `tenant`, which must agree. */
async function decide(image: ImagesTable, tenant: string, keys: readonly TrustedKey[] = platformKeys) {
  const server = await checkImageTrust(db, image, tenant, keys);
  const agent = imageTrustDecisionOnAgent(
    agentImage(image, await imageTrustMaterial(db, image, tenant, keys)),
  );
  assert.equal(agent.allowed, server.allowed, `server: ${server.reason}; agent: ${agent.reason}`);
  if (server.allowed) assert.equal(agent.reason, server.reason);
  else assert.equal(agent.reason, `image trust check failed on the host: ${server.reason}`);
  return server;
}

before(async () => {
  db = await openDatabase(join(root, 'db.sqlite'));
  signer = PlatformSigner.load(root);
  platformKeys = [signer.trustedKey()];
  for (const id of ['acme', 'lax', 'many'])
    await db
      .insertInto('tenants')
      .values({
        id,
        name: id,
        requireMfaForAdmins: 0,
        allowNestedVirtualization: 0,
        dedicatedHosts: 0,
        createdAt: new Date().toISOString(),
      })
      .execute();
  await addTrustedKey(db, 'acme', { name: 'alice', publicKeyPem: pem(alice.publicKey) });
  await updateTrustPolicy(db, 'lax', { requireSignatures: false });
});
after(async () => {
  await db.destroy();
});

void describe('image trust on the server and the agent', () => {
  void it('a platform image with a valid platform signature is accepted', async () => {
    const base = imageRow('platform-good', null);
    const image = { ...base, platformSignature: signer.signImage({ ...base, sizeBytes: 1 }) };
    await db.insertInto('images').values(image).execute();
    const decision = await decide(image, 'acme');
    assert.equal(decision.allowed, true);
    assert.match(decision.reason, new RegExp(`signed by platform key ${signer.keyid}`));
    const material = await imageTrustMaterial(db, image, 'acme', platformKeys);
    assert.deepEqual(material.platformKeys, [{ keyid: signer.keyid, publicKeyPem: signer.publicKeyPem }]);
    assert.equal(material.platformImage, true);
    assert.equal(material.platformSignature, image.platformSignature);
    // Without the platform keys, the platform signature vouches for nothing.
    const unwired = await checkImageTrust(db, image, 'acme', []);
    assert.equal(unwired.allowed, false);
    assert.match(unwired.reason, /no platform signing key is known/);
  });

  void it('a platform image without, or with a moved, platform signature is refused unless the policy is off', async () => {
    const unsigned = imageRow('platform-unsigned', null);
    const other = imageRow('platform-other', null);
    const moved = { ...other, platformSignature: signer.signImage({ ...unsigned, sizeBytes: 1 }) };
    for (const image of [unsigned, moved]) {
      await db.insertInto('images').values(image).execute();
      const decision = await decide(image, 'acme');
      assert.equal(decision.allowed, false);
      assert.match(decision.reason, /platform/);
      assert.equal((await decide(image, 'lax')).allowed, true);
    }
  });

  void it('a tenant image with a trusted attestation is accepted; one for another digest is refused', async () => {
    const image = imageRow('tenant-signed', 'acme');
    await db.insertInto('images').values(image).execute();
    assert.equal((await decide(image, 'acme')).allowed, false);
    await attachSignature(db, image, 'acme', sign(image.sha256, alice.privateKey));
    const decision = await decide(image, 'acme');
    assert.equal(decision.allowed, true);
    assert.match(decision.reason, /^signed by trusted key/);
    const material = await imageTrustMaterial(db, image, 'acme', platformKeys);
    assert.equal(material.attestations.length, 1);
    assert.equal(material.trustedKeys.length, 1);
    assert.equal(material.platformImage, false);
    // The agent re-checks against the digest of the bytes at hand: another image's digest fails.
    const elsewhere = agentImage(
      { ...image, sha256: createHash('sha256').update('x').digest('hex') },
      material,
    );
    assert.match(imageTrustDecisionOnAgent(elsewhere).reason, /not this image/);
  });

  void it('beyond the protocol bounds, only the keys that sign an attestation are sent', async () => {
    const image = imageRow('tenant-many', 'many');
    await db.insertInto('images').values(image).execute();
    const keys = Array.from({ length: 40 }, () => generateKeyPairSync('ed25519'));
    for (const [i, key] of keys.entries())
      await addTrustedKey(db, 'many', { name: `k${i}`, publicKeyPem: pem(key.publicKey) });
    await attachSignature(db, image, 'many', sign(image.sha256, keys[7]!.privateKey));
    const material = await imageTrustMaterial(db, image, 'many', platformKeys);
    assert.equal(material.trustedKeys.length, 1);
    assert.equal((await decide(image, 'many')).allowed, true);
  });
});

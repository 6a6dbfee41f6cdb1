/**
 * Image signatures as attestations, enforced at VM create and start (issue 5), against the real server:
 * a tenant that does not accept platform images unsigned is refused the `tiny` image
 * (RAMPART_UNTRUSTED_IMAGE) until it attaches a signature over tiny's sha256 by a key it trusts;
 * signatures over another digest or by an untrusted key are refused when attached; another tenant's
 * attestation never counts; removing the attestation is honoured at the next start; turning the
 * requirement off (audited) lets the image through again.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { AuditRecordView } from '../src/api/audit.js';
import type { Image, ImageSignature } from '../src/api/image.js';
import type { TrustPolicy, TrustedKey } from '../src/api/trust.js';
import type { Vm } from '../src/api/vm.js';
import type { DsseEnvelope } from '../src/common/dsse.js';
import { keyIdOf } from '../src/common/dsse.js';
import { imageStatement, signStatement } from '../src/common/in-toto.js';
import { RampartHarness } from './helpers/rampart-harness.js';

type ErrorAnswer = { error: { code: string; message: string } };

let harness: RampartHarness;
let tiny: Image;
const signer = generateKeyPairSync('ed25519');
const stranger = generateKeyPairSync('ed25519');

function sign(sha256: string, privateKey: KeyObject): DsseEnvelope {
  return signStatement(
    imageStatement({
      sha256,
      subjectName: 'tiny',
      imageName: 'tiny',
      format: 'kernel-initrd',
      sizeBytes: tiny.sizeBytes,
      signedAt: new Date().toISOString(),
    }),
    privateKey,
  );
}

async function trust(tenant: string, name: string, publicKey: KeyObject): Promise<TrustedKey> {
  const added = await harness.api<TrustedKey>('POST', `/v1/trusted-keys?tenant=${tenant}`, {
    name,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  });
  assert.equal(added.status, 201, JSON.stringify(added.body));
  return added.body;
}

const attach = (tenant: string, envelope: unknown) =>
  harness.api<ImageSignature & ErrorAnswer>('POST', `/v1/images/tiny/signatures?tenant=${tenant}`, {
    envelope,
  });
const createVm = (name: string) =>
  harness.api<Vm & ErrorAnswer>('POST', '/v1/vms?tenant=signed', {
    name,
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });

before(async () => {
  harness = await RampartHarness.start();
  for (const name of ['signed', 'other']) {
    const created = await harness.api('POST', '/v1/tenants', { name });
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
  const image = await harness.api<Image>('GET', '/v1/images/tiny?tenant=signed');
  assert.equal(image.status, 200, JSON.stringify(image.body));
  tiny = image.body;
  const policy = await harness.api<TrustPolicy>('PUT', '/v1/tenants/signed/trust-policy', {
    acceptPlatformImages: false,
  });
  assert.equal(policy.status, 200, JSON.stringify(policy.body));
  assert.equal(policy.body.requireSignatures, true);
});

after(async () => {
  await harness?.cleanup();
});

test('unsigned: tiny is refused with RAMPART_UNTRUSTED_IMAGE; other tenants are unaffected', async () => {
  const refused = await createVm('unsigned');
  assert.equal(refused.status, 403, JSON.stringify(refused.body));
  assert.equal(refused.body.error.code, 'RAMPART_UNTRUSTED_IMAGE');
  assert.match(refused.body.error.message, /signatures are required and the image is not signed/);
  const vms = await harness.api<{ items: Vm[] }>('GET', '/v1/vms?tenant=signed');
  assert.deepEqual(vms.body.items, []);
  // The default policy still accepts the platform image.
  const elsewhere = await harness.api<Vm>('POST', '/v1/vms?tenant=other', {
    name: 'plain',
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(elsewhere.status, 201, JSON.stringify(elsewhere.body));
});

test("another tenant's attestation does not count", async () => {
  await trust('other', 'release', signer.publicKey);
  const attached = await attach('other', sign(tiny.sha256!, signer.privateKey));
  assert.equal(attached.status, 201, JSON.stringify(attached.body));
  assert.equal(attached.body.keyid, keyIdOf(signer.publicKey));
  assert.equal(attached.body.keyName, 'release');

  // Even once `signed` trusts the very same key, only its own attestations vouch for it.
  await trust('signed', 'release', signer.publicKey);
  const list = await harness.api<{ items: ImageSignature[] }>(
    'GET',
    '/v1/images/tiny/signatures?tenant=signed',
  );
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.items, []);
  const refused = await createVm('borrowed');
  assert.equal(refused.status, 403, JSON.stringify(refused.body));
  assert.equal(refused.body.error.code, 'RAMPART_UNTRUSTED_IMAGE');
  // And `signed` cannot delete `other`'s attestation.
  const foreign = await harness.api('DELETE', `/v1/images/tiny/signatures/${attached.body.id}?tenant=signed`);
  assert.equal(foreign.status, 404);
});

test('a signature over another digest or by an untrusted key is refused when attached', async () => {
  const otherDigest = await attach('signed', sign('0'.repeat(64), signer.privateKey));
  assert.equal(otherDigest.status, 400, JSON.stringify(otherDigest.body));
  assert.match(otherDigest.body.error.message, /the signature is for another image/);

  const untrusted = await attach('signed', sign(tiny.sha256!, stranger.privateKey));
  assert.equal(untrusted.status, 400, JSON.stringify(untrusted.body));
  assert.match(untrusted.body.error.message, /signature does not verify with any trusted key/);

  // A tampered payload does not verify either.
  const good = sign(tiny.sha256!, signer.privateKey);
  const tampered = { ...good, payload: Buffer.from('{}').toString('base64') };
  const bad = await attach('signed', tampered);
  assert.equal(bad.status, 400, JSON.stringify(bad.body));
  assert.match(bad.body.error.message, /does not verify/);

  const malformed = await attach('signed', { payloadType: 'x', payload: 'x', signatures: [] });
  assert.equal(malformed.status, 400);

  const absent = await harness.api('POST', '/v1/images/no-such-image/signatures?tenant=signed', {
    envelope: good,
  });
  assert.equal(absent.status, 404);

  const list = await harness.api<{ items: ImageSignature[] }>(
    'GET',
    '/v1/images/tiny/signatures?tenant=signed',
  );
  assert.deepEqual(list.body.items, []);
});

let attestation: ImageSignature;

test('signed by a trusted key: create works; the same key twice is a conflict', async () => {
  const attached = await attach('signed', sign(tiny.sha256!, signer.privateKey));
  assert.equal(attached.status, 201, JSON.stringify(attached.body));
  attestation = attached.body;
  const again = await attach('signed', sign(tiny.sha256!, signer.privateKey));
  assert.equal(again.status, 409);

  const list = await harness.api<{ items: ImageSignature[] }>(
    'GET',
    '/v1/images/tiny/signatures?tenant=signed',
  );
  assert.equal(list.body.items.length, 1);
  assert.equal(list.body.items[0]?.keyName, 'release');
  assert.equal(list.body.items[0]?.keyid, keyIdOf(signer.publicKey));

  const created = await createVm('signed-vm');
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.state, 'stopped');
});

test('the attestation deleted: create and start are refused; requirement off (audited): allowed', async () => {
  const removed = await harness.api('DELETE', `/v1/images/tiny/signatures/${attestation.id}?tenant=signed`);
  assert.equal(removed.status, 204);
  const refused = await createVm('after-delete');
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error.code, 'RAMPART_UNTRUSTED_IMAGE');
  // The existing VM is re-checked when it starts: nothing boots.
  const start = await harness.api<ErrorAnswer>('POST', '/v1/vms/signed-vm/start?tenant=signed');
  assert.equal(start.status, 403, JSON.stringify(start.body));
  assert.equal(start.body.error.code, 'RAMPART_UNTRUSTED_IMAGE');
  // The VM shows why (SECURITY-TESTS.md item 21): error naming the reason, and a security event.
  const vm = await harness.api<Vm>('GET', '/v1/vms/signed-vm?tenant=signed');
  assert.equal(vm.body.state, 'error');
  assert.match(vm.body.error ?? '', /not started: .*not trusted/);
  assert.equal(vm.body.pid, null);
  const events = await harness.api<{ items: { kind: string; subjectId: string | null }[] }>(
    'GET',
    '/v1/security/events?tenant=signed&kind=image.verification_failed',
  );
  assert.ok(
    events.body.items.some((e) => e.subjectId === vm.body.id),
    JSON.stringify(events.body),
  );

  const off = await harness.api<TrustPolicy>('PUT', '/v1/tenants/signed/trust-policy', {
    requireSignatures: false,
  });
  assert.equal(off.status, 200, JSON.stringify(off.body));
  const allowed = await createVm('unsigned-ok');
  assert.equal(allowed.status, 201, JSON.stringify(allowed.body));

  const audit = await harness.api<{ items: AuditRecordView[] }>(
    'GET',
    '/v1/audit?tenant=signed&action=image:trust-policy:update&limit=100',
  );
  assert.equal(audit.status, 200, JSON.stringify(audit.body));
  assert.ok(
    audit.body.items.some((r) => r.detail === 'signatures no longer required' && r.outcome === 'success'),
    JSON.stringify(audit.body.items),
  );
  const detached = await harness.api<{ items: AuditRecordView[] }>(
    'GET',
    '/v1/audit?tenant=signed&action=image:signature:delete&limit=100',
  );
  assert.ok(
    detached.body.items.some((r) => r.outcome === 'success'),
    JSON.stringify(detached.body.items),
  );
});

test('a crash restart is a boot too: with the policy tightened meanwhile, the VM is not restarted', async () => {
  assert.equal((await harness.api('POST', '/v1/vms/unsigned-ok/start?tenant=signed')).status, 202);
  await harness.waitFor(
    async () => (await harness.api<Vm>('GET', '/v1/vms/unsigned-ok?tenant=signed')).body.state === 'running',
    90_000,
    'unsigned-ok running',
  );
  const running = (await harness.api<Vm>('GET', '/v1/vms/unsigned-ok?tenant=signed')).body;
  const on = await harness.api('PUT', '/v1/tenants/signed/trust-policy', { requireSignatures: true });
  assert.equal(on.status, 200);
  process.kill(running.pid!, 'SIGKILL');
  await harness.waitFor(
    async () => {
      const vm = (await harness.api<Vm>('GET', '/v1/vms/unsigned-ok?tenant=signed')).body;
      return vm.state === 'error' && /not restarted: .*not trusted/.test(vm.error ?? '');
    },
    30_000,
    'the crashed VM to stay in error',
  );
  const vm = (await harness.api<Vm>('GET', '/v1/vms/unsigned-ok?tenant=signed')).body;
  assert.equal(vm.restartCount, 0);
  assert.equal(harness.qemuPids().length, 0);
});

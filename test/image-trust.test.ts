/**
 * Image trust and visibility against the real server (issue 5, SECURITY-TESTS.md item 24's "tenant B
 * cannot see tenant A's image"): trusted-key CRUD with strict key validation, the per-tenant trust
 * policy (defaults, who may change it, the audit record of weakening it), per-tenant image visibility
 * (a foreign private image answers exactly like an absent one and cannot be booted) and the platform
 * `tiny` staying visible to everyone and bootable.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { AuditRecordView } from '../src/api/audit.js';
import type { Image } from '../src/api/image.js';
import type { TrustPolicy, TrustedKey } from '../src/api/trust.js';
import type { Vm } from '../src/api/vm.js';
import { keyIdOf } from '../src/common/dsse.js';
import { RampartHarness, type ApiResponse } from './helpers/rampart-harness.js';

const PASSWORD = 'Trust-Passw0rd-for-tests';
let harness: RampartHarness;
let adminA = '';
let memberA = '';
let adminB = '';
/** Test data: a private image of tenant alpha, inserted straight into the database (no upload yet). */
const privateImage = { id: randomUUID(), name: 'alpha-private' };

const as = (token: string) => ({ authorization: `Bearer ${token}` });

const user = (name: string, tenant: string, role: string) =>
  harness.createMember(name, PASSWORD, tenant, role);

before(async () => {
  harness = await RampartHarness.start();
  for (const name of ['alpha', 'beta']) {
    const created = await harness.api('POST', '/v1/tenants', { name });
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
  adminA = await user('alpha-admin', 'alpha', 'tenant-admin');
  memberA = await user('alpha-member', 'alpha', 'member');
  adminB = await user('beta-admin', 'beta', 'tenant-admin');

  harness.insertTestImage('alpha', privateImage);
});

after(async () => {
  await harness?.cleanup();
});

function ed25519Pem(): string {
  return generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
}

test('trusted keys: add, list, refuse bad PEMs, RSA keys, private keys and duplicates, delete', async () => {
  const { publicKey } = generateKeyPairSync('ed25519');
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const added = await harness.api<TrustedKey>(
    'POST',
    '/v1/trusted-keys?tenant=alpha',
    { name: 'release', publicKeyPem: pem },
    as(adminA),
  );
  assert.equal(added.status, 201, JSON.stringify(added.body));
  assert.equal(added.body.keyid, keyIdOf(publicKey));
  assert.equal(added.body.publicKeyPem, pem);

  const bad = async (body: unknown): Promise<ApiResponse<{ error: { message: string } }>> =>
    harness.api('POST', '/v1/trusted-keys?tenant=alpha', body, as(adminA));
  const garbage = await bad({ name: 'garbage', publicKeyPem: 'not a key' });
  assert.equal(garbage.status, 400);
  const corrupt = await bad({
    name: 'corrupt',
    publicKeyPem: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
  });
  assert.equal(corrupt.status, 400);
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const rsaKey = await bad({
    name: 'rsa',
    publicKeyPem: rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  });
  assert.equal(rsaKey.status, 400);
  assert.match(rsaKey.body.error.message, /Ed25519/);
  const privateKey = await bad({
    name: 'private',
    publicKeyPem: generateKeyPairSync('ed25519')
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString(),
  });
  assert.equal(privateKey.status, 400);
  const tooBig = await bad({ name: 'big', publicKeyPem: pem + ' '.repeat(5000) });
  assert.equal(tooBig.status, 400);

  const duplicate = await bad({ name: 'release-again', publicKeyPem: pem });
  assert.equal(duplicate.status, 409);
  const sameName = await bad({ name: 'release', publicKeyPem: ed25519Pem() });
  assert.equal(sameName.status, 409);

  // The same key may be trusted by another tenant; keys are per tenant.
  const inB = await harness.api(
    'POST',
    '/v1/trusted-keys?tenant=beta',
    { name: 'release', publicKeyPem: pem },
    as(adminB),
  );
  assert.equal(inB.status, 201, JSON.stringify(inB.body));

  // Members read the list but may not change it.
  const list = await harness.api<{ items: TrustedKey[] }>(
    'GET',
    '/v1/trusted-keys?tenant=alpha',
    undefined,
    as(memberA),
  );
  assert.equal(list.status, 200);
  assert.deepEqual(
    list.body.items.map((k) => k.name),
    ['release'],
  );
  const memberAdd = await harness.api(
    'POST',
    '/v1/trusted-keys?tenant=alpha',
    { name: 'sneaky', publicKeyPem: ed25519Pem() },
    as(memberA),
  );
  assert.equal(memberAdd.status, 403);
  const memberDelete = await harness.api(
    'DELETE',
    `/v1/trusted-keys/${added.body.id}?tenant=alpha`,
    undefined,
    as(memberA),
  );
  assert.equal(memberDelete.status, 403);

  // Another tenant's key id answers like an absent one.
  const foreign = await harness.api(
    'DELETE',
    `/v1/trusted-keys/${added.body.id}?tenant=beta`,
    undefined,
    as(adminB),
  );
  assert.equal(foreign.status, 404);
  const removed = await harness.api(
    'DELETE',
    `/v1/trusted-keys/${added.body.id}?tenant=alpha`,
    undefined,
    as(adminA),
  );
  assert.equal(removed.status, 204);
  const again = await harness.api(
    'DELETE',
    `/v1/trusted-keys/${added.body.id}?tenant=alpha`,
    undefined,
    as(adminA),
  );
  assert.equal(again.status, 404);
  const empty = await harness.api<{ items: TrustedKey[] }>(
    'GET',
    '/v1/trusted-keys?tenant=alpha',
    undefined,
    as(adminA),
  );
  assert.deepEqual(empty.body.items, []);
});

test('trust policy: defaults, tenant admins change it (audited), members may not', async () => {
  const initial = await harness.api<TrustPolicy>(
    'GET',
    '/v1/tenants/alpha/trust-policy',
    undefined,
    as(memberA),
  );
  assert.equal(initial.status, 200);
  assert.deepEqual(initial.body, { requireSignatures: true, acceptPlatformImages: true, updatedAt: null });

  const byMember = await harness.api(
    'PUT',
    '/v1/tenants/alpha/trust-policy',
    { requireSignatures: false },
    as(memberA),
  );
  assert.equal(byMember.status, 403);
  const empty = await harness.api('PUT', '/v1/tenants/alpha/trust-policy', {}, as(adminA));
  assert.equal(empty.status, 400);
  const byOtherAdmin = await harness.api(
    'PUT',
    '/v1/tenants/alpha/trust-policy',
    { requireSignatures: false },
    as(adminB),
  );
  assert.equal(byOtherAdmin.status, 404);

  const off = await harness.api<TrustPolicy>(
    'PUT',
    '/v1/tenants/alpha/trust-policy',
    { requireSignatures: false },
    as(adminA),
  );
  assert.equal(off.status, 200, JSON.stringify(off.body));
  assert.equal(off.body.requireSignatures, false);
  assert.equal(off.body.acceptPlatformImages, true);
  assert.notEqual(off.body.updatedAt, null);
  const partial = await harness.api<TrustPolicy>(
    'PUT',
    '/v1/tenants/alpha/trust-policy',
    { acceptPlatformImages: false },
    as(adminA),
  );
  assert.deepEqual(
    { ...partial.body, updatedAt: null },
    { requireSignatures: false, acceptPlatformImages: false, updatedAt: null },
  );
  // Beta is unaffected.
  const beta = await harness.api<TrustPolicy>('GET', '/v1/tenants/beta/trust-policy', undefined, as(adminB));
  assert.deepEqual(beta.body, { requireSignatures: true, acceptPlatformImages: true, updatedAt: null });

  const audit = await harness.api<{ items: AuditRecordView[] }>(
    'GET',
    '/v1/audit?tenant=alpha&action=image:trust-policy:update&limit=100',
    undefined,
    as(adminA),
  );
  assert.equal(audit.status, 200, JSON.stringify(audit.body));
  const weakened = audit.body.items.find((r) => r.detail === 'signatures no longer required');
  assert.ok(weakened, JSON.stringify(audit.body.items));
  assert.equal(weakened.actor, 'alpha-admin');
  assert.equal(weakened.outcome, 'success');
  assert.ok(audit.body.items.some((r) => r.outcome === 'denied' && r.actor === 'alpha-member'));

  const restored = await harness.api<TrustPolicy>(
    'PUT',
    '/v1/tenants/alpha/trust-policy',
    { requireSignatures: true, acceptPlatformImages: true },
    as(adminA),
  );
  assert.equal(restored.status, 200);
  assert.equal(restored.body.requireSignatures, true);
});

test("images: each tenant sees the platform's and its own; a foreign private image looks absent", async () => {
  const listA = await harness.api<{ items: Image[] }>(
    'GET',
    '/v1/images?tenant=alpha',
    undefined,
    as(memberA),
  );
  assert.deepEqual(listA.body.items.map((i) => i.name).sort(), ['alpha-private', 'tiny']);
  const own = listA.body.items.find((i) => i.name === 'alpha-private')!;
  assert.equal(own.visibility, 'private');
  assert.equal(own.platform, false);
  const tiny = listA.body.items.find((i) => i.name === 'tiny')!;
  assert.equal(tiny.visibility, 'public');
  assert.equal(tiny.platform, true);

  const listB = await harness.api<{ items: Image[] }>('GET', '/v1/images?tenant=beta', undefined, as(adminB));
  assert.deepEqual(
    listB.body.items.map((i) => i.name),
    ['tiny'],
  );
  // The default tenant (the platform admin's) does not see it either.
  const listDefault = await harness.api<{ items: Image[] }>('GET', '/v1/images');
  assert.ok(!listDefault.body.items.some((i) => i.name === 'alpha-private'));

  for (const ref of [privateImage.id, privateImage.name]) {
    const ownShow = await harness.api<Image>('GET', `/v1/images/${ref}?tenant=alpha`, undefined, as(memberA));
    assert.equal(ownShow.status, 200);
    const foreign = await harness.api('GET', `/v1/images/${ref}?tenant=beta`, undefined, as(adminB));
    const absentRef = ref === privateImage.id ? randomUUID() : 'no-such-image';
    const absent = await harness.api('GET', `/v1/images/${absentRef}?tenant=beta`, undefined, as(adminB));
    assert.equal(foreign.status, 404);
    const normalise = (r: ApiResponse) =>
      JSON.stringify({
        ...(r.body as { error: object }),
        error: { ...(r.body as { error: object }).error, requestId: '' },
      });
    assert.equal(normalise(foreign), normalise(absent));
    assert.equal(foreign.headers.get('content-length'), absent.headers.get('content-length'));
  }

  const create = await harness.api<{ error: { message: string } }>(
    'POST',
    '/v1/vms?tenant=beta',
    { name: 'steal', image: privateImage.name, flavor: 'tiny', start: false },
    as(adminB),
  );
  assert.equal(create.status, 400);
  assert.equal(create.body.error.message, `image "${privateImage.name}" not found`);
  const byId = await harness.api<{ error: { message: string } }>(
    'POST',
    '/v1/vms?tenant=beta',
    { name: 'steal', image: privateImage.id, flavor: 'tiny', start: false },
    as(adminB),
  );
  assert.equal(byId.status, 400);
  assert.equal(byId.body.error.message, `image "${privateImage.id}" not found`);
  const vms = await harness.api<{ items: Vm[] }>('GET', '/v1/vms?tenant=beta', undefined, as(adminB));
  assert.deepEqual(vms.body.items, []);
});

test('the platform tiny image still boots', async () => {
  const created = await harness.api<Vm>('POST', '/v1/vms', { name: 'trusty', image: 'tiny', flavor: 'tiny' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const running = await harness.waitForState('trusty', 'running', 120_000);
  assert.equal(running.image.name, 'tiny');
});

test('API tokens cannot change what is trusted (a leaked token cannot switch signature checks off)', async () => {
  const created = await harness.api<{ token: string }>('POST', '/v1/tokens', {
    name: 'trust-probe',
    expiresInDays: 1,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const auth = { authorization: `Bearer ${created.body.token}` };
  const put = await harness.api(
    'PUT',
    '/v1/tenants/default/trust-policy',
    { requireSignatures: false },
    auth,
  );
  assert.equal(put.status, 403);
  const key = await harness.api('POST', '/v1/trusted-keys', { name: 'x', publicKeyPem: 'irrelevant' }, auth);
  assert.equal(key.status, 403);
  const policy = await harness.api<{ requireSignatures: boolean }>('GET', '/v1/tenants/default/trust-policy');
  assert.equal(policy.body.requireSignatures, true, 'unchanged');
});

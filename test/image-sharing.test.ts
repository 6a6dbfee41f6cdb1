/**
 * Image sharing against the real server (issue 5: per-tenant visibility — private, shared with named
 * tenants, public by the platform). A private image of tenant alpha (test data inserted straight into
 * the database) is invisible to beta until alpha shares it; beta can then see it and create a VM from
 * it (its trust policy permitting); unsharing hides it again. Only the owner manages sharing (others get
 * 404), tenants cannot make an image public, and the platform admin can publish it.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Image } from '../src/api/image.js';
import type { Vm } from '../src/api/vm.js';
import { RampartHarness } from './helpers/rampart-harness.js';

const PASSWORD = 'Sharing-Passw0rd-for-tests';
let harness: RampartHarness;
let adminA = '';
let adminB = '';
/** Test data: a private image of tenant alpha (its files do not exist; it is never booted). */
const privateImage = { id: randomUUID(), name: 'alpha-web' };

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
  adminB = await user('beta-admin', 'beta', 'tenant-admin');

  harness.insertTestImage('alpha', privateImage);
});

after(async () => {
  await harness?.cleanup();
});

const showAsB = (ref: string) =>
  harness.api<Image>('GET', `/v1/images/${ref}?tenant=beta`, undefined, as(adminB));

test('share, see, create a VM from it, unshare', async () => {
  for (const ref of [privateImage.id, privateImage.name]) assert.equal((await showAsB(ref)).status, 404);

  // Sharing with oneself is refused; with a tenant that does not exist, 404.
  const self = await harness.api(
    'PUT',
    `/v1/images/${privateImage.name}/shares/alpha?tenant=alpha`,
    undefined,
    as(adminA),
  );
  assert.equal(self.status, 400, JSON.stringify(self.body));
  const nobody = await harness.api(
    'PUT',
    `/v1/images/${privateImage.name}/shares/no-such-tenant?tenant=alpha`,
    undefined,
    as(adminA),
  );
  assert.equal(nobody.status, 404);

  const shared = await harness.api(
    'PUT',
    `/v1/images/${privateImage.name}/shares/beta?tenant=alpha`,
    undefined,
    as(adminA),
  );
  assert.equal(shared.status, 204, JSON.stringify(shared.body));
  const again = await harness.api(
    'PUT',
    `/v1/images/${privateImage.id}/shares/beta?tenant=alpha`,
    undefined,
    as(adminA),
  );
  assert.equal(again.status, 204, 'idempotent');

  for (const ref of [privateImage.id, privateImage.name]) {
    const seen = await showAsB(ref);
    assert.equal(seen.status, 200, JSON.stringify(seen.body));
    assert.equal(seen.body.id, privateImage.id);
    assert.equal(seen.body.visibility, 'shared');
    assert.equal(seen.body.platform, false);
  }
  const list = await harness.api<{ items: Image[] }>('GET', '/v1/images?tenant=beta', undefined, as(adminB));
  assert.deepEqual(list.body.items.map((i) => i.name).sort(), ['alpha-web', 'tiny']);

  // Beta's trust policy decides whether it may use the image: unsigned, so signatures must be off.
  const policy = await harness.api('PUT', '/v1/tenants/beta/trust-policy', { requireSignatures: false });
  assert.equal(policy.status, 200, JSON.stringify(policy.body));
  const vm = await harness.api<Vm>(
    'POST',
    '/v1/vms?tenant=beta',
    { name: 'from-shared', image: privateImage.id, flavor: 'tiny', start: false },
    as(adminB),
  );
  assert.equal(vm.status, 201, JSON.stringify(vm.body));
  assert.equal(vm.body.image.id, privateImage.id);

  const unshared = await harness.api(
    'DELETE',
    `/v1/images/${privateImage.name}/shares/beta?tenant=alpha`,
    undefined,
    as(adminA),
  );
  assert.equal(unshared.status, 204, JSON.stringify(unshared.body));
  for (const ref of [privateImage.id, privateImage.name]) assert.equal((await showAsB(ref)).status, 404);
  const create = await harness.api(
    'POST',
    '/v1/vms?tenant=beta',
    { name: 'after-unshare', image: privateImage.id, flavor: 'tiny', start: false },
    as(adminB),
  );
  assert.equal(create.status, 400);
  const notShared = await harness.api(
    'DELETE',
    `/v1/images/${privateImage.name}/shares/beta?tenant=alpha`,
    undefined,
    as(adminA),
  );
  assert.equal(notShared.status, 404);
});

test('only the owner manages an image: others get 404 even when it is shared with them', async () => {
  const share = await harness.api(
    'PUT',
    `/v1/images/${privateImage.id}/shares/beta?tenant=alpha`,
    undefined,
    as(adminA),
  );
  assert.equal(share.status, 204);
  assert.equal((await showAsB(privateImage.id)).status, 200);
  const attempts: [string, string, unknown][] = [
    ['PATCH', `/v1/images/${privateImage.id}?tenant=beta`, { visibility: 'private' }],
    ['PUT', `/v1/images/${privateImage.id}/shares/default?tenant=beta`, undefined],
    ['DELETE', `/v1/images/${privateImage.id}/shares/beta?tenant=beta`, undefined],
    // Acting in alpha without being a member there.
    ['PATCH', `/v1/images/${privateImage.id}?tenant=alpha`, { visibility: 'private' }],
    ['DELETE', `/v1/images/${privateImage.id}/shares/beta?tenant=alpha`, undefined],
  ];
  for (const [method, path, body] of attempts) {
    const response = await harness.api(method, path, body, as(adminB));
    assert.equal(response.status, 404, `${method} ${path}: ${JSON.stringify(response.body)}`);
  }
  // Nor can beta touch the platform's image it sees.
  const tiny = await harness.api(
    'PATCH',
    '/v1/images/tiny?tenant=beta',
    { visibility: 'private' },
    as(adminB),
  );
  assert.equal(tiny.status, 404);

  // The owner can: private hides it from beta again, shared shows it.
  const hide = await harness.api<Image>(
    'PATCH',
    `/v1/images/${privateImage.id}?tenant=alpha`,
    { visibility: 'private' },
    as(adminA),
  );
  assert.equal(hide.status, 200, JSON.stringify(hide.body));
  assert.equal(hide.body.visibility, 'private');
  assert.equal((await showAsB(privateImage.id)).status, 404);
  const reveal = await harness.api<Image>(
    'PATCH',
    `/v1/images/${privateImage.id}?tenant=alpha`,
    { visibility: 'shared' },
    as(adminA),
  );
  assert.equal(reveal.body.visibility, 'shared');
  assert.equal((await showAsB(privateImage.id)).status, 200);
  const unshare = await harness.api(
    'DELETE',
    `/v1/images/${privateImage.id}/shares/beta?tenant=alpha`,
    undefined,
    as(adminA),
  );
  assert.equal(unshare.status, 204);
});

test('tenants cannot make an image public; the platform admin publishes it', async () => {
  const patch = await harness.api(
    'PATCH',
    `/v1/images/${privateImage.id}?tenant=alpha`,
    { visibility: 'public' },
    as(adminA),
  );
  assert.equal(patch.status, 400);
  const byTenantAdmin = await harness.api(
    'POST',
    `/v1/images/${privateImage.id}/publish`,
    undefined,
    as(adminA),
  );
  assert.equal(byTenantAdmin.status, 403);
  assert.equal((await showAsB(privateImage.id)).status, 404);

  const published = await harness.api<Image>('POST', `/v1/images/${privateImage.id}/publish`);
  assert.equal(published.status, 200, JSON.stringify(published.body));
  assert.equal(published.body.visibility, 'public');
  assert.equal(published.body.platform, false, 'the owner stays the owner');
  const seen = await showAsB(privateImage.id);
  assert.equal(seen.status, 200);
  assert.equal(seen.body.visibility, 'public');
  const absent = await harness.api('POST', `/v1/images/${randomUUID()}/publish`);
  assert.equal(absent.status, 404);
});

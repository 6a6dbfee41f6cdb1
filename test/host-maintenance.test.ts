/**
 * Maintenance mode: a host in maintenance gets no new VM (the refusal names the constraint), running
 * VMs stay where they are, and taking it out of maintenance admits VMs again.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Host } from '../src/api/host.js';
import { RampartHarness } from './helpers/rampart-harness.js';

let harness: RampartHarness;

before(async () => {
  harness = await RampartHarness.start();
});

after(async () => {
  await harness?.cleanup();
});

test('a host in maintenance gets no new VM; out of maintenance it does again', async () => {
  const hosts = await harness.api<{ items: Host[] }>('GET', '/v1/hosts');
  const host = hosts.body.items[0]!;
  assert.equal(host.maintenance, false);
  const existing = await harness.api('POST', '/v1/vms', {
    name: 'before',
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(existing.status, 201);

  const on = await harness.api<Host>('PATCH', `/v1/hosts/${host.id}`, { maintenance: true });
  assert.equal(on.status, 200, JSON.stringify(on.body));
  assert.equal(on.body.maintenance, true);
  const refused = await harness.api<{ error: { code: string; message: string } }>('POST', '/v1/vms', {
    name: 'during',
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(refused.status, 503);
  assert.equal(refused.body.error.code, 'RAMPART_NO_CAPACITY');
  assert.match(refused.body.error.message, /every online host is in maintenance/);
  assert.equal((await harness.api('GET', '/v1/vms/before')).status, 200, 'existing VMs stay');
  const audit = await harness.api<{ items: { action: string; detail: string | null }[] }>(
    'GET',
    '/v1/platform/audit?action=platform:host:update&limit=5',
  );
  assert.ok(audit.body.items.some((r) => r.detail === 'maintenance on'));

  const off = await harness.api<Host>('PATCH', `/v1/hosts/${host.id}`, { maintenance: false });
  assert.equal(off.body.maintenance, false);
  assert.equal(
    (await harness.api('POST', '/v1/vms', { name: 'after', image: 'tiny', flavor: 'tiny', start: false }))
      .status,
    201,
  );
  assert.equal((await harness.api('PATCH', `/v1/hosts/${host.id}`, { maintenance: 'yes' })).status, 400);
  for (const vm of ['before', 'after']) await harness.api('DELETE', `/v1/vms/${vm}`);
});

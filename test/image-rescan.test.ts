/**
 * Re-scan when the scanner's databases change: an image imported clean is quarantined (visible, not
 * bootable, audited, a security event) once the operator's database gains a signature that matches it,
 * and released again when that signature goes away. Also: an upload above the size limit is refused
 * with 413 and leaves nothing in staging.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Image } from '../src/api/image.js';
import { RampartHarness } from './helpers/rampart-harness.js';

let harness: RampartHarness;
let databases: string;
const MARKER = 'rampart rescan marker 8c1f0a';

async function upload(
  ref: string,
  data: Buffer,
): Promise<{ status: number; body: Image & { error?: { code: string } } }> {
  const response = await fetch(`${harness.url}/v1/images/${ref}/files/disk`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${harness.token}`, 'content-type': 'application/octet-stream' },
    body: new Uint8Array(data),
  });
  return { status: response.status, body: (await response.json()) as Image & { error?: { code: string } } };
}

async function waitForImage(name: string, status: Image['status'], timeoutMs = 30_000): Promise<Image> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const image = await harness.api<Image>('GET', `/v1/images/${name}`);
    if (image.body.status === status) return image.body;
    if (Date.now() > deadline) throw new Error(`image ${name} is ${image.body.status}, not ${status}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

before(async () => {
  databases = mkdtempSync(join(tmpdir(), 'rampart-clamdb-'));
  // An operator database that exists from the start (empty of matching rules).
  writeFileSync(join(databases, 'operator.ndb'), 'Operator.Unrelated:0:*:deadbeefcafebabe0011\n');
  harness = await RampartHarness.start({
    env: {
      RAMPART_CLAMAV_DATABASE_DIRS: databases,
      RAMPART_IMAGE_RESCAN_CHECK_SECONDS: '1',
      RAMPART_IMAGE_MAX_FILE_MIB: '16',
    },
  });
});

after(async () => {
  await harness?.cleanup();
  if (databases) rmSync(databases, { recursive: true, force: true });
});

test('a new signature in the operator database quarantines an image; removing it releases the image', async () => {
  const created = await harness.api<Image>('POST', '/v1/images', { name: 'marked', format: 'raw' });
  assert.equal(created.status, 201);
  const disk = Buffer.alloc(1024 * 1024);
  disk.write(MARKER, 4096, 'latin1');
  const uploaded = await upload('marked', disk);
  assert.equal(uploaded.status, 200, JSON.stringify(uploaded.body));
  assert.equal(uploaded.body.status, 'active');
  assert.equal(uploaded.body.scan.verdict, 'clean');
  const firstDatabase = uploaded.body.scan.database;

  writeFileSync(
    join(databases, 'operator.ndb'),
    `Operator.Unrelated:0:*:deadbeefcafebabe0011\nOperator.Test.Marker:0:*:${Buffer.from(MARKER).toString('hex')}\n`,
  );
  const quarantined = await waitForImage('marked', 'quarantined');
  assert.ok(quarantined.scan.signatures.some((s) => s.startsWith('Operator.Test.Marker')));
  assert.notEqual(quarantined.scan.database, firstDatabase, 'the new database fingerprint is recorded');
  assert.match(quarantined.statusReason, /Operator\.Test\.Marker/);
  const events = await harness.api<{
    items: { kind: string; subjectId: string | null; detail: { trigger?: string } }[];
  }>('GET', '/v1/security/events?kind=image.quarantined');
  assert.ok(
    events.body.items.some((e) => e.subjectId === created.body.id && e.detail.trigger === 'rescan'),
    JSON.stringify(events.body),
  );
  const audit = await harness.api<{ items: { target: string | null; actor: string }[] }>(
    'GET',
    '/v1/platform/audit?action=image:quarantine&limit=10',
  );
  assert.ok(audit.body.items.some((r) => r.target === created.body.id && r.actor === 'system:scanner'));

  // The operator removes the rule: the next check re-scans and the image is released.
  unlinkSync(join(databases, 'operator.ndb'));
  writeFileSync(join(databases, 'operator.ndb'), 'Operator.Unrelated:0:*:deadbeefcafebabe0011\n');
  const released = await waitForImage('marked', 'active');
  assert.equal(released.scan.verdict, 'clean');
});

test('an upload above the size limit is refused with 413 and leaves no staging file', async () => {
  assert.equal((await harness.api('POST', '/v1/images', { name: 'big', format: 'raw' })).status, 201);
  const answer = await upload('big', Buffer.alloc(17 * 1024 * 1024, 1));
  assert.equal(answer.status, 413, JSON.stringify(answer.body));
  assert.equal(answer.body.error?.code, 'RAMPART_PAYLOAD_TOO_LARGE');
  assert.deepEqual(readdirSync(join(harness.dataDir, 'images', 'staging')), []);
  const still = await harness.api<Image>('GET', '/v1/images/big');
  assert.equal(still.body.status, 'queued', 'the image waits for a file that fits');
});

/**
 * Protected images end to end against the real server: uploads are scanned (ClamAV), checked (qemu-img),
 * compressed and encrypted per tenant (content-addressed, deduplicated per tenant), downloads are
 * decrypted and verified; a scan hit quarantines (visible, not downloadable, audited, security event);
 * tenants never see each other's private images; a tampered blob or wrapped data key stops the boot
 * (error with the reason, audit record, security event) and the VM boots again once restored; an altered
 * platform signature makes the platform image untrusted; the master key rotates without re-encrypting
 * anything; deleting a tenant destroys its data keys (crypto-shredding) and its blobs.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import type { AuditRecordView } from '../src/api/audit.js';
import type { Image, ImageSignature } from '../src/api/image.js';
import type { Tenant } from '../src/api/iam.js';
import type { SecurityEvent } from '../src/api/security.js';
import type { TrustedKey } from '../src/api/trust.js';
import type { Vm } from '../src/api/vm.js';
import { imageStatement, signStatement } from '../src/common/in-toto.js';
import { MAGIC, readKeyId } from '../src/server/images/crypto/chunked-aead.js';
import type { ApiResponse } from './helpers/rampart-harness.js';
import { RampartHarness } from './helpers/rampart-harness.js';
import { GUEST_IMAGE_DIR } from './helpers/repo.js';

type ErrorAnswer = { error: { code: string; message: string } };
type ImageAnswer = Image & ErrorAnswer;

const MIB = 1024 * 1024;
const manifest = JSON.parse(readFileSync(join(GUEST_IMAGE_DIR, 'manifest.json'), 'utf8')) as {
  kernel: string;
  initrd: string;
  sha256: Record<string, string>;
};
const kernelBytes = readFileSync(join(GUEST_IMAGE_DIR, manifest.kernel));
const initrdBytes = readFileSync(join(GUEST_IMAGE_DIR, manifest.initrd));
// Built from parts so that this source file is not itself flagged by a scanner.
const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$' + 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';

let harness: RampartHarness;
let work: string;
const tenants: Record<'alpha' | 'bravo' | 'charlie', Tenant> = {} as never;
/** alpha's kernel-initrd upload of the tiny guest's files (the one that boots). */
let bundle: Image;
const signer = generateKeyPairSync('ed25519');

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const blobDir = (tenantId: string) => join(harness.dataDir, 'images', 'blobs', tenantId);
const blobPath = (tenantId: string, sha: string) => join(blobDir(tenantId), `${sha}.rpb`);
const cachePath = (sha: string) => join(harness.dataDir, 'image-cache', sha);

function withDb<T>(fn: (db: Database.Database) => T): T {
  const db = new Database(join(harness.dataDir, 'db', 'rampart.db'));
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

const createImage = (tenant: string, name: string, format: Image['format']) =>
  harness.api<ImageAnswer>('POST', `/v1/images?tenant=${tenant}`, { name, format });

/** PUT of a file as a raw octet-stream body (harness.api would JSON-encode it). */
async function upload(
  tenant: string,
  ref: string,
  part: 'kernel' | 'initrd' | 'disk',
  data: Buffer,
): Promise<ApiResponse<ImageAnswer>> {
  const response = await fetch(`${harness.url}/v1/images/${ref}/files/${part}?tenant=${tenant}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${harness.token}`, 'content-type': 'application/octet-stream' },
    body: new Uint8Array(data),
  });
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text) as ImageAnswer, headers: response.headers };
}

async function download(
  tenant: string,
  ref: string,
  part: 'kernel' | 'initrd' | 'disk',
): Promise<{ status: number; bytes: Buffer; headers: Headers }> {
  const response = await fetch(`${harness.url}/v1/images/${ref}/files/${part}?tenant=${tenant}`, {
    headers: { authorization: `Bearer ${harness.token}` },
  });
  return {
    status: response.status,
    bytes: Buffer.from(await response.arrayBuffer()),
    headers: response.headers,
  };
}

/** Creates a kernel-initrd image of the tiny guest's files in `tenant`; answers the final image. */
async function uploadBundle(tenant: string, name: string): Promise<Image> {
  const created = await createImage(tenant, name, 'kernel-initrd');
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.status, 'queued');
  const kernel = await upload(tenant, created.body.id, 'kernel', kernelBytes);
  assert.equal(kernel.status, 200, JSON.stringify(kernel.body));
  assert.equal(kernel.body.status, 'queued', 'still waiting for the initrd');
  assert.equal(kernel.body.files.kernel, manifest.sha256[manifest.kernel]);
  assert.equal(kernel.body.sha256, null);
  const initrd = await upload(tenant, created.body.id, 'initrd', initrdBytes);
  assert.equal(initrd.status, 200, JSON.stringify(initrd.body));
  return initrd.body;
}

/** A raw disk: `head` at the start, padded with zeros to 1 MiB. */
function rawDisk(head: string | Buffer): Buffer {
  const disk = Buffer.alloc(MIB);
  (typeof head === 'string' ? Buffer.from(head, 'latin1') : head).copy(disk);
  return disk;
}

function flipByte(path: string, at: number): Buffer {
  const original = readFileSync(path);
  const changed = Buffer.from(original);
  changed[at]! ^= 0x01;
  writeFileSync(path, changed);
  return original;
}

/** Flips one character of a base64 string (in the middle, well away from any padding). */
function flipBase64(text: string): string {
  const at = Math.floor(text.length / 2);
  const replacement = text[at] === 'A' ? 'B' : 'A';
  return `${text.slice(0, at)}${replacement}${text.slice(at + 1)}`;
}

const vmPath = (id: string) => `${id}?tenant=alpha`;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'rampart-protected-images-'));
  harness = await RampartHarness.start();
  for (const name of ['alpha', 'bravo', 'charlie'] as const) {
    const created = await harness.api<Tenant>('POST', '/v1/tenants', { name });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    tenants[name] = created.body;
  }
});

after(async () => {
  await harness?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('a kernel-initrd upload: scanned clean, same identity as the platform copy, deduplicated, downloadable', async () => {
  bundle = await uploadBundle('alpha', 'bundle');
  assert.equal(bundle.status, 'active', JSON.stringify(bundle));
  assert.equal(bundle.statusReason, '');
  assert.equal(bundle.scan.verdict, 'clean');
  assert.deepEqual(bundle.scan.signatures, []);
  assert.match(bundle.scan.engine ?? '', /ClamAV/);
  assert.ok(bundle.scan.scannedAt);
  assert.equal(bundle.platform, false);
  assert.equal(bundle.platformSigned, false);
  assert.equal(bundle.visibility, 'private');
  assert.equal(bundle.sizeBytes, kernelBytes.length + initrdBytes.length);
  const tiny = await harness.api<Image>('GET', '/v1/images/tiny');
  assert.equal(tiny.status, 200);
  assert.equal(bundle.sha256, tiny.body.sha256, 'same content, same identity');
  assert.deepEqual(bundle.files, tiny.body.files);

  // The same files again under another name: one blob per file content in alpha's store.
  const copy = await uploadBundle('alpha', 'bundle-copy');
  assert.equal(copy.status, 'active');
  assert.equal(copy.sha256, bundle.sha256);
  assert.deepEqual(
    readdirSync(blobDir(tenants.alpha.id)).sort(),
    [`${bundle.files.initrd}.rpb`, `${bundle.files.kernel}.rpb`].sort(),
  );

  const kernel = await download('alpha', bundle.id, 'kernel');
  assert.equal(kernel.status, 200);
  assert.equal(kernel.headers.get('x-rampart-sha256'), manifest.sha256[manifest.kernel]);
  assert.equal(kernel.headers.get('content-type'), 'application/octet-stream');
  assert.ok(kernel.bytes.equals(kernelBytes), 'the download is byte-identical to the upload');
  const initrd = await download('alpha', 'bundle-copy', 'initrd');
  assert.equal(initrd.status, 200);
  assert.ok(initrd.bytes.equals(initrdBytes));
  // A bundle has no disk file.
  assert.equal((await download('alpha', bundle.id, 'disk')).status, 404);
  // Every file of a bundle is uploaded exactly once.
  const again = await upload('alpha', bundle.id, 'kernel', kernelBytes);
  assert.equal(again.status, 409, JSON.stringify(again.body));
});

test('a blob at rest is compressed and encrypted: no plaintext, RPTENC1 magic', async () => {
  const blob = readFileSync(blobPath(tenants.alpha.id, bundle.files.kernel!));
  assert.ok(blob.subarray(0, MAGIC.length).equals(Buffer.from('RPTENC1\0', 'latin1')));
  const middle = Math.floor(kernelBytes.length / 2);
  assert.equal(blob.includes(kernelBytes.subarray(middle, middle + 64)), false);
  assert.equal(blob.includes(kernelBytes.subarray(0, 64)), false);
  const initrdBlob = readFileSync(blobPath(tenants.alpha.id, bundle.files.initrd!));
  const at = Math.floor(initrdBytes.length / 2);
  assert.equal(initrdBlob.includes(initrdBytes.subarray(at, at + 64)), false);
  // Encrypted per tenant: the header names alpha's data key; only the server can read the file.
  assert.equal(await readKeyId(blobPath(tenants.alpha.id, bundle.files.kernel!)), `${tenants.alpha.id}/v1`);
  assert.equal(statSync(blobPath(tenants.alpha.id, bundle.files.kernel!)).mode & 0o077, 0);
  // The platform's copy of the same file is a different blob under the platform's key.
  const platformBlob = readFileSync(blobPath('platform', bundle.files.kernel!));
  assert.equal(platformBlob.equals(blob), false);
});

test('EICAR in a raw disk quarantines the image (visible, not downloadable, audited, event); a clean raw is active and meets the same trust policy as any image to boot', async () => {
  const created = await createImage('alpha', 'eicar-disk', 'raw');
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const infected = await upload('alpha', created.body.id, 'disk', rawDisk(EICAR));
  assert.equal(infected.status, 200, JSON.stringify(infected.body));
  assert.equal(infected.body.status, 'quarantined', JSON.stringify(infected.body));
  assert.equal(infected.body.scan.verdict, 'infected');
  assert.ok(infected.body.scan.signatures.length > 0);
  assert.ok(
    infected.body.scan.signatures.some((s) => /EICAR/i.test(s)),
    JSON.stringify(infected.body.scan),
  );
  assert.match(infected.body.statusReason, /malware scan hit/);
  assert.ok(infected.body.statusReason.includes(infected.body.scan.signatures[0]!));

  const shown = await harness.api<Image>('GET', `/v1/images/${created.body.id}?tenant=alpha`);
  assert.equal(shown.status, 200);
  assert.equal(shown.body.status, 'quarantined');
  const listed = await harness.api<{ items: Image[] }>('GET', '/v1/images?tenant=alpha');
  assert.ok(listed.body.items.some((i) => i.id === created.body.id && i.status === 'quarantined'));

  const refused = await fetch(`${harness.url}/v1/images/${created.body.id}/files/disk?tenant=alpha`, {
    headers: { authorization: `Bearer ${harness.token}` },
  });
  assert.equal(refused.status, 409);
  const refusal = (await refused.json()) as ErrorAnswer;
  assert.equal(refusal.error.code, 'RAMPART_IMAGE_UNAVAILABLE');
  assert.match(refusal.error.message, /quarantined/);

  const events = await harness.api<{ items: SecurityEvent[] }>(
    'GET',
    '/v1/security/events?tenant=alpha&kind=image.quarantined',
  );
  assert.equal(events.status, 200, JSON.stringify(events.body));
  const event = events.body.items.find((e) => e.subjectId === created.body.id);
  assert.ok(event, `a security event names the image: ${JSON.stringify(events.body)}`);
  assert.equal(event.severity, 'high');
  assert.equal(event.tenantId, tenants.alpha.id);
  const audit = await harness.api<{ items: AuditRecordView[] }>(
    'GET',
    '/v1/platform/audit?action=image:quarantine&limit=50',
  );
  assert.equal(audit.status, 200, JSON.stringify(audit.body));
  const record = audit.body.items.find((r) => r.target === created.body.id);
  assert.ok(record, `the quarantine is audited: ${JSON.stringify(audit.body)}`);
  assert.equal(record.outcome, 'failure');
  assert.equal(record.actor, 'system:scanner');
  assert.match(record.detail ?? '', /quarantined: .*EICAR/i);

  // A re-scan keeps it quarantined.
  const rescanned = await harness.api<Image>('POST', `/v1/images/${created.body.id}/scan?tenant=alpha`);
  assert.equal(rescanned.status, 200, JSON.stringify(rescanned.body));
  assert.equal(rescanned.body.status, 'quarantined');

  const clean = await createImage('alpha', 'clean-disk', 'raw');
  assert.equal(clean.status, 201);
  const cleanDisk = rawDisk('just an ordinary raw disk with some text on it\n');
  const cleaned = await upload('alpha', clean.body.id, 'disk', cleanDisk);
  assert.equal(cleaned.status, 200, JSON.stringify(cleaned.body));
  assert.equal(cleaned.body.status, 'active', JSON.stringify(cleaned.body));
  assert.equal(cleaned.body.scan.verdict, 'clean');
  assert.equal(cleaned.body.sha256, sha256(cleanDisk), "a disk image's identity is the disk's SHA-256");
  const disk = await download('alpha', 'clean-disk', 'disk');
  assert.equal(disk.status, 200);
  assert.ok(disk.bytes.equals(cleanDisk));

  const vm = await harness.api<ErrorAnswer>('POST', '/v1/vms?tenant=alpha', {
    name: 'from-disk',
    image: 'clean-disk',
    flavor: 'tiny',
    start: false,
  });
  // Disk images boot (root disks), under the same trust policy: alpha requires signatures.
  assert.equal(vm.status, 403, JSON.stringify(vm.body));
  assert.equal(vm.body.error.code, 'RAMPART_UNTRUSTED_IMAGE');
  assert.match(vm.body.error.message, /clean-disk is not trusted by this tenant/);
  const quarantinedVm = await harness.api<ErrorAnswer>('POST', '/v1/vms?tenant=alpha', {
    name: 'from-eicar',
    image: 'eicar-disk',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(quarantinedVm.status, 409, JSON.stringify(quarantinedVm.body));
  assert.equal(quarantinedVm.body.error.code, 'RAMPART_IMAGE_UNAVAILABLE');
});

test('qcow2: a backing file is refused with 400; a plain qcow2 is active', async () => {
  const base = join(work, 'base.raw');
  writeFileSync(base, Buffer.alloc(MIB));
  const top = join(work, 'top.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', base, top]);
  const backed = await createImage('alpha', 'backed-disk', 'qcow2');
  assert.equal(backed.status, 201);
  const refused = await upload('alpha', backed.body.id, 'disk', readFileSync(top));
  assert.equal(refused.status, 400, JSON.stringify(refused.body));
  assert.match(refused.body.error.message, /backing/);
  const still = await harness.api<Image>('GET', `/v1/images/${backed.body.id}?tenant=alpha`);
  assert.equal(still.body.status, 'queued');
  assert.deepEqual(still.body.files, {});

  const plainPath = join(work, 'plain.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', plainPath, '16M']);
  const plain = await createImage('alpha', 'plain-disk', 'qcow2');
  assert.equal(plain.status, 201);
  const stored = await upload('alpha', plain.body.id, 'disk', readFileSync(plainPath));
  assert.equal(stored.status, 200, JSON.stringify(stored.body));
  assert.equal(stored.body.status, 'active', JSON.stringify(stored.body));

  // A raw file declared as qcow2 is refused too.
  const liar = await createImage('alpha', 'liar-disk', 'qcow2');
  const lied = await upload('alpha', liar.body.id, 'disk', rawDisk('not a qcow2'));
  assert.equal(lied.status, 400, JSON.stringify(lied.body));
  // Cleanup of the refused records (they never got files).
  for (const ref of ['backed-disk', 'liar-disk'])
    assert.equal((await harness.api('DELETE', `/v1/images/${ref}?tenant=alpha`)).status, 204);
});

test("tenant isolation: bravo cannot see, download, delete, scan, upload to or boot alpha's image", async () => {
  const absent = randomUUID();
  for (const ref of [bundle.id, 'bundle', absent]) {
    const shown = await harness.api<ErrorAnswer>('GET', `/v1/images/${ref}?tenant=bravo`);
    assert.equal(shown.status, 404, `GET ${ref}: ${JSON.stringify(shown.body)}`);
    assert.equal((await download('bravo', ref, 'kernel')).status, 404, `download ${ref}`);
    const deleted = await harness.api('DELETE', `/v1/images/${ref}?tenant=bravo`);
    assert.equal(deleted.status, 404, `DELETE ${ref}`);
    const scanned = await harness.api('POST', `/v1/images/${ref}/scan?tenant=bravo`);
    assert.equal(scanned.status, 404, `scan ${ref}`);
    const uploaded = await upload('bravo', ref, 'kernel', Buffer.from('not a kernel'));
    assert.equal(uploaded.status, 404, `upload ${ref}`);
  }
  const listed = await harness.api<{ items: Image[] }>('GET', '/v1/images?tenant=bravo');
  assert.deepEqual(
    listed.body.items.map((i) => i.name),
    ['tiny'],
  );
  // A VM from it is refused exactly like one from an image that does not exist.
  const create = (image: string) =>
    harness.api<ErrorAnswer>('POST', '/v1/vms?tenant=bravo', {
      name: 'borrowed',
      image,
      flavor: 'tiny',
      start: false,
    });
  const foreign = await create(bundle.id);
  const missing = await create(absent);
  assert.equal(foreign.status, missing.status, JSON.stringify(foreign.body));
  assert.ok([400, 404].includes(foreign.status));
  assert.equal(foreign.body.error.code, missing.body.error.code);
  assert.equal(
    foreign.body.error.message.replace(bundle.id, 'X'),
    missing.body.error.message.replace(absent, 'X'),
  );
  // Still there for its owner.
  const own = await harness.api<Image>('GET', `/v1/images/${bundle.id}?tenant=alpha`);
  assert.equal(own.status, 200);
  assert.equal(own.body.status, 'active');
});

test('a tampered blob or wrapped data key stops the boot (error, audit, event); restored, the VM boots', async () => {
  // Make the image bootable for alpha: a trusted key and an attestation over its identity.
  const key = await harness.api<TrustedKey>('POST', '/v1/trusted-keys?tenant=alpha', {
    name: 'release',
    publicKeyPem: signer.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  });
  assert.equal(key.status, 201, JSON.stringify(key.body));
  const envelope = signStatement(
    imageStatement({
      sha256: bundle.sha256!,
      subjectName: 'bundle',
      imageName: 'bundle',
      format: 'kernel-initrd',
      sizeBytes: bundle.sizeBytes,
      signedAt: new Date().toISOString(),
    }),
    signer.privateKey,
  );
  const attached = await harness.api<ImageSignature>('POST', '/v1/images/bundle/signatures?tenant=alpha', {
    envelope,
  });
  assert.equal(attached.status, 201, JSON.stringify(attached.body));

  const created = await harness.api<Vm & ErrorAnswer>('POST', '/v1/vms?tenant=alpha', {
    name: 'guarded',
    image: bundle.id,
    flavor: 'tiny',
    start: false,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const vmId = created.body.id;
  const kernelSha = bundle.files.kernel!;
  const initrdSha = bundle.files.initrd!;
  const dropCache = () => {
    // The cache is shared by content (the platform's tiny has the same files): without it the server
    // has to rebuild the plaintext from alpha's encrypted store.
    rmSync(cachePath(kernelSha), { force: true });
    rmSync(cachePath(initrdSha), { force: true });
  };

  // 1. One flipped byte in the middle of alpha's kernel blob.
  dropCache();
  const blob = blobPath(tenants.alpha.id, kernelSha);
  const original = flipByte(blob, Math.floor(statSync(blob).size / 2));
  try {
    const start = await harness.api('POST', `/v1/vms/${vmId}/start?tenant=alpha`);
    assert.equal(start.status, 202, JSON.stringify(start.body));
    const failed = await harness.waitForState(vmPath(vmId), 'error', 30_000);
    assert.match(failed.error ?? '', /image verification failed/);
    assert.match(failed.error ?? '', /authentication failed/);
    assert.equal(failed.pid, null);
    assert.equal(harness.qemuPids().length, 0, 'no QEMU was started');
    assert.equal(existsSync(cachePath(kernelSha)), false, 'no unverified plaintext left in the cache');
    const audit = await harness.api<{ items: AuditRecordView[] }>(
      'GET',
      '/v1/platform/audit?action=image:verify&limit=50',
    );
    const record = audit.body.items.find((r) => r.target === vmId);
    assert.ok(record, `the failed verification is audited: ${JSON.stringify(audit.body)}`);
    assert.equal(record.outcome, 'failure');
    assert.equal(record.tenantId, tenants.alpha.id);
    assert.match(record.detail ?? '', /authentication failed/);
    const events = await harness.api<{ items: SecurityEvent[] }>(
      'GET',
      '/v1/security/events?tenant=alpha&kind=image.verification_failed',
    );
    assert.ok(
      events.body.items.some((e) => e.subjectId === vmId && e.severity === 'high'),
      `a security event names the VM: ${JSON.stringify(events.body)}`,
    );
    // The tampered blob cannot be downloaded either (the transfer aborts or is refused).
    const tampered = await download('alpha', bundle.id, 'kernel').catch(() => null);
    assert.ok(tampered === null || !tampered.bytes.equals(kernelBytes));
  } finally {
    writeFileSync(blob, original);
  }

  // 2. Restored: the cache is rebuilt from the store and the VM boots.
  const restart = await harness.api('POST', `/v1/vms/${vmId}/start?tenant=alpha`);
  assert.equal(restart.status, 202, JSON.stringify(restart.body));
  const running = await harness.waitForState(vmPath(vmId), 'running', 120_000);
  assert.equal(running.error, null);
  assert.equal(sha256(readFileSync(cachePath(kernelSha))), kernelSha);
  const stop = await harness.api('POST', `/v1/vms/${vmId}/stop?tenant=alpha`, { force: true });
  assert.equal(stop.status, 202, JSON.stringify(stop.body));
  await harness.waitForState(vmPath(vmId), 'stopped', 60_000);

  // 3. The envelope: alpha's wrapped data key altered in the database.
  dropCache();
  const wrapped = withDb(
    (db) =>
      db
        .prepare('SELECT wrapped FROM tenant_keys WHERE tenant_id = ? AND version = 1')
        .get(tenants.alpha.id) as {
        wrapped: string;
      },
  ).wrapped;
  const setWrapped = (value: string) =>
    withDb((db) =>
      db
        .prepare('UPDATE tenant_keys SET wrapped = ? WHERE tenant_id = ? AND version = 1')
        .run(value, tenants.alpha.id),
    );
  setWrapped(flipBase64(wrapped));
  try {
    const start = await harness.api('POST', `/v1/vms/${vmId}/start?tenant=alpha`);
    assert.equal(start.status, 202, JSON.stringify(start.body));
    const failed = await harness.waitForState(vmPath(vmId), 'error', 30_000);
    assert.match(failed.error ?? '', /image verification failed/);
    assert.match(failed.error ?? '', /does not unwrap/);
    assert.equal(harness.qemuPids().length, 0);
    const refused = await download('alpha', bundle.id, 'kernel').catch(() => null);
    assert.ok(refused === null || !refused.bytes.equals(kernelBytes));
  } finally {
    setWrapped(wrapped);
  }
  const kernel = await download('alpha', bundle.id, 'kernel');
  assert.equal(kernel.status, 200);
  assert.ok(kernel.bytes.equals(kernelBytes), 'readable again once the key row is restored');
  const deleted = await harness.api('DELETE', `/v1/vms/${vmId}?tenant=alpha`);
  assert.equal(deleted.status, 202, JSON.stringify(deleted.body));
  await harness.waitFor(
    async () => (await harness.api('GET', `/v1/vms/${vmId}?tenant=alpha`)).status === 404,
    30_000,
    'VM deleted',
  );
});

test('an altered platform signature makes tiny untrusted (403 RAMPART_UNTRUSTED_IMAGE)', async () => {
  const signature = withDb(
    (db) =>
      db.prepare("SELECT platform_signature FROM images WHERE name = 'tiny' AND tenant_id IS NULL").get() as {
        platform_signature: string;
      },
  ).platform_signature;
  const envelope = JSON.parse(signature) as { signatures: { sig: string }[] };
  envelope.signatures[0]!.sig = flipBase64(envelope.signatures[0]!.sig);
  const setSignature = (value: string) =>
    withDb((db) =>
      db
        .prepare("UPDATE images SET platform_signature = ? WHERE name = 'tiny' AND tenant_id IS NULL")
        .run(value),
    );
  setSignature(JSON.stringify(envelope));
  try {
    const refused = await harness.api<ErrorAnswer>('POST', '/v1/vms', {
      name: 'forged',
      image: 'tiny',
      flavor: 'tiny',
      start: false,
    });
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, 'RAMPART_UNTRUSTED_IMAGE');
    assert.match(refused.body.error.message, /platform signature is not valid/);
  } finally {
    setSignature(signature);
  }
  const accepted = await harness.api<Vm>('POST', '/v1/vms', {
    name: 'genuine',
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(accepted.status, 201, JSON.stringify(accepted.body));
  assert.equal((await harness.api('DELETE', '/v1/vms/genuine')).status, 202);
});

test('a download that cannot be decrypted is refused before any byte: 422 RAMPART_IMAGE_INTEGRITY', async () => {
  const expectIntegrityError = async (ref: string, part: 'kernel' | 'disk') => {
    const answer = await download('alpha', ref, part);
    const body = answer.bytes.toString('utf8');
    assert.equal(answer.status, 422, `${ref}/${part}: ${answer.status} ${body.slice(0, 300)}`);
    const parsed = JSON.parse(body) as ErrorAnswer;
    assert.equal(parsed.error.code, 'RAMPART_IMAGE_INTEGRITY');
  };
  // An edited blob header (its file id): the header tag does not verify.
  const diskSha = (await harness.api<Image>('GET', '/v1/images/clean-disk?tenant=alpha')).body.files.disk!;
  const original = flipByte(blobPath(tenants.alpha.id, diskSha), 20);
  try {
    await expectIntegrityError('clean-disk', 'disk');
  } finally {
    writeFileSync(blobPath(tenants.alpha.id, diskSha), original);
  }
  // A wrapped data key that does not unwrap.
  const wrapped = withDb(
    (db) =>
      db
        .prepare('SELECT wrapped FROM tenant_keys WHERE tenant_id = ? AND version = 1')
        .get(tenants.alpha.id) as { wrapped: string },
  ).wrapped;
  const setWrapped = (value: string) =>
    withDb((db) =>
      db
        .prepare('UPDATE tenant_keys SET wrapped = ? WHERE tenant_id = ? AND version = 1')
        .run(value, tenants.alpha.id),
    );
  setWrapped(flipBase64(wrapped));
  try {
    await expectIntegrityError(bundle.id, 'kernel');
  } finally {
    setWrapped(wrapped);
  }
  assert.equal((await download('alpha', 'clean-disk', 'disk')).status, 200);
});

test('master-key rotation re-wraps the data keys; images stay readable', async () => {
  const keyFile = join(harness.dataDir, 'secrets', 'master.key');
  const before = readFileSync(keyFile, 'utf8');
  const rowsBefore = withDb(
    (db) =>
      db.prepare('SELECT tenant_id, master_key_id FROM tenant_keys').all() as { master_key_id: string }[],
  );
  assert.ok(rowsBefore.length >= 2, 'platform and alpha have data keys');
  const oldMasterId = rowsBefore[0]!.master_key_id;

  const rotated = await harness.api<{ masterKeyId: string; rewrapped: number }>(
    'POST',
    '/v1/platform/keys/rotate-master',
  );
  assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
  assert.ok(rotated.body.rewrapped >= 1);
  assert.equal(rotated.body.rewrapped, rowsBefore.length);
  assert.notEqual(rotated.body.masterKeyId, oldMasterId);
  const after = readFileSync(keyFile, 'utf8');
  assert.notEqual(after, before);
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  assert.equal(existsSync(`${keyFile}.next`), false);
  const rowsAfter = withDb(
    (db) => db.prepare('SELECT master_key_id FROM tenant_keys').all() as { master_key_id: string }[],
  );
  assert.ok(rowsAfter.every((r) => r.master_key_id === rotated.body.masterKeyId));

  const kernel = await download('alpha', bundle.id, 'kernel');
  assert.equal(kernel.status, 200);
  assert.ok(kernel.bytes.equals(kernelBytes), 'byte-identical after the rotation');
  const initrd = await download('alpha', bundle.id, 'initrd');
  assert.ok(initrd.bytes.equals(initrdBytes));
  const audit = await harness.api<{ items: AuditRecordView[] }>(
    'GET',
    '/v1/platform/audit?action=platform:keys:rotate&limit=10',
  );
  assert.ok(
    audit.body.items.some((r) => r.outcome === 'success'),
    JSON.stringify(audit.body),
  );
});

test('deleting a tenant destroys its data keys (crypto-shredding) and its blobs', async () => {
  const disk = rawDisk(randomBytes(4096));
  const created = await createImage('charlie', 'doomed-disk', 'raw');
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const stored = await upload('charlie', created.body.id, 'disk', disk);
  assert.equal(stored.status, 200, JSON.stringify(stored.body));
  assert.equal(stored.body.status, 'active');
  const id = tenants.charlie.id;
  const blob = blobPath(id, sha256(disk));
  const saved = join(work, 'stolen.rpb');
  copyFileSync(blob, saved);
  const wrapped = withDb(
    (db) =>
      db.prepare('SELECT wrapped FROM tenant_keys WHERE tenant_id = ?').all(id) as { wrapped: string }[],
  );
  assert.equal(wrapped.length, 1, 'charlie got a data key with its first upload');

  const deleted = await harness.api('DELETE', '/v1/tenants/charlie');
  assert.equal(deleted.status, 204, JSON.stringify(deleted.body));
  const left = withDb(
    (db) => db.prepare('SELECT COUNT(*) AS n FROM tenant_keys WHERE tenant_id = ?').get(id) as { n: number },
  );
  assert.equal(left.n, 0, 'no wrapped data key of charlie is left');
  assert.equal(existsSync(blobDir(id)), false, "charlie's blob directory is gone");
  const blobRows = withDb(
    (db) => db.prepare('SELECT COUNT(*) AS n FROM image_blobs WHERE key_domain = ?').get(id) as { n: number },
  );
  assert.equal(blobRows.n, 0);
  const images = withDb(
    (db) => db.prepare('SELECT COUNT(*) AS n FROM images WHERE tenant_id = ?').get(id) as { n: number },
  );
  assert.equal(images.n, 0, "charlie's images went with it");

  // The saved copy names a key that no longer exists anywhere.
  assert.equal(await readKeyId(saved), `${id}/v1`);
  // secure_delete + WAL truncation: the wrapped key is not left in the database files either.
  for (const file of readdirSync(join(harness.dataDir, 'db'))) {
    const content = readFileSync(join(harness.dataDir, 'db', file)).toString('latin1');
    assert.equal(content.includes(wrapped[0]!.wrapped), false, `the wrapped key lingers in ${file}`);
  }
});

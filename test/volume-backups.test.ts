/**
 * Backups, across hosts: a volume written by a guest on host-a is backed up (its encrypted file and a
 * manifest signed by the platform key), restored as a new volume on host-b under a key of its own, and
 * read back by a guest there. A backup with one flipped byte is refused before any host reads it; only a
 * platform admin chooses the host; deleting a backup erases its file.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Host } from '../src/api/host.js';
import type { Volume, VolumeBackup } from '../src/api/volume.js';
import { runCli } from './helpers/cli-runner.js';
import { withRunningGuest } from './helpers/guest-console.js';
import { RampartHarness } from './helpers/rampart-harness.js';

let harness: RampartHarness;
const hostIds = new Map<string, string>();
const marker = `RAMPART-BACKUP-MARKER-${randomBytes(6).toString('hex')}`;

before(async () => {
  harness = await RampartHarness.start({
    env: { RAMPART_HOST_NAME: 'host-a' },
    extraHosts: [{ name: 'host-b' }],
  });
  for (const host of (await harness.api<{ items: Host[] }>('GET', '/v1/hosts')).body.items)
    hostIds.set(host.hostname, host.id);
});

after(async () => {
  await harness?.cleanup();
});

async function maintenance(host: string, on: boolean): Promise<void> {
  assert.equal(
    (await harness.api('PATCH', `/v1/hosts/${hostIds.get(host)}`, { maintenance: on })).status,
    200,
  );
}

/** Creates a stopped VM on `host` (the other one in maintenance meanwhile). */
async function vmOn(host: string, name: string): Promise<void> {
  const other = host === 'host-a' ? 'host-b' : 'host-a';
  await maintenance(other, true);
  const created = await harness.api<{ hostId: string }>('POST', '/v1/vms', {
    name,
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  await maintenance(other, false);
  assert.equal(created.status, 201);
  assert.equal(created.body.hostId, hostIds.get(host));
}

let backup: VolumeBackup;

test('a backup made on one host restores and boots on another, under a new key', async () => {
  await vmOn('host-a', 'writer');
  assert.equal((await harness.api('POST', '/v1/volumes', { name: 'source', sizeGiB: 1 })).status, 201);
  assert.equal((await harness.api('POST', '/v1/vms/writer/volumes', { volume: 'source' })).status, 200);
  await withRunningGuest(harness, 'writer', async (shell) => {
    const wrote = await shell.run(
      `echo ${marker} | dd of=/dev/vda bs=512 count=1 conv=sync 2>/dev/null; sync`,
    );
    assert.equal(wrote.status, 0);
  });

  const made = await runCli(harness, ['volume', 'backup', 'create', 'source', 'nightly']);
  assert.equal(made.code, 0, made.stderr);
  backup = (await harness.api<VolumeBackup>('GET', '/v1/backups/nightly')).body;
  assert.equal(backup.status, 'available');
  assert.match(backup.sha256 ?? '', /^[0-9a-f]{64}$/);
  assert.equal(backup.createdBy, 'admin');
  const file = join(harness.dataDir, 'backups', `${backup.id}.luks`);
  const head = Buffer.alloc(6);
  const fd = openSync(file, 'r');
  readSync(fd, head, 0, 6, 0);
  closeSync(fd);
  assert.equal(head.toString('latin1'), 'LUKS\xba\xbe', 'the backup is the encrypted file');

  // Only a platform admin picks the host; a tenant member's restore goes wherever the platform says.
  const member = await harness.createMember('restorer', 'a long enough password 9', 'default', 'member');
  const denied = await harness.api(
    'POST',
    '/v1/volumes',
    { name: 'nope', backup: backup.id, host: hostIds.get('host-b') },
    { authorization: `Bearer ${member}` },
  );
  assert.equal(denied.status, 403);

  const restored = await harness.api<Volume>('POST', '/v1/volumes', {
    name: 'restored',
    backup: backup.id,
    host: hostIds.get('host-b'),
  });
  assert.equal(restored.status, 201, JSON.stringify(restored.body));
  assert.equal(restored.body.hostId, hostIds.get('host-b'));
  assert.deepEqual(restored.body.origin, {
    volumeId: backup.volume.id,
    snapshotId: null,
    backupId: backup.id,
  });
  const restoredFile = join(harness.hostDir('host-b'), 'volumes', `${restored.body.id}.luks`);
  assert.ok(existsSync(restoredFile), 'the file is on host-b');

  await vmOn('host-b', 'reader');
  assert.equal((await harness.api('POST', '/v1/vms/reader/volumes', { volume: 'restored' })).status, 200);
  await withRunningGuest(harness, 'reader', async (shell) => {
    const read = await shell.run('dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 80');
    assert.match(read.output, new RegExp(marker), 'the data came across, readable with the new key');
  });
});

test('a backup with one flipped byte is refused before any host reads it', async () => {
  const file = join(harness.dataDir, 'backups', `${backup.id}.luks`);
  const fd = openSync(file, 'r+');
  const byte = Buffer.alloc(1);
  const at = 1024 * 1024 + 17; // inside the encrypted payload, past the LUKS header
  readSync(fd, byte, 0, 1, at);
  writeSync(fd, Buffer.from([byte[0]! ^ 0x01]), 0, 1, at);
  closeSync(fd);
  const refused = await harness.api<{ error: { code: string; message: string } }>('POST', '/v1/volumes', {
    name: 'tampered',
    backup: backup.id,
  });
  assert.equal(refused.status, 422);
  assert.equal(refused.body.error.code, 'RAMPART_BACKUP_INTEGRITY');
  assert.match(refused.body.error.message, /does not match the signed digest/);
  assert.equal((await harness.api('GET', '/v1/volumes/tampered')).status, 404, 'nothing was made');
  const cli = await runCli(harness, ['volume', 'create', 'tampered', '--from-backup', backup.id]);
  assert.equal(cli.code, 8, 'verification failures exit 8');

  const deleted = await runCli(harness, ['volume', 'backup', 'delete', 'nightly']);
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.equal(existsSync(file), false);
  const audit = await harness.api<{ items: { target: string; detail: string }[] }>(
    'GET',
    '/v1/audit?action=backup:delete&limit=5',
  );
  assert.match(audit.body.items.find((r) => r.target === backup.id)?.detail ?? '', /overwritten with zeros/);
  for (const vm of ['writer', 'reader']) await harness.api('DELETE', `/v1/vms/${vm}`);
});

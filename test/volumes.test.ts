/**
 * Encrypted volumes, end to end: created and counted in quotas, attached to a stopped VM, seen by the
 * guest as a virtio disk, written to, persisting across restarts, never in plaintext on the host (the
 * LUKS file holds no marker the guest wrote, no key on a command line, in state or left in the run
 * directory); snapshot, change, restore (the change is gone); a clone from the snapshot decrypts to the
 * same data under a key of its own (a tenant can forbid clones); grown, detached, and deleted with a
 * secure erase (the file's blocks hold zeros after, checked through a hard link taken before) that is
 * written to the audit log.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Volume, VolumeSnapshot } from '../src/api/volume.js';
import type { VmHardening } from '../src/api/hardening.js';
import { runCli } from './helpers/cli-runner.js';
import { GuestConsole, withRunningGuest } from './helpers/guest-console.js';
import { RampartHarness } from './helpers/rampart-harness.js';
import { allZero, fileContains, head } from './helpers/file-bytes.js';

let harness: RampartHarness;
const marker = `RAMPART-VOLUME-MARKER-${randomBytes(6).toString('hex')}`;

before(async () => {
  harness = await RampartHarness.start();
});

after(async () => {
  await harness?.cleanup();
});

function volumeFile(id: string): string {
  return join(harness.agentDir, 'volumes', `${id}.luks`);
}

function snapshotFile(id: string): string {
  return join(harness.agentDir, 'snapshots', `${id}.luks`);
}

test('volumes are created, validated, counted in quotas and listed', async () => {
  const created = await harness.api<Volume>('POST', '/v1/volumes', { name: 'data', sizeGiB: 1 });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.status, 'available');
  assert.equal(created.body.hostId, null, 'no host until attached');
  assert.equal(created.body.encryption, 'luks');
  assert.equal((await harness.api('POST', '/v1/volumes', { name: 'data', sizeGiB: 1 })).status, 409);
  assert.equal((await harness.api('POST', '/v1/volumes', { name: 'zero', sizeGiB: 0 })).status, 400);
  assert.equal(
    (await harness.api('POST', '/v1/volumes', { name: 'x', sizeGiB: 1, key: 'mine' })).status,
    400,
  );

  const quota = await harness.api<{ resources: Record<string, { usage: number }> }>(
    'GET',
    '/v1/tenants/default/quota',
  );
  assert.equal(quota.body.resources.volumes!.usage, 1);
  assert.equal(quota.body.resources.volumeGiB!.usage, 1);
  assert.equal((await harness.api('PUT', '/v1/tenants/default/quota', { volumeGiB: 2 })).status, 200);
  const over = await harness.api<{ error: { code: string } }>('POST', '/v1/volumes', {
    name: 'big',
    sizeGiB: 2,
  });
  assert.equal(over.status, 403);
  assert.equal(over.body.error.code, 'RAMPART_QUOTA_EXCEEDED');
  assert.equal((await harness.api('PUT', '/v1/tenants/default/quota', { volumeGiB: null })).status, 200);

  const listed = await runCli(harness, ['volume', 'list']);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /^data +1 GiB +available +- +- /m);
  assert.equal((await harness.api('GET', `/v1/volumes/data?tenant=${'no-such-tenant'}`)).status, 404);
});

test('a guest writes to its volume; the data survives restarts and never reaches the host in plaintext', async () => {
  assert.equal(
    (await harness.api('POST', '/v1/vms', { name: 'disk1', image: 'tiny', flavor: 'tiny', start: false }))
      .status,
    201,
  );
  const attach = await runCli(harness, ['volume', 'attach', 'data', 'disk1']);
  assert.equal(attach.code, 0, attach.stderr);
  const attached = (await harness.api<Volume>('GET', '/v1/volumes/data')).body;
  assert.equal(attached.status, 'attached');
  assert.equal(attached.vm?.name, 'disk1');
  assert.ok(attached.hostId, 'it now lives on the VM host');
  assert.equal((await harness.api('DELETE', '/v1/volumes/data')).status, 409, 'attached: not deletable');

  assert.equal((await harness.api('POST', '/v1/vms/disk1/start')).status, 202);
  const vm = await harness.waitForState('disk1', 'running');
  const shell = await GuestConsole.open(harness, 'disk1');
  try {
    assert.equal((await shell.run('test -b /dev/vda')).status, 0, 'the guest sees /dev/vda');
    const wrote = await shell.run(
      `echo ${marker} | dd of=/dev/vda bs=512 count=1 conv=sync 2>/dev/null; sync`,
    );
    assert.equal(wrote.status, 0, wrote.output);
  } finally {
    shell.close();
  }
  // The host holds an encrypted LUKS file, owned by the VM's uid alone; the key is nowhere to be read.
  const file = volumeFile(attached.id);
  assert.equal(head(file, 6).toString('latin1'), 'LUKS\xba\xbe');
  const stat = statSync(file);
  assert.equal(stat.mode & 0o777, 0o600);
  assert.equal(stat.uid, Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${vm.pid!}/status`, 'utf8'))![1]));
  assert.equal(fileContains(file, marker), false, 'no plaintext on the host');
  const cmdline = readFileSync(`/proc/${vm.pid!}/cmdline`, 'utf8');
  assert.match(cmdline, /driver":"luks"|driver=luks/);
  assert.doesNotMatch(cmdline, /data=|passphrase/, 'no key material on the command line');
  const runDir = join(harness.agentDir, 'vms', vm.id, 'run');
  await harness.waitFor(
    async () => readdirSync(runDir).every((f) => f.endsWith('.sock')),
    10_000,
    'key files removed once QEMU read them',
  );
  assert.doesNotMatch(readFileSync(join(harness.agentDir, 'vms', vm.id, 'state.json'), 'utf8'), /"key"/);
  const hardening = await harness.api<VmHardening>('GET', '/v1/vms/disk1/hardening');
  assert.ok(
    hardening.body.checks.filter((c) => c.name.startsWith('jail')).every((c) => c.ok),
    JSON.stringify(hardening.body.checks),
  );
  assert.equal((await harness.api('DELETE', '/v1/vms/disk1/volumes/data')).status, 409, 'running: no detach');

  // Snapshot, change, restore: the change is gone.
  assert.equal((await harness.api('POST', '/v1/vms/disk1/stop')).status, 202);
  await harness.waitForState('disk1', 'stopped');
  const snap = await runCli(harness, ['volume', 'snapshot', 'create', 'data', 'before']);
  assert.equal(snap.code, 0, snap.stderr);
  const snapshots = await harness.api<{ items: VolumeSnapshot[] }>('GET', '/v1/volumes/data/snapshots');
  assert.deepEqual(
    snapshots.body.items.map((s) => [s.name, s.createdBy, s.sizeGiB]),
    [['before', 'admin', 1]],
  );
  assert.equal(
    fileContains(snapshotFile(snapshots.body.items[0]!.id), marker),
    false,
    'snapshots stay encrypted',
  );
  await withRunningGuest(harness, 'disk1', async (shell) => {
    await shell.run(
      `echo CHANGED-${marker.slice(-6)} | dd of=/dev/vda bs=512 count=1 conv=sync 2>/dev/null; sync`,
    );
    assert.match(
      (await shell.run('dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 80')).output,
      /CHANGED-/,
    );
  });
  const restore = await runCli(harness, ['volume', 'restore', 'data', '--snapshot', 'before']);
  assert.equal(restore.code, 0, restore.stderr);
  await withRunningGuest(harness, 'disk1', async (shell) => {
    const read = await shell.run('dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 80');
    assert.match(read.output, new RegExp(marker));
    assert.doesNotMatch(read.output, /CHANGED-/);
  });

  // A clone: the same data under a key of its own, lineage recorded; a tenant may forbid clones.
  const snapshotId = snapshots.body.items[0]!.id;
  const clone = await harness.api<Volume>('POST', '/v1/volumes', { name: 'copy', snapshot: snapshotId });
  assert.equal(clone.status, 201, JSON.stringify(clone.body));
  assert.deepEqual(clone.body.origin, { snapshotId, volumeId: attached.id, backupId: null });
  assert.equal(clone.body.hostId, attached.hostId);
  const cloneFile = volumeFile(clone.body.id);
  assert.equal(fileContains(cloneFile, marker), false);
  // LUKS headers differ (own salt, own master key digest): nothing is shared with the origin.
  assert.notDeepEqual(head(cloneFile, 4096), head(file, 4096));
  assert.equal((await harness.api('POST', '/v1/vms/disk1/volumes', { volume: 'copy' })).status, 200);
  await withRunningGuest(harness, 'disk1', async (shell) => {
    const read = await shell.run('dd if=/dev/vdb bs=512 count=1 2>/dev/null | head -c 80');
    assert.match(read.output, new RegExp(marker), 'the clone decrypts with its own key to the same data');
  });
  assert.equal((await harness.api('DELETE', '/v1/vms/disk1/volumes/copy')).status, 200);
  assert.equal((await harness.api('PATCH', '/v1/tenants/default', { allowClones: false })).status, 200);
  const forbidden = await harness.api('POST', '/v1/volumes', { name: 'copy2', snapshot: snapshotId });
  assert.equal(forbidden.status, 403);
  assert.equal((await harness.api('PATCH', '/v1/tenants/default', { allowClones: true })).status, 200);
  assert.equal((await harness.api('DELETE', '/v1/volumes/data')).status, 409, 'attached (and has snapshots)');
  assert.equal((await harness.api('DELETE', '/v1/volumes/copy')).status, 202);
  assert.equal((await harness.api('DELETE', '/v1/volumes/data/snapshots/before')).status, 202);
  await harness.waitFor(
    async () => (await harness.api('GET', '/v1/volumes/data/snapshots/before')).status === 404,
    60_000,
    'snapshot erased',
  );
  assert.equal(existsSync(snapshotFile(snapshotId)), false);

  // Stop, grow, start: the data is still there and the guest sees the new size.
  const grown = await runCli(harness, ['volume', 'resize', 'data', '--size', '2']);
  assert.equal(grown.code, 0, grown.stderr);
  assert.equal((await harness.api('PATCH', '/v1/volumes/data', { sizeGiB: 1 })).status, 400, 'never shrinks');
  // And a flavor whose disks are throttled to 1 MiB/s (a QEMU throttle group per disk).
  const slow = await runCli(harness, [
    'flavor',
    'create',
    'slowdisk',
    '--vcpus',
    '1',
    '--memory',
    '128',
    '--disk',
    '1',
    '--disk-mibps',
    '1',
  ]);
  assert.equal(slow.code, 0, slow.stderr);
  assert.equal((await harness.api('POST', '/v1/vms/disk1/resize', { flavor: 'slowdisk' })).status, 200);
  assert.equal((await harness.api('POST', '/v1/vms/disk1/start')).status, 202);
  const throttled = await harness.waitForState('disk1', 'running');
  assert.equal(throttled.diskMiBps, 1);
  assert.match(
    readFileSync(`/proc/${throttled.pid!}/cmdline`, 'utf8'),
    /throttle-group,id=tg-vol0,x-bps-total=1048576/,
  );
  const again = await GuestConsole.open(harness, 'disk1');
  try {
    const read = await again.run('dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 80');
    assert.match(read.output, new RegExp(marker));
    const size = await again.run('cat /sys/block/vda/size');
    // 2 GiB in 512-byte sectors, minus nothing: LUKS's header is outside the guest's view.
    assert.match(size.output, /^4194304$/m);
    // 8 MiB written through to the disk at 1 MiB/s cannot take less than about 7 seconds. Timed on the
    // host (a TCG guest's clock can fall behind under load) and only as a lower bound: a busy host makes
    // it slower, never faster; unthrottled it takes about a second. QEMU lets a request through while
    // its bucket is not full and charges it afterwards, so requests are kept small (64 KiB): merged
    // into 4 MiB ones, the last half would be written before the bucket made it wait.
    const capped = await again.run('echo 64 > /sys/block/vda/queue/max_sectors_kb');
    assert.equal(capped.status, 0, capped.output);
    const started = Date.now();
    const timed = await again.run('dd if=/dev/zero of=/dev/vda bs=1M count=8 seek=16 conv=fsync', 120_000);
    const elapsed = (Date.now() - started) / 1000;
    assert.equal(timed.status, 0, timed.output);
    assert.ok(elapsed >= 6, `8 MiB at 1 MiB/s took ${elapsed} s`);
  } finally {
    again.close();
  }
  assert.equal((await harness.api('POST', '/v1/vms/disk1/stop')).status, 202);
  await harness.waitForState('disk1', 'stopped');
  const detached = await runCli(harness, ['volume', 'detach', 'data', 'disk1']);
  assert.equal(detached.code, 0, detached.stderr);
  assert.equal((await harness.api<Volume>('GET', '/v1/volumes/data')).body.status, 'available');
});

test('deleting a volume erases it on its host: its blocks hold zeros, and the erase is audited', async () => {
  const volume = (await harness.api<Volume>('GET', '/v1/volumes/data')).body;
  const file = volumeFile(volume.id);
  assert.ok(existsSync(file));
  // A second name for the same inode: what the erase leaves in the file's blocks stays readable here.
  const probe = `${file}.probe`;
  linkSync(file, probe);
  const deleting = await harness.api<Volume>('DELETE', '/v1/volumes/data');
  assert.equal(deleting.status, 202);
  assert.equal(deleting.body.status, 'deleting');
  await harness.waitFor(
    async () => (await harness.api('GET', '/v1/volumes/data')).status === 404,
    120_000,
    'volume deleted',
  );
  assert.equal(existsSync(file), false);
  assert.equal(statSync(probe).size > 0, true);
  assert.equal(allZero(probe), true, 'every byte of the former volume is zero');
  const audit = await harness.api<{
    items: { action: string; target: string; outcome: string; detail: string }[];
  }>('GET', '/v1/audit?action=volume:erase&limit=5');
  const erase = audit.body.items.find((r) => r.target === volume.id);
  assert.ok(erase, JSON.stringify(audit.body));
  assert.equal(erase.outcome, 'success');
  assert.match(erase.detail, /bytes overwritten with zeros, then removed/);
  const quota = await harness.api<{ resources: Record<string, { usage: number }> }>(
    'GET',
    '/v1/tenants/default/quota',
  );
  assert.equal(quota.body.resources.volumes!.usage, 0);
  await harness.api('DELETE', '/v1/vms/disk1');
});

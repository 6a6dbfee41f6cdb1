import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { seedFiles, writeSeedImage } from './nocloud-seed.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDz8Vd6Ez3n0Hn0Vq0Q6ZlYyYpYF1e5A0cVdZ8X5r3bq tester@host';
const NIC = { mac: '52:54:00:12:34:56', ipv4: '10.9.0.5', prefixLength: 24, gateway: '10.9.0.1' };

test('seed files carry the instance id, hostname, quoted keys and static addressing per MAC', () => {
  const files = seedFiles({ instanceId: 'vm-1', hostname: 'web-1', sshKeys: [KEY] }, [NIC]);
  assert.equal(files['meta-data'], 'instance-id: vm-1\nlocal-hostname: web-1\n');
  assert.equal(files['user-data'], `#cloud-config\nhostname: web-1\nssh_authorized_keys:\n  - "${KEY}"\n`);
  assert.match(files['network-config'], /^version: 2\nethernets:\n {4}eth0:\n/);
  assert.match(files['network-config'], / {8}macaddress: "52:54:00:12:34:56"\n/);
  assert.match(files['network-config'], / {8}- 10\.9\.0\.5\/24\n {6}gateway4: 10\.9\.0\.1\n/);
  const none = seedFiles({ instanceId: 'vm-2', hostname: 'b', sshKeys: [] }, []);
  assert.match(none['user-data'], /ssh_authorized_keys: \[\]/);
  assert.equal(none['network-config'], 'version: 2\nethernets: {}\n');
});

test('values that could break out of the YAML are refused', () => {
  const ok = { instanceId: 'vm-1', hostname: 'web', sshKeys: [KEY] };
  assert.throws(() => seedFiles({ ...ok, hostname: 'a\nuser-data: x' }, []), /hostname/);
  assert.throws(() => seedFiles({ ...ok, instanceId: 'x y' }, []), /instance-id/);
  assert.throws(() => seedFiles({ ...ok, sshKeys: [`${KEY}"\n- evil`] }, []), /SSH public key/);
  assert.throws(() => seedFiles(ok, [{ ...NIC, mac: '52:54:00:12:34:56\n' }]), /MAC/);
  assert.throws(() => seedFiles(ok, [{ ...NIC, ipv4: '10.0.0.256' }]), /IPv4/);
});

test('the seed image is a FAT filesystem labelled CIDATA holding the files, owned by the VM uid', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-seed-'));
  try {
    const target = join(dir, 'seed.img');
    const files = seedFiles({ instanceId: 'vm-1', hostname: 'web-1', sshKeys: [KEY] }, [NIC]);
    await writeSeedImage(
      target,
      files,
      { mkfsVfat: '/usr/sbin/mkfs.vfat', mcopy: '/usr/bin/mcopy' },
      {
        uid: 4242,
        gid: 4242,
      },
    );
    const stat = statSync(target);
    assert.equal(stat.uid, 4242);
    assert.equal(stat.mode & 0o777, 0o400);
    const label = execFileSync('blkid', ['-o', 'value', '-s', 'LABEL', target], { encoding: 'utf8' });
    assert.equal(label.trim(), 'CIDATA');
    for (const name of ['meta-data', 'user-data', 'network-config'] as const) {
      const read = execFileSync('mtype', ['-i', target, `::${name}`], {
        encoding: 'utf8',
        env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
      });
      assert.equal(read, files[name]);
    }
    assert.deepEqual(readdirSync(dir), ['seed.img'], 'the staging directory is gone');
    // Rewritten (e.g. the next boot after a change): replaced in place.
    const again = seedFiles({ instanceId: 'vm-1', hostname: 'web-2', sshKeys: [] }, []);
    await writeSeedImage(
      target,
      again,
      { mkfsVfat: '/usr/sbin/mkfs.vfat', mcopy: '/usr/bin/mcopy' },
      {
        uid: 4242,
        gid: 4242,
      },
    );
    const meta = execFileSync('mtype', ['-i', target, '::meta-data'], {
      encoding: 'utf8',
      env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
    });
    assert.match(meta, /local-hostname: web-2/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Paths never escape a VM's directory (SECURITY-TESTS.md item 14): crafted names are refused at the
 * edge with 400 and create nothing; links planted in a VM's directory (in place of its console log,
 * QEMU log, state file or run directory) are removed, never followed, so the files they pointed at
 * stay untouched while the VM starts and runs normally.
 */
import assert from 'node:assert/strict';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Vm } from '../src/api/vm.js';
import { RampartHarness } from './helpers/rampart-harness.js';

let harness: RampartHarness;
let victims: string;

before(async () => {
  harness = await RampartHarness.start();
  victims = mkdtempSync(join(tmpdir(), 'rampart-victims-'));
});

after(async () => {
  await harness?.cleanup();
  if (victims) rmSync(victims, { recursive: true, force: true });
});

test('crafted VM names are refused with 400 and create nothing', async () => {
  const vmsDir = join(harness.dataDir, 'agent', 'vms');
  const before = readdirSync(vmsDir).sort();
  for (const name of [
    '../escape',
    'a/b',
    'a\u0000b',
    'a\nb',
    'x'.repeat(64),
    'a;rm -rf /',
    '$(id)',
    'UPPER',
    '-lead',
  ]) {
    const answer = await harness.api('POST', '/v1/vms', {
      name,
      image: 'tiny',
      flavor: 'tiny',
      start: false,
    });
    assert.equal(answer.status, 400, JSON.stringify(name));
  }
  for (const ref of ['..%2F..%2Fetc', '%2e%2e', 'a%00b'])
    assert.ok([400, 404].includes((await harness.api('GET', `/v1/vms/${ref}`)).status), ref);
  assert.deepEqual(readdirSync(vmsDir).sort(), before);
});

test("links planted in a VM's directory are removed, never followed", async () => {
  // Boot once so the VM's directory and files exist, stop it, then plant the links.
  const created = await harness.api<Vm>('POST', '/v1/vms', {
    name: 'planted',
    image: 'tiny',
    flavor: 'tiny',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await harness.waitForState('planted', 'running');
  assert.equal((await harness.api('POST', '/v1/vms/planted/stop', { force: true })).status, 202);
  await harness.waitForState('planted', 'stopped');
  const vmDir = join(harness.dataDir, 'agent', 'vms', created.body.id);
  assert.ok(existsSync(join(vmDir, 'console.log')));
  const victimDir = join(victims, 'dir');
  mkdirSync(victimDir, { mode: 0o755 });
  const plants: Record<string, string> = {};
  for (const file of ['console.log', 'qemu.log', 'state.json.tmp']) {
    const victim = join(victims, file);
    writeFileSync(victim, 'untouched\n', { mode: 0o644 });
    rmSync(join(vmDir, file), { force: true });
    symlinkSync(victim, join(vmDir, file));
    plants[file] = victim;
  }
  rmSync(join(vmDir, 'run'), { recursive: true, force: true });
  symlinkSync(victimDir, join(vmDir, 'run'));

  assert.equal((await harness.api('POST', '/v1/vms/planted/start')).status, 202);
  await harness.waitForState('planted', 'running');
  for (const [file, victim] of Object.entries(plants)) {
    assert.equal(readFileSync(victim, 'utf8'), 'untouched\n', `${file} was followed`);
    assert.ok(
      !lstatSync(join(vmDir, file), { throwIfNoEntry: false })?.isSymbolicLink(),
      `${file} still a link`,
    );
  }
  const dir = statSync(victimDir);
  assert.equal(dir.uid, 0, 'the victim directory was not chowned to the VM uid');
  assert.equal(dir.mode & 0o777, 0o755);
  assert.deepEqual(readdirSync(victimDir), [], 'no socket was created in the victim directory');
  assert.ok(lstatSync(join(vmDir, 'run')).isDirectory());
  // The console log is a real file again and fills as the guest talks.
  assert.ok(statSync(join(vmDir, 'console.log')).size > 0);
  assert.equal((await harness.api('POST', '/v1/vms/planted/stop', { force: true })).status, 202);
  await harness.waitForState('planted', 'stopped');
});

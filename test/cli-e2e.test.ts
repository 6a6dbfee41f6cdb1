/**
 * The `rampart` CLI against a real server and agent: tables, JSON output, --wait with progress on a
 * real boot, and the documented exit codes.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Vm } from '../src/api/vm.js';
import { runCli, type CliResult } from './helpers/cli-runner.js';
import { RampartHarness } from './helpers/rampart-harness.js';

let rampart: RampartHarness;

const cli = (args: string[], token?: string): Promise<CliResult> => runCli(rampart, args, token);

before(async () => {
  rampart = await RampartHarness.start();
});

after(async () => {
  await rampart?.cleanup();
});

test('flavor, image and host listings print tables', async () => {
  const flavors = await cli(['flavor', 'list']);
  assert.equal(flavors.code, 0, flavors.stderr);
  assert.match(flavors.stdout, /NAME/);
  assert.match(flavors.stdout, /tiny/);
  assert.match(flavors.stdout, /medium/);
  const images = await cli(['image', 'list', '-o', 'json']);
  assert.equal(images.code, 0, images.stderr);
  assert.equal((JSON.parse(images.stdout) as { items: { name: string }[] }).items[0]?.name, 'tiny');
  const hosts = await cli(['host', 'list']);
  assert.equal(hosts.code, 0, hosts.stderr);
  assert.match(hosts.stdout, /online/);
});

test('vm create --wait boots a real VM, stop/delete --wait take it down', async () => {
  const created = await cli([
    'vm',
    'create',
    'cli1',
    '--image',
    'tiny',
    '--flavor',
    'tiny',
    '--wait',
    '--timeout',
    '180',
  ]);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stderr, /cli1: running/);
  const shown = await cli(['vm', 'show', 'cli1', '-o', 'json']);
  assert.equal(shown.code, 0);
  const vm = JSON.parse(shown.stdout) as Vm;
  assert.equal(vm.state, 'running');
  assert.deepEqual(vm.guestIps, ['10.0.2.15/24']);
  const illegal = await cli(['vm', 'resume', 'cli1']);
  assert.equal(illegal.code, 4, 'illegal state -> exit 4');
  assert.match(illegal.stderr, /RAMPART_ILLEGAL_STATE/);
  const stopped = await cli(['vm', 'stop', 'cli1', '--wait', '--timeout', '60']);
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.equal((await rampart.vm('cli1')).state, 'stopped');
  const deleted = await cli(['vm', 'delete', 'cli1', '--wait', '--timeout', '60']);
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.equal((await rampart.api('GET', '/v1/vms/cli1')).status, 404);
});

test('documented exit codes: not found 3, bad token 5, usage 2', async () => {
  const missing = await cli(['vm', 'show', 'nope']);
  assert.equal(missing.code, 3);
  assert.match(missing.stderr, /RAMPART_NOT_FOUND/);
  const badToken = await cli(['vm', 'list'], 'wrong-token-000000000000000000');
  assert.equal(badToken.code, 5);
  assert.ok(!badToken.stderr.includes('wrong-token-000000000000000000'), 'the token is never printed');
  const usage = await cli(['vm', 'list', '-o', 'yaml']);
  assert.equal(usage.code, 2);
});

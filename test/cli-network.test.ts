/**
 * `rampart network`, `rampart secgroup` and the VM port commands against a real server: tables and
 * JSON, rules added and deleted, input refused locally (exit 2, nothing sent) and by the server (a
 * subnet with host bits), and a VM created stopped on a network (no boot: its counters may be null).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Network, Port, SecurityGroup, SecurityGroupRule } from '../src/api/network.js';
import type { Vm } from '../src/api/vm.js';
import { runCli, type CliResult } from './helpers/cli-runner.js';
import { RampartHarness } from './helpers/rampart-harness.js';

let rampart: RampartHarness;

const cli = (args: string[]): Promise<CliResult> => runCli(rampart, args);

async function ok(args: string[]): Promise<string> {
  const result = await cli(args);
  assert.equal(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

async function json<T>(args: string[]): Promise<T> {
  return JSON.parse(await ok([...args, '-o', 'json'])) as T;
}

/** Lines of a table as arrays of cells (columns are three or more spaces apart). */
function rows(table: string): string[][] {
  return table
    .trimEnd()
    .split('\n')
    .map((line) => line.split(/ {3,}/));
}

before(async () => {
  rampart = await RampartHarness.start();
});

after(async () => {
  await rampart?.cleanup();
});

test('network create, list, show and delete; bad subnets are refused', async () => {
  assert.match(
    await ok(['network', 'create', 'backend', '--cidr', '10.20.0.0/24']),
    /network backend: created/,
  );
  const created = await json<Network>([
    'network',
    'create',
    'frontend',
    '--cidr',
    '10.30.0.0/28',
    '--description',
    'web tier',
  ]);
  assert.equal(created.cidr, '10.30.0.0/28');
  assert.equal(created.description, 'web tier');

  const table = rows(await ok(['network', 'list']));
  assert.deepEqual(table[0], ['NAME', 'CIDR', 'OUTBOUND', 'PORTS', 'CAPACITY', 'AGE']);
  const backend = table.find((r) => r[0] === 'backend');
  assert.deepEqual(backend?.slice(0, 4), ['backend', '10.20.0.0/24', 'off', '0']);
  assert.match(backend?.[4] ?? '', /^[0-9]+$/);
  const listed = await json<{ items: Network[] }>(['network', 'list']);
  assert.deepEqual(listed.items.map((n) => n.name).sort(), ['backend', 'frontend']);

  const shown = await ok(['network', 'show', 'frontend']);
  assert.match(shown, /CIDR: +10\.30\.0\.0\/28/);
  assert.match(shown, /Description: +web tier/);
  assert.match(shown, /Outbound: +off/);
  // Outbound access is turned on and off with `network set`.
  assert.match(await ok(['network', 'set', 'frontend', '--outbound', 'on']), /Outbound: +on/);
  assert.equal((await json<Network>(['network', 'set', 'frontend', '--outbound', 'off'])).outbound, false);
  assert.equal((await json<Network>(['network', 'show', created.id])).name, 'frontend');

  // The server refuses a subnet with host bits (400 -> exit 2); the CLI refuses a malformed one itself.
  const hostBits = await cli(['network', 'create', 'bad', '--cidr', '10.20.0.5/24']);
  assert.equal(hostBits.code, 2, hostBits.stderr);
  assert.match(hostBits.stderr, /host bits/);
  assert.match(hostBits.stderr, /RAMPART_INVALID_INPUT/);
  const malformed = await cli(['network', 'create', 'bad', '--cidr', '10.20.0.0']);
  assert.equal(malformed.code, 2);
  assert.match(malformed.stderr, /IPv4 CIDR/);
  const taken = await cli(['network', 'create', 'backend', '--cidr', '10.40.0.0/24']);
  assert.equal(taken.code, 4, taken.stderr);

  assert.match(await ok(['network', 'delete', 'frontend']), /network frontend: deleted/);
  const gone = await cli(['network', 'show', 'frontend']);
  assert.equal(gone.code, 3);
});

test('secgroup create, rules added and deleted, list and show; bad rules are refused', async () => {
  assert.match(
    await ok(['secgroup', 'create', 'web', '--description', 'web servers']),
    /security group web: created/,
  );
  await ok(['secgroup', 'create', 'admin']);

  const http = await json<SecurityGroupRule>([
    'secgroup',
    'rule',
    'add',
    'web',
    '--direction',
    'ingress',
    '--protocol',
    'tcp',
    '--port',
    '80',
  ]);
  assert.deepEqual([http.portMin, http.portMax, http.remoteCidr], [80, 80, '0.0.0.0/0']);
  const range = await ok([
    'secgroup',
    'rule',
    'add',
    'web',
    '--direction',
    'ingress',
    '--protocol',
    'udp',
    '--ports',
    '8000-8080',
    '--remote-cidr',
    '192.168.0.0/16',
  ]);
  assert.match(range, /^rule [0-9a-f-]{36} added to web: ingress udp\/8000-8080 from 192\.168\.0\.0\/16$/m);
  await ok([
    'secgroup',
    'rule',
    'add',
    'web',
    '--direction',
    'ingress',
    '--protocol',
    'icmp',
    '--remote-group',
    'admin',
  ]);

  const group = await json<SecurityGroup>(['secgroup', 'show', 'web']);
  assert.equal(group.rules.length, 3);
  const shown = await ok(['secgroup', 'show', 'web']);
  assert.match(shown, /Description: +web servers/);
  const table = rows(shown.slice(shown.indexOf('ID ')));
  assert.deepEqual(table[0]?.slice(0, 5), ['ID', 'DIRECTION', 'PROTOCOL', 'PORTS', 'REMOTE']);
  assert.deepEqual(
    table.slice(1).map((r) => r.slice(1, 5)),
    [
      ['ingress', 'tcp', '80', '0.0.0.0/0'],
      ['ingress', 'udp', '8000-8080', '192.168.0.0/16'],
      ['ingress', 'icmp', '-', 'group:admin'],
    ],
  );

  const list = rows(await ok(['secgroup', 'list']));
  assert.deepEqual(list[0], ['NAME', 'RULES', 'DESCRIPTION', 'AGE']);
  assert.deepEqual(
    list.slice(1).map((r) => [r[0], r[1]]),
    [
      ['admin', '0'],
      ['default', '1'],
      ['web', '3'],
    ],
  );
  const listed = await json<{ items: SecurityGroup[] }>(['secgroup', 'list']);
  assert.deepEqual(
    listed.items.map((g) => g.name),
    ['admin', 'default', 'web'],
  );

  // Refused locally: exit 2 and nothing changes.
  const add = ['secgroup', 'rule', 'add', 'web', '--direction', 'ingress'];
  for (const [args, message] of [
    [[...add, '--protocol', 'icmp', '--port', '80'], /tcp and udp rules only/],
    [[...add, '--protocol', 'tcp', '--ports', '8080-8000'], /port range/],
    [[...add, '--protocol', 'tcp', '--ports', '1-70000'], /port range/],
    [[...add, '--protocol', 'tcp', '--remote-cidr', '10.0.0/8'], /IPv4 CIDR/],
    [[...add, '--protocol', 'gre'], /Allowed choices are tcp, udp, icmp, any/],
    [[...add, '--protocol', 'tcp', '--remote-cidr', '10.0.0.0/8', '--remote-group', 'admin'], /not both/],
  ] as const) {
    const refused = await cli([...args]);
    assert.equal(refused.code, 2, args.join(' '));
    assert.match(refused.stderr, message);
  }
  assert.equal((await json<SecurityGroup>(['secgroup', 'show', 'web'])).rules.length, 3);

  // A rule goes by its full id or a unique prefix.
  assert.match(await ok(['secgroup', 'rule', 'delete', 'web', http.id]), /deleted from web/);
  const second = group.rules[1]!;
  assert.equal(
    await ok(['secgroup', 'rule', 'delete', 'web', second.id.slice(0, 8)]),
    `rule ${second.id} deleted from web\n`,
  );
  const missing = await cli(['secgroup', 'rule', 'delete', 'web', http.id]);
  assert.equal(missing.code, 3);
  assert.equal((await json<SecurityGroup>(['secgroup', 'show', 'web'])).rules.length, 1);

  // admin is referenced by web's remaining rule: the server refuses to delete it.
  const referenced = await cli(['secgroup', 'delete', 'admin']);
  assert.equal(referenced.code, 4, referenced.stderr);
});

test('vm create --network --security-group, vm ports and vm port-groups (no boot)', async () => {
  const created = await json<Vm>([
    'vm',
    'create',
    'net1',
    '--image',
    'tiny',
    '--flavor',
    'tiny',
    '--no-start',
    '--network',
    'backend',
    '--security-group',
    'web',
    '--security-group',
    'default',
  ]);
  assert.equal(created.name, 'net1');

  const ports = await json<{ items: Port[] }>(['vm', 'ports', 'net1']);
  assert.equal(ports.items.length, 1);
  const port = ports.items[0]!;
  assert.equal(port.networkName, 'backend');
  assert.match(port.ipv4, /^10\.20\.0\.[0-9]+$/);
  assert.equal(port.prefixLength, 24);
  assert.deepEqual(port.securityGroups.map((g) => g.name).sort(), ['default', 'web']);

  const table = rows(await ok(['vm', 'ports', 'net1']));
  assert.deepEqual(table[0], ['PORT', 'NETWORK', 'IPV4', 'MAC', 'GROUPS', 'SPOOF-DROPS', 'INGRESS-DENIED']);
  assert.deepEqual(table[1]?.slice(0, 4), [port.id.slice(0, 8), 'backend', `${port.ipv4}/24`, port.mac]);
  assert.deepEqual(table[1]?.[4]?.split(',').sort(), ['default', 'web']);
  if (port.counters === null) assert.deepEqual(table[1]?.slice(5), ['-', '-']);

  const networks = rows(await ok(['network', 'list']));
  assert.equal(networks.find((r) => r[0] === 'backend')?.[3], '1', 'the port counts on its network');

  // The short id from the table is enough.
  const updated = await json<Port>(['vm', 'port-groups', 'net1', port.id.slice(0, 8), 'admin']);
  assert.deepEqual(
    updated.securityGroups.map((g) => g.name),
    ['admin'],
  );
  assert.match(await ok(['vm', 'port-groups', 'net1', port.id, 'web', 'default']), /security groups /);

  // Refused: groups without a network (locally), an unknown network (the server's 400), a network in use.
  const noNetwork = await cli([
    'vm',
    'create',
    'net2',
    '--image',
    'tiny',
    '--flavor',
    'tiny',
    '--no-start',
    '--security-group',
    'web',
  ]);
  assert.equal(noNetwork.code, 2);
  assert.match(noNetwork.stderr, /--network/);
  const unknown = await cli([
    'vm',
    'create',
    'net3',
    '--image',
    'tiny',
    '--flavor',
    'tiny',
    '--no-start',
    '--network',
    'nope',
  ]);
  assert.equal(unknown.code, 2, unknown.stderr);
  assert.match(unknown.stderr, /network "nope" not found/);
  const inUse = await cli(['network', 'delete', 'backend']);
  assert.equal(inUse.code, 4, inUse.stderr);

  await ok(['vm', 'delete', 'net1', '--wait', '--timeout', '60']);
  assert.match(await ok(['network', 'delete', 'backend']), /deleted/);
  assert.match(await ok(['secgroup', 'delete', 'web']), /security group web: deleted/);
  await ok(['secgroup', 'delete', 'admin']);
  assert.deepEqual(
    (await json<{ items: SecurityGroup[] }>(['secgroup', 'list'])).items.map((g) => g.name),
    ['default'],
  );
});

import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CIDR4_PATTERN, IPV4_PATTERN } from '../../api/host-network.js';
import {
  NetworkCreate,
  PortSecurityGroupsUpdate,
  SecurityGroupCreate,
  type Port,
} from '../../api/network.js';
import { VmCreate } from '../../api/vm.js';
import { LocalNotFoundError, UsageError } from '../errors.js';
import { run } from '../program.js';
import { startFakeApi, testIo, vmFixture, type FakeApi, type Handler } from '../testing.js';
import * as n from './network.js';

const PORT_ID = 'aaaaaaaa-1111-4222-8333-444444444444';

function portFixture(overrides: Partial<Port> = {}): Port {
  return {
    id: PORT_ID,
    vmId: 'bbbbbbbb-1111-4222-8333-444444444444',
    networkId: 'cccccccc-1111-4222-8333-444444444444',
    networkName: 'backend',
    mac: '52:54:00:12:34:56',
    ipv4: '10.0.0.2',
    prefixLength: 24,
    securityGroups: [
      { id: 'dddddddd-1111-4222-8333-444444444444', name: 'default' },
      { id: 'eeeeeeee-1111-4222-8333-444444444444', name: 'web' },
    ],
    allowedAddresses: [],
    quarantined: false,
    counters: {
      fromGuestPackets: 10,
      spoofDrops: { 'source-ip': 3, 'source-mac': 2 },
      ingressDenied: 7,
      egressDenied: 0,
    },
    ...overrides,
  };
}

void describe('network validators mirror the API contract', () => {
  void it('uses the same patterns and limits as src/api', () => {
    assert.equal(n.IPV4_PATTERN, IPV4_PATTERN);
    assert.equal(n.CIDR4_PATTERN, CIDR4_PATTERN);
    const description = (schema: unknown) => (schema as { maxLength: number }).maxLength;
    assert.equal(n.DESCRIPTION_MAX_LENGTH, description(NetworkCreate.properties.description));
    assert.equal(n.DESCRIPTION_MAX_LENGTH, description(SecurityGroupCreate.properties.description));
    const max = (schema: unknown) => (schema as { maxItems: number }).maxItems;
    assert.equal(n.PORT_GROUPS_MAX, max(PortSecurityGroupsUpdate.properties.securityGroups));
    assert.equal(n.PORT_GROUPS_MAX, max(VmCreate.properties.securityGroups));
  });

  void it('checks the shape of a CIDR', () => {
    for (const good of ['10.0.0.0/24', '0.0.0.0/0', '192.168.1.7/32', '10.1.2.3/8'])
      assert.equal(n.parseCidr(good), good);
    for (const bad of [
      '10.0.0.0',
      '10.0.0/24',
      '10.0.0.0/33',
      '256.0.0.0/8',
      '10.0.0.0/',
      'a.b.c.d/8',
      ' 10.0.0.0/24',
    ])
      assert.throws(() => n.parseCidr(bad), bad);
  });

  void it('limits descriptions', () => {
    assert.equal(n.descriptionOf(3)('abc'), 'abc');
    assert.throws(() => n.descriptionOf(3)('abcd'));
  });

  void it('collects repeated security groups without duplicates, at most 16', () => {
    let list = n.collectGroups('web', undefined);
    list = n.collectGroups('db', list);
    list = n.collectGroups('web', list);
    assert.deepEqual(list, ['web', 'db']);
    assert.throws(() => n.collectGroups('Bad_Name', list));
    let many: string[] | undefined;
    for (let i = 0; i < 16; i++) many = n.collectGroups(`g${i}`, many);
    assert.equal(many?.length, 16);
    assert.throws(() => n.collectGroups('g16', many), /At most 16/);
  });

  void it('takes ids and id prefixes, and resolves a prefix to one item', () => {
    assert.equal(n.parseIdPrefix('AAAAAAAA'), 'aaaaaaaa');
    assert.equal(n.parseIdPrefix(PORT_ID), PORT_ID);
    for (const bad of ['aaa', 'xyz12345', '-aaaa', 'a'.repeat(37), ''])
      assert.throws(() => n.parseIdPrefix(bad), bad);
    const items = [{ id: PORT_ID }, { id: 'aaaaaaaa-2222-4222-8333-444444444444' }, { id: 'bbbb0000' }];
    assert.equal(n.pickByIdPrefix(items, 'bbbb', 'port'), items[2]);
    assert.equal(n.pickByIdPrefix(items, PORT_ID, 'port'), items[0]);
    assert.equal(n.pickByIdPrefix(items, 'aaaaaaaa-2', 'port'), items[1]);
    assert.throws(() => n.pickByIdPrefix(items, 'aaaa', 'port'), UsageError);
    assert.throws(() => n.pickByIdPrefix(items, 'cccc', 'port'), LocalNotFoundError);
  });
});

void describe('network and port tables', () => {
  void it('prints networks', () => {
    const now = Date.parse('2026-01-01T12:00:00Z');
    const table = n.networkTable(
      [
        {
          id: 'cccccccc-1111-4222-8333-444444444444',
          tenantId: 'dddddddd-1111-4222-8333-444444444444',
          name: 'backend',
          cidr: '10.0.0.0/24',
          gateway: '10.0.0.1',
          outbound: false,
          capacity: 252,
          ports: 3,
          description: '',
          createdAt: '2026-01-01T10:00:00Z',
        },
      ],
      now,
    );
    assert.equal(
      table,
      [
        'NAME      CIDR          OUTBOUND   PORTS   CAPACITY   AGE',
        'backend   10.0.0.0/24   off        3       252        2h',
        '',
      ].join('\n'),
    );
  });

  void it('prints ports with short ids and summed spoof drops; - without counters', () => {
    const table = n.portTable([
      portFixture(),
      portFixture({ id: 'ffffffff-1111-4222-8333-444444444444', securityGroups: [], counters: null }),
    ]);
    assert.equal(
      table,
      [
        'PORT       NETWORK   IPV4          MAC                 GROUPS        SPOOF-DROPS   INGRESS-DENIED',
        'aaaaaaaa   backend   10.0.0.2/24   52:54:00:12:34:56   default,web   5             7',
        'ffffffff   backend   10.0.0.2/24   52:54:00:12:34:56   (none)        -             -',
        '',
      ].join('\n'),
    );
  });
});

void describe('vm network commands against a fake API', () => {
  let api: FakeApi;
  let handler: Handler = () => undefined;
  before(async () => {
    api = await startFakeApi((req) => handler(req));
  });
  after(() => api.close());
  beforeEach(() => {
    api.requests.length = 0;
  });
  const env = () => ({ RAMPART_URL: api.url, RAMPART_TOKEN: 'admin-token' });

  void it('vm create sends --network and the repeated --security-group', async () => {
    handler = (req) =>
      req.method === 'POST' && req.url === '/v1/vms' ? { status: 202, body: vmFixture() } : undefined;
    const io = testIo(env());
    const args = ['vm', 'create', 'web1', '--image', 'tiny', '--flavor', 'tiny', '--no-start'];
    assert.equal(
      await run([...args, '--network', 'backend', '--security-group', 'web', '--security-group', 'db'], io),
      0,
      io.stderr.text,
    );
    assert.deepEqual(JSON.parse(api.requests[0]?.body ?? ''), {
      name: 'web1',
      image: 'tiny',
      flavor: 'tiny',
      start: false,
      network: 'backend',
      securityGroups: ['web', 'db'],
    });
  });

  void it('vm create refuses --security-group without --network before sending', async () => {
    const io = testIo(env());
    assert.equal(
      await run(
        ['vm', 'create', 'web1', '--image', 'tiny', '--flavor', 'tiny', '--security-group', 'web'],
        io,
      ),
      2,
    );
    assert.match(io.stderr.text, /give --network too/);
    assert.equal(api.requests.length, 0);
  });

  void it('vm port-groups resolves a port id prefix and PUTs the groups', async () => {
    handler = (req) => {
      if (req.method === 'GET' && req.url === '/v1/vms/web1/ports')
        return { body: { items: [portFixture()] } };
      if (req.method === 'PUT' && req.url === `/v1/vms/web1/ports/${PORT_ID}/security-groups`)
        return { body: portFixture({ securityGroups: [{ id: PORT_ID, name: 'web' }] }) };
      return undefined;
    };
    const io = testIo(env());
    assert.equal(await run(['vm', 'port-groups', 'web1', 'aaaaaaaa', 'web', 'web'], io), 0, io.stderr.text);
    assert.equal(io.stdout.text, 'vm web1 port aaaaaaaa: security groups web\n');
    assert.deepEqual(JSON.parse(api.requests[1]?.body ?? ''), { securityGroups: ['web'] });
  });
});

import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SecurityGroupRuleCreate, type SecurityGroupRule } from '../../api/network.js';
import { UsageError } from '../errors.js';
import { run } from '../program.js';
import { startFakeApi, testIo, type FakeApi, type Handler } from '../testing.js';
import * as s from './secgroup.js';

const RULE_ID = 'aaaaaaaa-1111-4222-8333-444444444444';

function ruleFixture(overrides: Partial<SecurityGroupRule> = {}): SecurityGroupRule {
  return {
    id: RULE_ID,
    direction: 'ingress',
    protocol: 'tcp',
    portMin: 80,
    portMax: 80,
    remoteCidr: '0.0.0.0/0',
    remoteGroupId: null,
    description: '',
    createdAt: '2026-01-01T10:00:00Z',
    ...overrides,
  };
}

void describe('rule validators mirror the API contract', () => {
  void it('uses the same choices and limits as src/api', () => {
    const props = SecurityGroupRuleCreate.properties;
    const literals = (schema: unknown) =>
      (schema as { anyOf: { const: string }[] }).anyOf.map((literal) => literal.const);
    assert.deepEqual([...s.RULE_DIRECTIONS], literals(props.direction));
    assert.deepEqual([...s.RULE_PROTOCOLS], literals(props.protocol));
    const port = props.portMin as unknown as { minimum: number; maximum: number };
    assert.equal(s.PORT_MIN, port.minimum);
    assert.equal(s.PORT_MAX, port.maximum);
    const description = props.description as unknown as { maxLength: number };
    assert.equal(s.RULE_DESCRIPTION_MAX_LENGTH, description.maxLength);
  });

  void it('parses port ranges: a-b with a <= b, ports 1-65535', () => {
    assert.deepEqual(s.parsePortRange('8000-8080'), { min: 8000, max: 8080 });
    assert.deepEqual(s.parsePortRange('1-65535'), { min: 1, max: 65535 });
    assert.deepEqual(s.parsePortRange('443'), { min: 443, max: 443 });
    assert.deepEqual(s.parsePortRange('22-22'), { min: 22, max: 22 });
    for (const bad of [
      '8080-8000',
      '0-10',
      '1-65536',
      '70000',
      '-80',
      '80-',
      '80--90',
      'a-b',
      '80 - 90',
      '',
      '1-2-3',
    ])
      assert.throws(() => s.parsePortRange(bad), bad);
  });

  void it('parses one port', () => {
    assert.equal(s.parsePort('80'), 80);
    for (const bad of ['0', '65536', '-1', '8o', '1.5']) assert.throws(() => s.parsePort(bad), bad);
  });

  void it('builds the rule body and refuses options that do not go together', () => {
    assert.deepEqual(s.ruleBody({ direction: 'ingress', protocol: 'tcp', port: 80 }), {
      direction: 'ingress',
      protocol: 'tcp',
      portMin: 80,
      portMax: 80,
    });
    assert.deepEqual(
      s.ruleBody({
        direction: 'egress',
        protocol: 'udp',
        ports: { min: 8000, max: 8080 },
        remoteGroup: 'web',
        description: 'x',
      }),
      {
        direction: 'egress',
        protocol: 'udp',
        portMin: 8000,
        portMax: 8080,
        remoteGroup: 'web',
        description: 'x',
      },
    );
    assert.deepEqual(s.ruleBody({ direction: 'ingress', protocol: 'icmp', remoteCidr: '10.0.0.0/8' }), {
      direction: 'ingress',
      protocol: 'icmp',
      remoteCidr: '10.0.0.0/8',
    });
    const cases: [s.RuleFlags, RegExp][] = [
      [{ direction: 'ingress', protocol: 'icmp', port: 80 }, /tcp and udp rules only, not icmp/],
      [
        { direction: 'ingress', protocol: 'any', ports: { min: 1, max: 2 } },
        /tcp and udp rules only, not any/,
      ],
      [{ direction: 'ingress', protocol: 'tcp', port: 80, ports: { min: 1, max: 2 } }, /--port or --ports/],
      [{ direction: 'ingress', protocol: 'tcp', remoteCidr: '10.0.0.0/8', remoteGroup: 'web' }, /not both/],
    ];
    for (const [flags, message] of cases)
      assert.throws(
        () => s.ruleBody(flags),
        (err: unknown) => err instanceof UsageError && message.test(err.message),
      );
  });
});

void describe('rule tables', () => {
  void it('formats ports and remotes', () => {
    assert.equal(s.formatPorts({ protocol: 'tcp', portMin: 80, portMax: 80 }), '80');
    assert.equal(s.formatPorts({ protocol: 'udp', portMin: 8000, portMax: 8080 }), '8000-8080');
    assert.equal(s.formatPorts({ protocol: 'tcp', portMin: null, portMax: null }), 'all');
    assert.equal(s.formatPorts({ protocol: 'icmp', portMin: null, portMax: null }), '-');
    const names = new Map([['bbbbbbbb-1111-4222-8333-444444444444', 'web']]);
    assert.equal(s.formatRemote({ remoteCidr: '10.0.0.0/8', remoteGroupId: null }, names), '10.0.0.0/8');
    assert.equal(
      s.formatRemote({ remoteCidr: null, remoteGroupId: 'bbbbbbbb-1111-4222-8333-444444444444' }, names),
      'group:web',
    );
    assert.equal(s.formatRemote({ remoteCidr: null, remoteGroupId: 'cccc' }, names), 'group:cccc');
  });
});

void describe('secgroup commands against a fake API', () => {
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

  void it('refuses bad rule options with exit 2 before sending anything', async () => {
    const add = ['secgroup', 'rule', 'add', 'web', '--direction', 'ingress'];
    for (const args of [
      [...add, '--protocol', 'icmp', '--port', '80'],
      [...add, '--protocol', 'tcp', '--ports', '90-80'],
      [...add, '--protocol', 'tcp', '--port', '0'],
      [...add, '--protocol', 'sctp'],
      [...add, '--protocol', 'tcp', '--remote-cidr', '10.0.0.0'],
      [...add, '--protocol', 'tcp', '--remote-cidr', '10.0.0.0/8', '--remote-group', 'db'],
      ['secgroup', 'rule', 'add', 'web', '--protocol', 'tcp'],
      ['secgroup', 'rule', 'delete', 'web', 'xyz'],
    ]) {
      const io = testIo(env());
      assert.equal(await run(args, io), 2, args.join(' '));
      assert.match(io.stderr.text, /^rampart: /);
    }
    assert.equal(api.requests.length, 0);
  });

  void it('rule add sends the body; rule delete resolves an id prefix', async () => {
    handler = (req) => {
      if (req.method === 'POST' && req.url === '/v1/security-groups/web/rules')
        return { status: 201, body: ruleFixture({ portMin: 8000, portMax: 8080 }) };
      if (req.method === 'GET' && req.url === '/v1/security-groups/web')
        return {
          body: {
            id: 'bbbbbbbb-1111-4222-8333-444444444444',
            tenantId: 'bbbbbbbb-1111-4222-8333-444444444444',
            name: 'web',
            description: '',
            rules: [ruleFixture()],
            createdAt: '2026-01-01T10:00:00Z',
          },
        };
      if (req.method === 'DELETE' && req.url === `/v1/security-groups/web/rules/${RULE_ID}`)
        return { status: 204 };
      return undefined;
    };
    let io = testIo(env());
    const args = ['secgroup', 'rule', 'add', 'web', '--direction', 'ingress', '--protocol', 'tcp'];
    assert.equal(await run([...args, '--ports', '8000-8080'], io), 0, io.stderr.text);
    assert.equal(io.stdout.text, `rule ${RULE_ID} added to web: ingress tcp/8000-8080 from 0.0.0.0/0\n`);
    assert.deepEqual(JSON.parse(api.requests[0]?.body ?? ''), {
      direction: 'ingress',
      protocol: 'tcp',
      portMin: 8000,
      portMax: 8080,
    });
    io = testIo(env());
    assert.equal(await run(['secgroup', 'rule', 'delete', 'web', 'aaaaaaaa'], io), 0, io.stderr.text);
    assert.equal(io.stdout.text, `rule ${RULE_ID} deleted from web\n`);
    assert.deepEqual(
      api.requests.map((r) => `${r.method} ${r.url}`),
      [
        'POST /v1/security-groups/web/rules',
        'GET /v1/security-groups/web',
        `DELETE /v1/security-groups/web/rules/${RULE_ID}`,
      ],
    );
  });
});

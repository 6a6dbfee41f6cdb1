import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ApiToken, Role, Tenant, User } from '../../api/iam.js';
import { run } from '../program.js';
import {
  FakeStdin,
  apiError,
  startFakeApi,
  testIo,
  whoamiFixture,
  type FakeApi,
  type Handler,
} from '../testing.js';

const TENANT: Tenant = {
  id: 'dddddddd-2222-4333-8444-555555555555',
  name: 'acme',
  requireMfaForAdmins: false,
  allowNestedVirtualization: false,
  dedicatedHosts: false,
  allowClones: true,
  createdAt: '2026-01-01T10:00:00Z',
};
const USER: User = {
  id: 'eeeeeeee-2222-4333-8444-555555555555',
  username: 'bob',
  disabled: false,
  mustChangePassword: true,
  mfaEnabled: false,
  createdAt: '2026-01-01T11:00:00Z',
  passwordChangedAt: '2026-01-01T11:00:00Z',
};
const ROLE: Role = { name: 'vm-reader', builtIn: false, description: 'reads VMs', permissions: ['vm:read'] };
const TOKEN: ApiToken = {
  id: 'ffffffff-2222-4333-8444-555555555555',
  name: 'ci',
  tenant: { id: TENANT.id, name: 'acme' },
  permissions: ['vm:read'],
  createdAt: '2026-01-01T11:00:00Z',
  expiresAt: '2026-01-31T11:00:00Z',
  lastUsedAt: null,
  revoked: false,
};

void describe('tenant, user, member, role and token commands', () => {
  let api: FakeApi;
  let handler: Handler = () => undefined;
  before(async () => {
    api = await startFakeApi((req) => handler(req));
  });
  after(() => api.close());
  beforeEach(() => {
    api.requests.length = 0;
  });
  const env = (extra: Record<string, string> = {}) => ({
    RAMPART_URL: api.url,
    RAMPART_TOKEN: 'admin-token',
    ...extra,
  });
  const body = (i: number) => JSON.parse(api.requests[i]?.body ?? '') as unknown;
  const calls = () => api.requests.map((r) => `${r.method} ${r.url}`);
  const piped = (text: string) => new FakeStdin(false).feed(text, null);

  void it('lists, creates, updates and deletes tenants (never with ?tenant=: the tenant is in the path)', async () => {
    handler = (req) => {
      if (req.method === 'GET' && req.url === '/v1/tenants') return { body: { items: [TENANT] } };
      if (req.method === 'POST')
        return { status: 201, body: { ...TENANT, name: 'beta', requireMfaForAdmins: true } };
      if (req.method === 'PATCH') return { body: TENANT };
      if (req.method === 'DELETE') return { status: 204 };
      return undefined;
    };
    const list = testIo(env({ RAMPART_TENANT: 'acme' }));
    assert.equal(await run(['tenant', 'list'], list), 0, list.stderr.text);
    assert.equal(
      list.stdout.text,
      'NAME   ID         MFA FOR ADMINS   AGE\nacme   dddddddd   -                2h\n',
    );
    assert.equal(await run(['tenant', 'create', 'beta', '--require-mfa'], testIo(env())), 0);
    assert.deepEqual(body(1), { name: 'beta', requireMfaForAdmins: true });
    assert.equal(await run(['tenant', 'set', 'acme', '--require-mfa', 'off'], testIo(env())), 0);
    assert.deepEqual(body(2), { requireMfaForAdmins: false });
    assert.equal(await run(['tenant', 'delete', 'acme'], testIo(env())), 0);
    assert.deepEqual(calls(), [
      'GET /v1/tenants',
      'POST /v1/tenants',
      'PATCH /v1/tenants/acme',
      'DELETE /v1/tenants/acme',
    ]);
    assert.equal(await run(['tenant', 'set', 'acme', '--require-mfa', 'maybe'], testIo(env())), 2);
    assert.equal(await run(['tenant', 'create', 'Bad_Name'], testIo(env())), 2);
  });

  void it('creates users with the password from stdin, disables them and resets passwords', async () => {
    handler = (req) => {
      if (req.method === 'POST' && req.url === '/v1/users') return { status: 201, body: USER };
      if (req.method === 'PATCH') return { body: { ...USER, disabled: true } };
      if (req.url === '/v1/users/bob/password') return { status: 204 };
      return undefined;
    };
    const created = testIo(env(), piped('initial-pass-1\n'));
    assert.equal(await run(['user', 'create', 'bob', '--password-stdin'], created), 0, created.stderr.text);
    assert.deepEqual(body(0), { username: 'bob', password: 'initial-pass-1', mustChangePassword: true });
    assert.equal(created.stdout.text, `user bob created (${USER.id})\n`);
    const noChange = testIo(env(), piped('initial-pass-1\n'));
    assert.equal(
      await run(['user', 'create', 'bob', '--password-stdin', '--no-must-change-password'], noChange),
      0,
    );
    assert.equal((body(1) as { mustChangePassword: boolean }).mustChangePassword, false);
    const disabled = testIo(env());
    assert.equal(await run(['user', 'disable', 'bob'], disabled), 0);
    assert.deepEqual(body(2), { disabled: true });
    assert.equal(disabled.stdout.text, 'user bob disabled\n');
    assert.equal(
      await run(['user', 'reset-password', 'bob', '--password-stdin'], testIo(env(), piped('x-pass\n'))),
      0,
    );
    assert.deepEqual(body(3), { password: 'x-pass' });
    assert.ok(calls().every((c) => !c.includes('tenant=')));
    // No terminal to ask on and no --password-stdin: nothing is sent.
    api.requests.length = 0;
    assert.equal(await run(['user', 'create', 'carol'], testIo(env())), 2);
    assert.equal(await run(['user', 'create', 'Carol!'], testIo(env(), piped('x\n'))), 2);
    assert.equal(api.requests.length, 0);
  });

  void it('manages members of the default tenant found through whoami, or of --tenant', async () => {
    handler = (req) => {
      if (req.url.startsWith('/v1/auth/whoami')) return { body: whoamiFixture() };
      if (req.method === 'POST')
        return { status: 201, body: { user: { id: USER.id, username: 'bob' }, roles: ['viewer'] } };
      if (req.method === 'GET')
        return {
          body: { items: [{ user: { id: USER.id, username: 'bob' }, roles: ['viewer', 'operator'] }] },
        };
      if (req.method === 'DELETE') return { status: 204 };
      return undefined;
    };
    const added = testIo(env());
    assert.equal(await run(['member', 'add', 'bob', 'viewer'], added), 0, added.stderr.text);
    assert.deepEqual(calls(), ['GET /v1/auth/whoami', 'POST /v1/tenants/acme/members']);
    assert.deepEqual(body(1), { user: 'bob', role: 'viewer' });
    assert.equal(added.stdout.text, 'bob is now viewer in tenant acme (roles: viewer)\n');

    api.requests.length = 0;
    const list = testIo(env());
    assert.equal(await run(['--tenant', 'beta', 'member', 'list'], list), 0);
    assert.deepEqual(calls(), ['GET /v1/tenants/beta/members']);
    assert.equal(list.stdout.text, 'USER   ROLES\nbob    viewer, operator\n');

    api.requests.length = 0;
    assert.equal(
      await run(['--tenant', 'beta', 'member', 'remove', 'bob', '--role', 'viewer'], testIo(env())),
      0,
    );
    assert.deepEqual(calls(), ['DELETE /v1/tenants/beta/members/bob?role=viewer']);

    handler = (req) =>
      req.url.startsWith('/v1/auth/whoami') ? { body: whoamiFixture({ tenant: null }) } : undefined;
    const ambiguous = testIo(env());
    assert.equal(await run(['member', 'list'], ambiguous), 2);
    assert.match(
      ambiguous.stderr.text,
      /choose the tenant with --tenant <name> \(you are a member of acme\)/,
    );
  });

  void it('manages platform-wide roles', async () => {
    handler = (req) =>
      req.method === 'POST'
        ? { status: 201, body: { user: { id: USER.id, username: 'bob' }, roles: ['platform-admin'] } }
        : { status: 204 };
    assert.equal(await run(['platform-member', 'add', 'bob', 'platform-admin'], testIo(env())), 0);
    assert.equal(await run(['platform-member', 'remove', 'bob'], testIo(env())), 0);
    assert.deepEqual(calls(), ['POST /v1/platform/members', 'DELETE /v1/platform/members/bob']);
  });

  void it('creates roles with repeated and comma-separated permissions, in the --tenant', async () => {
    handler = (req) => (req.method === 'POST' ? { status: 201, body: ROLE } : { body: { items: [ROLE] } });
    const io = testIo(env({ RAMPART_TENANT: 'acme' }));
    assert.equal(
      await run(
        [
          'role',
          'create',
          'vm-reader',
          '--permission',
          'vm:read',
          '--permission',
          'vm:start,vm:stop,vm:read',
          '--description',
          'reads VMs',
        ],
        io,
      ),
      0,
      io.stderr.text,
    );
    assert.equal(api.requests[0]?.url, '/v1/roles?tenant=acme');
    assert.deepEqual(body(0), {
      name: 'vm-reader',
      permissions: ['vm:read', 'vm:start', 'vm:stop'],
      description: 'reads VMs',
    });
    const list = testIo(env());
    assert.equal(await run(['role', 'ls'], list), 0);
    assert.equal(
      list.stdout.text,
      'NAME        BUILT-IN   PERMISSIONS   DESCRIPTION\nvm-reader   no         1             reads VMs\n',
    );
    assert.equal(await run(['role', 'create', 'x', '--permission', 'VM:READ'], testIo(env())), 2);
    assert.equal(await run(['role', 'create', 'x'], testIo(env())), 2, '--permission is required');
  });

  void it('creates a token and prints its secret once, alone on stdout', async () => {
    handler = (req) =>
      req.method === 'POST'
        ? { status: 201, body: { token: 'rmp_secret_value', apiToken: TOKEN } }
        : undefined;
    const io = testIo(env());
    assert.equal(
      await run(
        ['--tenant', 'acme', 'token', 'create', 'ci', '--permission', 'vm:read', '--expires-in-days', '7'],
        io,
      ),
      0,
      io.stderr.text,
    );
    assert.equal(api.requests[0]?.url, '/v1/tokens?tenant=acme');
    assert.deepEqual(body(0), { name: 'ci', permissions: ['vm:read'], expiresInDays: 7 });
    assert.equal(io.stdout.text, 'rmp_secret_value\n');
    assert.match(io.stderr.text, /token ci created \(id ffffffff-.*tenant acme/);
    assert.match(io.stderr.text, /this is the only time the token is shown/);
    assert.equal(await run(['token', 'create', 'ci', '--expires-in-days', '366'], testIo(env())), 2);
  });

  void it('lists tokens without secrets and revokes one by name or id prefix', async () => {
    handler = (req) => {
      if (req.method === 'GET')
        return {
          body: {
            items: [
              TOKEN,
              { ...TOKEN, id: 'ffff0000-2222-4333-8444-555555555555', name: 'old', revoked: true },
            ],
          },
        };
      if (req.method === 'DELETE') return { status: 204 };
      return undefined;
    };
    const list = testIo(env());
    assert.equal(await run(['token', 'list'], list), 0);
    assert.match(list.stdout.text, /^ID {9}NAME {3}TENANT {3}STATE {5}EXPIRES {3}LAST USED {3}PERMISSIONS\n/);
    assert.match(list.stdout.text, /\nffffffff {3}ci {5}acme {5}active {4}in 29d {4}never {7}vm:read\n/);
    assert.match(list.stdout.text, /\nffff0000 {3}old {4}acme {5}revoked /);

    api.requests.length = 0;
    assert.equal(await run(['token', 'revoke', 'ci'], testIo(env())), 0);
    assert.deepEqual(calls(), ['GET /v1/tokens', `DELETE /v1/tokens/${TOKEN.id}`]);
    assert.equal(await run(['token', 'revoke', 'ffff'], testIo(env())), 2, 'ambiguous prefix');
    assert.equal(await run(['token', 'revoke', 'nope'], testIo(env())), 3);
  });

  void it('maps permission errors to exit 5', async () => {
    handler = () => apiError(403, 'RAMPART_FORBIDDEN', 'permission denied: platform:user:read');
    const io = testIo(env());
    assert.equal(await run(['user', 'list'], io), 5);
    assert.equal(
      io.stderr.text,
      'rampart: permission denied: platform:user:read (RAMPART_FORBIDDEN, request req-1)\n',
    );
  });
});

/**
 * Identity against the real server: sessions and their tokens (expired, not yet valid, tampered,
 * `alg: none`, algorithm confusion, wrong audience -> 401), revocation at once on logout, password
 * change and disable, refresh-token rotation and reuse detection, API tokens (scoped, shown once,
 * revocable), TOTP enrolment, replay refusal and recovery codes, the forced first password change,
 * login throttling with bounded back-off, escalation and mass-assignment attempts, and exactly one
 * audit record per mutation (SECURITY-TESTS.md items 3-6, 25).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { SignJWT, decodeJwt } from 'jose';
import { TOTP } from 'otpauth';
import type { SessionTokens } from '../src/api/iam.js';
import { RampartHarness, type ApiResponse } from './helpers/rampart-harness.js';

const PASSWORD = 'Identity-Passw0rd-tests';
let harness: RampartHarness;

before(async () => {
  harness = await RampartHarness.start({
    env: {
      RAMPART_LOGIN_ACCOUNT_THRESHOLD: '3',
      RAMPART_LOGIN_SOURCE_THRESHOLD: '200',
      RAMPART_LOGIN_BASE_DELAY_MS: '500',
      RAMPART_LOGIN_MAX_BACKOFF_SECONDS: '2',
    },
  });
});

after(async () => {
  await harness?.cleanup();
});

async function as<T = unknown>(token: string | null, method: string, path: string, body?: unknown) {
  return harness.api<T>(method, path, body, { authorization: token ? `Bearer ${token}` : '' });
}

async function loginFull(username: string, password: string, extra: Record<string, string> = {}) {
  return as<SessionTokens>(null, 'POST', '/v1/auth/login', { username, password, ...extra });
}

async function createUser(username: string, tenant = 'default', role = 'member'): Promise<string> {
  const created = await harness.api('POST', '/v1/users', {
    username,
    password: PASSWORD,
    mustChangePassword: false,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  if (role) {
    const bound = await harness.api('POST', `/v1/tenants/${tenant}/members`, { user: username, role });
    assert.equal(bound.status, 201, JSON.stringify(bound.body));
  }
  return harness.login(username, PASSWORD);
}

function sessionKey(): Uint8Array {
  return new Uint8Array(readFileSync(join(harness.dataDir, 'secrets', 'session-hs256.key')));
}

async function whoami(token: string | null): Promise<ApiResponse> {
  return as(token, 'GET', '/v1/auth/whoami');
}

test('forged session tokens are refused: expired, not yet valid, wrong audience, alg none, HS512, tampered', async () => {
  const good = await createUser('token-victim');
  assert.equal((await whoami(good)).status, 200);
  const claims = decodeJwt(good);
  const key = sessionKey();
  const now = Math.floor(Date.now() / 1000);
  const base = () =>
    new SignJWT({ sid: claims.sid })
      .setSubject(claims.sub!)
      .setIssuer('rampart')
      .setAudience('rampart-api')
      .setIssuedAt(now - 10);
  const forged: Record<string, string> = {
    expired: await base()
      .setNotBefore(now - 10)
      .setExpirationTime(now - 5)
      .setProtectedHeader({ alg: 'HS256' })
      .sign(key),
    'not yet valid': await base()
      .setNotBefore(now + 600)
      .setExpirationTime(now + 900)
      .setProtectedHeader({ alg: 'HS256' })
      .sign(key),
    'wrong audience': await base()
      .setAudience('someone-else')
      .setNotBefore(now)
      .setExpirationTime(now + 60)
      .setProtectedHeader({ alg: 'HS256' })
      .sign(key),
    'algorithm confusion (HS512)': await base()
      .setNotBefore(now)
      .setExpirationTime(now + 60)
      .setProtectedHeader({ alg: 'HS512' })
      .sign(key),
  };
  const [header, payload] = good.split('.') as [string, string];
  const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
  forged['alg none'] = `${none}.${payload}.`;
  const tamperedPayload = Buffer.from(
    JSON.stringify({ ...claims, sub: '00000000-0000-4000-8000-000000000000' }),
  ).toString('base64url');
  forged.tampered = `${header}.${tamperedPayload}.${good.split('.')[2]!}`;
  forged['signed by another key'] = await base()
    .setNotBefore(now)
    .setExpirationTime(now + 60)
    .setProtectedHeader({ alg: 'HS256' })
    .sign(new Uint8Array(32));
  for (const [what, token] of Object.entries(forged)) {
    const response = await whoami(token);
    assert.equal(response.status, 401, `${what}: ${response.status}`);
    assert.equal((response.body as { error: { code: string } }).error.code, 'RAMPART_UNAUTHENTICATED');
  }
  // A correctly signed token for the same session still works: the refusals were about the forgeries.
  const valid = await base()
    .setNotBefore(now)
    .setExpirationTime(now + 60)
    .setProtectedHeader({ alg: 'HS256' })
    .sign(key);
  assert.equal((await whoami(valid)).status, 200);
});

test('logout, password change and disable revoke sessions and API tokens at once', async () => {
  // Logout ends that session only.
  const one = await createUser('revoke-me');
  const two = await harness.login('revoke-me', PASSWORD);
  assert.equal((await as(one, 'POST', '/v1/auth/logout')).status, 204);
  assert.equal((await whoami(one)).status, 401);
  assert.equal((await whoami(two)).status, 200);

  // Password change: every older session and token dies; the answer carries a new session.
  const apiToken = await as<{ token: string }>(two, 'POST', '/v1/tokens?tenant=default', {
    name: 'ci',
    expiresInDays: 1,
  });
  assert.equal(apiToken.status, 201, JSON.stringify(apiToken.body));
  assert.equal((await whoami(apiToken.body.token)).status, 200);
  const changed = await as<SessionTokens>(two, 'POST', '/v1/auth/password', {
    currentPassword: PASSWORD,
    newPassword: 'A-brand-new-passw0rd',
  });
  assert.equal(changed.status, 200, JSON.stringify(changed.body));
  assert.equal((await whoami(two)).status, 401);
  assert.equal((await whoami(apiToken.body.token)).status, 401);
  assert.equal((await whoami(changed.body.token)).status, 200);
  assert.equal((await loginFull('revoke-me', PASSWORD)).status, 401);

  // Disable: the new session dies too, and login is refused with the same answer as a bad password.
  const disabled = await harness.api('PATCH', '/v1/users/revoke-me', { disabled: true });
  assert.equal(disabled.status, 200);
  assert.equal((await whoami(changed.body.token)).status, 401);
  const refused = await loginFull('revoke-me', 'A-brand-new-passw0rd');
  const unknown = await loginFull('never-existed', 'A-brand-new-passw0rd');
  assert.equal(refused.status, 401);
  assert.equal(
    (refused.body as unknown as { error: { message: string } }).error.message,
    (unknown.body as unknown as { error: { message: string } }).error.message,
  );
  assert.equal((await harness.api('PATCH', '/v1/users/revoke-me', { disabled: false })).status, 200);
  assert.equal((await loginFull('revoke-me', 'A-brand-new-passw0rd')).status, 200);
});

test('refresh tokens rotate and a reused one revokes the session', async () => {
  await createUser('refresher');
  const first = await loginFull('refresher', PASSWORD);
  const second = await as<SessionTokens>(null, 'POST', '/v1/auth/refresh', {
    refreshToken: first.body.refreshToken,
  });
  assert.equal(second.status, 200);
  assert.notEqual(second.body.refreshToken, first.body.refreshToken);
  assert.equal((await whoami(second.body.token)).status, 200);
  // Replaying the old refresh token: refused, and the whole session is revoked (it was stolen).
  const replay = await as(null, 'POST', '/v1/auth/refresh', { refreshToken: first.body.refreshToken });
  assert.equal(replay.status, 401);
  assert.equal((await whoami(second.body.token)).status, 401);
  assert.equal(
    (await as(null, 'POST', '/v1/auth/refresh', { refreshToken: second.body.refreshToken })).status,
    401,
  );
});

test('API tokens: shown once, stored hashed, limited to their permissions and tenant, revocable, last used', async () => {
  const session = await createUser('automation');
  const created = await as<{ token: string; apiToken: { id: string; permissions: string[] } }>(
    session,
    'POST',
    '/v1/tokens',
    { name: 'readonly', permissions: ['vm:read'], expiresInDays: 2 },
  );
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.match(created.body.token, /^rpt_[A-Za-z0-9_-]{43}$/);
  const token = created.body.token;
  assert.equal((await as(token, 'GET', '/v1/vms')).status, 200);
  assert.equal(
    (await as(token, 'POST', '/v1/vms', { name: 'x', image: 'tiny', flavor: 'tiny', start: false })).status,
    403,
  );
  // More than the holder has: refused. A token cannot mint tokens.
  const greedy = await as(session, 'POST', '/v1/tokens', {
    name: 'greedy',
    permissions: ['platform:user:create'],
  });
  assert.equal(greedy.status, 403);
  assert.equal((await as(token, 'POST', '/v1/tokens', { name: 'child' })).status, 403);
  // The secret appears nowhere after creation.
  const listed = await as<{ items: { id: string; lastUsedAt: string | null }[] }>(
    session,
    'GET',
    '/v1/tokens',
  );
  assert.ok(!JSON.stringify(listed.body).includes(token));
  assert.ok(
    listed.body.items.find((t) => t.id === created.body.apiToken.id)?.lastUsedAt,
    'last used recorded',
  );
  const db = readFileSync(join(harness.dataDir, 'db', 'rampart.db'));
  assert.ok(!db.includes(Buffer.from(token)), 'the token is not stored in clear');
  assert.equal((await as(session, 'DELETE', `/v1/tokens/${created.body.apiToken.id}`)).status, 204);
  assert.equal((await as(token, 'GET', '/v1/vms')).status, 401);
});

test('TOTP: enrol, then login needs a code, a code is accepted once, recovery codes work once', async () => {
  const session = await createUser('mfa-user');
  const enrol = await as<{ secret: string; uri: string }>(session, 'POST', '/v1/auth/mfa/totp');
  assert.equal(enrol.status, 200);
  assert.match(enrol.body.uri, /^otpauth:\/\/totp\/Rampart:mfa-user\?/);
  const totp = new TOTP({ secret: enrol.body.secret, issuer: 'Rampart', label: 'mfa-user' });
  const now = Date.now();
  const verified = await as<{ recoveryCodes: string[] }>(session, 'POST', '/v1/auth/mfa/totp/verify', {
    code: totp.generate({ timestamp: now }),
  });
  assert.equal(verified.status, 200, JSON.stringify(verified.body));
  assert.equal(verified.body.recoveryCodes.length, 10);
  assert.equal((await loginFull('mfa-user', PASSWORD)).status, 401, 'a password alone no longer suffices');
  // The enrolment code's step was consumed; the next step's code logs in once, then is a replay.
  const next = totp.generate({ timestamp: now + 30_000 });
  const withCode = await loginFull('mfa-user', PASSWORD, { totp: next });
  assert.equal(withCode.status, 200, JSON.stringify(withCode.body));
  const replay = await loginFull('mfa-user', PASSWORD, { totp: next });
  assert.equal(replay.status, 401);
  assert.match((replay.body as unknown as { error: { message: string } }).error.message, /already used/);
  const code = verified.body.recoveryCodes[0]!;
  assert.equal((await loginFull('mfa-user', PASSWORD, { recoveryCode: code })).status, 200);
  assert.equal((await loginFull('mfa-user', PASSWORD, { recoveryCode: code })).status, 401);
});

test('first login with a one-time password is restricted to changing it', async () => {
  const created = await harness.api('POST', '/v1/users', { username: 'newcomer', password: PASSWORD });
  assert.equal(created.status, 201);
  await harness.api('POST', '/v1/tenants/default/members', { user: 'newcomer', role: 'member' });
  const first = await loginFull('newcomer', PASSWORD);
  assert.equal(first.body.restriction, 'password-change');
  assert.equal((await as(first.body.token, 'GET', '/v1/vms')).status, 403);
  const changed = await as<SessionTokens>(first.body.token, 'POST', '/v1/auth/password', {
    currentPassword: PASSWORD,
    newPassword: 'Fresh-chosen-th1s-pw',
  });
  assert.equal(changed.status, 200, JSON.stringify(changed.body));
  assert.equal(changed.body.restriction, null);
  assert.equal((await as(changed.body.token, 'GET', '/v1/vms')).status, 200);
});

test('password policy: short, common and username-containing passwords are refused with a reason', async () => {
  for (const [password, reason] of [
    ['short1A', /at least 12/],
    ['password1234', /common/],
    ['policy-tester-2024', /username/],
  ] as const) {
    const response = await harness.api<{ error: { message: string } }>('POST', '/v1/users', {
      username: 'policy-tester',
      password,
    });
    assert.equal(response.status, 400, password);
    assert.match(response.body.error.message, reason);
  }
});

test('brute force: throttled after the threshold, audited, and never locked out for good', async () => {
  // Created but never logged in: a source that logged in before is exempt from the account lock.
  const created = await harness.api('POST', '/v1/users', {
    username: 'brute-victim',
    password: PASSWORD,
    mustChangePassword: false,
  });
  assert.equal(created.status, 201);
  for (let i = 0; i < 3; i++)
    assert.equal((await loginFull('brute-victim', 'wrong-password-123')).status, 401);
  const blocked = await loginFull('brute-victim', PASSWORD);
  assert.equal(blocked.status, 429, 'even the right password waits while throttled');
  assert.ok(Number(blocked.headers.get('retry-after')) >= 1);
  const records = await harness.api<{
    items: { actor: string; outcome: string; detail: string | null; status: number }[];
  }>('GET', '/v1/platform/audit?action=auth:login&actor=brute-victim&limit=100');
  const failures = records.body.items.filter((r) => r.outcome === 'denied');
  assert.ok(failures.filter((r) => r.status === 401).length >= 3, 'each failure audited');
  assert.ok(
    failures.some((r) => r.status === 429 && /throttled/.test(r.detail ?? '')),
    'throttling audited',
  );
  // Bounded back-off: after at most the configured maximum (2 s here) the right password works.
  await new Promise((r) => setTimeout(r, 2_200));
  assert.equal((await loginFull('brute-victim', PASSWORD)).status, 200);
});

test('no escalation: roles and tokens cannot exceed their creator; mass assignment is refused', async () => {
  const tenant = await harness.api('POST', '/v1/tenants', { name: 'escalation' });
  assert.equal(tenant.status, 201);
  const ta = await createUser('esc-admin', 'escalation', 'tenant-admin');
  const plain = await createUser('esc-plain', 'escalation', 'viewer');
  // A tenant admin cannot bind the platform-only role, nor make a role with platform permissions.
  assert.equal(
    (await as(ta, 'POST', '/v1/tenants/escalation/members', { user: 'esc-plain', role: 'platform-admin' }))
      .status,
    400,
  );
  assert.equal(
    (
      await as(ta, 'POST', '/v1/roles?tenant=escalation', {
        name: 'sneaky',
        permissions: ['platform:user:create'],
      })
    ).status,
    400,
  );
  assert.equal(
    (await as(ta, 'POST', '/v1/platform/members', { user: 'esc-plain', role: 'auditor' })).status,
    403,
  );
  // A custom role within the admin's permissions works; binding it is allowed.
  const role = await as(ta, 'POST', '/v1/roles?tenant=escalation', {
    name: 'vm-reader',
    permissions: ['vm:read'],
  });
  assert.equal(role.status, 201, JSON.stringify(role.body));
  // An operator-level member cannot grant anything (no member:create) nor create roles.
  const op = await createUser('esc-operator', 'escalation', 'operator');
  assert.equal(
    (await as(op, 'POST', '/v1/tenants/escalation/members', { user: 'esc-plain', role: 'tenant-admin' }))
      .status,
    403,
  );
  assert.equal(
    (await as(op, 'POST', '/v1/roles?tenant=escalation', { name: 'x', permissions: ['vm:read'] })).status,
    403,
  );
  // A user with member:create but not vm:create cannot bind a role carrying vm:create.
  const granter = await as(ta, 'POST', '/v1/roles?tenant=escalation', {
    name: 'granter',
    permissions: ['member:create', 'member:read', 'tenant:read'],
  });
  assert.equal(granter.status, 201);
  const g = await createUser('esc-granter', 'escalation', '');
  void g;
  assert.equal(
    (await as(ta, 'POST', '/v1/tenants/escalation/members', { user: 'esc-granter', role: 'granter' })).status,
    201,
  );
  const gs = await harness.login('esc-granter', PASSWORD);
  const attempt = await as<{ error: { message: string } }>(gs, 'POST', '/v1/tenants/escalation/members', {
    user: 'esc-granter',
    role: 'member',
  });
  assert.equal(attempt.status, 403);
  assert.match(attempt.body.error.message, /do not hold/);
  // Mass assignment: server-owned fields in bodies are refused.
  for (const [path, body] of [
    ['/v1/vms?tenant=escalation', { name: 'm', image: 'tiny', flavor: 'tiny', start: false, tenantId: 'x' }],
    ['/v1/users', { username: 'mass', password: PASSWORD, roles: ['platform-admin'] }],
    ['/v1/tenants/escalation/members', { user: 'esc-plain', role: 'viewer', tenantId: 'x' }],
    ['/v1/tokens?tenant=escalation', { name: 't', tenantId: 'x' }],
  ] as const) {
    const response = await as(path.startsWith('/v1/users') ? harness.token : ta, 'POST', path, body);
    assert.equal(response.status, 400, `${path}: ${response.status}`);
  }
  void plain;
});

test('exactly one audit record per mutating request, with actor, tenant, source and request id', async () => {
  const session = await createUser('audited');
  const before = await harness.api<{ items: { seq: number }[] }>('GET', '/v1/platform/audit?limit=1000');
  const lastSeq = Math.max(0, ...before.body.items.map((r) => r.seq));
  const created = await as<{ id: string; tenantId: string }>(session, 'POST', '/v1/vms', {
    name: 'audited-vm',
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(created.status, 201);
  const requestId = created.headers.get('x-request-id');
  const deleted = await as(session, 'DELETE', `/v1/vms/${created.body.id}`);
  assert.equal(deleted.status, 202);
  const listed = await as(session, 'GET', '/v1/vms');
  assert.equal(listed.status, 200);
  const after = await harness.api<{
    items: {
      seq: number;
      actor: string;
      tenantId: string;
      action: string;
      target: string;
      outcome: string;
      requestId: string;
      source: string;
      time: string;
    }[];
  }>('GET', `/v1/platform/audit?after=${lastSeq}&actor=audited&limit=1000`);
  const mine = after.body.items;
  assert.deepEqual(
    mine.map((r) => r.action),
    ['vm:create', 'vm:delete'],
    'one record per mutation, none for the read',
  );
  const create = mine[0]!;
  assert.equal(create.requestId, requestId);
  assert.equal(create.tenantId, created.body.tenantId);
  assert.equal(create.target, created.body.id);
  assert.equal(create.outcome, 'success');
  assert.equal(create.source, '127.0.0.1');
  assert.match(create.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  // No secret ever reaches the audit log.
  const all = await harness.api('GET', '/v1/audit/export/records');
  assert.ok(!String(all.body).includes(PASSWORD));
  assert.ok(!String(all.body).includes(harness.adminPassword));
});

test('MFA policy: a tenant that requires MFA for admins holds its admins to enrolment first', async () => {
  const tenant = await harness.api('POST', '/v1/tenants', { name: 'strict', requireMfaForAdmins: true });
  assert.equal(tenant.status, 201);
  await createUser('strict-viewer', 'strict', 'viewer');
  const viewer = await loginFull('strict-viewer', PASSWORD);
  assert.equal(viewer.body.restriction, null, 'the policy applies to admin roles only');
  const created = await harness.api('POST', '/v1/users', {
    username: 'strict-admin',
    password: PASSWORD,
    mustChangePassword: false,
  });
  assert.equal(created.status, 201);
  assert.equal(
    (await harness.api('POST', '/v1/tenants/strict/members', { user: 'strict-admin', role: 'tenant-admin' }))
      .status,
    201,
  );
  const admin = await loginFull('strict-admin', PASSWORD);
  assert.equal(admin.body.restriction, 'mfa-enrolment');
  const blocked = await as<{ error: { message: string } }>(admin.body.token, 'GET', '/v1/vms?tenant=strict');
  assert.equal(blocked.status, 403);
  assert.match(blocked.body.error.message, /MFA/);
  const enrol = await as<{ secret: string }>(admin.body.token, 'POST', '/v1/auth/mfa/totp');
  assert.equal(enrol.status, 200);
  const code = new TOTP({ secret: enrol.body.secret }).generate();
  assert.equal((await as(admin.body.token, 'POST', '/v1/auth/mfa/totp/verify', { code })).status, 200);
  assert.equal(
    (await as(admin.body.token, 'GET', '/v1/vms?tenant=strict')).status,
    200,
    'restriction lifted',
  );
  // From now on this admin logs in with a code.
  assert.equal((await loginFull('strict-admin', PASSWORD)).status, 401);
  // The tenant admin may not loosen the policy a platform admin set; the platform admin may.
  const loosen = await as(admin.body.token, 'PATCH', '/v1/tenants/strict', { requireMfaForAdmins: false });
  assert.equal(loosen.status, 403);
  assert.equal(
    (await harness.api('PATCH', '/v1/tenants/strict', { requireMfaForAdmins: false })).status,
    200,
  );
  assert.equal(
    (await as(admin.body.token, 'PATCH', '/v1/tenants/strict', { requireMfaForAdmins: true })).status,
    200,
  );
});

test('a tenant sees only its own audit records; control characters never reach a record raw', async () => {
  const tenant = await harness.api<{ id: string }>('POST', '/v1/tenants', { name: 'auditee' });
  assert.equal(tenant.status, 201);
  const auditor = await createUser('auditee-auditor', 'auditee', 'auditor');
  const mine = await as<{ items: { tenantId: string | null; action: string }[] }>(
    auditor,
    'GET',
    '/v1/audit',
  );
  assert.equal(mine.status, 200);
  assert.ok(mine.body.items.length > 0, 'the member binding in auditee is visible');
  assert.ok(mine.body.items.every((r) => r.tenantId === tenant.body.id));
  assert.equal((await as(auditor, 'GET', '/v1/platform/audit')).status, 403);
  assert.equal((await as(auditor, 'GET', '/v1/audit?tenant=default')).status, 404);

  const hostile = 'evil\u0007\u001b[31m\nname';
  assert.equal((await loginFull(hostile, 'whatever-password')).status, 401);
  const export_ = await fetch(`${harness.url}/v1/audit/export/records`, {
    headers: { authorization: `Bearer ${harness.token}` },
  });
  const text = await export_.text();
  const raw = [...text].filter((ch) => {
    const code = ch.charCodeAt(0);
    return (code < 0x20 && code !== 0x0a) || code === 0x7f;
  });
  assert.deepEqual(raw, [], 'no raw control characters (newlines only between lines)');
  assert.ok(text.includes('evil\\\\x07\\\\x1b[31m\\\\x0aname'), 'escaped visibly');
});

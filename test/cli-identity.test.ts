/**
 * The identity commands of the `rampart` CLI against a real server: login with the password on stdin
 * (a 0600 session file, no token anywhere in the output), whoami, tenants, users, members, a forced
 * first password change, an API token that works, the login in the audit log, online and offline audit
 * verification (with the CLI and with scripts/verify-audit-export.sh), and logout revoking the session.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { AuditRecordView } from '../src/api/audit.js';
import type { WhoAmI } from '../src/api/iam.js';
import { RampartHarness } from './helpers/rampart-harness.js';
import { CLI_MAIN, REPO_ROOT } from './helpers/repo.js';

const USER_PASSWORD = 'Cli-identity-passw0rd';
const NEW_PASSWORD = 'Cli-identity-changed-2';

let rampart: RampartHarness;
let home: string;
let sessionFile: string;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface CliOptions {
  /** Written to the CLI's stdin, which is then closed. */
  stdin?: string;
  /** RAMPART_TOKEN; by default the CLI has none and uses the stored session. */
  token?: string;
  sessionFile?: string;
}

function spawnAndCollect(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  stdin = '',
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

function cli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: home,
    RAMPART_URL: rampart.url,
    RAMPART_SESSION_FILE: options.sessionFile ?? sessionFile,
  };
  if (options.token !== undefined) env.RAMPART_TOKEN = options.token;
  return spawnAndCollect(process.execPath, [CLI_MAIN, ...args], env, options.stdin);
}

function storedSession(file = sessionFile): Record<string, string> {
  return JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
}

before(async () => {
  rampart = await RampartHarness.start();
  home = mkdtempSync(join(tmpdir(), 'rampart-cli-identity-'));
  sessionFile = join(home, 'config', 'rampart', 'session.json');
});

after(async () => {
  await rampart?.cleanup();
  if (home) rmSync(home, { recursive: true, force: true });
});

test('login reads the password from stdin and stores a 0600 session that whoami uses', async () => {
  const login = await cli(['login', '--username', 'admin', '--password-stdin'], {
    stdin: `${rampart.adminPassword}\n`,
  });
  assert.equal(login.code, 0, login.stderr);
  assert.match(login.stdout, /^logged in to http:\/\/127\.0\.0\.1:\d+\/ as admin /);
  assert.equal(statSync(sessionFile).mode & 0o777, 0o600);
  assert.equal(statSync(join(home, 'config', 'rampart')).mode & 0o777, 0o700);
  const stored = storedSession();
  assert.deepEqual(Object.keys(stored).sort(), [
    'expiresAt',
    'refreshExpiresAt',
    'refreshToken',
    'token',
    'url',
    'username',
  ]);
  assert.equal(stored.url, `${rampart.url}/`);
  assert.equal(stored.username, 'admin');
  for (const secret of [stored.token!, stored.refreshToken!, rampart.adminPassword]) {
    assert.ok(!login.stdout.includes(secret) && !login.stderr.includes(secret), 'no secret is printed');
  }

  const whoami = await cli(['whoami', '-o', 'json']);
  assert.equal(whoami.code, 0, whoami.stderr);
  const me = JSON.parse(whoami.stdout) as WhoAmI;
  assert.equal(me.user.username, 'admin');
  assert.equal(me.via, 'session');
  assert.ok(me.platformRoles.includes('platform-admin'));
  const table = await cli(['whoami']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^User: +admin\n/);
});

test('tenant create, user create with the password on stdin, member add', async () => {
  const tenant = await cli(['tenant', 'create', 'cli-tenant']);
  assert.equal(tenant.code, 0, tenant.stderr);
  assert.match(tenant.stdout, /^tenant cli-tenant created \(/);
  const tenants = await cli(['tenant', 'list']);
  assert.equal(tenants.code, 0, tenants.stderr);
  assert.match(tenants.stdout, /^cli-tenant +/m);

  const user = await cli(['user', 'create', 'cli-user', '--password-stdin'], { stdin: `${USER_PASSWORD}\n` });
  assert.equal(user.code, 0, user.stderr);
  assert.match(user.stdout, /^user cli-user created \(/);
  const shown = await cli(['user', 'show', 'cli-user', '-o', 'json']);
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal((JSON.parse(shown.stdout) as { mustChangePassword: boolean }).mustChangePassword, true);

  const added = await cli(['--tenant', 'cli-tenant', 'member', 'add', 'cli-user', 'member']);
  assert.equal(added.code, 0, added.stderr);
  const members = await cli(['--tenant', 'cli-tenant', 'member', 'list', '-o', 'json']);
  assert.equal(members.code, 0, members.stderr);
  const items = (JSON.parse(members.stdout) as { items: { user: { username: string }; roles: string[] }[] })
    .items;
  assert.deepEqual(items.find((m) => m.user.username === 'cli-user')?.roles, ['member']);

  const duplicate = await cli(['tenant', 'create', 'cli-tenant']);
  assert.equal(duplicate.code, 4, 'a taken name is a conflict');
});

test('a new user must change the password first, and `password --stdin` does it', async () => {
  const userSession = join(home, 'cli-user-session.json');
  const login = await cli(['login', '--username', 'cli-user', '--password-stdin'], {
    stdin: `${USER_PASSWORD}\n`,
    sessionFile: userSession,
  });
  assert.equal(login.code, 0, login.stderr);
  assert.match(login.stderr, /you must choose a new password .*rampart password/);
  const blocked = await cli(['--tenant', 'cli-tenant', 'vm', 'list'], { sessionFile: userSession });
  assert.equal(blocked.code, 5, 'a restricted session can do nothing else');

  const changed = await cli(['password', '--stdin'], {
    stdin: `${USER_PASSWORD}\n${NEW_PASSWORD}\n`,
    sessionFile: userSession,
  });
  assert.equal(changed.code, 0, changed.stderr);
  assert.equal(statSync(userSession).mode & 0o777, 0o600);
  const list = await cli(['--tenant', 'cli-tenant', 'vm', 'list'], { sessionFile: userSession });
  assert.equal(list.code, 0, list.stderr);
});

test('token create prints a token, once, that works as RAMPART_TOKEN', async () => {
  const created = await cli([
    '--tenant',
    'cli-tenant',
    'token',
    'create',
    'cli-token',
    '--expires-in-days',
    '1',
  ]);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stderr, /only time the token is shown/);
  const token = created.stdout.trim();
  assert.ok(token.length > 20 && !token.includes('\n'), 'the secret alone on stdout');

  const whoami = await cli(['whoami', '-o', 'json'], { token, sessionFile: join(home, 'none.json') });
  assert.equal(whoami.code, 0, whoami.stderr);
  const me = JSON.parse(whoami.stdout) as WhoAmI;
  assert.equal(me.via, 'token');
  assert.equal(me.tenant?.name, 'cli-tenant');
  const vms = await cli(['vm', 'list', '-o', 'json'], { token, sessionFile: join(home, 'none.json') });
  assert.equal(vms.code, 0, vms.stderr);

  const list = await cli(['token', 'list']);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /cli-token +cli-tenant +active/);
  assert.ok(!list.stdout.includes(token), 'listing never shows the secret');
});

test('audit list shows the login', async () => {
  const listed = await cli([
    'audit',
    'list',
    '--all',
    '--action',
    'auth:login',
    '--actor',
    'admin',
    '-o',
    'json',
  ]);
  assert.equal(listed.code, 0, listed.stderr);
  const records = (JSON.parse(listed.stdout) as { items: AuditRecordView[] }).items;
  assert.ok(
    records.some((r) => r.action === 'auth:login' && r.actor === 'admin' && r.outcome === 'success'),
    listed.stdout,
  );
  const table = await cli(['audit', 'list', '--all', '--action', 'auth:login']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^SEQ +TIME +ACTOR +ACTION/);
  assert.match(table.stdout, / admin +auth:login +- +success +200 /);
});

test('audit verify exits 0, and an export verifies offline with the CLI and the script', async () => {
  const verified = await cli(['audit', 'verify']);
  assert.equal(verified.code, 0, verified.stderr);
  assert.match(verified.stdout, /^Result: +OK\n/);

  const dir = join(home, 'audit-export');
  const exported = await cli(['audit', 'export', dir]);
  assert.equal(exported.code, 0, exported.stderr);
  assert.match(exported.stdout, /^exported \d+ records and \d+ checkpoints to /);
  assert.match(exported.stderr, /scripts\/verify-audit-export\.sh/);
  for (const name of ['records.jsonl', 'checkpoints.jsonl', 'audit-public-key.pem'])
    assert.ok(existsSync(join(dir, name)), name);

  const again = await cli(['audit', 'export', dir]);
  assert.equal(again.code, 2, 'a non-empty directory is refused');

  const offline = await cli(['audit', 'verify', '--offline', dir]);
  assert.equal(offline.code, 0, offline.stderr);
  const script = await spawnAndCollect('bash', [join(REPO_ROOT, 'scripts', 'verify-audit-export.sh'), dir], {
    PATH: process.env.PATH,
  });
  assert.equal(script.code, 0, `${script.stdout}\n${script.stderr}`);
  assert.match(script.stdout, /^OK \d+ records, \d+ checkpoints, head [0-9a-f]{64}$/m);
});

test('logout ends the session on the server and deletes the file', async () => {
  const { token } = storedSession();
  const before = await rampart.api('GET', '/v1/auth/whoami', undefined, { authorization: `Bearer ${token}` });
  assert.equal(before.status, 200);

  const logout = await cli(['logout']);
  assert.equal(logout.code, 0, logout.stderr);
  assert.match(logout.stdout, /^logged out admin from /);
  assert.equal(existsSync(sessionFile), false);

  const afterLogout = await rampart.api('GET', '/v1/auth/whoami', undefined, {
    authorization: `Bearer ${token}`,
  });
  assert.equal(afterLogout.status, 401, 'the stored token no longer works');
  const whoami = await cli(['whoami']);
  assert.equal(whoami.code, 5);
  assert.match(whoami.stderr, /rampart login/);
});

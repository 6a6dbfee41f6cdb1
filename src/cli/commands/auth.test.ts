import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../program.js';
import { readSession, sessionFromTokens, writeSession } from '../session.js';
import {
  FakeStdin,
  apiError,
  closedPort,
  sessionTokensFixture,
  startFakeApi,
  tempDir,
  testIo,
  whoamiFixture,
  type FakeApi,
  type Handler,
} from '../testing.js';

const PASSWORD = 'correct horse battery';

void describe('login, logout, password, whoami', () => {
  let api: FakeApi;
  let handler: Handler = () => undefined;
  let dir: ReturnType<typeof tempDir>;
  let sessionFile: string;
  before(async () => {
    api = await startFakeApi((req) => handler(req));
  });
  after(() => api.close());
  beforeEach(() => {
    api.requests.length = 0;
    dir = tempDir();
    sessionFile = join(dir.path, 'cfg', 'rampart', 'session.json');
  });
  afterEach(() => dir.remove());

  const env = (extra: Record<string, string> = {}) => ({
    RAMPART_URL: api.url,
    RAMPART_SESSION_FILE: sessionFile,
    ...extra,
  });
  const piped = (text: string) => new FakeStdin(false).feed(text, null);
  const loginAnswer: Handler = (req) =>
    req.method === 'POST' && req.url === '/v1/auth/login' ? { body: sessionTokensFixture() } : undefined;

  void it('logs in with the password from stdin and stores the session 0600 in a 0700 directory', async () => {
    handler = loginAnswer;
    const io = testIo(env(), piped(`${PASSWORD}\n`));
    assert.equal(await run(['login', '--username', 'alice', '--password-stdin'], io), 0, io.stderr.text);
    const req = api.requests[0];
    assert.deepEqual(JSON.parse(req?.body ?? ''), { username: 'alice', password: PASSWORD });
    assert.equal(req?.headers.authorization, undefined);
    assert.equal(statSync(sessionFile).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir.path, 'cfg', 'rampart')).mode & 0o777, 0o700);
    assert.deepEqual(readSession(sessionFile), sessionFromTokens(`${api.url}/`, sessionTokensFixture()));
    assert.match(io.stdout.text, /^logged in to http:\/\/127\.0\.0\.1:\d+\/ as alice /);
    for (const secret of ['session-token-1', 'refresh-token-1', PASSWORD]) {
      assert.ok(!io.stdout.text.includes(secret) && !io.stderr.text.includes(secret), secret);
    }
  });

  void it('prints the session without its tokens with -o json', async () => {
    handler = loginAnswer;
    const io = testIo(env(), piped(`${PASSWORD}\r\n`));
    assert.equal(await run(['login', '--username', 'alice', '--password-stdin', '-o', 'json'], io), 0);
    const printed = JSON.parse(io.stdout.text) as Record<string, unknown>;
    assert.equal(printed.token, undefined);
    assert.equal(printed.refreshToken, undefined);
    assert.deepEqual(printed.user, sessionTokensFixture().user);
    assert.equal(printed.sessionFile, sessionFile);
    assert.equal(
      (JSON.parse(api.requests[0]?.body ?? '{}') as { password: string }).password,
      PASSWORD,
      'CRLF is not part of it',
    );
  });

  void it('never takes a password it cannot read safely (usage error, nothing sent)', async () => {
    handler = loginAnswer;
    const noTty = testIo(env());
    assert.equal(await run(['login', '--username', 'alice'], noTty), 2);
    assert.match(noTty.stderr.text, /pass --password-stdin/);
    assert.equal(await run(['login', '--password-stdin'], testIo(env(), piped('x\n'))), 2);
    const twoLines = testIo(env(), piped('one\ntwo\n'));
    assert.equal(await run(['login', '--username', 'alice', '--password-stdin'], twoLines), 2);
    assert.equal(
      await run(['login', '--username', 'alice', '--password-stdin'], testIo(env(), piped('\n'))),
      2,
    );
    assert.equal(api.requests.length, 0);
    assert.equal(existsSync(sessionFile), false);
  });

  void it('fails a bad login with exit 5 and stores nothing; a throttled one says when to retry', async () => {
    handler = () => apiError(401, 'RAMPART_UNAUTHENTICATED', `invalid username or password ${PASSWORD}`);
    const io = testIo(env(), piped(`${PASSWORD}\n`));
    assert.equal(await run(['login', '--username', 'alice', '--password-stdin'], io), 5);
    assert.equal(
      io.stderr.text,
      'rampart: invalid username or password *** (RAMPART_UNAUTHENTICATED, request req-1)\n',
    );
    assert.equal(existsSync(sessionFile), false);

    handler = () => ({
      ...apiError(429, 'RAMPART_RATE_LIMITED', 'too many failed logins; try again later'),
      headers: { 'retry-after': '30' },
    });
    const throttled = testIo(env(), piped(`${PASSWORD}\n`));
    assert.equal(await run(['login', '--username', 'alice', '--password-stdin'], throttled), 1);
    assert.match(
      throttled.stderr.text,
      /too many failed logins; try again later; retry in 30 s \(RAMPART_RATE_LIMITED/,
    );
  });

  void it('asks for --totp when the account has MFA, and sends it', async () => {
    handler = (req) => {
      const body = JSON.parse(req.body) as { totp?: string };
      return body.totp === '123456'
        ? { body: sessionTokensFixture() }
        : apiError(401, 'RAMPART_UNAUTHENTICATED', 'TOTP code required');
    };
    const io = testIo(env(), piped(`${PASSWORD}\n`));
    assert.equal(await run(['login', '--username', 'alice', '--password-stdin'], io), 5);
    assert.match(io.stderr.text, /TOTP code required: pass --totp <code>/);
    const ok = testIo(env(), piped(`${PASSWORD}\n`));
    assert.equal(await run(['login', '--username', 'alice', '--password-stdin', '--totp', '123456'], ok), 0);
    assert.equal(await run(['login', '--username', 'alice', '--totp', '12345'], testIo(env())), 2);
  });

  void it('stores a restricted session and says to run `rampart password` when it cannot ask', async () => {
    handler = (req) =>
      req.url === '/v1/auth/login'
        ? { body: sessionTokensFixture({ restriction: 'password-change' }) }
        : undefined;
    const io = testIo(env(), piped(`${PASSWORD}\n`));
    assert.equal(await run(['login', '--username', 'alice', '--password-stdin'], io), 0);
    assert.match(io.stderr.text, /you must choose a new password .*run `rampart password`/);
    assert.equal(readSession(sessionFile)?.token, 'session-token-1');
  });

  void it('on a terminal asks for the username, the password without echo, and a new password if needed', async () => {
    handler = (req) => {
      if (req.url === '/v1/auth/login')
        return { body: sessionTokensFixture({ restriction: 'password-change' }) };
      if (req.url === '/v1/auth/password') {
        assert.equal(req.headers.authorization, 'Bearer session-token-1');
        return { body: sessionTokensFixture({ token: 'session-token-2', refreshToken: 'refresh-token-2' }) };
      }
      return undefined;
    };
    // Typed: a username with a typo fixed by backspace, the password, the new one twice.
    const stdin = new FakeStdin(true).feed(
      'alicx\u007fe\r',
      `${PASSWORD}\r`,
      'new-secret-1\r',
      'new-secret-1\r',
    );
    const io = testIo(env(), stdin);
    assert.equal(await run(['login'], io), 0, io.stderr.text);
    assert.deepEqual(JSON.parse(api.requests[0]?.body ?? ''), { username: 'alice', password: PASSWORD });
    assert.deepEqual(JSON.parse(api.requests[1]?.body ?? ''), {
      currentPassword: PASSWORD,
      newPassword: 'new-secret-1',
    });
    assert.ok(
      io.stderr.text.startsWith('Username: alicx\b \be\nPassword for alice: \n'),
      'the username is echoed (with the backspace), the password is not',
    );
    assert.ok(!io.stderr.text.includes(PASSWORD) && !io.stderr.text.includes('new-secret-1'), 'no echo');
    assert.equal(readSession(sessionFile)?.token, 'session-token-2');
    assert.equal(stdin.rawModes.at(-1), false, 'the terminal is restored');
  });

  void it('changes the password from two lines on stdin and stores the new session', async () => {
    writeSession(sessionFile, sessionFromTokens(`${api.url}/`, sessionTokensFixture()));
    handler = (req) =>
      req.url === '/v1/auth/password'
        ? { body: sessionTokensFixture({ token: 'session-token-9', refreshToken: 'refresh-token-9' }) }
        : undefined;
    const io = testIo(env(), piped(`${PASSWORD}\nnew-password-2\n`));
    assert.equal(await run(['password', '--stdin'], io), 0, io.stderr.text);
    const req = api.requests[0];
    assert.equal(req?.headers.authorization, 'Bearer session-token-1');
    assert.deepEqual(JSON.parse(req?.body ?? ''), {
      currentPassword: PASSWORD,
      newPassword: 'new-password-2',
    });
    assert.equal(readSession(sessionFile)?.token, 'session-token-9');
    assert.match(io.stdout.text, /^password changed for alice; every other session and API token/);

    const oneLine = testIo(env(), piped(`${PASSWORD}\n`));
    assert.equal(await run(['password', '--stdin'], oneLine), 2);
    assert.match(oneLine.stderr.text, /expected 2 lines \(the current password, then the new password\)/);
    assert.equal(await run(['password'], testIo(env())), 2, 'no terminal and no --stdin');
  });

  void it('logs out on the server and deletes the session file', async () => {
    writeSession(sessionFile, sessionFromTokens(`${api.url}/`, sessionTokensFixture()));
    handler = (req) => (req.url === '/v1/auth/logout' ? { status: 204 } : undefined);
    const io = testIo(env());
    assert.equal(await run(['logout'], io), 0, io.stderr.text);
    assert.equal(api.requests[0]?.method, 'POST');
    assert.equal(api.requests[0]?.headers.authorization, 'Bearer session-token-1');
    assert.equal(existsSync(sessionFile), false);
    assert.match(io.stdout.text, /^logged out alice from /);

    const again = testIo(env());
    assert.equal(await run(['logout'], again), 0);
    assert.match(again.stdout.text, /^not logged in/);
  });

  void it('deletes the session even when the server cannot confirm the logout', async () => {
    // Already ended on the server: fine.
    writeSession(sessionFile, sessionFromTokens(`${api.url}/`, sessionTokensFixture()));
    handler = (req) =>
      req.url === '/v1/auth/refresh'
        ? apiError(401, 'RAMPART_UNAUTHENTICATED', 'invalid or expired refresh token')
        : apiError(401, 'RAMPART_UNAUTHENTICATED', 'invalid token');
    const ended = testIo(env());
    assert.equal(await run(['logout'], ended), 0, ended.stderr.text);
    assert.match(ended.stdout.text, /already ended/);
    assert.equal(existsSync(sessionFile), false);

    // Unreachable: the file goes anyway, and the exit code says the server did not hear of it.
    const url = `http://127.0.0.1:${await closedPort()}/`;
    writeSession(sessionFile, sessionFromTokens(url, sessionTokensFixture()));
    const io = testIo(env());
    assert.equal(await run(['logout'], io), 7);
    assert.match(io.stderr.text, /the local session was deleted, but the server did not confirm the logout/);
    assert.equal(existsSync(sessionFile), false);
  });

  void it('shows whoami with the resolved tenant, sending --tenant as ?tenant=', async () => {
    writeSession(sessionFile, sessionFromTokens(`${api.url}/`, sessionTokensFixture()));
    handler = (req) => (req.url.startsWith('/v1/auth/whoami') ? { body: whoamiFixture() } : undefined);
    const io = testIo(env());
    assert.equal(await run(['--tenant', 'acme', 'whoami'], io), 0, io.stderr.text);
    assert.equal(api.requests[0]?.url, '/v1/auth/whoami?tenant=acme');
    assert.match(io.stdout.text, /^User: +alice\n/);
    assert.match(
      io.stdout.text,
      /Via: +session \(stored in .*session\.json; renewable until 2026-01-02T12:00:00Z\)\n/,
    );
    assert.match(io.stdout.text, /Tenants: +acme \(tenant-admin\)/);
    const json = testIo(env({ RAMPART_TENANT: 'acme' }));
    assert.equal(await run(['whoami', '-o', 'json'], json), 0);
    assert.deepEqual(JSON.parse(json.stdout.text), whoamiFixture());
    assert.equal(api.requests.at(-1)?.url, '/v1/auth/whoami?tenant=acme');
    assert.equal(await run(['whoami'], testIo(env({ RAMPART_TENANT: 'Bad_Name' }))), 2);
    assert.equal(await run(['--tenant', 'Bad_Name', 'whoami'], testIo(env())), 2);
  });
});

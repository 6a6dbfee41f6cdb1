import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './program.js';
import { readSession, sessionFromTokens, writeSession, type StoredSession } from './session.js';
import {
  apiError,
  sessionTokensFixture,
  startFakeApi,
  tempDir,
  testIo,
  type FakeApi,
  type Handler,
  type RecordedRequest,
} from './testing.js';

const EMPTY = { body: { items: [] } };

void describe('credentials: API token, stored session, refresh', () => {
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
    sessionFile = join(dir.path, 'rampart', 'session.json');
  });
  afterEach(() => dir.remove());

  const store = (overrides: Partial<StoredSession> = {}) =>
    writeSession(sessionFile, {
      ...sessionFromTokens(`${api.url}/`, sessionTokensFixture()),
      ...overrides,
    });
  const env = (extra: Record<string, string> = {}) => ({
    RAMPART_URL: api.url,
    RAMPART_SESSION_FILE: sessionFile,
    ...extra,
  });
  const auth = (req: RecordedRequest | undefined) => req?.headers.authorization;
  const vmRequests = () => api.requests.filter((r) => r.url.startsWith('/v1/vms'));
  const refreshRequests = () => api.requests.filter((r) => r.url === '/v1/auth/refresh');

  void it('prefers --token over RAMPART_TOKEN over the stored session', async () => {
    store();
    handler = () => EMPTY;
    assert.equal(
      await run(['vm', 'list', '--token', 'flag-token'], testIo(env({ RAMPART_TOKEN: 'env' }))),
      0,
    );
    assert.equal(auth(api.requests.at(-1)), 'Bearer flag-token');
    assert.equal(await run(['vm', 'list'], testIo(env({ RAMPART_TOKEN: 'env-token' }))), 0);
    assert.equal(auth(api.requests.at(-1)), 'Bearer env-token');
    assert.equal(await run(['vm', 'list'], testIo(env())), 0);
    assert.equal(auth(api.requests.at(-1)), 'Bearer session-token-1');
  });

  void it('uses the stored session only for the server URL it was made for', async () => {
    store({ url: 'https://elsewhere.example/' });
    handler = (req) =>
      req.headers.authorization ? EMPTY : apiError(401, 'RAMPART_UNAUTHENTICATED', 'missing bearer token');
    const io = testIo(env());
    assert.equal(await run(['vm', 'list'], io), 5);
    assert.equal(auth(api.requests.at(-1)), undefined);
    assert.match(io.stderr.text, /the stored session is for https:\/\/elsewhere\.example\/.*rampart login/);
    assert.equal(refreshRequests().length, 0);
  });

  void it('tells how to log in when there are no credentials at all', async () => {
    handler = () => apiError(401, 'RAMPART_UNAUTHENTICATED', 'missing bearer token');
    const io = testIo(env());
    assert.equal(await run(['vm', 'list'], io), 5);
    assert.match(
      io.stderr.text,
      /^rampart: missing bearer token; log in with `rampart login`, or set RAMPART_TOKEN \(RAMPART_UNAUTHENTICATED/,
    );
  });

  void it('refreshes on a 401, retries once with the new token and stores the rotated pair', async () => {
    store();
    handler = (req) => {
      if (req.url === '/v1/auth/refresh') {
        assert.deepEqual(JSON.parse(req.body), { refreshToken: 'refresh-token-1' });
        assert.equal(req.headers.authorization, undefined, 'the refresh sends no bearer token');
        return {
          body: sessionTokensFixture({ token: 'session-token-2', refreshToken: 'refresh-token-2' }),
        };
      }
      if (req.headers.authorization === 'Bearer session-token-2') return EMPTY;
      return apiError(401, 'RAMPART_UNAUTHENTICATED', 'invalid token');
    };
    const io = testIo(env());
    assert.equal(await run(['vm', 'list', '-o', 'json'], io), 0, io.stderr.text);
    assert.deepEqual(
      vmRequests().map((r) => auth(r)),
      ['Bearer session-token-1', 'Bearer session-token-2'],
    );
    assert.equal(refreshRequests().length, 1);
    const stored = readSession(sessionFile);
    assert.equal(stored?.token, 'session-token-2');
    assert.equal(stored?.refreshToken, 'refresh-token-2');
    assert.equal(statSync(sessionFile).mode & 0o777, 0o600);
    assert.ok(!io.stdout.text.includes('session-token') && !io.stderr.text.includes('session-token'));
  });

  void it('refreshes before a request when the token expires within 30 s', async () => {
    store({ expiresAt: '2026-01-01T12:00:20Z' });
    handler = (req) =>
      req.url === '/v1/auth/refresh'
        ? { body: sessionTokensFixture({ token: 'session-token-2', refreshToken: 'refresh-token-2' }) }
        : EMPTY;
    assert.equal(await run(['vm', 'list'], testIo(env())), 0);
    assert.deepEqual(
      vmRequests().map((r) => auth(r)),
      ['Bearer session-token-2'],
    );
    assert.equal(readSession(sessionFile)?.refreshToken, 'refresh-token-2');
  });

  void it('retries only once, and a rejected refresh says to log in again (exit 5)', async () => {
    store();
    let refreshOk = true;
    handler = (req) => {
      if (req.url === '/v1/auth/refresh') {
        return refreshOk
          ? { body: sessionTokensFixture({ token: 'session-token-2', refreshToken: 'refresh-token-2' }) }
          : apiError(401, 'RAMPART_UNAUTHENTICATED', 'invalid or expired refresh token');
      }
      return apiError(401, 'RAMPART_UNAUTHENTICATED', 'invalid token');
    };
    assert.equal(await run(['vm', 'list'], testIo(env())), 5);
    assert.equal(vmRequests().length, 2, 'the first try and one retry');
    assert.equal(refreshRequests().length, 1);

    api.requests.length = 0;
    store();
    refreshOk = false;
    const io = testIo(env());
    assert.equal(await run(['vm', 'list'], io), 5);
    assert.equal(vmRequests().length, 1);
    assert.equal(
      io.stderr.text,
      'rampart: the session of alice has expired or was revoked; log in again with `rampart login`\n',
    );
  });

  void it('does not even try a refresh token that has expired', async () => {
    store({ expiresAt: '2026-01-01T11:00:00Z', refreshExpiresAt: '2026-01-01T11:30:00Z' });
    handler = () => EMPTY;
    const io = testIo(env());
    assert.equal(await run(['vm', 'list'], io), 5);
    assert.equal(api.requests.length, 0);
    assert.match(io.stderr.text, /log in again/);
  });

  void it('takes the pair another rampart process stored when its own refresh token was used up', async () => {
    store();
    handler = (req) => {
      if (req.url === '/v1/auth/refresh') {
        // Meanwhile another process refreshed: the server says no, the file has the new pair.
        store({ token: 'session-token-3', refreshToken: 'refresh-token-3' });
        return apiError(401, 'RAMPART_UNAUTHENTICATED', 'invalid or expired refresh token');
      }
      return req.headers.authorization === 'Bearer session-token-3'
        ? EMPTY
        : apiError(401, 'RAMPART_UNAUTHENTICATED', 'invalid token');
    };
    assert.equal(await run(['vm', 'list'], testIo(env())), 0);
    assert.equal(auth(vmRequests().at(-1)), 'Bearer session-token-3');
  });

  void it('refuses a session file that other users can read', async () => {
    store();
    chmodSync(sessionFile, 0o640);
    handler = () => EMPTY;
    const io = testIo(env());
    assert.equal(await run(['vm', 'list'], io), 1);
    assert.match(io.stderr.text, /can be read by other users/);
    assert.equal(api.requests.length, 0);
  });
});

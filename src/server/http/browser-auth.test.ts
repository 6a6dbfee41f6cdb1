/**
 * What the web console relies on, on a real Fastify + ws server with fake identity behind it:
 * - A browser's WebSocket authenticates with the `bearer.<token>` subprotocol offered next to
 *   `rampart.v1`; the answer negotiates `rampart.v1` (never the token); a bad token is refused; a
 *   plain HTTP request carrying the same Sec-WebSocket-Protocol header is not authenticated by it.
 * - The console's files: index.html with the CSP and secure headers, hashed assets cached as
 *   immutable, deep links answering index.html, API paths keeping their JSON 404, traversal refused,
 *   and 503 saying to build when dist/web is missing.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import websocket from '@fastify/websocket';
import WebSocket from 'ws';
import { UnauthenticatedError } from '../../api/errors.js';
import type { Principal } from '../iam/principal.js';
import { installAccessControl, selectSubprotocol, type AccessControlDeps } from './access-control.js';
import { installErrorHandler } from './error-handler.js';
import { NO_LIMIT, RateLimiter } from './rate-limit.js';
import { CONSOLE_CSP, WebConsole, webConsoleRoutes } from './web-console.js';

const GOOD = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2ln';

function principal(): Principal {
  return {
    userId: 'u1',
    username: 'alice',
    via: 'session',
    sessionId: 's1',
    token: null,
    restriction: null,
    mfa: true,
  };
}

function deps(): AccessControlDeps {
  const none = new Set<never>();
  return {
    authenticator: {
      authenticate: async (token: string) => {
        if (token !== GOOD) throw new UnauthenticatedError('invalid token');
        return principal();
      },
    } as unknown as AccessControlDeps['authenticator'],
    roles: {
      policy: {
        hasPlatformBinding: () => false,
        tenantsOf: () => [],
        tenantPermissions: () => none,
        platformPermissions: () => none,
      },
    } as unknown as AccessControlDeps['roles'],
    tenants: { find: async () => null } as unknown as AccessControlDeps['tenants'],
    audit: {
      assertWritable: () => undefined,
      append: async () => undefined,
    } as unknown as AccessControlDeps['audit'],
    limiter: new RateLimiter({
      principal: NO_LIMIT,
      tenant: NO_LIMIT,
      anonymous: NO_LIMIT,
      auditWindowSeconds: 60,
    }),
  };
}

let dir: string;
let app: FastifyInstance;
let base: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rampart-web-'));
  mkdirSync(join(dir, 'assets'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>Rampart</title>');
  writeFileSync(join(dir, 'assets', 'index-abc123.js'), 'console.log(1)');
  writeFileSync(join(dir, 'secret.key'), 'not served: no known type');
  const web = WebConsole.load(dir);
  app = Fastify();
  await app.register(websocket, { options: { handleProtocols: selectSubprotocol } });
  installErrorHandler(app, (request, reply) => web.serveDeepLink(request, reply));
  installAccessControl(app, deps());
  app.addHook('onSend', async (_request, reply) => {
    reply.header('cache-control', 'no-store');
  });
  // Two self-scoped routes of ROUTE_POLICY: one WebSocket, one plain HTTP.
  app.get('/v1/auth/whoami', { websocket: true }, (socket, request) => {
    socket.send(`hello ${request.principal!.username}`);
    socket.close();
  });
  app.get('/v1/tokens', async (request) => ({ user: request.principal?.username ?? null }));
  await webConsoleRoutes(app, web);
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});

after(async () => {
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Opens a WebSocket offering `protocols`; answers the first message and the negotiated protocol. */
function connect(protocols: string[]): Promise<{ message: string; protocol: string } | { status: number }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://${base}/v1/auth/whoami`, protocols);
    socket.once('message', (data: Buffer) =>
      resolve({ message: data.toString(), protocol: socket.protocol }),
    );
    socket.once('unexpected-response', (_request, response) => {
      resolve({ status: response.statusCode ?? 0 });
      socket.terminate();
    });
    socket.once('error', reject);
  });
}

void describe('browser WebSocket authentication (subprotocol bearer)', () => {
  void test('the bearer subprotocol authenticates; rampart.v1 is negotiated, never the token', async () => {
    const answer = await connect(['rampart.v1', `bearer.${GOOD}`]);
    assert.deepEqual(answer, { message: 'hello alice', protocol: 'rampart.v1' });
    // Offered token first: still rampart.v1 (ws alone would pick the first offered).
    assert.deepEqual(await connect([`bearer.${GOOD}`, 'rampart.v1']), {
      message: 'hello alice',
      protocol: 'rampart.v1',
    });
  });

  void test('a bad token, a missing rampart.v1 or two tokens are refused with 401', async () => {
    assert.deepEqual(await connect(['rampart.v1', 'bearer.not-a-valid-token']), { status: 401 });
    assert.deepEqual(await connect([`bearer.${GOOD}`]), { status: 401 });
    assert.deepEqual(await connect(['rampart.v1', `bearer.${GOOD}`, 'bearer.other']), { status: 401 });
    assert.deepEqual(await connect(['rampart.v1']), { status: 401 });
  });

  void test('a plain HTTP request cannot authenticate with the subprotocol header', async () => {
    const response = await fetch(`http://${base}/v1/tokens`, {
      headers: { 'sec-websocket-protocol': `rampart.v1, bearer.${GOOD}` },
    });
    assert.equal(response.status, 401);
    const withHeader = await fetch(`http://${base}/v1/tokens`, {
      headers: { authorization: `Bearer ${GOOD}` },
    });
    assert.deepEqual(await withHeader.json(), { user: 'alice' });
  });
});

void describe('web console files', () => {
  void test('index.html carries the CSP and the secure headers, and is not cached', async () => {
    const response = await fetch(`http://${base}/`);
    assert.equal(response.status, 200);
    assert.match(await response.text(), /<title>Rampart<\/title>/);
    assert.equal(response.headers.get('content-security-policy'), CONSOLE_CSP);
    assert.match(CONSOLE_CSP, /script-src 'self'; style-src 'self';/);
    assert.equal(response.headers.get('x-frame-options'), 'DENY');
    assert.equal(response.headers.get('referrer-policy'), 'no-referrer');
    assert.equal(response.headers.get('cross-origin-opener-policy'), 'same-origin');
    assert.match(
      response.headers.get('permissions-policy') ?? '',
      /camera=\(\).*microphone=\(\).*geolocation=\(\)/,
    );
    assert.equal(response.headers.get('cache-control'), 'no-store');
  });

  void test('hashed assets are immutable; unknown ones answer the JSON 404', async () => {
    const asset = await fetch(`http://${base}/assets/index-abc123.js`);
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.equal(asset.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    const missing = await fetch(`http://${base}/assets/nope.js`);
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get('cache-control'), 'no-store');
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'RAMPART_NOT_FOUND');
  });

  void test('deep links answer index.html to a browser; API paths, API clients, files and traversal do not', async () => {
    const html = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };
    for (const path of ['/vms', '/vms/web1', '/security/alerts']) {
      const response = await fetch(`http://${base}${path}`, { headers: html });
      assert.equal(response.status, 200, path);
      assert.equal(response.headers.get('content-security-policy'), CONSOLE_CSP, path);
    }
    // An API client's unknown path (no HTML asked for) is the JSON 404 it expects.
    const client = await fetch(`http://${base}/v2/vms`, { headers: { accept: 'application/json' } });
    assert.equal(client.status, 404);
    assert.equal(((await client.json()) as { error: { code: string } }).error.code, 'RAMPART_NOT_FOUND');
    for (const path of [
      '/v1/nothing',
      '/metrics/x',
      '/secret.key',
      '/assets/../secret.key',
      '/assets/%2e%2e/secret.key',
      '/assets/..%2fsecret.key',
    ]) {
      const response = await fetch(`http://${base}${path}`, { headers: html });
      assert.equal(response.status, 404, path);
      assert.doesNotMatch(await response.text(), /not served/, path);
    }
  });

  void test('without a build: 503 naming npm run build', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'rampart-web-empty-'));
    try {
      const web = WebConsole.load(join(empty, 'missing'));
      assert.equal(web.built, false);
      const bare = Fastify();
      await webConsoleRoutes(bare, web);
      const response = await bare.inject({ method: 'GET', url: '/' });
      assert.equal(response.statusCode, 503);
      assert.match(response.body, /npm run build/);
      await bare.close();
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApiClient, parseBaseUrl } from './api-client.js';
import { ApiError, GeneralError, UnreachableError, UsageError } from './errors.js';
import { apiError, closedPort, startFakeApi, vmFixture, type FakeApi } from './testing.js';

void describe('ApiClient against a local HTTP server', () => {
  let api: FakeApi;
  before(async () => {
    api = await startFakeApi((req) => {
      if (req.method === 'GET' && req.url === '/v1/vms') return { body: { items: [vmFixture()] } };
      if (req.method === 'GET' && req.url === '/v1/vms/web1') return { body: vmFixture() };
      if (req.method === 'POST' && req.url === '/v1/vms/web1/start')
        return { status: 202, body: vmFixture({ state: 'starting' }) };
      if (req.method === 'POST' && req.url === '/v1/vms/web1/stop')
        return { status: 202, body: vmFixture({ state: 'stopping' }) };
      if (req.url === '/v1/vms/busy/start')
        return apiError(409, 'RAMPART_ILLEGAL_STATE', 'cannot start a VM that is running', 'req-9');
      if (req.url === '/v1/vms/proxy')
        return { status: 502, raw: '<html>Bad Gateway</html>', headers: { 'x-request-id': 'hdr-1' } };
      if (req.url === '/v1/vms/moved')
        return { status: 301, headers: { location: 'http://example.invalid/' } };
      if (req.url === '/v1/vms/garbage') return { raw: 'not json' };
      if (req.url?.startsWith('/prefix/v1/')) return { body: { items: [] } };
      if (req.method === 'PATCH' && req.url === '/v1/users/bob')
        return {
          body: { username: 'bob', disabled: (JSON.parse(req.body) as { disabled: boolean }).disabled },
        };
      if (req.url === '/v1/audit/export/records') return { raw: '{"prev":"0"}\n{"prev":"1"}\n' };
      if (req.url === '/v1/audit/export/checkpoints')
        return { status: 302, headers: { location: '/elsewhere' } };
      if (req.url === '/v1/auth/login')
        return {
          ...apiError(429, 'RAMPART_RATE_LIMITED', 'too many failed logins; try again later'),
          headers: { 'retry-after': '12' },
        };
      if (req.url.startsWith('/v1/roles') || req.url.startsWith('/v1/tenants'))
        return { body: { items: [] } };
      return undefined;
    });
  });
  after(() => api.close());

  void it('sends the bearer token and accepts JSON', async () => {
    const client = new ApiClient({ baseUrl: api.url, token: 'tok-123' });
    const list = await client.listVms();
    assert.equal(list.items[0]?.name, 'web1');
    const req = api.requests.at(-1);
    assert.equal(req?.headers.authorization, 'Bearer tok-123');
    assert.equal(req?.headers.accept, 'application/json');
  });

  void it('sends no Authorization header without a token', async () => {
    await new ApiClient({ baseUrl: api.url }).getVm('web1');
    assert.equal(api.requests.at(-1)?.headers.authorization, undefined);
  });

  void it('sends actions other than stop without a body or content-type', async () => {
    const vm = await new ApiClient({ baseUrl: api.url }).vmAction('web1', 'start');
    assert.equal(vm.state, 'starting');
    const req = api.requests.at(-1);
    assert.equal(req?.body, '');
    assert.equal(req?.headers['content-type'], undefined);
  });

  void it('sends the stop body as JSON', async () => {
    await new ApiClient({ baseUrl: api.url }).stopVm('web1', { force: true, timeoutSeconds: 5 });
    const req = api.requests.at(-1);
    assert.equal(req?.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(req?.body ?? ''), { force: true, timeoutSeconds: 5 });
  });

  void it('parses Rampart error bodies', async () => {
    const err = await new ApiClient({ baseUrl: api.url }).vmAction('busy', 'start').catch((e: unknown) => e);
    assert.ok(err instanceof ApiError);
    assert.equal(err.status, 409);
    assert.equal(err.code, 'RAMPART_ILLEGAL_STATE');
    assert.equal(err.message, 'cannot start a VM that is running');
    assert.equal(err.requestId, 'req-9');
    assert.equal(err.exitCode, 4);
  });

  void it('turns other error bodies into an HTTP error with the request id header', async () => {
    const err = await new ApiClient({ baseUrl: api.url }).getVm('proxy').catch((e: unknown) => e);
    assert.ok(err instanceof ApiError);
    assert.equal(err.code, 'HTTP_502');
    assert.equal(err.requestId, 'hdr-1');
    assert.equal(err.exitCode, 1);
  });

  void it('maps 404 to not found', async () => {
    const err = await new ApiClient({ baseUrl: api.url }).getVm('nope').catch((e: unknown) => e);
    assert.ok(err instanceof ApiError);
    assert.equal(err.exitCode, 3);
  });

  void it('does not follow redirects', async () => {
    const err = await new ApiClient({ baseUrl: api.url, token: 't' }).getVm('moved').catch((e: unknown) => e);
    assert.ok(err instanceof GeneralError);
    assert.match(err.message, /redirect/);
  });

  void it('rejects a success body that is not JSON', async () => {
    const err = await new ApiClient({ baseUrl: api.url }).getVm('garbage').catch((e: unknown) => e);
    assert.ok(err instanceof GeneralError);
  });

  void it('keeps the path of the base URL', async () => {
    await new ApiClient({ baseUrl: `${api.url}/prefix` }).listImages();
    assert.equal(api.requests.at(-1)?.url, '/prefix/v1/images');
  });

  void it('sends PATCH bodies as JSON', async () => {
    const user = await new ApiClient({ baseUrl: api.url, token: 't' }).updateUser('bob', { disabled: true });
    assert.equal(user.disabled, true);
    const req = api.requests.at(-1);
    assert.equal(req?.method, 'PATCH');
    assert.equal(req?.headers['content-type'], 'application/json');
  });

  void it('gets text as it is, and still refuses redirects', async () => {
    const client = new ApiClient({ baseUrl: api.url, token: 't' });
    assert.equal(await client.exportAuditRecords(), '{"prev":"0"}\n{"prev":"1"}\n');
    assert.equal(api.requests.at(-1)?.headers.authorization, 'Bearer t');
    await assert.rejects(
      client.exportAuditCheckpoints(),
      (err: unknown) => err instanceof GeneralError && /redirect/.test(err.message),
    );
  });

  void it('adds ?tenant= to tenant requests but not where the tenant is in the path', async () => {
    const client = new ApiClient({ baseUrl: api.url, token: 't', tenant: 'acme' });
    await client.listRoles();
    assert.equal(api.requests.at(-1)?.url, '/v1/roles?tenant=acme');
    await client.listMembers('beta');
    assert.equal(api.requests.at(-1)?.url, '/v1/tenants/beta/members');
  });

  void it('says when to retry a throttled request', async () => {
    const err = await new ApiClient({ baseUrl: api.url })
      .login({ username: 'a', password: 'b' })
      .catch((e: unknown) => e);
    assert.ok(err instanceof ApiError);
    assert.equal(err.message, 'too many failed logins; try again later; retry in 12 s');
    assert.equal(api.requests.at(-1)?.headers.authorization, undefined);
  });

  void it('reports an unreachable server', async () => {
    const port = await closedPort();
    const err = await new ApiClient({ baseUrl: `http://127.0.0.1:${port}` })
      .listVms()
      .catch((e: unknown) => e);
    assert.ok(err instanceof UnreachableError);
    assert.equal(err.exitCode, 7);
    assert.match(err.message, /ECONNREFUSED/);
  });
});

void describe('ApiClient configuration', () => {
  void it('validates the base URL', () => {
    assert.equal(parseBaseUrl('http://127.0.0.1:8480').href, 'http://127.0.0.1:8480/');
    for (const bad of [
      '127.0.0.1:8480x',
      'ftp://host/',
      'http://user:pw@host/',
      'http://host/?a=1',
      'nonsense',
    ]) {
      assert.throws(() => parseBaseUrl(bad), UsageError, bad);
    }
  });

  void it('rejects a token that cannot be a header value, without echoing it', () => {
    assert.throws(
      () => new ApiClient({ baseUrl: 'http://127.0.0.1:1', token: 'abc\ndef' }),
      (err: unknown) => err instanceof UsageError && !err.message.includes('abc'),
    );
  });

  void it('builds WebSocket URLs', () => {
    assert.equal(
      new ApiClient({ baseUrl: 'https://rampart.example/' }).consoleStreamUrl('web1').href,
      'wss://rampart.example/v1/vms/web1/console/stream',
    );
    assert.equal(
      new ApiClient({ baseUrl: 'http://127.0.0.1:8480' }).consoleStreamUrl('web1').href,
      'ws://127.0.0.1:8480/v1/vms/web1/console/stream',
    );
  });
});

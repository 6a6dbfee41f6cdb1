/**
 * The REST API's edges against the real server and local agent (no VM is booted: every create uses
 * "start": false): authentication, the OpenAPI document, strict input validation (unknown fields,
 * hostile names, absurd sizes, bad JSON, oversized bodies), not-found answers, illegal state
 * transitions, metrics, request ids on every error, and the seeded catalog.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ERROR_CODES, type ErrorBody, type ErrorCode } from '../src/api/errors.js';
import type { Flavor } from '../src/api/flavor.js';
import type { Host } from '../src/api/host.js';
import type { Image } from '../src/api/image.js';
import type { Vm } from '../src/api/vm.js';
import { RampartHarness, type ApiResponse } from './helpers/rampart-harness.js';

let harness: RampartHarness;
/** Every error response seen, so the request-id invariant can be checked over all of them. */
const errorResponses: { what: string; response: ApiResponse }[] = [];

/** Checks the error envelope and the x-request-id header of one error response. */
function checkErrorEnvelope(what: string, response: ApiResponse): void {
  const body = response.body as ErrorBody;
  assert.equal(typeof body, 'object', `${what}: error body is not JSON: ${String(response.body)}`);
  assert.ok(body.error, `${what}: no error object in ${JSON.stringify(body)}`);
  const { code, message, requestId } = body.error;
  assert.match(code, /^RAMPART_[A-Z_]+$/, what);
  assert.equal(
    ERROR_CODES[code],
    response.status,
    `${what}: ${code} answered with status ${response.status}`,
  );
  assert.equal(typeof message, 'string', what);
  assert.ok(message.length > 0, `${what}: empty message`);
  assert.equal(typeof requestId, 'string', what);
  assert.ok(requestId.length > 0, `${what}: empty requestId`);
  assert.equal(
    response.headers.get('x-request-id'),
    requestId,
    `${what}: x-request-id header differs from body`,
  );
}

function record(what: string, response: ApiResponse): ApiResponse {
  if (response.status >= 400) {
    errorResponses.push({ what, response });
    checkErrorEnvelope(what, response);
  }
  return response;
}

/** An authenticated request through the harness. */
async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
  return record(`${method} ${path}`, await harness.api<T>(method, path, body)) as ApiResponse<T>;
}

/** A request with explicit headers (no token unless given). */
async function raw(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<ApiResponse> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = body;
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const response = await fetch(`${harness.url}${path}`, init);
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return record(`${method} ${path} (raw)`, {
    status: response.status,
    body: parsed,
    headers: response.headers,
  });
}

function assertError(
  response: ApiResponse,
  status: number,
  code: ErrorCode,
  what: string,
): ErrorBody['error'] {
  assert.equal(
    response.status,
    status,
    `${what}: expected ${status}, got ${response.status} ${JSON.stringify(response.body)}`,
  );
  const body = response.body as ErrorBody;
  assert.equal(body.error?.code, code, `${what}: ${JSON.stringify(response.body)}`);
  return body.error;
}

const vmsDir = () => join(harness.dataDir, 'agent', 'vms');

function vmDirEntries(): string[] {
  return existsSync(vmsDir()) ? readdirSync(vmsDir()) : [];
}

before(
  async () => {
    // Hundreds of probes as one admin, as fast as they go: the default per-principal rate limit
    // (20/s burst 60) would answer many of them 429. Rate limits have their own test.
    harness = await RampartHarness.start({ env: { RAMPART_RATE_LIMIT_PRINCIPAL: '0' } });
  },
  { timeout: 180_000 },
);

after(
  async () => {
    await harness?.cleanup();
  },
  { timeout: 120_000 },
);

void describe('authentication', () => {
  void test('no token: 401 RAMPART_UNAUTHENTICATED with the error envelope', async () => {
    for (const path of ['/v1/vms', '/v1/flavors', '/v1/images', '/v1/hosts', '/v1/vms/idle1']) {
      const response = await raw('GET', path);
      assertError(response, 401, 'RAMPART_UNAUTHENTICATED', path);
      const body = response.body as ErrorBody;
      assert.deepEqual(Object.keys(body).sort(), ['error']);
      assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'requestId']);
    }
    // Writes are refused before the body is even looked at.
    const create = await raw(
      'POST',
      '/v1/vms',
      {},
      JSON.stringify({ name: 'noauth', image: 'tiny', flavor: 'tiny', start: false }),
    );
    assertError(create, 401, 'RAMPART_UNAUTHENTICATED', 'POST /v1/vms without token');
    const del = await raw('DELETE', '/v1/vms/anything');
    assertError(del, 401, 'RAMPART_UNAUTHENTICATED', 'DELETE without token');
  });

  void test('a wrong or malformed token: 401', async () => {
    const wrong = [
      `Bearer ${harness.token}x`,
      `Bearer ${harness.token.slice(0, -1)}`,
      `Bearer test-${'0'.repeat(48)}`,
      `Basic ${Buffer.from(`admin:${harness.token}`).toString('base64')}`,
      harness.token,
      'Bearer ',
      `Bearer  ${harness.token}`,
      `Bearer ${harness.token} extra`,
    ];
    for (const authorization of wrong) {
      const response = await raw('GET', '/v1/vms', { authorization });
      assertError(
        response,
        401,
        'RAMPART_UNAUTHENTICATED',
        `authorization ${JSON.stringify(authorization.slice(0, 20))}`,
      );
    }
    // The right token works (so the 401s above are about the token, not the route).
    const ok = await raw('GET', '/v1/vms', { authorization: `Bearer ${harness.token}` });
    assert.equal(ok.status, 200);
  });

  void test('/v1/health and /v1/openapi.json need no token', async () => {
    const health = await raw('GET', '/v1/health');
    assert.equal(health.status, 200);
    assert.equal((health.body as { status: string }).status, 'ok');
    const doc = await raw('GET', '/v1/openapi.json');
    assert.equal(doc.status, 200);
    assert.equal(typeof (doc.body as { paths?: unknown }).paths, 'object');
  });

  void test('/metrics without a token: 401', async () => {
    assertError(await raw('GET', '/metrics'), 401, 'RAMPART_UNAUTHENTICATED', 'GET /metrics');
    assertError(
      await raw('GET', '/metrics', { authorization: 'Bearer wrong-token-wrong-token-wrong' }),
      401,
      'RAMPART_UNAUTHENTICATED',
      'metrics bad token',
    );
  });
});

void describe('OpenAPI document', () => {
  interface OpenApiDoc {
    openapi: string;
    paths: Record<
      string,
      Record<string, { requestBody?: { content?: Record<string, { schema?: Record<string, unknown> }> } }>
    >;
  }

  void test('is OpenAPI 3.x with the resource paths', async () => {
    const response = await raw('GET', '/v1/openapi.json');
    const doc = response.body as OpenApiDoc;
    assert.match(doc.openapi, /^3\.\d+\.\d+$/);
    for (const path of [
      '/v1/vms',
      '/v1/vms/{ref}',
      '/v1/vms/{ref}/stop',
      '/v1/images',
      '/v1/flavors',
      '/v1/hosts',
    ]) {
      assert.ok(doc.paths[path], `missing path ${path}; have ${Object.keys(doc.paths).join(', ')}`);
    }
    assert.ok(doc.paths['/v1/vms']!.post, 'POST /v1/vms documented');
    assert.ok(doc.paths['/v1/vms/{ref}']!.delete, 'DELETE /v1/vms/{ref} documented');
    assert.ok(doc.paths['/v1/vms/{ref}/stop']!.post, 'POST stop documented');
  });

  void test('the VM create body schema forbids additional properties', async () => {
    const doc = (await raw('GET', '/v1/openapi.json')).body as OpenApiDoc;
    const schema = doc.paths['/v1/vms']!.post!.requestBody?.content?.['application/json']?.schema;
    assert.ok(schema, 'POST /v1/vms has a JSON request body schema');
    assert.equal(schema.additionalProperties, false);
    const properties = schema.properties as Record<string, unknown>;
    assert.deepEqual(Object.keys(properties).sort(), [
      'bootVolume',
      'flavor',
      'image',
      'name',
      'network',
      'placementGroup',
      'restartPolicy',
      'securityGroups',
      'sshKeys',
      'start',
    ]);
    // An image or a boot volume: exactly one, checked by the service (400 naming both).
    assert.deepEqual([...(schema.required as string[])].sort(), ['flavor', 'name']);
  });
});

void describe('catalog', () => {
  void test('GET /v1/flavors lists the seeded tiny, small and medium', async () => {
    const response = await api<{ items: Flavor[] }>('GET', '/v1/flavors');
    assert.equal(response.status, 200);
    const byName = new Map(response.body.items.map((f) => [f.name, f]));
    const seeded: Record<string, [number, number, number]> = {
      tiny: [1, 128, 1],
      small: [1, 512, 10],
      medium: [2, 2048, 20],
    };
    for (const [name, [vcpus, memoryMiB, diskGiB]] of Object.entries(seeded)) {
      const flavor = byName.get(name);
      assert.ok(flavor, `flavor ${name} listed`);
      assert.equal(flavor.vcpus, vcpus, name);
      assert.equal(flavor.memoryMiB, memoryMiB, name);
      assert.equal(flavor.diskGiB, diskGiB, name);
      assert.match(flavor.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    }
  });

  void test('GET /v1/images lists tiny with a SHA-256', async () => {
    const response = await api<{ items: Image[] }>('GET', '/v1/images');
    assert.equal(response.status, 200);
    const tiny = response.body.items.find((i) => i.name === 'tiny');
    assert.ok(tiny, `image tiny listed: ${JSON.stringify(response.body)}`);
    assert.match(tiny.sha256 ?? '', /^[0-9a-f]{64}$/);
    assert.equal(tiny.status, 'active');
    assert.equal(tiny.scan.verdict, 'clean');
    assert.equal(tiny.platformSigned, true);
    assert.equal(tiny.format, 'kernel-initrd');
    assert.ok(tiny.sizeBytes > 0);
    // Paths on the host are not part of the API.
    assert.ok(!('kernelPath' in tiny) && !('initrdPath' in tiny), JSON.stringify(tiny));
  });

  void test('GET /v1/hosts has one online host with an accelerator and a reason for it', async () => {
    const response = await api<{ items: Host[] }>('GET', '/v1/hosts');
    assert.equal(response.status, 200);
    assert.equal(response.body.items.length, 1, JSON.stringify(response.body));
    const host = response.body.items[0]!;
    assert.equal(host.state, 'online');
    assert.ok(host.accelerator === 'tcg' || host.accelerator === 'kvm', host.accelerator);
    assert.equal(typeof host.acceleratorReason, 'string');
    assert.ok(host.acceleratorReason.trim().length > 0, 'acceleratorReason is not empty');
    assert.ok(host.capacity.vcpusAllocatable > 0);
    assert.ok(host.capacity.memoryMiBAllocatable > 0);
  });
});

void describe('VM create validation', () => {
  const valid = { name: 'valid-name', image: 'tiny', flavor: 'tiny', start: false };

  void test('unknown fields are rejected with 400 RAMPART_INVALID_INPUT', async () => {
    const extras: Record<string, unknown>[] = [
      { tenantId: 'someone-else' },
      { host: 'other-host' },
      { hostId: randomUUID() },
      { status: 'running' },
      { state: 'running' },
      { qemuArgs: ['-vnc', ':0'] },
      { id: randomUUID() },
      { vcpus: 64 },
      { admin: true },
    ];
    for (const extra of extras) {
      const response = await api('POST', '/v1/vms', { ...valid, ...extra });
      assertError(response, 400, 'RAMPART_INVALID_INPUT', `extra ${JSON.stringify(extra)}`);
    }
    // Prototype pollution through the JSON parser is refused too.
    const poisoned =
      '{"name":"proto1","image":"tiny","flavor":"tiny","start":false,"__proto__":{"admin":true}}';
    assertError(await api('POST', '/v1/vms', poisoned), 400, 'RAMPART_INVALID_INPUT', '__proto__');
  });

  void test('hostile or malformed names are rejected with 400', async () => {
    const names = [
      '../x',
      'a/b',
      'x\u0000y',
      'x\ny',
      'UPPER',
      'a'.repeat(64),
      '',
      '-lead',
      'trail-',
      'semi;colon',
      '$(id)',
      '`id`',
      'a b',
      'a,b',
      'a=b',
      '.',
      '..',
      'ünï',
    ];
    for (const name of names) {
      const response = await api('POST', '/v1/vms', { ...valid, name });
      assertError(response, 400, 'RAMPART_INVALID_INPUT', `name ${JSON.stringify(name)}`);
    }
    for (const name of [42, null, true, ['a'], { a: 1 }]) {
      const response = await api('POST', '/v1/vms', { ...valid, name });
      assertError(response, 400, 'RAMPART_INVALID_INPUT', `name ${JSON.stringify(name)}`);
    }
  });

  void test('missing required fields and wrongly typed values are rejected with 400', async () => {
    for (const body of [
      {},
      { name: 'x1' },
      { name: 'x1', image: 'tiny' },
      { name: 'x1', flavor: 'tiny' },
      { ...valid, start: 'false' },
      { ...valid, start: 0 },
      { ...valid, restartPolicy: 'sometimes' },
      { ...valid, image: '../tiny' },
      { ...valid, flavor: 'TINY' },
    ]) {
      assertError(await api('POST', '/v1/vms', body), 400, 'RAMPART_INVALID_INPUT', JSON.stringify(body));
    }
  });

  void test('an unknown image or flavor is 400, not 404', async () => {
    const image = assertError(
      await api('POST', '/v1/vms', { ...valid, image: 'no-such-image' }),
      400,
      'RAMPART_INVALID_INPUT',
      'image',
    );
    assert.match(image.message, /no-such-image/);
    const flavor = assertError(
      await api('POST', '/v1/vms', { ...valid, flavor: 'no-such-flavor' }),
      400,
      'RAMPART_INVALID_INPUT',
      'flavor',
    );
    assert.match(flavor.message, /no-such-flavor/);
    assertError(
      await api('POST', '/v1/vms', { ...valid, image: randomUUID() }),
      400,
      'RAMPART_INVALID_INPUT',
      'image uuid',
    );
  });

  void test('invalid JSON is 400', async () => {
    for (const text of ['{"name":', '{name: "x"}', "{'name':'x'}", '{"name":"x",}', 'null x']) {
      assertError(await api('POST', '/v1/vms', text), 400, 'RAMPART_INVALID_INPUT', `body ${text}`);
    }
  });

  void test('a body over 64 KiB is 413 RAMPART_PAYLOAD_TOO_LARGE', async () => {
    const big = JSON.stringify({ ...valid, name: 'big', pad: 'x'.repeat(70 * 1024) });
    assert.ok(Buffer.byteLength(big) > 64 * 1024);
    assertError(await api('POST', '/v1/vms', big), 413, 'RAMPART_PAYLOAD_TOO_LARGE', 'big body');
    // Also when the over-long part is a valid field value.
    const bigName = JSON.stringify({ ...valid, name: 'n'.repeat(66 * 1024) });
    assertError(await api('POST', '/v1/vms', bigName), 413, 'RAMPART_PAYLOAD_TOO_LARGE', 'big name');
  });

  void test('none of the rejected requests created a VM or touched the host', async () => {
    assert.deepEqual(vmDirEntries(), [], `${vmsDir()} has entries`);
    const list = await api<{ items: Vm[] }>('GET', '/v1/vms');
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.items, []);
    assertError(
      await api('GET', '/v1/vms/valid-name'),
      404,
      'RAMPART_NOT_FOUND',
      'valid-name was never created',
    );
  });
});

void describe('flavor validation', () => {
  void test('absurd sizes are rejected with 400 and nothing is created', async () => {
    const base = { vcpus: 1, memoryMiB: 256, diskGiB: 1 };
    const cases: [string, Record<string, unknown>][] = [
      ['f-vcpus-0', { vcpus: 0 }],
      ['f-vcpus-huge', { vcpus: 100_000 }],
      ['f-vcpus-neg', { vcpus: -1 }],
      ['f-mem-1', { memoryMiB: 1 }],
      ['f-mem-huge', { memoryMiB: 10 ** 9 }],
      ['f-disk-neg', { diskGiB: -1 }],
      ['f-disk-huge', { diskGiB: 10 ** 9 }],
      ['f-vcpus-frac', { vcpus: 1.5 }],
      ['f-mem-frac', { memoryMiB: 256.5 }],
      ['f-vcpus-str', { vcpus: '2' }],
      ['f-mem-str', { memoryMiB: '256' }],
      ['f-vcpus-null', { vcpus: null }],
      ['f-extra', { gpu: 1 }],
    ];
    for (const [name, patch] of cases) {
      const response = await api('POST', '/v1/flavors', { name, ...base, ...patch });
      assertError(response, 400, 'RAMPART_INVALID_INPUT', `${name} ${JSON.stringify(patch)}`);
    }
    for (const name of ['../f', 'F-UP', '', 'f;x']) {
      assertError(
        await api('POST', '/v1/flavors', { name, ...base }),
        400,
        'RAMPART_INVALID_INPUT',
        `flavor name ${JSON.stringify(name)}`,
      );
    }
    const list = await api<{ items: Flavor[] }>('GET', '/v1/flavors');
    const created = list.body.items.filter((f) => f.name.startsWith('f-'));
    assert.deepEqual(created, []);
  });

  void test('a valid flavor is created (201) and listed; its name cannot be reused (409)', async () => {
    const input = { name: 'custom-1', vcpus: 2, memoryMiB: 256, diskGiB: 3 };
    const created = await api<Flavor>('POST', '/v1/flavors', input);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.name, 'custom-1');
    assert.equal(created.body.vcpus, 2);
    assert.equal(created.body.memoryMiB, 256);
    assert.equal(created.body.diskGiB, 3);
    const list = await api<{ items: Flavor[] }>('GET', '/v1/flavors');
    const listed = list.body.items.find((f) => f.name === 'custom-1');
    assert.deepEqual(listed, created.body);
    const byName = await api<Flavor>('GET', '/v1/flavors/custom-1');
    assert.equal(byName.status, 200);
    assert.equal(byName.body.id, created.body.id);

    assertError(await api('POST', '/v1/flavors', input), 409, 'RAMPART_CONFLICT', 'duplicate flavor');
    assertError(
      await api('POST', '/v1/flavors', { ...input, vcpus: 1 }),
      409,
      'RAMPART_CONFLICT',
      'duplicate flavor name',
    );
    assertError(
      await api('POST', '/v1/flavors', { name: 'tiny', vcpus: 1, memoryMiB: 128, diskGiB: 1 }),
      409,
      'RAMPART_CONFLICT',
      'seeded flavor name',
    );
    const after = await api<{ items: Flavor[] }>('GET', '/v1/flavors');
    assert.equal(after.body.items.filter((f) => f.name === 'custom-1').length, 1);
    assert.equal(
      after.body.items.find((f) => f.name === 'custom-1')!.vcpus,
      2,
      'the duplicate did not overwrite',
    );
  });
});

void describe('VM lifecycle without booting', () => {
  let vm: Vm;

  void test('create with start=false: 201, state stopped, nothing started', async () => {
    const response = await api<Vm>('POST', '/v1/vms', {
      name: 'idle1',
      image: 'tiny',
      flavor: 'tiny',
      start: false,
    });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    vm = response.body;
    assert.equal(vm.name, 'idle1');
    assert.equal(vm.state, 'stopped');
    assert.equal(vm.image.name, 'tiny');
    assert.equal(vm.flavor.name, 'tiny');
    assert.equal(vm.vcpus, 1);
    assert.equal(vm.memoryMiB, 128);
    assert.equal(vm.pid, null);
    assert.match(vm.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.deepEqual(harness.qemuPids(), [], 'no QEMU was started');
  });

  void test('the same name again: 409 RAMPART_CONFLICT', async () => {
    const response = await api('POST', '/v1/vms', {
      name: 'idle1',
      image: 'tiny',
      flavor: 'small',
      start: false,
    });
    assertError(response, 409, 'RAMPART_CONFLICT', 'duplicate VM name');
    const list = await api<{ items: Vm[] }>('GET', '/v1/vms');
    assert.deepEqual(
      list.body.items.map((v) => [v.name, v.id]),
      [['idle1', vm.id]],
    );
  });

  void test('GET by name and by id', async () => {
    const byName = await api<Vm>('GET', '/v1/vms/idle1');
    assert.equal(byName.status, 200);
    assert.equal(byName.body.id, vm.id);
    const byId = await api<Vm>('GET', `/v1/vms/${vm.id}`);
    assert.equal(byId.status, 200);
    assert.equal(byId.body.name, 'idle1');
    assert.deepEqual(byId.body, byName.body);
  });

  void test('an unknown name and an unknown id get the same 404 (up to the ref echoed back)', async () => {
    const unknownId = randomUUID();
    const byName = await api('GET', '/v1/vms/nope');
    const byId = await api('GET', `/v1/vms/${unknownId}`);
    const a = assertError(byName, 404, 'RAMPART_NOT_FOUND', 'nope');
    const b = assertError(byId, 404, 'RAMPART_NOT_FOUND', 'uuid');
    assert.notEqual(a.requestId, b.requestId, 'every request has its own id');
    const normalize = (error: ErrorBody['error'], ref: string) => ({
      ...error,
      requestId: '<id>',
      message: error.message.split(ref).join('<ref>'),
    });
    assert.deepEqual(normalize(a, 'nope'), normalize(b, unknownId));
    // Refs that can never match (not a name, not an id) are rejected by the params schema.
    assertError(await api('GET', '/v1/vms/NOPE'), 400, 'RAMPART_INVALID_INPUT', 'uppercase ref');
    assertError(await api('GET', `/v1/vms/${'a'.repeat(64)}`), 400, 'RAMPART_INVALID_INPUT', 'long ref');
  });

  void test('metrics count the VM by state', async () => {
    const response = await api<string>('GET', '/metrics');
    assert.equal(response.status, 200);
    assert.match(String(response.body), /^rampart_vms\{state="stopped"\} 1$/m);
  });

  void test('stop, pause, resume and reboot of a stopped VM: 409 RAMPART_ILLEGAL_STATE', async () => {
    for (const action of ['stop', 'pause', 'resume', 'reboot']) {
      const error = assertError(
        await api('POST', `/v1/vms/idle1/${action}`),
        409,
        'RAMPART_ILLEGAL_STATE',
        action,
      );
      assert.equal(error.details?.state, 'stopped', action);
      assert.equal(error.details?.action, action);
    }
    // A forced stop of a stopped VM is just as illegal.
    assertError(
      await api('POST', '/v1/vms/idle1/stop', { force: true }),
      409,
      'RAMPART_ILLEGAL_STATE',
      'force stop',
    );
    const still = await api<Vm>('GET', '/v1/vms/idle1');
    assert.equal(still.body.state, 'stopped');
    assert.deepEqual(harness.qemuPids(), []);
  });

  void test('action bodies are validated strictly', async () => {
    assertError(
      await api('POST', '/v1/vms/idle1/stop', { bogus: 1 }),
      400,
      'RAMPART_INVALID_INPUT',
      'stop bogus',
    );
    assertError(
      await api('POST', '/v1/vms/idle1/stop', { timeoutSeconds: -1 }),
      400,
      'RAMPART_INVALID_INPUT',
      'stop timeout -1',
    );
    assertError(
      await api('POST', '/v1/vms/idle1/stop', { force: 'yes' }),
      400,
      'RAMPART_INVALID_INPUT',
      'stop force string',
    );
    assertError(
      await api('POST', '/v1/vms/idle1/pause', { bogus: 1 }),
      400,
      'RAMPART_INVALID_INPUT',
      'pause bogus',
    );
    assertError(await api('POST', '/v1/vms/nope/stop'), 404, 'RAMPART_NOT_FOUND', 'stop unknown VM');
  });

  void test('DELETE answers 202 (deleting), then the VM is gone (404)', async () => {
    const response = await api<Vm>('DELETE', '/v1/vms/idle1');
    assert.equal(response.status, 202, JSON.stringify(response.body));
    assert.equal(response.body.id, vm.id);
    assert.equal(response.body.state, 'deleting');
    await harness.waitFor(
      async () => (await harness.api('GET', `/v1/vms/${vm.id}`)).status === 404,
      30_000,
      'VM gone',
    );
    assertError(await api('GET', '/v1/vms/idle1'), 404, 'RAMPART_NOT_FOUND', 'deleted VM by name');
    assertError(await api('DELETE', '/v1/vms/idle1'), 404, 'RAMPART_NOT_FOUND', 'delete again');
    const list = await api<{ items: Vm[] }>('GET', '/v1/vms');
    assert.deepEqual(list.body.items, []);
    assert.deepEqual(vmDirEntries(), []);
  });
});

void describe('metrics and request ids', () => {
  void test('GET /metrics with the token has request counts by route pattern and the VM gauge', async () => {
    await api('GET', '/v1/vms');
    await api('GET', '/v1/vms/nope');
    const response = await api<string>('GET', '/metrics');
    assert.equal(response.status, 200);
    const text = String(response.body);
    const lines = text.split('\n').filter((l) => l.startsWith('rampart_http_requests_total{'));
    assert.ok(
      lines.some((l) => /route="\/v1\/vms"/.test(l) && /method="GET"/.test(l) && /status="200"/.test(l)),
      lines.join('\n'),
    );
    // Routes are labelled by pattern, never by the raw URL (bounded label cardinality).
    assert.ok(
      lines.some((l) => l.includes('route="/v1/vms/:ref"') && l.includes('status="404"')),
      lines.join('\n'),
    );
    assert.ok(!lines.some((l) => l.includes('/v1/vms/nope')), 'raw URLs are not labels');
    assert.match(text, /^# TYPE rampart_vms gauge$/m);
  });

  void test('an unknown route is a 404 in the error envelope', async () => {
    assertError(await api('GET', '/v1/nothing-here'), 404, 'RAMPART_NOT_FOUND', 'unknown route');
    assertError(await raw('GET', '/v2/vms'), 404, 'RAMPART_NOT_FOUND', 'unknown route without token');
  });

  void test('every error response carried x-request-id equal to body.error.requestId', () => {
    // checkErrorEnvelope ran on each as it arrived; make sure the set covers every kind of error.
    const statuses = new Set(errorResponses.map((e) => e.response.status));
    for (const status of [400, 401, 404, 409, 413])
      assert.ok(statuses.has(status), `no ${status} response was checked`);
    assert.ok(errorResponses.length > 50, `only ${errorResponses.length} error responses checked`);
    const ids = errorResponses.map((e) => (e.response.body as ErrorBody).error.requestId);
    assert.equal(new Set(ids).size, ids.length, 'request ids are unique');
    for (const { what, response } of errorResponses) {
      assert.equal(response.headers.get('x-request-id'), (response.body as ErrorBody).error.requestId, what);
    }
  });
});

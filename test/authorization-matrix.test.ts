/**
 * The generated authorization matrix (SECURITY-TESTS.md item 2): every route x every built-in role x
 * {own tenant, foreign tenant, no token}, against the real server, compared with the expected table
 * below — written by hand, not derived from the server's role definitions, so a change to either one
 * shows up here. A route in the server's ROUTE_POLICY without an entry in EXPECTED (or the reverse)
 * fails the suite.
 *
 * No request here mutates anything: allowed POST/PATCH requests carry a body the schema refuses
 * (authorization runs before validation, so allowed -> 400, denied -> 403), object routes name
 * objects that do not exist (allowed -> 404) and the foreign tenant's VM (allowed -> 404, byte-identical
 * to the absent one).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Vm } from '../src/api/vm.js';
import { ROUTE_POLICY } from '../src/server/http/route-policy.js';
import { RampartHarness, type ApiResponse } from './helpers/rampart-harness.js';

const ROLES = [
  'platform-admin',
  'tenant-admin',
  'operator',
  'member',
  'viewer',
  'auditor',
  'security-responder',
] as const;
type Role = (typeof ROLES)[number];
const ABBREVIATION: Record<string, Role> = {
  PA: 'platform-admin',
  TA: 'tenant-admin',
  OP: 'operator',
  ME: 'member',
  VI: 'viewer',
  AU: 'auditor',
  SR: 'security-responder',
};

/**
 * Who may call each route in their own tenant. `public`: no token needed; `self`: any authenticated
 * caller; otherwise the roles (abbreviated) that are allowed.
 */
const EXPECTED: Record<string, string> = {
  'GET /v1/health': 'public',
  'GET /v1/openapi.json': 'public',
  'GET /': 'public',
  'GET /assets/*': 'public',
  'GET /metrics': 'PA',
  'POST /v1/auth/login': 'public',
  'POST /v1/auth/refresh': 'public',
  'POST /v1/auth/logout': 'self',
  'GET /v1/auth/whoami': 'self',
  'POST /v1/auth/password': 'self',
  'POST /v1/auth/mfa/totp': 'self',
  'POST /v1/auth/mfa/totp/verify': 'self',
  'POST /v1/auth/mfa/totp/disable': 'self',
  'GET /v1/tokens': 'self',
  'POST /v1/tokens': 'PA TA ME',
  'DELETE /v1/tokens/:id': 'self',
  'GET /v1/tenants': 'self',
  'POST /v1/tenants': 'PA',
  'GET /v1/tenants/:tenant': 'PA TA OP ME VI AU SR',
  'PATCH /v1/tenants/:tenant': 'PA TA',
  'DELETE /v1/tenants/:tenant': 'PA',
  'GET /v1/tenants/:tenant/quota': 'PA TA OP ME VI AU SR',
  'PUT /v1/tenants/:tenant/quota': 'PA',
  'GET /v1/tenants/:tenant/members': 'PA TA AU',
  'POST /v1/tenants/:tenant/members': 'PA TA',
  'DELETE /v1/tenants/:tenant/members/:user': 'PA TA',
  'GET /v1/platform/members': 'PA',
  'POST /v1/platform/members': 'PA',
  'DELETE /v1/platform/members/:user': 'PA',
  'GET /v1/users': 'PA',
  'POST /v1/users': 'PA',
  'GET /v1/users/:ref': 'PA',
  'PATCH /v1/users/:ref': 'PA',
  'POST /v1/users/:ref/password': 'PA',
  'DELETE /v1/users/:ref': 'PA',
  'GET /v1/roles': 'PA TA AU',
  'POST /v1/roles': 'PA TA',
  'GET /v1/roles/:name': 'PA TA AU',
  'DELETE /v1/roles/:name': 'PA TA',
  'GET /v1/audit': 'PA TA AU SR',
  'GET /v1/platform/audit': 'PA',
  'GET /v1/audit/verify': 'PA',
  'GET /v1/audit/public-key': 'PA',
  'GET /v1/audit/export/records': 'PA',
  'GET /v1/audit/export/checkpoints': 'PA',
  'GET /v1/security/events': 'PA TA AU SR',
  'GET /v1/platform/security/events': 'PA',
  'GET /v1/security/events/stream': 'PA TA AU SR',
  'GET /v1/platform/security/events/stream': 'PA',
  'GET /v1/security/alerts': 'PA TA AU SR',
  'GET /v1/security/alerts/:id': 'PA TA AU SR',
  'PATCH /v1/security/alerts/:id': 'PA TA SR',
  'GET /v1/platform/security/alerts': 'PA',
  'PATCH /v1/platform/security/alerts/:id': 'PA',
  'GET /v1/platform/compliance/report': 'PA',
  'GET /v1/platform/compliance/report.html': 'PA',
  'GET /v1/platform/compliance/history': 'PA',
  'POST /v1/platform/compliance/runs': 'PA',
  'GET /v1/images': 'PA TA OP ME VI AU SR',
  'GET /v1/images/:ref': 'PA TA OP ME VI AU SR',
  'PATCH /v1/images/:ref': 'PA TA ME',
  'PUT /v1/images/:ref/shares/:tenant': 'PA TA ME',
  'DELETE /v1/images/:ref/shares/:tenant': 'PA TA ME',
  'POST /v1/images/:ref/publish': 'PA',
  'POST /v1/images': 'PA TA ME',
  'GET /v1/placement-groups': 'PA TA OP ME VI AU SR',
  'POST /v1/placement-groups': 'PA TA ME',
  'GET /v1/placement-groups/:ref': 'PA TA OP ME VI AU SR',
  'DELETE /v1/placement-groups/:ref': 'PA TA ME',
  'GET /v1/volumes': 'PA TA OP ME VI AU SR',
  'POST /v1/volumes': 'PA TA ME',
  'GET /v1/volumes/:ref': 'PA TA OP ME VI AU SR',
  'PATCH /v1/volumes/:ref': 'PA TA ME',
  'DELETE /v1/volumes/:ref': 'PA TA ME',
  'GET /v1/volumes/:ref/snapshots': 'PA TA OP ME VI AU SR',
  'POST /v1/volumes/:ref/snapshots': 'PA TA ME',
  'GET /v1/volumes/:ref/snapshots/:snapshot': 'PA TA OP ME VI AU SR',
  'DELETE /v1/volumes/:ref/snapshots/:snapshot': 'PA TA ME',
  'POST /v1/volumes/:ref/restore': 'PA TA ME',
  'POST /v1/volumes/:ref/backups': 'PA TA ME',
  'GET /v1/backups': 'PA TA OP ME VI AU SR',
  'GET /v1/backups/:ref': 'PA TA OP ME VI AU SR',
  'DELETE /v1/backups/:ref': 'PA TA ME',
  'POST /v1/vms/:ref/volumes': 'PA TA ME',
  'DELETE /v1/vms/:ref/volumes/:volume': 'PA TA ME',
  'GET /v1/networks': 'PA TA OP ME VI AU SR',
  'POST /v1/networks': 'PA TA ME',
  'GET /v1/networks/:ref': 'PA TA OP ME VI AU SR',
  'PATCH /v1/networks/:ref': 'PA TA ME',
  'DELETE /v1/networks/:ref': 'PA TA ME',
  'GET /v1/security-groups': 'PA TA OP ME VI AU SR',
  'POST /v1/security-groups': 'PA TA ME',
  'GET /v1/security-groups/:ref': 'PA TA OP ME VI AU SR',
  'DELETE /v1/security-groups/:ref': 'PA TA ME',
  'POST /v1/security-groups/:ref/rules': 'PA TA ME',
  'DELETE /v1/security-groups/:ref/rules/:rule': 'PA TA ME',
  'GET /v1/vms/:ref/ports': 'PA TA OP ME VI AU SR',
  'PUT /v1/vms/:ref/isolation': 'PA TA SR',
  'GET /v1/vms/:ref/hardening': 'PA TA OP ME VI AU SR',
  'PUT /v1/vms/:ref/ports/:port/security-groups': 'PA TA ME',
  'PUT /v1/platform/vms/:ref/ports/:port/allowed-addresses': 'PA',
  'DELETE /v1/images/:ref': 'PA TA',
  'PUT /v1/images/:ref/files/:part': 'PA TA ME',
  'GET /v1/images/:ref/files/:part': 'PA TA OP ME VI AU SR',
  'POST /v1/images/:ref/scan': 'PA TA ME',
  'POST /v1/platform/images/import': 'PA',
  'POST /v1/platform/images/:ref/scan': 'PA',
  'POST /v1/platform/keys/rotate-master': 'PA',
  'GET /v1/images/:ref/signatures': 'PA TA OP ME VI AU SR',
  'POST /v1/images/:ref/signatures': 'PA TA ME',
  'DELETE /v1/images/:ref/signatures/:id': 'PA TA',
  'GET /v1/trusted-keys': 'PA TA OP ME VI AU SR',
  'POST /v1/trusted-keys': 'PA TA',
  'DELETE /v1/trusted-keys/:id': 'PA TA',
  'GET /v1/tenants/:tenant/trust-policy': 'PA TA OP ME VI AU SR',
  'PUT /v1/tenants/:tenant/trust-policy': 'PA TA',
  'GET /v1/flavors': 'PA TA OP ME VI AU SR',
  'GET /v1/flavors/:ref': 'PA TA OP ME VI AU SR',
  'POST /v1/flavors': 'PA',
  'GET /v1/hosts': 'PA',
  'GET /v1/hosts/:id': 'PA',
  'PATCH /v1/hosts/:id': 'PA',
  'POST /v1/hosts/:id/evacuate': 'PA',
  'POST /v1/platform/hosts/join-tokens': 'PA',
  'POST /v1/platform/hosts/:host/certificate': 'PA',
  'POST /v1/platform/hosts/:host/revoke': 'PA',
  'POST /v1/hosts/join': 'public',
  'GET /v1/vms': 'PA TA OP ME VI AU SR',
  'POST /v1/vms': 'PA TA ME',
  'GET /v1/vms/:ref': 'PA TA OP ME VI AU SR',
  'DELETE /v1/vms/:ref': 'PA TA ME',
  'POST /v1/vms/:ref/start': 'PA TA OP ME',
  'POST /v1/vms/:ref/stop': 'PA TA OP ME SR',
  'POST /v1/vms/:ref/reboot': 'PA TA OP ME',
  'POST /v1/vms/:ref/pause': 'PA TA OP ME SR',
  'POST /v1/vms/:ref/resume': 'PA TA OP ME SR',
  'POST /v1/vms/:ref/resize': 'PA TA ME',
  'GET /v1/vms/:ref/samples': 'PA TA OP ME VI AU SR',
  'GET /v1/vms/:ref/console': 'PA TA OP ME',
  'GET /v1/vms/:ref/console/stream': 'PA TA OP ME',
};

const OWN = 'alpha';
const FOREIGN = 'beta';
const PASSWORD = 'Matrix-Passw0rd-for-tests';
const ABSENT = randomUUID();

let harness: RampartHarness;
const sessions = new Map<Role, string>();
let foreignVm: Vm;

before(async () => {
  // Hundreds of requests as each user in a few seconds: the rate limits have their own test.
  harness = await RampartHarness.start({
    env: {
      RAMPART_RATE_LIMIT_PRINCIPAL: 'off',
      RAMPART_RATE_LIMIT_TENANT: 'off',
      RAMPART_RATE_LIMIT_ANONYMOUS: 'off',
    },
  });
  for (const name of [OWN, FOREIGN]) {
    const created = await harness.api('POST', '/v1/tenants', { name });
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
  sessions.set('platform-admin', await harness.login('admin', harness.adminPassword));
  for (const role of ROLES.filter((r) => r !== 'platform-admin')) {
    const username = `matrix-${role}`;
    const user = await harness.api('POST', '/v1/users', {
      username,
      password: PASSWORD,
      mustChangePassword: false,
    });
    assert.equal(user.status, 201, JSON.stringify(user.body));
    const bound = await harness.api('POST', `/v1/tenants/${OWN}/members`, { user: username, role });
    assert.equal(bound.status, 201, JSON.stringify(bound.body));
    sessions.set(role, await harness.login(username, PASSWORD));
  }
  const vm = await harness.api<Vm>('POST', `/v1/vms?tenant=${FOREIGN}`, {
    name: 'foreign-vm',
    image: 'tiny',
    flavor: 'tiny',
    start: false,
  });
  assert.equal(vm.status, 201, JSON.stringify(vm.body));
  foreignVm = vm.body;
});

after(async () => {
  await harness?.cleanup();
});

interface Probe {
  method: string;
  path: string;
  body?: unknown;
}

/** A request for a route that never mutates: absent objects, bodies the schema refuses. */
function probe(key: string, tenant: string, object: 'absent' | 'foreign', withBody = true): Probe {
  const [method, route] = key.split(' ') as [string, string];
  const vmRef = object === 'foreign' ? foreignVm.id : ABSENT;
  const path = route
    .replace(
      ':tenant',
      route.startsWith('/v1/tenants/:tenant') && method === 'DELETE' && !route.includes('members')
        ? 'no-such-tenant'
        : tenant,
    )
    .replace(
      ':ref',
      route.startsWith('/v1/users') ? 'no-such-user' : route.startsWith('/v1/vms') ? vmRef : 'no-such-thing',
    )
    .replace(':id', ABSENT)
    .replace(':port', ABSENT)
    .replace(':rule', ABSENT)
    .replace(':user', 'no-such-user')
    .replace(':name', 'no-such-role')
    .replace(':volume', 'no-such-volume')
    .replace(':snapshot', 'no-such-snapshot')
    .replace(':host', 'no-such-host');
  const scope = ROUTE_POLICY[key]?.scope;
  // The tenant comes from the path only where the policy says so (`:tenant` may also name a target).
  const tenantInPath = ROUTE_POLICY[key]?.tenantParam !== undefined;
  const query = scope === 'tenant' && !tenantInPath ? `?tenant=${tenant}` : '';
  const writes = method === 'POST' || method === 'PATCH' || method === 'PUT';
  // A valid body where one is required (only the object lookup then decides), else none.
  const validBodies: Record<string, unknown> = {
    '/resize': { flavor: 'tiny' },
    '/security-groups': { securityGroups: [] },
    '/allowed-addresses': { allowedAddresses: [] },
    '/volumes': { volume: 'no-such-volume' },
    '/snapshots': { name: 'snap' },
    '/backups': { name: 'backup' },
    '/restore': { snapshot: 'no-such-snapshot' },
    '/alerts/:id': { status: 'acknowledged' },
    '/isolation': { isolated: true },
  };
  const validBody = Object.entries(validBodies).find(([suffix]) => route.endsWith(suffix))?.[1];
  const body = writes ? (withBody ? { unexpectedField: true } : validBody) : undefined;
  return { method, path: `${path}${query}`, body };
}

async function call(p: Probe, token: string | null): Promise<ApiResponse> {
  return harness.api(p.method, p.path, p.body, { authorization: token ? `Bearer ${token}` : '' });
}

function allowedRoles(key: string): Set<Role> | 'public' | 'self' {
  const entry = EXPECTED[key]!;
  if (entry === 'public' || entry === 'self') return entry;
  return new Set(entry.split(' ').map((a) => ABBREVIATION[a]!));
}

test('every route of the server has an expected entry and vice versa', async () => {
  assert.deepEqual(Object.keys(ROUTE_POLICY).sort(), Object.keys(EXPECTED).sort());
  // And the routes the server really serves are the ones in ROUTE_POLICY (it refuses to start
  // otherwise; the OpenAPI document shows the served ones).
  const doc = await harness.api<{ paths: Record<string, Record<string, unknown>> }>(
    'GET',
    '/v1/openapi.json',
  );
  for (const [path, methods] of Object.entries(doc.body.paths)) {
    for (const method of Object.keys(methods)) {
      const key = `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`;
      if (method === 'head') continue;
      assert.ok(key in EXPECTED, `served route ${key} has no expected entry`);
    }
  }
});

test('no token: 401 on every non-public route', async () => {
  for (const key of Object.keys(EXPECTED)) {
    const response = await call(probe(key, OWN, 'absent'), null);
    if (EXPECTED[key] === 'public') assert.notEqual(response.status, 401, key);
    else assert.equal(response.status, 401, `${key}: ${response.status} ${JSON.stringify(response.body)}`);
  }
});

test('own tenant: each role is allowed exactly where the table says', async () => {
  const mismatches: string[] = [];
  for (const key of Object.keys(EXPECTED)) {
    const allowed = allowedRoles(key);
    if (allowed === 'public') continue;
    for (const role of ROLES) {
      const response = await call(probe(key, OWN, 'absent'), sessions.get(role)!);
      const expectAllowed = allowed === 'self' || allowed.has(role);
      const wasAllowed = response.status !== 401 && response.status !== 403;
      if (expectAllowed !== wasAllowed)
        mismatches.push(
          `${key} as ${role}: expected ${expectAllowed ? 'allowed' : '403'}, got ${response.status}`,
        );
      else if (!expectAllowed) assert.equal(response.status, 403, `${key} as ${role}`);
    }
  }
  assert.deepEqual(mismatches, []);
});

test('foreign tenant: every tenant route answers 404 for every tenant role (platform admins act anywhere)', async () => {
  const mismatches: string[] = [];
  for (const key of Object.keys(EXPECTED)) {
    if (ROUTE_POLICY[key]?.scope !== 'tenant') continue;
    for (const role of ROLES) {
      const response = await call(probe(key, FOREIGN, 'absent'), sessions.get(role)!);
      if (role === 'platform-admin') {
        if (response.status === 401 || response.status === 403)
          mismatches.push(`${key} as ${role}: ${response.status}`);
      } else if (response.status !== 404) {
        mismatches.push(`${key} as ${role} in ${FOREIGN}: expected 404, got ${response.status}`);
      }
    }
  }
  assert.deepEqual(mismatches, []);
});

test("another tenant's VM looks exactly like one that never existed", async () => {
  const normalise = (r: ApiResponse) =>
    JSON.stringify({
      status: r.status,
      body: { ...(r.body as object), error: { ...(r.body as { error: object }).error, requestId: '' } },
    });
  for (const key of Object.keys(EXPECTED).filter((k) => k.includes('/v1/vms/:ref'))) {
    const allowed = allowedRoles(key);
    for (const role of ROLES) {
      if (role === 'platform-admin') continue;
      const expectAllowed = allowed === 'self' || (allowed !== 'public' && allowed.has(role));
      // Without a body: the request is valid, so only the VM lookup decides (and finds nothing).
      const foreign = await call(probe(key, OWN, 'foreign', false), sessions.get(role)!);
      const absent = await call(probe(key, OWN, 'absent', false), sessions.get(role)!);
      assert.equal(foreign.status, expectAllowed ? 404 : 403, `${key} as ${role}`);
      assert.equal(normalise(foreign), normalise(absent), `${key} as ${role}: foreign and absent differ`);
      assert.equal(foreign.headers.get('content-length'), absent.headers.get('content-length'));
    }
  }
  // The foreign VM is untouched and invisible in the own tenant's list.
  const list = await harness.api<{ items: Vm[] }>('GET', `/v1/vms?tenant=${OWN}`, undefined, {
    authorization: `Bearer ${sessions.get('tenant-admin')!}`,
  });
  assert.equal(list.status, 200);
  assert.ok(!list.body.items.some((v) => v.id === foreignVm.id));
  const still = await harness.api<Vm>('GET', `/v1/vms/${foreignVm.id}?tenant=${FOREIGN}`);
  assert.equal(still.status, 200);
  assert.equal(still.body.state, 'stopped');
});

test('denials are audited: the foreign VM probe left denied records with the actor', async () => {
  const records = await harness.api<{
    items: { actor: string; outcome: string; status: number; target: string | null }[];
  }>('GET', `/v1/platform/audit?outcome=denied&actor=matrix-viewer&limit=1000`);
  assert.equal(records.status, 200, JSON.stringify(records.body));
  assert.ok(
    records.body.items.some((r) => r.status === 404 && r.target === foreignVm.id),
    'foreign 404 audited',
  );
  assert.ok(
    records.body.items.some((r) => r.status === 403),
    '403 audited',
  );
});

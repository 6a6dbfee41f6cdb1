/**
 * The security event stream over HTTP and the CLI, against the real server: a tenant sees its own
 * events only (never another tenant's or the platform-wide ones), members without security:read are
 * refused, the platform view shows everything and narrows with ?tenant=. The test writes image events
 * into the server's database directly (after the logins of its setup have recorded theirs).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import type { SecurityEvent } from '../src/api/security.js';
import { CLI_MAIN } from './helpers/repo.js';
import { RampartHarness } from './helpers/rampart-harness.js';

const execFileAsync = promisify(execFile);
const PASSWORD = 'Security-Events-Passw0rd';
let harness: RampartHarness;
const tenantIds = new Map<string, string>();
const sessions = new Map<string, string>();

interface List {
  items: SecurityEvent[];
}

/** TEST DATA: one event written straight into security_events (seq = max + 1). */
function insertEvent(event: {
  tenant: string | null;
  kind: string;
  summary: string;
  severity?: string;
  detail?: Record<string, unknown>;
}): void {
  const db = new Database(join(harness.dataDir, 'db', 'rampart.db'));
  try {
    const { next } = db.prepare('SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM security_events').get() as {
      next: number;
    };
    db.prepare(
      `INSERT INTO security_events (id, seq, occurred_at, kind, severity, tenant_id, subject_type, subject_id,
         summary, detail) VALUES (?, ?, ?, ?, ?, ?, 'image', ?, ?, ?)`,
    ).run(
      randomUUID(),
      next,
      new Date().toISOString(),
      event.kind,
      event.severity ?? 'high',
      event.tenant === null ? null : tenantIds.get(event.tenant)!,
      randomUUID(),
      event.summary,
      JSON.stringify(event.detail ?? {}),
    );
  } finally {
    db.close();
  }
}

/** The seqs of the four image events the setup wrote, oldest first. */
async function insertedSeqs(): Promise<number[]> {
  const all = await harness.api<List>('GET', '/v1/platform/security/events?limit=1000');
  return all.body.items
    .filter((e) => e.kind.startsWith('image.'))
    .map((e) => e.seq)
    .sort((a, b) => a - b);
}

function as(role: string) {
  return { authorization: `Bearer ${sessions.get(role)!}` };
}

before(async () => {
  harness = await RampartHarness.start();
  for (const name of ['alpha', 'beta']) {
    const created = await harness.api<{ id: string }>('POST', '/v1/tenants', { name });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    tenantIds.set(name, created.body.id);
  }
  for (const role of ['tenant-admin', 'auditor', 'member']) {
    sessions.set(role, await harness.createMember(`sec-${role}`, PASSWORD, 'alpha', role));
  }
  // Logins record auth.login_succeeded events: let them land before writing into the same table.
  await harness.waitFor(
    async () =>
      (await harness.api<List>('GET', '/v1/platform/security/events?kind=auth.login_succeeded')).body.items
        .length >= 4,
    10_000,
    'the setup logins recorded',
  );
  insertEvent({
    tenant: 'alpha',
    kind: 'image.quarantined',
    summary: 'alpha image quarantined',
    detail: { reason: 'malware', findings: ['EICAR'] },
  });
  insertEvent({ tenant: 'beta', kind: 'image.quarantined', summary: 'beta image quarantined' });
  insertEvent({ tenant: null, kind: 'image.scan_error', summary: 'platform image scan failed' });
  insertEvent({
    tenant: 'alpha',
    kind: 'image.verification_failed',
    summary: 'alpha image failed verification',
    severity: 'critical',
  });
});

after(async () => {
  await harness?.cleanup();
});

test('a tenant sees its own events only, newest first, with the detail as an object', async () => {
  for (const role of ['tenant-admin', 'auditor']) {
    const list = await harness.api<List>('GET', '/v1/security/events?tenant=alpha', undefined, as(role));
    assert.equal(list.status, 200, JSON.stringify(list.body));
    assert.ok(list.body.items.every((e) => e.tenantId === tenantIds.get('alpha')));
    // The members made in the setup are administrative changes in alpha (admin.change).
    assert.equal(list.body.items.filter((e) => e.kind === 'admin.change').length, 3, role);
    const images = list.body.items.filter((e) => e.kind !== 'admin.change');
    assert.deepEqual(
      images.map((e) => e.summary),
      ['alpha image failed verification', 'alpha image quarantined'],
      role,
    );
    assert.deepEqual(images[1]!.detail, { reason: 'malware', findings: ['EICAR'] });
    assert.equal(images[0]!.severity, 'critical');
  }
  // The platform admin acting in a tenant gets that tenant's view too.
  const beta = await harness.api<List>('GET', '/v1/security/events?tenant=beta');
  assert.equal(beta.status, 200);
  assert.deepEqual(
    beta.body.items.filter((e) => e.kind !== 'admin.change').map((e) => e.summary),
    ['beta image quarantined'],
  );
  assert.ok(
    beta.body.items.every((e) => e.tenantId === tenantIds.get('beta')),
    "no alpha's changes",
  );
});

test('filters: kind, and tailing with after (oldest first) and limit', async () => {
  const byKind = await harness.api<List>(
    'GET',
    '/v1/security/events?tenant=alpha&kind=image.quarantined',
    undefined,
    as('tenant-admin'),
  );
  assert.equal(byKind.status, 200);
  assert.deepEqual(
    byKind.body.items.map((e) => e.kind),
    ['image.quarantined'],
  );
  const seqs = await insertedSeqs();
  const tail = await harness.api<List>(`GET`, `/v1/platform/security/events?after=${seqs[0]}&limit=2`);
  assert.equal(tail.status, 200);
  assert.deepEqual(
    tail.body.items.map((e) => e.seq),
    [seqs[1], seqs[2]],
  );
  const newest = await harness.api<List>('GET', '/v1/platform/security/events?limit=1');
  assert.deepEqual(
    newest.body.items.map((e) => e.seq),
    [seqs[3]],
  );
  for (const query of ['limit=abc', 'after=-1', 'kind=Bad%20Kind', 'unknown=1']) {
    const bad = await harness.api('GET', `/v1/platform/security/events?${query}`);
    assert.equal(bad.status, 400, query);
  }
});

test('without security:read: 403; in a foreign tenant: 404', async () => {
  const member = await harness.api('GET', '/v1/security/events?tenant=alpha', undefined, as('member'));
  assert.equal(member.status, 403, JSON.stringify(member.body));
  const foreign = await harness.api('GET', '/v1/security/events?tenant=beta', undefined, as('tenant-admin'));
  assert.equal(foreign.status, 404, JSON.stringify(foreign.body));
  for (const role of ['tenant-admin', 'auditor', 'member']) {
    const platform = await harness.api('GET', '/v1/platform/security/events', undefined, as(role));
    assert.equal(platform.status, 403, role);
  }
  const anonymous = await harness.api('GET', '/v1/security/events?tenant=alpha', undefined, {
    authorization: '',
  });
  assert.equal(anonymous.status, 401);
});

test('the platform view shows every event, platform-wide ones included; ?tenant= narrows', async () => {
  const all = await harness.api<List>('GET', '/v1/platform/security/events');
  assert.equal(all.status, 200, JSON.stringify(all.body));
  const seqs = await insertedSeqs();
  const images = all.body.items.filter((e) => e.kind.startsWith('image.'));
  assert.deepEqual(
    images.map((e) => e.seq),
    [...seqs].reverse(),
  );
  assert.equal(images[1]!.tenantId, null, 'a platform-wide event');
  assert.ok(all.body.items.some((e) => e.kind === 'auth.login_succeeded' && e.tenantId === null));
  for (const ref of ['beta', tenantIds.get('beta')!]) {
    const beta = await harness.api<List>('GET', `/v1/platform/security/events?tenant=${ref}`);
    assert.equal(beta.status, 200);
    assert.deepEqual(
      beta.body.items.map((e) => e.summary),
      ['beta image quarantined'],
    );
  }
  const missing = await harness.api('GET', '/v1/platform/security/events?tenant=no-such-tenant');
  assert.equal(missing.status, 404);
});

test('rampart security events: tenant and platform views, as JSON and as a table', async () => {
  const env = { PATH: process.env.PATH, RAMPART_URL: harness.url, RAMPART_TOKEN: harness.token };
  const json = await execFileAsync(
    process.execPath,
    [CLI_MAIN, '-o', 'json', 'security', 'events', '--tenant', 'alpha', '--kind', 'image.quarantined'],
    { env },
  );
  assert.deepEqual(
    (JSON.parse(json.stdout) as List).items.map((e) => e.summary),
    ['alpha image quarantined'],
  );
  // Only the setup's image.scan_error (the refused requests above are events too: api.denied, ...).
  const platform = await execFileAsync(
    process.execPath,
    [CLI_MAIN, 'security', 'events', '--platform', '--kind', 'image.scan_error', '--limit', '3'],
    { env },
  );
  const lines = platform.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^SEQ\s+TIME\s+SEVERITY\s+KIND\s+SUBJECT\s+SUMMARY\s+TENANT$/);
  assert.equal(lines.length, 2, platform.stdout);
  assert.match(lines[1]!, /image\.scan_error.*platform image scan failed.*\(platform\)/);
  const narrowed = await execFileAsync(
    process.execPath,
    [CLI_MAIN, '-o', 'json', 'security', 'events', '--platform', '--tenant', 'beta'],
    { env },
  );
  assert.deepEqual(
    (JSON.parse(narrowed.stdout) as List).items.map((e) => e.summary),
    ['beta image quarantined'],
  );
});

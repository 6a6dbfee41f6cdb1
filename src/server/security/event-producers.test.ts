import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SecurityEvent } from '../../api/security.js';
import type { Principal } from '../iam/principal.js';
import { DetectionEngine } from './detection/rule-engine.js';
import { SHIPPED_RULES_TEXT } from './detection/shipped-rules.js';
import { adminChangeEvent, volumeCopyEvent, type VolumeCopy } from './event-producers.js';
import type { SecurityEventInput } from './security-events.js';

const principal = (token = false): Principal => ({
  userId: 'u-ops',
  username: 'ops',
  via: token ? 'token' : 'session',
  sessionId: token ? null : 's1',
  token: token ? { id: 'tok-1', name: 'ci', tenantId: 't1', permissions: new Set() } : null,
  restriction: null,
  mfa: true,
});

const copy = (volumeId: string, kind: VolumeCopy['kind'] = 'volume.snapshot_created'): VolumeCopy => ({
  kind,
  tenantId: 't1',
  volumeId,
  volumeName: `vol-${volumeId}`,
  newId: `new-${volumeId}`,
  vmId: null,
});

let seq = 0;
const stored = (input: SecurityEventInput): SecurityEvent => ({
  id: `e${++seq}`,
  seq,
  occurredAt: new Date().toISOString(),
  detail: {},
  ...input,
});

test('a copy by a member is info; by an outsider it is cross-tenant and raises the shipped alert', () => {
  const engine = new DetectionEngine(SHIPPED_RULES_TEXT);
  const inside = volumeCopyEvent(copy('v1'), principal(), true);
  assert.equal(inside.severity, 'info');
  assert.equal(inside.detail?.['crossTenant'], false);
  assert.deepEqual(engine.process(stored(inside)), []);
  const outside = volumeCopyEvent(copy('v1', 'volume.cloned'), principal(true), false);
  assert.equal(outside.detail?.['crossTenant'], true);
  assert.equal(outside.detail?.['actorType'], 'token');
  assert.equal(outside.detail?.['tokenId'], 'tok-1');
  assert.deepEqual(
    engine.process(stored(outside)).map((d) => d.ruleId),
    ['volume-copy-cross-tenant'],
  );
});

test('one actor copying five different volumes raises the bulk-copy alert', () => {
  const engine = new DetectionEngine(SHIPPED_RULES_TEXT);
  const fired: string[] = [];
  for (const id of ['a', 'b', 'c', 'd', 'a', 'e']) {
    for (const d of engine.process(stored(volumeCopyEvent(copy(id), principal(), true))))
      fired.push(d.ruleId);
  }
  assert.deepEqual(fired, ['volume-bulk-copy'], 'the fifth distinct volume, not the fifth copy');
});

test('successful administrative requests become admin.change events; other requests do not', () => {
  const entry = {
    actorId: 'u-admin',
    actor: 'admin',
    tenantId: 't1',
    action: 'member:create',
    target: 'u-bob',
    outcome: 'success' as const,
    status: 201,
    source: '127.0.0.1',
    requestId: 'r1',
    detail: 'bob as viewer',
  };
  const event = adminChangeEvent(entry);
  assert.equal(event?.kind, 'admin.change');
  assert.equal(event?.tenantId, 't1');
  assert.equal(event?.detail?.['action'], 'member:create');
  assert.equal(event?.detail?.['target'], 'u-bob');
  assert.equal(adminChangeEvent({ ...entry, action: 'platform:user:update' })?.kind, 'admin.change');
  assert.equal(
    adminChangeEvent({ ...entry, outcome: 'denied', status: 403 }),
    null,
    'a refusal is api.denied',
  );
  assert.equal(adminChangeEvent({ ...entry, action: 'vm:create' }), null, 'not administrative');
});

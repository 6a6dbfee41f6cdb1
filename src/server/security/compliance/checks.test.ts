import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { newId } from '../../../common/ids.js';
import { openDatabase } from '../../store/database.js';
import { COMPLIANCE_CHECKS, coversAdminPort, runChecks, tooWide, type ComplianceDeps } from './checks.js';

test('admin port ranges: a rule covering any admin port counts; null ports mean all', () => {
  assert.equal(coversAdminPort(22, 22), true);
  assert.equal(coversAdminPort(20, 25), true);
  assert.equal(coversAdminPort(null, null), true);
  assert.equal(coversAdminPort(5901, 5901), true);
  assert.equal(coversAdminPort(2376, 2400), true);
  assert.equal(coversAdminPort(10250, null), true);
  assert.equal(coversAdminPort(80, 443), false);
  assert.equal(coversAdminPort(23, 2374), false);
  assert.equal(coversAdminPort(6000, 6442), false);
});

test('allowed addresses wider than /8 (and unparsable ones) are too wide', () => {
  assert.equal(tooWide('0.0.0.0/0'), true);
  assert.equal(tooWide('10.0.0.0/7'), true);
  assert.equal(tooWide('10.0.0.0/8'), false);
  assert.equal(tooWide('192.0.2.7/32'), false);
  assert.equal(tooWide('nonsense'), true);
});

test('check ids are unique kebab-case; a check that throws fails with its error as evidence', async () => {
  const ids = COMPLIANCE_CHECKS.map((c) => c.id);
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids) assert.match(id, /^[a-z0-9]+(-[a-z0-9]+)*$/);
  const results = await runChecks({} as ComplianceDeps, [
    {
      id: 'boom',
      title: 'Boom',
      severity: 'medium',
      run: () => Promise.reject(new Error('no database')),
    },
  ]);
  assert.deepEqual(results, [
    {
      id: 'boom',
      title: 'Boom',
      severity: 'medium',
      passed: false,
      evidence: 'the check could not run: no database',
      offending: [],
    },
  ]);
});

test('host-certificates-current: a remote host whose newest certificate expires within 7 days fails', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-checks-'));
  const db = await openDatabase(join(dir, 'rampart.db'));
  t.after(async () => {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const now = Date.parse('2027-06-01T00:00:00Z');
  const day = 86_400_000;
  const check = COMPLIANCE_CHECKS.find((c) => c.id === 'host-certificates-current')!;
  const deps = { db, now: () => now } as unknown as ComplianceDeps;
  const certificate = (hostId: string, hostname: string, notAfterMs: number, revoked = false) =>
    db
      .insertInto('hostCertificates')
      .values({
        serial: randomBytes(8).toString('hex').toUpperCase(),
        hostId,
        hostname,
        notBefore: new Date(notAfterMs - 365 * day).toISOString(),
        notAfter: new Date(notAfterMs).toISOString(),
        createdAt: new Date(notAfterMs - 365 * day).toISOString(),
        revokedAt: revoked ? new Date(now).toISOString() : null,
      })
      .execute();
  const [renewed, expiring, expired, gone] = [newId(), newId(), newId(), newId()];
  assert.match((await check.run(deps)).evidence, /all 0 remote hosts/);

  await certificate(renewed, 'renewed', now + 3 * day);
  await certificate(renewed, 'renewed', now + 300 * day);
  await certificate(gone, 'gone', now + 2 * day, true);
  const passing = await check.run(deps);
  assert.equal(passing.passed, true, passing.evidence);
  assert.match(passing.evidence, /all 1 remote host hold/);

  await certificate(expiring, 'expiring', now + 6 * day);
  await certificate(expired, 'expired', now - day);
  const failing = await check.run(deps);
  assert.equal(failing.passed, false);
  assert.match(failing.evidence, /2 remote hosts with a certificate expired or expiring/);
  assert.deepEqual(
    failing.offending.map((o) => [(o as { hostname: string }).hostname, (o as { problem: string }).problem]),
    [
      ['expired', 'expired'],
      ['expiring', 'expires within 7 days'],
    ],
  );
});

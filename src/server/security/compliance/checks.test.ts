import assert from 'node:assert/strict';
import { test } from 'node:test';
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

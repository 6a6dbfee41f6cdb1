import assert from 'node:assert/strict';
import { test } from 'node:test';
import { complianceIntervalSeconds, newlyFailing, scoreOf } from './score.js';

test('score: percentage of passing checks, one decimal', () => {
  assert.deepEqual(scoreOf([]), { score: 100, passed: 0, failed: 0 });
  assert.deepEqual(scoreOf([{ passed: true }, { passed: true }]), { score: 100, passed: 2, failed: 0 });
  assert.deepEqual(scoreOf([{ passed: true }, { passed: false }, { passed: false }]), {
    score: 33.3,
    passed: 1,
    failed: 2,
  });
  assert.deepEqual(scoreOf([{ passed: false }]), { score: 0, passed: 0, failed: 1 });
  const nine = Array.from({ length: 9 }, (_, i) => ({ passed: i !== 0 }));
  assert.equal(scoreOf(nine).score, 88.9);
});

test('newly failing: failed now, passed or absent before', () => {
  const now = [
    { id: 'a', passed: false },
    { id: 'b', passed: false },
    { id: 'c', passed: false },
    { id: 'd', passed: true },
  ];
  const before = [
    { id: 'a', passed: true },
    { id: 'b', passed: false },
    { id: 'd', passed: false },
  ];
  assert.deepEqual(
    newlyFailing(now, before).map((r) => r.id),
    ['a', 'c'],
  );
  assert.deepEqual(
    newlyFailing(now, null).map((r) => r.id),
    ['a', 'b', 'c'],
  );
});

test('the schedule interval: default 3600, 0 turns it off, garbage refused', () => {
  assert.equal(complianceIntervalSeconds({}), 3600);
  assert.equal(complianceIntervalSeconds({ RAMPART_COMPLIANCE_INTERVAL_SECONDS: '0' }), 0);
  assert.equal(complianceIntervalSeconds({ RAMPART_COMPLIANCE_INTERVAL_SECONDS: '60' }), 60);
  assert.throws(() => complianceIntervalSeconds({ RAMPART_COMPLIANCE_INTERVAL_SECONDS: '-1' }));
  assert.throws(() => complianceIntervalSeconds({ RAMPART_COMPLIANCE_INTERVAL_SECONDS: '1h' }));
});

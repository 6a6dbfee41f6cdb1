import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatCpuList, parseCpuList } from './cpu-list.js';

test('CPU lists parse into sorted unique ids and render back with ranges', () => {
  assert.deepEqual(parseCpuList('0-3,8,10-11\n'), [0, 1, 2, 3, 8, 10, 11]);
  assert.deepEqual(parseCpuList('3,1,1'), [1, 3]);
  assert.deepEqual(parseCpuList(''), []);
  assert.equal(formatCpuList([11, 0, 1, 2, 3, 8, 10]), '0-3,8,10-11');
  assert.equal(formatCpuList([5]), '5');
  assert.equal(formatCpuList([]), '');
});

test('anything else is refused', () => {
  for (const bad of ['a', '1-', '3-1', '1,,2', '0-5000', '-1'])
    assert.throws(() => parseCpuList(bad), /not a CPU list/, bad);
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NAME_PATTERN, Ref } from '../api/common.js';
import { LIMITS } from '../api/flavor.js';
import { RESTART_POLICIES, VmStopBody } from '../api/vm.js';
import * as v from './validation.js';

void describe('validation mirrors the API contract', () => {
  void it('uses the same patterns and limits as src/api', () => {
    assert.equal(v.NAME_PATTERN, NAME_PATTERN);
    assert.equal(v.REF_PATTERN, (Ref as unknown as { pattern: string }).pattern);
    assert.deepEqual([...v.RESTART_POLICIES], [...RESTART_POLICIES]);
    assert.deepEqual(v.FLAVOR_LIMITS, LIMITS);
    const stopTimeout = VmStopBody.properties.timeoutSeconds as unknown as { maximum: number };
    assert.equal(v.STOP_TIMEOUT_MAX_SECONDS, stopTimeout.maximum);
  });
});

void describe('argument parsers', () => {
  void it('accepts DNS-label names and rejects the rest', () => {
    assert.equal(v.parseName('web-1'), 'web-1');
    for (const bad of ['Web', '-web', 'web-', 'a_b', '', 'a'.repeat(64), '../x', 'a b']) {
      assert.throws(() => v.parseName(bad), { code: 'commander.invalidArgument' }, bad);
    }
  });
  void it('accepts refs (names and ids) and rejects paths', () => {
    assert.equal(v.parseRef('11111111-2222-4333-8444-555555555555'), '11111111-2222-4333-8444-555555555555');
    for (const bad of ['..', 'a/b', 'a?b', 'A', '%2e']) assert.throws(() => v.parseRef(bad), bad);
  });
  void it('parses integers in a range', () => {
    const parse = v.integerIn(1, 64);
    assert.equal(parse('8'), 8);
    for (const bad of ['0', '65', '1.5', '-1', 'x', '', '1e3']) assert.throws(() => parse(bad), bad);
  });
  void it('parses wait timeouts and listen addresses', () => {
    assert.equal(v.parseWaitTimeout('2.5'), 2.5);
    for (const bad of ['0', '-1', 'soon', '1e9']) assert.throws(() => v.parseWaitTimeout(bad), bad);
    assert.equal(v.parseListen('0.0.0.0:8480'), '0.0.0.0:8480');
    assert.equal(v.parseListen('[::1]:8480'), '[::1]:8480');
    for (const bad of ['8480', 'host:', 'host:70000', 'a b:1']) assert.throws(() => v.parseListen(bad), bad);
  });
});

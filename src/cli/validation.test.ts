import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AUDIT_OUTCOMES, AuditQuery } from '../api/audit.js';
import { NAME_PATTERN, Ref } from '../api/common.js';
import {
  ApiTokenCreate,
  PERMISSION_PATTERN,
  RecoveryCode,
  RoleCreate,
  TenantQuery,
  TotpCode,
  USERNAME_PATTERN,
} from '../api/iam.js';
import { DEFAULT_CPU_WEIGHT, DEFAULT_PIDS_MAX, LIMITS } from '../api/flavor.js';
import { RESTART_POLICIES, VmStopBody } from '../api/vm.js';
import * as v from './validation.js';

void describe('validation mirrors the API contract', () => {
  void it('uses the same patterns and limits as src/api', () => {
    assert.equal(v.NAME_PATTERN, NAME_PATTERN);
    assert.equal(v.REF_PATTERN, (Ref as unknown as { pattern: string }).pattern);
    assert.deepEqual([...v.RESTART_POLICIES], [...RESTART_POLICIES]);
    assert.deepEqual(v.FLAVOR_LIMITS, LIMITS);
    assert.deepEqual(v.FLAVOR_DEFAULTS, { cpuWeight: DEFAULT_CPU_WEIGHT, pidsMax: DEFAULT_PIDS_MAX });
    const stopTimeout = VmStopBody.properties.timeoutSeconds as unknown as { maximum: number };
    assert.equal(v.STOP_TIMEOUT_MAX_SECONDS, stopTimeout.maximum);
  });

  void it('uses the same identity and audit patterns as src/api', () => {
    const pattern = (schema: unknown) => (schema as { pattern: string }).pattern;
    assert.equal(v.USERNAME_PATTERN, USERNAME_PATTERN);
    assert.equal(v.PERMISSION_PATTERN, PERMISSION_PATTERN);
    assert.equal(v.TOTP_PATTERN, pattern(TotpCode));
    assert.equal(v.RECOVERY_CODE_PATTERN, pattern(RecoveryCode));
    assert.deepEqual([...v.AUDIT_OUTCOMES], [...AUDIT_OUTCOMES]);
    assert.equal(v.AUDIT_ACTION_PATTERN, pattern(AuditQuery.properties.action));
    const days = ApiTokenCreate.properties.expiresInDays as unknown as { maximum: number };
    assert.equal(v.TOKEN_EXPIRY_MAX_DAYS, days.maximum);
    const description = RoleCreate.properties.description as unknown as { maxLength: number };
    assert.equal(v.ROLE_DESCRIPTION_MAX_LENGTH, description.maxLength);
    // Every tenant name the CLI accepts passes the API's ?tenant= check.
    const tenantQuery = new RegExp(pattern(TenantQuery.properties.tenant));
    for (const name of ['acme', 'a', 'a1-b2', 'x'.repeat(63)])
      assert.ok(tenantQuery.test(v.parseTenant(name)), name);
  });
});

void describe('identity and audit parsers', () => {
  void it('checks tenants, usernames and permissions', () => {
    assert.equal(v.parseTenant('acme-1'), 'acme-1');
    for (const bad of ['Acme', 'acme-', '', 'a_b', 'a'.repeat(64)])
      assert.throws(() => v.parseTenant(bad), bad);
    assert.equal(v.parseUsername('alice.smith_2'), 'alice.smith_2');
    for (const bad of ['Alice', '.alice', 'alice.', 'a b', '', 'a'.repeat(65)])
      assert.throws(() => v.parseUsername(bad), bad);
    assert.equal(v.parsePermission('platform:user:read'), 'platform:user:read');
    for (const bad of ['vm', 'VM:read', 'vm:read:x:y', 'vm read'])
      assert.throws(() => v.parsePermission(bad), bad);
    assert.deepEqual(v.collectPermissions('vm:stop, vm:start', v.collectPermissions('vm:read', undefined)), [
      'vm:read',
      'vm:stop',
      'vm:start',
    ]);
  });
  void it('parses on/off, TOTP codes and times', () => {
    assert.equal(v.parseOnOff('on'), true);
    assert.equal(v.parseOnOff('OFF'), false);
    assert.throws(() => v.parseOnOff('maybe'));
    assert.equal(v.parseTotp('012345'), '012345');
    assert.throws(() => v.parseTotp('12345'));
    const now = Date.parse('2026-01-01T12:00:00Z');
    assert.equal(v.resolveTime(v.parseTime('90m'), now), '2026-01-01T10:30:00.000Z');
    assert.equal(v.resolveTime(v.parseTime('2d'), now), '2025-12-30T12:00:00.000Z');
    assert.equal(v.resolveTime(v.parseTime('2026-01-01T10:00:00+02:00'), now), '2026-01-01T08:00:00.000Z');
    assert.equal(v.resolveTime(v.parseTime('2026-01-02'), now), '2026-01-02T00:00:00.000Z');
    for (const bad of ['yesterday', '2026-13-45', '5y', '-1h']) assert.throws(() => v.parseTime(bad), bad);
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

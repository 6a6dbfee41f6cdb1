/**
 * PolicyEngine semantics: tenant bindings grant only in their tenant; platform bindings grant tenant
 * permissions everywhere and lift `x:y` to `platform:x:y` where that exists; custom roles are
 * tenant-local; platform permissions never come through a tenant binding or a custom role; load()
 * replaces the whole snapshot.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { builtInPermissions, PLATFORM_PERMISSIONS, TENANT_PERMISSIONS } from './permissions.js';
import { PolicyEngine, type PolicySnapshot } from './policy-engine.js';

const T1 = 'tenant-1';
const T2 = 'tenant-2';

function engine(snapshot: Partial<PolicySnapshot>): PolicyEngine {
  return new PolicyEngine({ bindings: [], customRoles: [], ...snapshot });
}

describe('PolicyEngine', () => {
  test('an empty engine grants nothing', () => {
    const e = new PolicyEngine();
    assert.equal(e.can('u', T1, 'vm:read'), false);
    assert.equal(e.can('u', null, 'platform:tenant:read'), false);
    assert.equal(e.tenantPermissions('u', T1).size, 0);
    assert.equal(e.generation, 1);
  });

  test('a tenant binding grants its role in that tenant only', () => {
    const e = engine({ bindings: [{ userId: 'alice', tenantId: T1, role: 'operator' }] });
    assert.equal(e.can('alice', T1, 'vm:start'), true);
    assert.equal(e.can('alice', T1, 'vm:read'), true);
    assert.equal(e.can('alice', T1, 'vm:create'), false, 'not in the operator role');
    assert.equal(e.can('alice', T2, 'vm:start'), false, 'other tenant');
    assert.equal(e.can('alice', null, 'vm:start'), false, 'not at platform scope');
    assert.equal(e.can('bob', T1, 'vm:start'), false, 'other user');
    assert.deepEqual(new Set(e.tenantPermissions('alice', T1)), new Set(builtInPermissions('operator')));
    assert.deepEqual(e.tenantsOf('alice'), [T1]);
    assert.deepEqual(e.rolesOf('alice', T1), ['operator']);
    assert.equal(e.hasPlatformBinding('alice'), false);
  });

  test('several bindings in one tenant are united', () => {
    const e = engine({
      bindings: [
        { userId: 'alice', tenantId: T1, role: 'viewer' },
        { userId: 'alice', tenantId: T1, role: 'auditor' },
        { userId: 'alice', tenantId: T2, role: 'member' },
      ],
    });
    assert.equal(e.can('alice', T1, 'audit:read'), true);
    assert.equal(e.can('alice', T1, 'vm:create'), false);
    assert.equal(e.can('alice', T2, 'vm:create'), true);
    assert.equal(e.can('alice', T2, 'audit:read'), false);
    assert.deepEqual(e.rolesOf('alice', T1), ['viewer', 'auditor']);
    assert.deepEqual(e.tenantsOf('alice').sort(), [T1, T2]);
  });

  test('a platform binding grants tenant permissions in every tenant', () => {
    const e = engine({ bindings: [{ userId: 'pat', tenantId: null, role: 'viewer' }] });
    for (const tenant of [T1, T2, 'tenant-never-seen']) {
      assert.equal(e.can('pat', tenant, 'vm:read'), true, tenant);
      assert.equal(e.can('pat', tenant, 'vm:start'), false, tenant);
    }
    assert.equal(e.hasPlatformBinding('pat'), true);
    assert.deepEqual(e.tenantsOf('pat'), [], 'platform bindings are not tenant memberships');
    assert.deepEqual(e.rolesOf('pat', null), ['viewer']);
  });

  test('platform and tenant bindings combine', () => {
    const e = engine({
      bindings: [
        { userId: 'pat', tenantId: null, role: 'viewer' },
        { userId: 'pat', tenantId: T1, role: 'operator' },
      ],
    });
    assert.equal(e.can('pat', T1, 'vm:start'), true);
    assert.equal(e.can('pat', T1, 'vm:read'), true);
    assert.equal(e.can('pat', T2, 'vm:start'), false);
    assert.equal(e.can('pat', T2, 'vm:read'), true);
  });

  test('a platform binding lifts x:y to platform:x:y when that permission exists', () => {
    const e = engine({ bindings: [{ userId: 'aud', tenantId: null, role: 'auditor' }] });
    assert.equal(e.can('aud', null, 'platform:audit:read'), true);
    assert.equal(e.can('aud', null, 'platform:member:read'), true);
    assert.equal(e.can('aud', null, 'platform:tenant:read'), true);
    assert.equal(e.can('aud', null, 'platform:user:read'), false, 'no user:read to lift');
    assert.equal(e.can('aud', null, 'platform:tenant:create'), false);
    assert.equal(e.can('aud', T1, 'platform:audit:read'), false, 'platform permissions are not tenant ones');
  });

  test('platform-admin holds every permission, platform-wide and in every tenant', () => {
    const e = engine({ bindings: [{ userId: 'root', tenantId: null, role: 'platform-admin' }] });
    for (const p of PLATFORM_PERMISSIONS) assert.equal(e.can('root', null, p), true, p);
    for (const p of TENANT_PERMISSIONS) assert.equal(e.can('root', T2, p), true, p);
  });

  test('a tenant binding never grants platform permissions, even of platform-admin', () => {
    const e = engine({
      bindings: [
        { userId: 'ta', tenantId: T1, role: 'tenant-admin' },
        { userId: 'odd', tenantId: T1, role: 'platform-admin' },
      ],
    });
    for (const user of ['ta', 'odd']) {
      for (const p of PLATFORM_PERMISSIONS) {
        assert.equal(e.can(user, null, p), false, `${user} ${p}`);
        assert.equal(e.can(user, T1, p), false, `${user} ${p} in tenant`);
      }
      assert.equal(e.platformPermissions(user).size, 0);
      assert.equal(e.can(user, T2, 'member:create'), false);
    }
    assert.equal(e.can('ta', T1, 'member:create'), true);
  });

  test('custom roles grant their permissions in their own tenant only', () => {
    const e = engine({
      customRoles: [
        { tenantId: T1, name: 'deployer', permissions: ['vm:create', 'vm:start', 'image:read'] },
        { tenantId: T2, name: 'deployer', permissions: ['vm:read'] },
      ],
      bindings: [
        { userId: 'dev', tenantId: T1, role: 'deployer' },
        { userId: 'dev', tenantId: T2, role: 'deployer' },
        { userId: 'dev2', tenantId: 'tenant-3', role: 'deployer' },
      ],
    });
    assert.equal(e.can('dev', T1, 'vm:create'), true);
    assert.equal(e.can('dev', T1, 'vm:read'), false);
    assert.equal(e.can('dev', T2, 'vm:create'), false, 'the same name in another tenant is another role');
    assert.equal(e.can('dev', T2, 'vm:read'), true);
    assert.equal(e.tenantPermissions('dev2', 'tenant-3').size, 0, 'no such role in tenant-3');
    assert.deepEqual([...e.customRolesOf(T1).keys()], ['deployer']);
    assert.equal(e.rolePermissions(T1, 'deployer')?.length, 3);
    assert.equal(e.rolePermissions('tenant-3', 'deployer'), null);
    assert.equal(e.rolePermissions(null, 'deployer'), null);
  });

  test('custom roles never carry platform permissions or unknown strings', () => {
    const e = engine({
      customRoles: [
        {
          tenantId: T1,
          name: 'sneaky',
          permissions: ['vm:read', 'platform:tenant:create', 'platform:user:delete', 'vm:*', '*', 'nonsense'],
        },
      ],
      bindings: [{ userId: 'eve', tenantId: T1, role: 'sneaky' }],
    });
    assert.deepEqual(e.rolePermissions(T1, 'sneaky'), ['vm:read']);
    assert.deepEqual([...e.tenantPermissions('eve', T1)], ['vm:read']);
    assert.equal(e.can('eve', null, 'platform:tenant:create'), false);
    assert.equal(e.can('eve', T1, 'platform:tenant:create'), false);
  });

  test('a custom role bound platform-wide grants nothing', () => {
    const e = engine({
      customRoles: [{ tenantId: T1, name: 'deployer', permissions: ['vm:create'] }],
      bindings: [{ userId: 'dev', tenantId: null, role: 'deployer' }],
    });
    assert.equal(e.can('dev', T1, 'vm:create'), false);
    assert.equal(e.platformPermissions('dev').size, 0);
  });

  test('a custom role cannot shadow a built-in role', () => {
    const e = engine({
      customRoles: [{ tenantId: T1, name: 'viewer', permissions: ['vm:delete'] }],
      bindings: [{ userId: 'v', tenantId: T1, role: 'viewer' }],
    });
    assert.equal(e.can('v', T1, 'vm:delete'), false);
    assert.equal(e.can('v', T1, 'vm:read'), true);
  });

  test('load() replaces the snapshot: removed bindings and roles stop granting at once', () => {
    const e = engine({
      customRoles: [{ tenantId: T1, name: 'deployer', permissions: ['vm:create'] }],
      bindings: [
        { userId: 'alice', tenantId: T1, role: 'operator' },
        { userId: 'root', tenantId: null, role: 'platform-admin' },
        { userId: 'dev', tenantId: T1, role: 'deployer' },
      ],
    });
    const before = e.generation;
    // Warm the per-tenant caches first: they must not survive the reload.
    assert.equal(e.can('alice', T1, 'vm:start'), true);
    assert.equal(e.can('root', T2, 'vm:delete'), true);
    assert.equal(e.can('root', null, 'platform:user:create'), true);
    assert.equal(e.can('dev', T1, 'vm:create'), true);

    e.load({
      customRoles: [{ tenantId: T1, name: 'deployer', permissions: ['vm:read'] }],
      bindings: [
        { userId: 'alice', tenantId: T1, role: 'viewer' },
        { userId: 'dev', tenantId: T1, role: 'deployer' },
      ],
    });
    assert.equal(e.generation, before + 1);
    assert.equal(e.can('alice', T1, 'vm:start'), false, 'operator binding removed');
    assert.equal(e.can('alice', T1, 'vm:read'), true);
    assert.equal(e.can('root', T2, 'vm:delete'), false, 'platform binding removed');
    assert.equal(e.can('root', null, 'platform:user:create'), false);
    assert.equal(e.hasPlatformBinding('root'), false);
    assert.equal(e.can('dev', T1, 'vm:create'), false, 'custom role redefined');
    assert.equal(e.can('dev', T1, 'vm:read'), true);

    e.load({ bindings: [], customRoles: [] });
    assert.equal(e.can('alice', T1, 'vm:read'), false);
    assert.equal(e.customRolesOf(T1).size, 0);
  });

  test('the snapshot passed in is not retained by reference', () => {
    const bindings = [{ userId: 'alice', tenantId: T1, role: 'viewer' }];
    const e = engine({ bindings });
    bindings.push({ userId: 'alice', tenantId: T1, role: 'tenant-admin' });
    assert.equal(e.can('alice', T1, 'vm:delete'), false);
  });
});

/**
 * The agent's cgroup settings: RAMPART_CGROUP takes auto|v1|v2|none (default auto) and
 * RAMPART_CGROUP_PARENT one safe path component (default `rampart`), refused before any cgroup path
 * is built.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadAgentConfig } from './config.js';

void describe('agent cgroup configuration', () => {
  test('defaults: auto-detect, parent rampart', () => {
    const config = loadAgentConfig({ dataDir: '/srv/ok' }, {});
    assert.equal(config.cgroupMode, 'auto');
    assert.equal(config.cgroupParent, 'rampart');
  });

  test('mode and parent from the environment', () => {
    const config = loadAgentConfig(
      { dataDir: '/srv/ok' },
      { RAMPART_CGROUP: 'none', RAMPART_CGROUP_PARENT: 'rampart-test-1a2b' },
    );
    assert.equal(config.cgroupMode, 'none');
    assert.equal(config.cgroupParent, 'rampart-test-1a2b');
  });

  test('bad values are refused', () => {
    assert.throws(() => loadAgentConfig({ dataDir: '/srv/ok' }, { RAMPART_CGROUP: 'v3' }), /RAMPART_CGROUP/);
    for (const parent of ['../x', 'a/b', '..', '', 'x y'])
      assert.throws(
        () => loadAgentConfig({ dataDir: '/srv/ok' }, { RAMPART_CGROUP_PARENT: parent }),
        /cgroup parent/,
      );
  });
});

void describe('agent tunnel address (networks that span hosts)', () => {
  test('unset: no tunnels; set: a unicast IPv4 address', () => {
    assert.equal(loadAgentConfig({ dataDir: '/srv/ok' }, {}).tunnelIp, null);
    assert.equal(
      loadAgentConfig({ dataDir: '/srv/ok' }, { RAMPART_TUNNEL_IP: '192.0.2.1' }).tunnelIp,
      '192.0.2.1',
    );
  });

  test('anything else is refused', () => {
    for (const bad of [
      '192.0.2',
      '192.0.2.256',
      '01.2.3.4',
      '127.0.0.1',
      '0.0.0.0',
      '224.0.0.1',
      'a.b.c.d',
      '::1',
    ])
      assert.throws(
        () => loadAgentConfig({ dataDir: '/srv/ok' }, { RAMPART_TUNNEL_IP: bad }),
        /RAMPART_TUNNEL_IP/,
        bad,
      );
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../errors.js';
import { agentOptions } from './agent.js';
import { serverOptions } from './server.js';

void describe('server and agent options (the daemons themselves are not started here)', () => {
  void it('fills server options from flags, then the environment', () => {
    assert.deepEqual(serverOptions({}, {}), {});
    assert.deepEqual(
      serverOptions(
        {},
        { RAMPART_LISTEN: '0.0.0.0:9000', RAMPART_DATA_DIR: '/srv/r', RAMPART_CONFIG: '/etc/r.toml' },
      ),
      { listen: '0.0.0.0:9000', dataDir: '/srv/r', config: '/etc/r.toml' },
    );
    assert.deepEqual(
      serverOptions(
        { listen: '127.0.0.1:1', dataDir: '/d' },
        { RAMPART_LISTEN: '0.0.0.0:9000', RAMPART_DATA_DIR: '/srv/r' },
      ),
      {
        listen: '127.0.0.1:1',
        dataDir: '/d',
      },
    );
  });

  void it('takes --database or RAMPART_DATABASE: a path or a postgres:// URL, never echoing it', () => {
    const url = 'postgres://rampart:s3cret@db.example/rampart';
    assert.deepEqual(serverOptions({}, { RAMPART_DATABASE: url }), { database: url });
    assert.deepEqual(serverOptions({ database: '/x.db' }, { RAMPART_DATABASE: url }), { database: '/x.db' });
    for (const bad of ['mysql://u:s3cret@h/db', 'postgres://u:s3cret@h', 'postgres://u:s3cret@h/']) {
      assert.throws(
        () => serverOptions({}, { RAMPART_DATABASE: bad }),
        (error: unknown) => error instanceof UsageError && !error.message.includes('s3cret'),
      );
    }
  });

  void it('rejects a malformed RAMPART_LISTEN as a usage error', () => {
    assert.throws(() => serverOptions({}, { RAMPART_LISTEN: 'everywhere' }), UsageError);
  });

  void it('fills agent options from flags, then the environment', () => {
    assert.deepEqual(agentOptions({ socket: '/run/a.sock' }, { RAMPART_DATA_DIR: '/srv/r' }), {
      dataDir: '/srv/r',
      socket: '/run/a.sock',
    });
  });
});

/**
 * Server configuration: precedence (flag > environment > TOML file > default), listen-address
 * parsing, strict TOML files (unknown keys named in the error), and value validation. Also the agent's
 * data directory restriction (it ends up inside QEMU option strings).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { InvalidInputError } from '../api/errors.js';
import { loadAgentConfig } from '../agent/config.js';
import { defaultDataDir } from '../common/data-dir.js';
import { loadServerConfig, parseListen } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'rampart-config-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let fileCounter = 0;
function tomlFile(text: string): string {
  const path = join(dir, `config-${++fileCounter}.toml`);
  writeFileSync(path, text);
  return path;
}

const FULL_FILE = `
listen = "10.0.0.1:1111"
data_dir = "/srv/file-data"
guest_image_dir = "/srv/file-images"
log_level = "debug"
stop_timeout_seconds = 45

[agent]
mode = "external"
socket = "/srv/file-agent.sock"
accel = "tcg"
console_cap_bytes = 8192
uid_base = 5000000
`;

function isInvalidInput(pattern?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof InvalidInputError, `expected InvalidInputError, got ${String(error)}`);
    assert.equal(error.code, 'RAMPART_INVALID_INPUT');
    if (pattern) assert.match(error.message, pattern);
    return true;
  };
}

void describe('loadServerConfig', () => {
  void test('defaults when nothing is given', () => {
    const config = loadServerConfig({}, {});
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.port, 8480);
    assert.equal(config.dataDir, resolve(defaultDataDir()));
    assert.equal(config.logLevel, 'info');
    assert.equal(config.stopTimeoutSeconds, 30);
    assert.equal(config.agent.mode, 'local');
    assert.equal(config.agent.dataDir, join(config.dataDir, 'agent'));
    assert.equal(config.agent.socket, join(config.dataDir, 'agent', 'agent.sock'));
    assert.deepEqual(config.agent.env, {});
  });

  void test('the default data directory depends on the user', () => {
    const expected =
      process.getuid?.() === 0
        ? '/var/lib/rampart'
        : join(process.env.HOME ?? '', '.local', 'share', 'rampart');
    assert.equal(defaultDataDir(), expected);
  });

  void test('a TOML file overrides the defaults', () => {
    const config = loadServerConfig({ config: tomlFile(FULL_FILE) }, {});
    assert.equal(config.host, '10.0.0.1');
    assert.equal(config.port, 1111);
    assert.equal(config.dataDir, '/srv/file-data');
    assert.equal(config.guestImageDir, '/srv/file-images');
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.stopTimeoutSeconds, 45);
    assert.equal(config.agent.mode, 'external');
    assert.equal(config.agent.socket, '/srv/file-agent.sock');
    assert.equal(config.agent.dataDir, '/srv/file-data/agent');
    assert.deepEqual(config.agent.env, {
      RAMPART_ACCEL: 'tcg',
      RAMPART_CONSOLE_CAP_BYTES: '8192',
      RAMPART_UID_BASE: '5000000',
    });
  });

  void test('the file may also be named by RAMPART_CONFIG; --config wins over it', () => {
    const fromEnv = tomlFile('listen = "10.0.0.2:2222"\n');
    const fromFlag = tomlFile('listen = "10.0.0.3:3333"\n');
    assert.equal(loadServerConfig({}, { RAMPART_CONFIG: fromEnv }).port, 2222);
    assert.equal(loadServerConfig({ config: fromFlag }, { RAMPART_CONFIG: fromEnv }).port, 3333);
  });

  void test('the environment overrides the file', () => {
    const config = loadServerConfig(
      { config: tomlFile(FULL_FILE) },
      {
        RAMPART_LISTEN: '10.0.0.4:4444',
        RAMPART_DATA_DIR: '/srv/env-data',
        RAMPART_GUEST_IMAGE_DIR: '/srv/env-images',
        RAMPART_LOG_LEVEL: 'warn',
        RAMPART_STOP_TIMEOUT_SECONDS: '7',
        RAMPART_AGENT_MODE: 'local',
        RAMPART_AGENT_SOCKET: '/srv/env-agent.sock',
        RAMPART_ACCEL: 'kvm',
        RAMPART_CONSOLE_CAP_BYTES: '65536',
        RAMPART_UID_BASE: '6000000',
        RAMPART_ACCEL_CACHE: '/srv/accel.json',
      },
    );
    assert.equal(config.host, '10.0.0.4');
    assert.equal(config.port, 4444);
    assert.equal(config.dataDir, '/srv/env-data');
    assert.equal(config.guestImageDir, '/srv/env-images');
    assert.equal(config.logLevel, 'warn');
    assert.equal(config.stopTimeoutSeconds, 7);
    assert.equal(config.agent.mode, 'local');
    assert.equal(config.agent.socket, '/srv/env-agent.sock');
    assert.equal(config.agent.dataDir, '/srv/env-data/agent');
    assert.deepEqual(config.agent.env, {
      RAMPART_ACCEL: 'kvm',
      RAMPART_CONSOLE_CAP_BYTES: '65536',
      RAMPART_UID_BASE: '6000000',
      RAMPART_ACCEL_CACHE: '/srv/accel.json',
    });
  });

  void test('flags override the environment and the file', () => {
    const config = loadServerConfig(
      { config: tomlFile(FULL_FILE), listen: '[::1]:5555', dataDir: '/srv/flag-data' },
      { RAMPART_LISTEN: '10.0.0.4:4444', RAMPART_DATA_DIR: '/srv/env-data' },
    );
    assert.equal(config.host, '::1');
    assert.equal(config.port, 5555);
    assert.equal(config.dataDir, '/srv/flag-data');
    assert.equal(config.agent.dataDir, '/srv/flag-data/agent');
    // Not overridden by a flag: still from the file.
    assert.equal(config.logLevel, 'debug');
  });

  void test('a relative data directory is made absolute', () => {
    const config = loadServerConfig({ dataDir: 'rel/data' }, {});
    assert.equal(config.dataDir, resolve('rel/data'));
  });

  void test('a TOML file with an unknown key is rejected, naming the key', () => {
    assert.throws(
      () => loadServerConfig({ config: tomlFile('listen = "127.0.0.1:1"\nlisten_adress = "x"\n') }, {}),
      isInvalidInput(/listen_adress/),
    );
    assert.throws(
      () => loadServerConfig({ config: tomlFile('[agent]\nmode = "local"\nsecret_option = 1\n') }, {}),
      isInvalidInput(/secret_option/),
    );
    assert.throws(
      () => loadServerConfig({ config: tomlFile('[unknown_table]\na = 1\n') }, {}),
      isInvalidInput(/unknown_table/),
    );
  });

  void test('a TOML file with a wrongly typed or out-of-range value is rejected', () => {
    for (const text of [
      'stop_timeout_seconds = "30"\n',
      'stop_timeout_seconds = 99999\n',
      'stop_timeout_seconds = -1\n',
      'stop_timeout_seconds = 1.5\n',
      'listen = 8480\n',
      '[agent]\nmode = "remote"\n',
      '[agent]\naccel = "hvf"\n',
      '[agent]\nconsole_cap_bytes = 10\n',
      '[agent]\nuid_base = 0\n',
    ]) {
      const path = tomlFile(text);
      assert.throws(
        () => loadServerConfig({ config: path }, {}),
        isInvalidInput(new RegExp(path.replace(/[.]/g, '\\.'))),
        text,
      );
    }
  });

  void test('a listen address from the file is validated too', () => {
    assert.throws(
      () => loadServerConfig({ config: tomlFile('listen = "localhost"\n') }, {}),
      isInvalidInput(/HOST:PORT/),
    );
  });

  void test('RAMPART_STOP_TIMEOUT_SECONDS must be an integer from 0 to 3600', () => {
    for (const value of ['-1', '3601', '1.5', 'abc', '30s', 'NaN', 'Infinity']) {
      assert.throws(
        () => loadServerConfig({}, { RAMPART_STOP_TIMEOUT_SECONDS: value }),
        isInvalidInput(/RAMPART_STOP_TIMEOUT_SECONDS/),
        value,
      );
    }
    assert.equal(loadServerConfig({}, { RAMPART_STOP_TIMEOUT_SECONDS: '0' }).stopTimeoutSeconds, 0);
    assert.equal(loadServerConfig({}, { RAMPART_STOP_TIMEOUT_SECONDS: '3600' }).stopTimeoutSeconds, 3600);
    assert.equal(loadServerConfig({}, { RAMPART_STOP_TIMEOUT_SECONDS: '12' }).stopTimeoutSeconds, 12);
  });

  void test('RAMPART_STOP_TIMEOUT_SECONDS that is empty or not plain decimal is rejected', () => {
    for (const value of ['', ' ', ' 5 ', '0x10', '1e3']) {
      assert.throws(
        () => loadServerConfig({}, { RAMPART_STOP_TIMEOUT_SECONDS: value }),
        isInvalidInput(),
        JSON.stringify(value),
      );
    }
  });

  void test('RAMPART_AGENT_MODE must be local or external', () => {
    assert.throws(
      () => loadServerConfig({}, { RAMPART_AGENT_MODE: 'remote' }),
      isInvalidInput(/RAMPART_AGENT_MODE/),
    );
    assert.equal(loadServerConfig({}, { RAMPART_AGENT_MODE: 'external' }).agent.mode, 'external');
    assert.equal(loadServerConfig({}, { RAMPART_AGENT_MODE: 'none' }).agent.mode, 'none');
  });

  void test('a bad RAMPART_LISTEN is rejected even when the file has a good one', () => {
    assert.throws(
      () =>
        loadServerConfig({ config: tomlFile('listen = "127.0.0.1:1"\n') }, { RAMPART_LISTEN: '127.0.0.1' }),
      isInvalidInput(/HOST:PORT/),
    );
  });
});

void describe('parseListen', () => {
  const good: [string, string, number][] = [
    ['127.0.0.1:8480', '127.0.0.1', 8480],
    ['0.0.0.0:0', '0.0.0.0', 0],
    ['localhost:65535', 'localhost', 65535],
    ['rampart-1.example.com:443', 'rampart-1.example.com', 443],
    ['[::1]:8480', '::1', 8480],
    ['[fe80::1]:1', 'fe80::1', 1],
  ];
  for (const [input, host, port] of good) {
    void test(`accepts ${input}`, () => {
      assert.deepEqual(parseListen(input), { host, port });
    });
  }

  const bad = [
    '1.2.3.4',
    'host:99999',
    'host:65536',
    'host:',
    ':8480',
    '',
    'host:80:80',
    '::1:8480',
    'host:-1',
    'host:8o',
    'host :80',
    'host:80 ',
    'http://host:80',
    'user@host:80',
    'host/x:80',
    '[::1]',
    '[host]:80',
    'host:123456',
  ];
  for (const input of bad) {
    void test(`rejects ${JSON.stringify(input)}`, () => {
      assert.throws(() => parseListen(input), isInvalidInput(/HOST:PORT/));
    });
  }
});

void describe('loadAgentConfig data directory', () => {
  void test('a safe absolute data directory is accepted', () => {
    const config = loadAgentConfig({ dataDir: '/srv/rampart-1/agent_x.y' }, {});
    assert.equal(config.dataDir, '/srv/rampart-1/agent_x.y');
    assert.equal(config.socket, '/srv/rampart-1/agent_x.y/agent.sock');
  });

  for (const dataDir of [
    '/srv/ramp art',
    '/srv/ramp,art',
    '/srv/a=b',
    '/srv/x\ny',
    '/srv/$(id)',
    '/srv/a;b',
  ]) {
    void test(`data directory ${JSON.stringify(dataDir)} is rejected`, () => {
      assert.throws(() => loadAgentConfig({ dataDir }, {}), /agent data directory/);
    });
  }

  void test('a data directory from the environment is checked too (RAMPART_AGENT_DATA_DIR, RAMPART_DATA_DIR)', () => {
    assert.throws(
      () => loadAgentConfig({}, { RAMPART_AGENT_DATA_DIR: '/srv/with space' }),
      /agent data directory/,
    );
    assert.throws(() => loadAgentConfig({}, { RAMPART_DATA_DIR: '/srv/with,comma' }), /agent data directory/);
    assert.equal(loadAgentConfig({}, { RAMPART_DATA_DIR: '/srv/ok' }).dataDir, '/srv/ok/agent');
  });

  void test('"../" is resolved before the check, so the result is a clean absolute path', () => {
    assert.equal(loadAgentConfig({ dataDir: '/srv/a/../b' }, {}).dataDir, '/srv/b');
  });

  void test('unsafe probe image paths are ignored', () => {
    const config = loadAgentConfig(
      { dataDir: '/srv/ok' },
      { RAMPART_PROBE_KERNEL: '/img/vm linuz', RAMPART_PROBE_INITRD: '/img/initrd,format=raw' },
    );
    assert.equal(config.probeKernel, null);
    assert.equal(config.probeInitrd, null);
    const safe = loadAgentConfig(
      { dataDir: '/srv/ok' },
      { RAMPART_PROBE_KERNEL: '/img/vmlinuz', RAMPART_PROBE_INITRD: '/img/initrd.img' },
    );
    assert.equal(safe.probeKernel, '/img/vmlinuz');
    assert.equal(safe.probeInitrd, '/img/initrd.img');
  });

  void test('numeric settings are range-checked', () => {
    assert.throws(
      () => loadAgentConfig({ dataDir: '/srv/ok' }, { RAMPART_CONSOLE_CAP_BYTES: '100' }),
      /RAMPART_CONSOLE_CAP_BYTES/,
    );
    assert.throws(
      () => loadAgentConfig({ dataDir: '/srv/ok' }, { RAMPART_UID_BASE: '0' }),
      /RAMPART_UID_BASE/,
    );
    assert.throws(() => loadAgentConfig({ dataDir: '/srv/ok' }, { RAMPART_ACCEL: 'hvf' }), /RAMPART_ACCEL/);
    assert.equal(
      loadAgentConfig({ dataDir: '/srv/ok' }, { RAMPART_CONSOLE_CAP_BYTES: '8192' }).consoleCapBytes,
      8192,
    );
  });
});

void describe('remote hosts settings', () => {
  void test('the agent listener is off by default; a wildcard listen address needs the endpoint', () => {
    assert.equal(loadServerConfig({}, {}).agentListener, null);
    const on = loadServerConfig({}, { RAMPART_AGENT_LISTEN: '10.0.0.1:8481' }).agentListener;
    assert.deepEqual(on, {
      host: '10.0.0.1',
      port: 8481,
      endpointHost: '10.0.0.1',
      endpointPort: null,
      heartbeatSeconds: 5,
    });
    assert.throws(
      () => loadServerConfig({}, { RAMPART_AGENT_LISTEN: '0.0.0.0:8481' }),
      /RAMPART_AGENT_ENDPOINT/,
    );
    const behind = loadServerConfig(
      {},
      {
        RAMPART_AGENT_LISTEN: '0.0.0.0:8481',
        RAMPART_AGENT_ENDPOINT: 'rampart.example:443',
        RAMPART_AGENT_HEARTBEAT_SECONDS: '2',
      },
    ).agentListener;
    assert.equal(behind?.endpointHost, 'rampart.example');
    assert.equal(behind?.endpointPort, 443);
    assert.equal(behind?.heartbeatSeconds, 2);
    assert.throws(
      () =>
        loadServerConfig({}, { RAMPART_AGENT_LISTEN: '127.0.0.1:1', RAMPART_AGENT_HEARTBEAT_SECONDS: '0' }),
      /RAMPART_AGENT_HEARTBEAT_SECONDS/,
    );
  });

  void test('the host lease: 30 s by default, at least 10', () => {
    assert.equal(loadServerConfig({}, {}).hostLeaseSeconds, 30);
    assert.equal(loadServerConfig({}, { RAMPART_HOST_LEASE_SECONDS: '10' }).hostLeaseSeconds, 10);
    for (const bad of ['9', '0', '3601', 'x'])
      assert.throws(
        () => loadServerConfig({}, { RAMPART_HOST_LEASE_SECONDS: bad }),
        /RAMPART_HOST_LEASE_SECONDS must be an integer from 10 to 3600/,
      );
  });

  void test('the agent dials HOST:PORT only (several replicas: comma-separated)', () => {
    assert.equal(loadAgentConfig({ dataDir: '/srv/ok' }, {}).server, null);
    assert.deepEqual(loadAgentConfig({ dataDir: '/srv/ok' }, { RAMPART_SERVER: '10.0.0.1:8481' }).server, [
      '10.0.0.1:8481',
    ]);
    assert.deepEqual(
      loadAgentConfig({ dataDir: '/srv/ok' }, { RAMPART_SERVER: '10.0.0.1:8481, 10.0.0.2:8481' }).server,
      ['10.0.0.1:8481', '10.0.0.2:8481'],
    );
    assert.deepEqual(loadAgentConfig({ dataDir: '/srv/ok', server: '[::1]:8481' }, {}).server, [
      '[::1]:8481',
    ]);
    for (const bad of ['https://x:1/', '10.0.0.1:8481,https://x:1/', ','])
      assert.throws(() => loadAgentConfig({ dataDir: '/srv/ok' }, { RAMPART_SERVER: bad }), /RAMPART_SERVER/);
  });

  void test('the database: the data directory file by default, a path, or a postgres:// URL (never echoed)', () => {
    assert.equal(loadServerConfig({ dataDir: '/srv/r' }, {}).database, '/srv/r/db/rampart.db');
    assert.equal(
      loadServerConfig({ dataDir: '/srv/r' }, { RAMPART_DATABASE: 'rel/x.db' }).database,
      resolve('rel/x.db'),
    );
    const url = 'postgres://rampart:s3cret@db.example:5432/rampart';
    assert.equal(loadServerConfig({}, { RAMPART_DATABASE: url }).database, url);
    assert.equal(loadServerConfig({ database: '/flag.db' }, { RAMPART_DATABASE: url }).database, '/flag.db');
    assert.equal(
      loadServerConfig({ config: tomlFile(`database = "${url}"\n`) }, {}).database,
      url,
      'the config file key',
    );
    for (const bad of [
      'postgres://rampart:s3cret@db.example',
      'mysql://rampart:s3cret@db/x',
      'postgres://:s3cret@/x',
    ]) {
      assert.throws(
        () => loadServerConfig({}, { RAMPART_DATABASE: bad }),
        (error: unknown) => {
          assert.ok(isInvalidInput(/database/)(error));
          assert.ok(!(error as Error).message.includes('s3cret'), 'the password is not in the message');
          return true;
        },
      );
    }
  });
});

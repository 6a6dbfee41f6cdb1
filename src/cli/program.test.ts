import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './program.js';
import {
  apiError,
  closedPort,
  hostFixture,
  startFakeApi,
  testIo,
  vmFixture,
  type FakeApi,
  type Handler,
} from './testing.js';

void describe('argument validation (no server needed)', () => {
  const cases: [string, string[]][] = [
    ['bad --output value', ['vm', 'list', '-o', 'yaml']],
    ['unknown command', ['vm', 'creat', 'x']],
    ['unknown option', ['vm', 'list', '--bogus']],
    ['missing argument', ['vm', 'show']],
    ['invalid ref', ['vm', 'show', '../etc']],
    ['invalid name', ['vm', 'create', 'Web_1', '--image', 'tiny', '--flavor', 'small']],
    ['missing required option', ['vm', 'create', 'web1', '--image', 'tiny']],
    ['neither image nor boot volume', ['vm', 'create', 'web1', '--flavor', 'small']],
    [
      'image and boot volume',
      ['vm', 'create', 'web1', '--image', 'tiny', '--boot-volume', 'v', '--flavor', 'small'],
    ],
    [
      'unreadable ssh key file',
      ['vm', 'create', 'web1', '--image', 'deb', '--flavor', 'small', '--ssh-key', '/nonexistent/key.pub'],
    ],
    [
      'bad restart policy',
      ['vm', 'create', 'web1', '--image', 'tiny', '--flavor', 'small', '--restart-policy', 'sometimes'],
    ],
    ['non-integer vcpus', ['flavor', 'create', 'f1', '--vcpus', 'two', '--memory', '512', '--disk', '1']],
    ['memory out of range', ['flavor', 'create', 'f1', '--vcpus', '1', '--memory', '1', '--disk', '1']],
    ...(
      [
        ['cpu limit of 0', ['--cpu-limit', '0']],
        ['cpu limit above 6400', ['--cpu-limit', '6401']],
        ['fractional cpu limit', ['--cpu-limit', '50.5']],
        ['cpu weight of 0', ['--cpu-weight', '0']],
        ['cpu weight above 10000', ['--cpu-weight', '10001']],
        ['pids max below 16', ['--pids-max', '15']],
        ['pids max above 65536', ['--pids-max', '65537']],
      ] as const
    ).map(([label, extra]): [string, string[]] => [
      label,
      ['flavor', 'create', 'f1', '--vcpus', '1', '--memory', '512', '--disk', '1', ...extra],
    ]),
    ['resize without --flavor', ['vm', 'resize', 'web1']],
    ['resize to an invalid flavor', ['vm', 'resize', 'web1', '--flavor', 'Big!']],
    ['bad stop timeout', ['vm', 'stop', 'web1', '--stop-timeout', '-1']],
    ['bad wait timeout', ['vm', 'start', 'web1', '--wait', '--timeout', '0']],
    ['bytes with follow', ['vm', 'console', 'web1', '--bytes', '10', '--follow']],
    ['group without subcommand', ['vm']],
    ['no command', []],
    ['bad --listen', ['server', '--listen', 'nowhere']],
    ['bad URL', ['--url', 'ftp://x/', 'vm', 'list']],
  ];
  for (const [label, argv] of cases) {
    void it(`exits 2 on ${label}`, async () => {
      const io = testIo();
      assert.equal(await run(argv, io), 2, io.stderr.text);
      assert.match(io.stderr.text, /rampart: |Usage: /);
      assert.equal(io.stdout.text, '');
    });
  }

  void it('prints help with the exit codes and exits 0', async () => {
    const io = testIo();
    assert.equal(await run(['--help'], io), 0);
    assert.match(io.stdout.text, /Exit codes:\n {2}0 {2}success/);
    assert.match(io.stdout.text, /RAMPART_TOKEN/);
    for (const name of ['RAMPART_TENANT', 'RAMPART_SESSION_FILE', 'rampart login', '--tenant <name>'])
      assert.ok(io.stdout.text.includes(name), name);
    assert.match(io.stdout.text, /\n {2}8 {2}verification failed/);
  });

  void it('mentions the server environment variables in its help', async () => {
    const io = testIo();
    assert.equal(await run(['server', '--help'], io), 0);
    for (const name of ['RAMPART_LISTEN', 'RAMPART_DATA_DIR', 'RAMPART_CONFIG'])
      assert.match(io.stdout.text, new RegExp(name));
    const agent = testIo();
    assert.equal(await run(['agent', '--help'], agent), 0);
    assert.match(agent.stdout.text, /RAMPART_DATA_DIR/);
  });

  void it('reports an unreachable server with exit code 7', async () => {
    const io = testIo({ RAMPART_URL: `http://127.0.0.1:${await closedPort()}` });
    assert.equal(await run(['vm', 'list'], io), 7);
    assert.match(
      io.stderr.text,
      /^rampart: cannot reach the Rampart server at http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/,
    );
  });
});

void describe('commands against a fake API', () => {
  let api: FakeApi;
  let handler: Handler = () => undefined;
  before(async () => {
    api = await startFakeApi((req) => handler(req));
  });
  after(() => api.close());
  beforeEach(() => {
    api.requests.length = 0;
  });
  const env = () => ({ RAMPART_URL: api.url, RAMPART_TOKEN: 'secret-token-1' });

  void it('prints the raw API JSON with -o json', async () => {
    const body = { items: [vmFixture(), vmFixture({ name: 'web2', state: 'stopped' })] };
    handler = (req) => (req.url === '/v1/vms' ? { body } : undefined);
    const io = testIo(env());
    assert.equal(await run(['vm', 'list', '-o', 'json'], io), 0);
    assert.deepEqual(JSON.parse(io.stdout.text), body);
    assert.equal(api.requests[0]?.headers.authorization, 'Bearer secret-token-1');
    assert.equal(io.stderr.text, '');
  });

  void it('prints a table by default', async () => {
    handler = (req) => (req.url === '/v1/vms' ? { body: { items: [vmFixture()] } } : undefined);
    const io = testIo(env());
    assert.equal(await run(['vm', 'ls'], io), 0);
    assert.match(
      io.stdout.text,
      /^NAME {3}STATE {5}FLAVOR {3}IMAGE {3}IPS {12}HOST {7}AGE\nweb1 {3}running /,
    );
    assert.ok(!io.stdout.text.includes('\u001b'), 'no colours when stdout is not a terminal');
  });

  void it('takes --url and --token flags over the environment', async () => {
    handler = () => ({ body: { items: [] } });
    const io = testIo({ RAMPART_URL: 'http://127.0.0.1:1', RAMPART_TOKEN: 'env-token' });
    assert.equal(await run(['--url', api.url, 'image', 'list', '--token', 'flag-token'], io), 0);
    assert.equal(api.requests[0]?.headers.authorization, 'Bearer flag-token');
  });

  void it('prints API errors on one line with code and request id, and never the token', async () => {
    handler = () => apiError(401, 'RAMPART_UNAUTHENTICATED', 'invalid token secret-token-1', 'req-42');
    const io = testIo(env());
    assert.equal(await run(['vm', 'show', 'web1'], io), 5);
    assert.equal(io.stderr.text, 'rampart: invalid token *** (RAMPART_UNAUTHENTICATED, request req-42)\n');
  });

  void it('maps not found and conflicts', async () => {
    handler = (req) =>
      req.url === '/v1/vms/web1/pause'
        ? apiError(409, 'RAMPART_ILLEGAL_STATE', 'cannot pause a VM that is stopped')
        : undefined;
    assert.equal(await run(['vm', 'pause', 'web1'], testIo(env())), 4);
    assert.equal(await run(['flavor', 'show', 'huge'], testIo(env())), 3);
  });

  void it('creates a VM and waits until it runs, progress on stderr', async () => {
    let polls = 0;
    handler = (req) => {
      if (req.method === 'POST' && req.url === '/v1/vms')
        return { status: 201, body: vmFixture({ state: 'pending' }) };
      if (req.method === 'GET' && req.url === `/v1/vms/${vmFixture().id}`) {
        polls++;
        return { body: vmFixture({ state: polls < 3 ? 'starting' : 'running' }) };
      }
      return undefined;
    };
    const io = testIo(env());
    const code = await run(
      [
        'vm',
        'create',
        'web1',
        '--image',
        'tiny',
        '--flavor',
        'small',
        '--restart-policy',
        'on-failure',
        '--wait',
      ],
      io,
    );
    assert.equal(code, 0, io.stderr.text);
    assert.deepEqual(JSON.parse(api.requests[0]?.body ?? ''), {
      name: 'web1',
      image: 'tiny',
      flavor: 'small',
      restartPolicy: 'on-failure',
    });
    assert.equal(io.stdout.text, 'vm web1: created\n');
    assert.equal(
      io.stderr.text,
      'web1: pending\nweb1: starting\nweb1: running (booted in 3.1 s, 10.0.2.15/24)\n',
    );
  });

  void it('creates a stopped VM with --no-start', async () => {
    handler = (req) =>
      req.method === 'POST' ? { status: 201, body: vmFixture({ state: 'stopped' }) } : undefined;
    const io = testIo(env());
    assert.equal(
      await run(
        ['vm', 'create', 'web1', '--image', 'tiny', '--flavor', 'small', '--no-start', '-o', 'json'],
        io,
      ),
      0,
    );
    assert.equal((JSON.parse(api.requests[0]?.body ?? '') as { start?: boolean }).start, false);
    assert.equal((JSON.parse(io.stdout.text) as { state: string }).state, 'stopped');
  });

  void it('boots from a volume with SSH keys read from files', async () => {
    handler = (req) =>
      req.method === 'POST' ? { status: 201, body: vmFixture({ state: 'stopped' }) } : undefined;
    const dir = mkdtempSync(join(tmpdir(), 'rampart-cli-key-'));
    const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ9 me@laptop';
    writeFileSync(join(dir, 'id.pub'), `# my key\n${key}\n`);
    try {
      const io = testIo(env());
      const argv = ['vm', 'create', 'web1', '--boot-volume', 'web-root', '--flavor', 'small'];
      assert.equal(await run([...argv, '--ssh-key', join(dir, 'id.pub'), '--no-start', '-o', 'json'], io), 0);
      const body = JSON.parse(api.requests[0]?.body ?? '') as Record<string, unknown>;
      assert.equal(body['bootVolume'], 'web-root');
      assert.equal(body['image'], undefined);
      assert.deepEqual(body['sshKeys'], [key]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  void it('fails a wait with exit code 6 when the VM goes to error', async () => {
    handler = (req) => {
      if (req.url === '/v1/vms/web1/start') return { status: 202, body: vmFixture({ state: 'starting' }) };
      if (req.url === '/v1/vms/web1') return { body: vmFixture({ state: 'error', error: 'kernel panic' }) };
      return undefined;
    };
    const io = testIo(env());
    assert.equal(await run(['vm', 'start', 'web1', '--wait'], io), 6);
    assert.match(io.stderr.text, /web1: error \(kernel panic\)\nrampart: vm web1 failed: kernel panic\n$/);
  });

  void it('stops with force and a stop timeout', async () => {
    handler = (req) =>
      req.url === '/v1/vms/web1/stop' ? { status: 202, body: vmFixture({ state: 'stopping' }) } : undefined;
    const io = testIo(env());
    assert.equal(await run(['vm', 'stop', 'web1', '--force', '--stop-timeout', '10'], io), 0);
    assert.deepEqual(JSON.parse(api.requests[0]?.body ?? ''), { force: true, timeoutSeconds: 10 });
    assert.equal(io.stdout.text, 'vm web1: stop accepted (state: stopping)\n');
  });

  void it('deletes and waits for the 404', async () => {
    let polls = 0;
    handler = (req) => {
      if (req.method === 'DELETE') return { status: 202, body: vmFixture({ state: 'deleting' }) };
      if (req.method === 'GET' && polls++ < 1) return { body: vmFixture({ state: 'deleting' }) };
      return undefined;
    };
    const io = testIo(env());
    assert.equal(await run(['vm', 'delete', 'web1', '--wait'], io), 0, io.stderr.text);
    assert.equal(io.stderr.text, 'web1: deleting\nweb1: deleted\n');
  });

  void it('prints the console tail', async () => {
    handler = (req) =>
      req.url === '/v1/vms/web1/console?bytes=100'
        ? { body: { vmId: vmFixture().id, bytes: 12, capBytes: 1024, data: 'login: root\n' } }
        : undefined;
    const io = testIo(env());
    assert.equal(await run(['vm', 'console', 'web1', '--bytes', '100'], io), 0);
    assert.equal(io.stdout.text, 'login: root\n');
  });

  const flavorAnswer: Handler = (req) =>
    req.method === 'POST' && req.url === '/v1/flavors'
      ? {
          status: 201,
          body: {
            id: 'f0000000-0000-4000-8000-000000000000',
            name: 'f1',
            vcpus: 2,
            memoryMiB: 512,
            diskGiB: 1,
            cpuLimitPercent: null,
            cpuWeight: 100,
            pidsMax: 512,
            createdAt: '2026-01-01T11:00:00Z',
          },
        }
      : undefined;

  void it('creates a flavor, leaving unset limits to the server defaults', async () => {
    handler = flavorAnswer;
    const io = testIo(env());
    assert.equal(
      await run(['flavor', 'create', 'f1', '--vcpus', '2', '--memory', '512', '--disk', '1'], io),
      0,
    );
    // The API takes the limits as optional integers: an unset one is left out, never sent as null.
    assert.deepEqual(JSON.parse(api.requests[0]?.body ?? ''), {
      name: 'f1',
      vcpus: 2,
      memoryMiB: 512,
      diskGiB: 1,
    });
    assert.equal(io.stdout.text, 'flavor f1 created (f0000000-0000-4000-8000-000000000000)\n');
  });

  void it('creates a flavor with a CPU limit, a CPU weight and a task limit', async () => {
    handler = flavorAnswer;
    const io = testIo(env());
    const argv = ['flavor', 'create', 'f1', '--vcpus', '2', '--memory', '512', '--disk', '1'];
    assert.equal(
      await run([...argv, '--cpu-limit', '150', '--cpu-weight', '10000', '--pids-max', '16'], io),
      0,
      io.stderr.text,
    );
    assert.deepEqual(JSON.parse(api.requests[0]?.body ?? ''), {
      name: 'f1',
      vcpus: 2,
      memoryMiB: 512,
      diskGiB: 1,
      cpuLimitPercent: 150,
      cpuWeight: 10000,
      pidsMax: 16,
    });
    assert.equal(await run([...argv, '--cpu-limit', '6400', '--cpu-weight', '1'], testIo(env())), 0);
    assert.deepEqual(JSON.parse(api.requests[1]?.body ?? ''), {
      name: 'f1',
      vcpus: 2,
      memoryMiB: 512,
      diskGiB: 1,
      cpuLimitPercent: 6400,
      cpuWeight: 1,
    });
  });

  void it('lists flavors with their CPU limit', async () => {
    const flavor = (name: string, cpuLimitPercent: number | null) => ({
      id: 'f0000000-0000-4000-8000-000000000000',
      name,
      vcpus: 2,
      memoryMiB: 2048,
      diskGiB: 10,
      cpuLimitPercent,
      cpuWeight: 100,
      pidsMax: 512,
      createdAt: '2026-01-01T11:00:00Z',
    });
    handler = (req) =>
      req.url === '/v1/flavors'
        ? { body: { items: [flavor('capped', 50), flavor('free', null)] } }
        : undefined;
    const io = testIo(env());
    assert.equal(await run(['flavor', 'list'], io), 0);
    assert.equal(
      io.stdout.text,
      [
        'NAME     VCPUS   MEMORY   DISK     CPU LIMIT   AGE',
        'capped   2       2 GiB    10 GiB   50%         1h',
        'free     2       2 GiB    10 GiB   -           1h',
        '',
      ].join('\n'),
    );
  });

  void it('resizes a VM in the --tenant given after the command', async () => {
    handler = (req) =>
      req.method === 'POST' && req.url.startsWith('/v1/vms/web1/resize')
        ? {
            body: vmFixture({
              state: 'stopped',
              flavor: { id: 'bbbbbbbb-0000-4000-8000-000000000000', name: 'medium' },
              vcpus: 2,
              memoryMiB: 2048,
              diskGiB: 20,
            }),
          }
        : undefined;
    const io = testIo(env());
    assert.equal(await run(['vm', 'resize', 'web1', '--flavor', 'medium', '--tenant', 'acme'], io), 0);
    assert.equal(api.requests[0]?.url, '/v1/vms/web1/resize?tenant=acme');
    assert.deepEqual(JSON.parse(api.requests[0]?.body ?? ''), { flavor: 'medium' });
    assert.equal(io.stdout.text, 'vm web1: resized to medium (2 vCPUs, 2 GiB memory, 20 GiB disk)\n');
    const json = testIo(env());
    assert.equal(await run(['vm', 'resize', 'web1', '--flavor', 'medium', '-o', 'json'], json), 0);
    assert.equal(api.requests[1]?.url, '/v1/vms/web1/resize');
    assert.equal((JSON.parse(json.stdout.text) as { vcpus: number }).vcpus, 2);
  });

  void it('maps a refused resize: no quota room is exit 4, a running VM too', async () => {
    handler = () =>
      apiError(403, 'RAMPART_QUOTA_EXCEEDED', 'quota exceeded for vcpus: 40 used + 1 requested > limit 40');
    const io = testIo(env());
    assert.equal(await run(['vm', 'resize', 'web1', '--flavor', 'medium'], io), 4);
    assert.equal(
      io.stderr.text,
      'rampart: quota exceeded for vcpus: 40 used + 1 requested > limit 40 (RAMPART_QUOTA_EXCEEDED, request req-1)\n',
    );
    handler = () => apiError(409, 'RAMPART_ILLEGAL_STATE', 'cannot resize a VM that is running');
    assert.equal(await run(['vm', 'resize', 'web1', '--flavor', 'medium'], testIo(env())), 4);
  });

  void it('lists hosts with allocated/allocatable vCPUs and memory', async () => {
    handler = (req) =>
      req.url === '/v1/hosts'
        ? {
            body: {
              items: [
                hostFixture({
                  capacity: { cpus: 2, memoryMiB: 8192, vcpusAllocatable: 32, memoryMiBAllocatable: 7680 },
                  allocated: { vcpus: 3, memoryMiB: 1536, vms: 3, pinnedCpus: [] },
                  overcommit: { cpu: 16, memory: 1 },
                }),
              ],
            },
          }
        : undefined;
    const io = testIo(env());
    assert.equal(await run(['host', 'list'], io), 0);
    assert.equal(
      io.stdout.text,
      [
        'ID         HOSTNAME   STATE    ACCEL   VCPUS   MEMORY        VMS',
        'cccccccc   hv1        online   kvm     3/32    1.5/7.5 GiB   3',
        '',
      ].join('\n'),
    );
  });

  void it('shows a host by the short id of the table', async () => {
    handler = (req) => (req.url === '/v1/hosts' ? { body: { items: [hostFixture()] } } : undefined);
    const io = testIo(env());
    assert.equal(await run(['host', 'show', 'cccccccc', '-o', 'json'], io), 0);
    assert.equal((JSON.parse(io.stdout.text) as { hostname: string }).hostname, 'hv1');
    const missing = testIo(env());
    assert.equal(await run(['host', 'show', 'deadbeef'], missing), 3);
  });
});

/**
 * Remote hosts over real TLS on loopback: the server listens for agents (RAMPART_AGENT_LISTEN); a
 * join token from the CLI lets a second agent join (its key made on its side, its CSR signed by the
 * server's host CA), and the agent dials in with its certificate. The host comes online and boots a
 * VM; the token cannot be used twice; a client certificate from another CA is refused in the
 * handshake; a hello naming another host than the certificate is refused; a silent agent is dropped
 * after three heartbeats and comes back; renewing its certificate gives it a new key and certificate,
 * it reconnects with them and the old certificate is refused; revoking the host closes its connection
 * at once and every later one is refused.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { after, before, test } from 'node:test';
import { AGENT_PROTOCOL_VERSION } from '../src/api/agent-protocol.js';
import type { Host, JoinTokenCreated } from '../src/api/host.js';
import type { Vm } from '../src/api/vm.js';
import { run } from '../src/common/subprocess.js';
import { runCli } from './helpers/cli-runner.js';
import { RampartHarness } from './helpers/rampart-harness.js';
import { freePort } from './helpers/debian-guest.js';
import { killAgent, startRemoteAgent } from './helpers/remote-hosts.js';

let harness: RampartHarness;
let agentPort = 0;
let agent: ChildProcess | null = null;
let hostId = '';
const NAME = 'remote-1';

function remoteDir(): string {
  return join(harness.dataDir, 'hosts', NAME);
}

function startAgent(): void {
  // The host is known by the name it joined with (its certificate), not by what it claims.
  agent = startRemoteAgent({
    name: 'claimed-name',
    dataDir: remoteDir(),
    logFile: join(harness.dataDir, `agent-${NAME}.log`),
    cgroupParent: harness.cgroupParent,
  });
}

function stopAgent(): void {
  killAgent(agent);
  agent = null;
}

async function host(): Promise<Host | undefined> {
  const hosts = await harness.api<{ items: Host[] }>('GET', '/v1/hosts');
  return hosts.body.items.find((h) => h.hostname === NAME);
}

/** A P-256 CSR for `name`, made with openssl in `dir`. */
async function csr(dir: string, name: string): Promise<string> {
  const file = join(dir, `csr-${name}.key`);
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
  writeFileSync(file, key, { mode: 0o600 });
  return (await run('openssl', ['req', '-new', '-key', file, '-subj', `/CN=${name}`])).stdout;
}

/** Dials the agent listener with `key`/`cert`; answers how the connection ended and what it read. */
function dial(
  key: string | Buffer,
  cert: string,
  onSecure?: (write: (line: unknown) => void) => void,
): Promise<{ secure: boolean; closed: boolean; data: string; error: string | null }> {
  return new Promise((resolve) => {
    const ca = readFileSync(join(remoteDir(), 'ca.crt'), 'utf8');
    const socket = connect({
      host: '127.0.0.1',
      port: agentPort,
      key,
      cert,
      ca: [ca],
      minVersion: 'TLSv1.3',
    });
    const result = { secure: false, closed: false, data: '', error: null as string | null };
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(result);
    }, 5000);
    socket.on('secureConnect', () => {
      result.secure = true;
      onSecure?.((line) => socket.write(`${JSON.stringify(line)}\n`));
    });
    socket.on('data', (d: Buffer) => (result.data += d.toString()));
    socket.on('error', (e: Error) => (result.error = e.message));
    socket.on('close', () => {
      clearTimeout(timer);
      result.closed = true;
      resolve(result);
    });
  });
}

before(async () => {
  agentPort = await freePort();
  harness = await RampartHarness.start({
    env: {
      RAMPART_HOST_NAME: 'host-a',
      RAMPART_AGENT_LISTEN: `127.0.0.1:${agentPort}`,
      RAMPART_AGENT_HEARTBEAT_SECONDS: '1',
    },
  });
});

process.on('exit', stopAgent);

after(async () => {
  stopAgent();
  await harness?.cleanup();
});

test('a host joins with a one-time token, dials in over mutual TLS, and runs a VM', async () => {
  assert.match(harness.serverOutput, new RegExp(`Agent listener on 127\\.0\\.0\\.1:${agentPort}`));
  const caKey = statSync(join(harness.dataDir, 'secrets', 'host-ca.key'));
  assert.equal(caKey.mode & 0o777, 0o600);

  const made = await runCli(harness, ['host', 'join-token', '--name', NAME, '--ttl', '30m', '-o', 'json']);
  assert.equal(made.code, 0, made.stderr);
  const { token, caFingerprint } = JSON.parse(made.stdout) as JoinTokenCreated;
  assert.match(token, /^rjt_/);
  assert.match(caFingerprint, /^sha256:[0-9a-f]{64}$/);

  // An agent given another CA fingerprint refuses the answer and stores nothing.
  const other = await harness.api<JoinTokenCreated>('POST', '/v1/platform/hosts/join-tokens', {});
  const elsewhere = join(harness.dataDir, 'hosts', 'mitm');
  mkdirSync(elsewhere, { recursive: true });
  const wrong = await runCli(harness, [
    'agent',
    'join',
    '--server',
    harness.url,
    '--token',
    other.body.token,
    '--name',
    'mitm',
    '--data-dir',
    elsewhere,
    '--ca-fingerprint',
    `sha256:${'0'.repeat(64)}`,
  ]);
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.stderr, /fingerprint .* refused/);
  assert.ok(!existsSync(join(elsewhere, 'host.crt')) && !existsSync(join(elsewhere, 'ca.crt')));

  const dir = remoteDir();
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const joined = await runCli(harness, [
    'agent',
    'join',
    '--server',
    harness.url,
    '--token',
    token,
    '--name',
    NAME,
    '--data-dir',
    dir,
    '--ca-fingerprint',
    caFingerprint,
  ]);
  assert.equal(joined.code, 0, joined.stderr);
  assert.match(joined.stdout, new RegExp(`joined as host ${NAME} \\(([0-9a-f-]{36})\\)`));
  hostId = /\(([0-9a-f-]{36})\)/.exec(joined.stdout)![1]!;
  assert.equal(statSync(join(dir, 'host.key')).mode & 0o777, 0o600);
  assert.equal(readFileSync(join(dir, 'host-id'), 'utf8').trim(), hostId);
  assert.ok(!joined.stdout.includes('PRIVATE KEY') && !joined.stderr.includes('PRIVATE KEY'));

  // The token is spent: a second join with it fails.
  const again = await harness.api(
    'POST',
    '/v1/hosts/join',
    { token, csr: await csr(dir, NAME) },
    { authorization: '' },
  );
  assert.equal(again.status, 401, JSON.stringify(again.body));

  startAgent();
  await harness.waitFor(async () => (await host())?.state === 'online', 60_000, `${NAME} online`);
  assert.equal((await host())!.id, hostId);

  // A VM placed on the remote host (the local one in maintenance) boots there.
  const local = (await harness.api<{ items: Host[] }>('GET', '/v1/hosts')).body.items.find(
    (h) => h.hostname === 'host-a',
  )!;
  assert.equal((await harness.api('PATCH', `/v1/hosts/${local.id}`, { maintenance: true })).status, 200);
  try {
    const created = await harness.api<Vm>('POST', '/v1/vms', {
      name: 'remote-vm',
      image: 'tiny',
      flavor: 'tiny',
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.hostId, hostId);
    const running = await harness.waitForState('remote-vm', 'running', 120_000);
    assert.equal(running.hostId, hostId);
    assert.ok(harness.qemuPids().length >= 1);
    assert.equal((await harness.api('DELETE', '/v1/vms/remote-vm')).status < 300, true);
    await harness.waitFor(
      async () => (await harness.api('GET', '/v1/vms/remote-vm')).status === 404,
      60_000,
      'the VM deleted',
    );
  } finally {
    await harness.api('PATCH', `/v1/hosts/${local.id}`, { maintenance: false });
  }
  const audit = await harness.api<{ items: { action: string; target: string; outcome: string }[] }>(
    'GET',
    '/v1/platform/audit?action=host:join&limit=10',
  );
  assert.ok(
    audit.body.items.some((r) => r.target === hostId && r.outcome === 'success'),
    JSON.stringify(audit.body),
  );
});

test('a client certificate from another CA is refused in the handshake', async () => {
  const dir = join(harness.dataDir, 'foreign-ca');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const sh = (args: string[]) => run('openssl', args, { cwd: dir });
  await sh(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'ca.key']);
  await sh([
    'req',
    '-x509',
    '-new',
    '-key',
    'ca.key',
    '-days',
    '2',
    '-subj',
    '/CN=Evil CA',
    '-out',
    'ca.crt',
  ]);
  await sh(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'h.key']);
  await sh(['req', '-new', '-key', 'h.key', '-subj', `/CN=${hostId}`, '-out', 'h.csr']);
  writeFileSync(join(dir, 'ext'), 'extendedKeyUsage=clientAuth\n');
  await sh(
    ['x509', '-req', '-in', 'h.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-days', '2'].concat([
      '-set_serial',
      '7',
      '-extfile',
      'ext',
      '-out',
      'h.crt',
    ]),
  );
  const result = await dial(
    readFileSync(join(dir, 'h.key')),
    readFileSync(join(dir, 'h.crt'), 'utf8'),
    (write) => write({ type: 'heartbeat', at: new Date().toISOString() }),
  );
  assert.ok(result.closed, 'the server closed the connection');
  // TLS 1.3: the client's side of the handshake completes before the server checks its certificate;
  // the server then refuses it (alert, closed) before any application data.
  await harness.waitFor(
    async () => /agent TLS handshake refused/.test(harness.serverOutput),
    5000,
    'the handshake refusal logged',
  );
  const line = harness.serverOutput.split('\n').find((l) => l.includes('agent TLS handshake refused'));
  assert.match(
    line ?? '',
    /"reason":"(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT[A-Z_]*)"/,
    line,
  );
  assert.equal(result.data, '');
  assert.equal((await host())!.state, 'online', 'the real host is unaffected');
});

test('a hello naming another host than the certificate is refused', async () => {
  const dir = remoteDir();
  const local = (await harness.api<{ items: Host[] }>('GET', '/v1/hosts')).body.items.find(
    (h) => h.hostname === 'host-a',
  )!;
  const result = await dial(
    readFileSync(join(dir, 'host.key')),
    readFileSync(join(dir, 'host.crt'), 'utf8'),
    (write) =>
      write({
        type: 'hello',
        protocolVersion: AGENT_PROTOCOL_VERSION,
        host: {
          hostId: local.id,
          hostname: 'host-a',
          agentVersion: 'forged',
          qemuVersion: '7.2.0',
          accelerator: 'tcg',
          acceleratorReason: 'forged',
          capacity: { cpus: 64, memoryMiB: 1 << 20, vcpusAllocatable: 256, memoryMiBAllocatable: 1 << 20 },
        },
      }),
  );
  assert.ok(result.secure && result.closed, JSON.stringify(result));
  const after = (await harness.api<Host>('GET', `/v1/hosts/${local.id}`)).body;
  assert.equal(after.state, 'online');
  assert.notEqual(after.agentVersion, 'forged');
  await harness.waitFor(
    async () => /agent hello names another host than its certificate/.test(harness.serverOutput),
    5000,
    'the refusal logged',
  );
});

test('an agent silent for three heartbeats is dropped; it comes back when it speaks again', async () => {
  assert.ok(agent?.pid);
  process.kill(agent.pid, 'SIGSTOP');
  try {
    const stoppedAt = Date.now();
    // A remote host fences itself: it is suspected (failed only after its lease).
    await harness.waitFor(async () => (await host())?.state === 'suspected', 15_000, `${NAME} suspected`);
    assert.ok(Date.now() - stoppedAt >= 2500, 'not before three intervals');
  } finally {
    process.kill(agent.pid, 'SIGCONT');
  }
  await harness.waitFor(async () => (await host())?.state === 'online', 30_000, `${NAME} back online`);
});

test('renewing the host certificate: a new key on the host, the host reconnects with it, the old one is refused', async () => {
  const oldKey = readFileSync(join(remoteDir(), 'host.key'));
  const oldCert = readFileSync(join(remoteDir(), 'host.crt'), 'utf8');
  const oldSerial = new X509Certificate(oldCert).serialNumber.replace(/^0+/, '');
  const renewed = await runCli(harness, ['host', 'renew-certificate', NAME, '-o', 'json']);
  assert.equal(renewed.code, 0, renewed.stderr);
  const answer = JSON.parse(renewed.stdout) as { hostId: string; serial: string; notAfter: string };
  assert.equal(answer.hostId, hostId);
  assert.notEqual(answer.serial, oldSerial);
  assert.ok(Date.parse(answer.notAfter) > Date.now() + 300 * 86_400_000, 'valid for about a year');
  // The host made a new key and holds the new certificate; it dials again with them, and once it
  // has, the old certificate is revoked.
  assert.notDeepEqual(readFileSync(join(remoteDir(), 'host.key')), oldKey);
  const installed = new X509Certificate(readFileSync(join(remoteDir(), 'host.crt'), 'utf8'));
  assert.equal(installed.serialNumber.replace(/^0+/, ''), answer.serial);
  await harness.waitFor(
    async () => /older host certificates revoked/.test(harness.serverOutput),
    20_000,
    'the host to reconnect with its new certificate',
  );
  await harness.waitFor(async () => (await host())?.state === 'online', 20_000, `${NAME} online`);
  const withOld = await dial(oldKey, oldCert, (write) =>
    write({ type: 'hello', protocolVersion: AGENT_PROTOCOL_VERSION, host: { hostId } }),
  );
  assert.ok(withOld.closed, 'a connection with the superseded certificate is closed');
  assert.ok(!withOld.data.includes('"type"'), 'and never served');
  const log = readFileSync(join(harness.dataDir, `agent-${NAME}.log`), 'utf8');
  assert.match(log, /new host certificate installed/);
  assert.ok(!/BEGIN (EC |)PRIVATE KEY/.test(log + harness.serverOutput), 'no key material in the logs');
  const audit = await harness.api<{ items: { action: string; target: string }[] }>(
    'GET',
    '/v1/platform/audit?action=platform:host:renew&limit=10',
  );
  assert.ok(
    audit.body.items.some((r) => r.target === hostId),
    JSON.stringify(audit.body),
  );
});

test('revoking the host closes its connection at once and it cannot reconnect', async () => {
  const revoked = await runCli(harness, ['host', 'revoke', NAME, '-o', 'json']);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.equal((JSON.parse(revoked.stdout) as { hostId: string }).hostId, hostId);
  const revokedAt = Date.now();
  await harness.waitFor(async () => (await host())?.state === 'suspected', 5000, `${NAME} suspected`);
  assert.ok(Date.now() - revokedAt < 2500, 'closed at once, not by the heartbeat timeout');
  // The agent keeps dialing; every attempt is refused.
  await new Promise((resolve) => setTimeout(resolve, 4000));
  assert.notEqual((await host())?.state, 'online');
  const log = readFileSync(join(harness.dataDir, `agent-${NAME}.log`), 'utf8');
  assert.ok((log.match(/server link closed/g) ?? []).length >= 2, 'the agent tried again');
  assert.ok(!/BEGIN (EC |)PRIVATE KEY/.test(log), 'no key material in the log');
  const audit = await harness.api<{ items: { action: string; target: string }[] }>(
    'GET',
    '/v1/platform/audit?action=platform:host:revoke&limit=10',
  );
  assert.ok(
    audit.body.items.some((r) => r.target === hostId),
    JSON.stringify(audit.body),
  );
});

test('the remote host routes are in the OpenAPI document with their schemas', async () => {
  interface Operation {
    security?: unknown[];
    requestBody?: { content?: Record<string, { schema?: { additionalProperties?: boolean } }> };
    responses?: Record<string, unknown>;
  }
  const doc = (
    await harness.api<{ paths: Record<string, Record<string, Operation>> }>('GET', '/v1/openapi.json')
  ).body;
  const join = doc.paths['/v1/hosts/join']?.post;
  assert.ok(join, 'POST /v1/hosts/join documented');
  assert.deepEqual(join.security, [], 'public');
  assert.equal(join.requestBody?.content?.['application/json']?.schema?.additionalProperties, false);
  assert.ok(join.responses?.['200'] && join.responses['401']);
  const tokens = doc.paths['/v1/platform/hosts/join-tokens']?.post;
  assert.ok(tokens?.responses?.['201'], 'POST join-tokens documented');
  assert.ok(doc.paths['/v1/platform/hosts/{host}/revoke']?.post?.responses?.['200'], 'revoke documented');
  assert.ok(
    doc.paths['/v1/platform/hosts/{host}/certificate']?.post?.responses?.['200'],
    'renewal documented',
  );
  // Schema validation: a malformed token or an oversized CSR never reaches the CA.
  const bad = await harness.api('POST', '/v1/hosts/join', { token: 'x', csr: 'y' }, { authorization: '' });
  assert.equal(bad.status, 400);
  const huge = await harness.api(
    'POST',
    '/v1/hosts/join',
    { token: `rjt_${'a'.repeat(43)}`, csr: 'A'.repeat(9000) },
    { authorization: '' },
  );
  assert.equal(huge.status, 400);
});

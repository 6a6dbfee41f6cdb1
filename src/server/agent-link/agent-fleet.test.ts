/**
 * The fleet of host agents: connections are found by the host id each agent announces; a second
 * endpoint answering with a connected host's id is refused (one agent per host); a host whose agent
 * goes away is reported disconnected and no longer has a connection.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { AGENT_PROTOCOL_VERSION, type HostInfo } from '../../api/agent-protocol.js';
import { createLogger } from '../../common/logger.js';
import { AgentFleet } from './agent-fleet.js';

function host(hostId: string, hostname: string): HostInfo {
  return {
    hostId,
    hostname,
    agentVersion: 'test',
    qemuVersion: '7.2.0',
    accelerator: 'tcg',
    acceleratorReason: 'test',
    capacity: { cpus: 2, memoryMiB: 4096, vcpusAllocatable: 8, memoryMiBAllocatable: 3584 },
  };
}

/** A fake agent: says hello with `info` to whoever connects, and remembers its connections. */
function fakeAgent(path: string, info: HostInfo): Promise<{ server: Server; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
    socket.write(
      `${JSON.stringify({ type: 'hello', protocolVersion: AGENT_PROTOCOL_VERSION, host: info })}\n`,
    );
  });
  return new Promise((resolve) => server.listen(path, () => resolve({ server, sockets })));
}

const A = 'aaaaaaaa-1111-4111-8111-111111111111';
const B = 'bbbbbbbb-1111-4111-8111-111111111111';

test('agents are found by host id; a second endpoint with the same id is refused; losses are reported', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-fleet-'));
  const agents = await Promise.all([
    fakeAgent(join(dir, 'a.sock'), host(A, 'host-a')),
    fakeAgent(join(dir, 'b.sock'), host(B, 'host-b')),
    fakeAgent(join(dir, 'a-again.sock'), host(A, 'host-a')),
  ]);
  const log = createLogger('test', 'silent');
  const fleet = new AgentFleet(
    ['a.sock', 'b.sock', 'a-again.sock'].map((name) => ({
      mode: 'external' as const,
      socket: join(dir, name),
      dataDir: '',
      env: {},
      logLevel: 'silent',
    })),
    log,
  );
  t.after(() => {
    fleet.stop();
    for (const agent of agents) {
      for (const socket of agent.sockets) socket.destroy();
      agent.server.close();
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const connected: string[] = [];
  fleet.on('connected', (_c, info) => connected.push(info.hostname));
  fleet.start();
  await waitFor(() => fleet.connectedCount === 2 && connected.length === 2);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.deepEqual(connected.sort(), ['host-a', 'host-b'], 'host-a once only');
  assert.equal(fleet.connectedCount, 2);
  assert.ok(fleet.connectionFor(A));
  assert.ok(fleet.connectionFor(B));
  assert.equal(fleet.connectionFor('cccccccc-1111-4111-8111-111111111111'), null);

  const lost: string[] = [];
  fleet.on('disconnected', (info) => lost.push(info.hostname));
  for (const socket of agents[1].sockets) socket.destroy();
  await waitFor(() => lost.includes('host-b'));
  assert.equal(fleet.connectionFor(B), null);
  assert.ok(fleet.connectionFor(A), 'the other host is unaffected');
  assert.throws(
    () =>
      new AgentFleet(
        [1, 2].map(() => ({
          mode: 'external' as const,
          socket: '/x.sock',
          dataDir: '',
          env: {},
          logLevel: 'silent',
        })),
        log,
      ),
    /configured twice/,
  );
});

async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Replicas and forwarded agent requests. On SQLite a starting server forgets its previous run's links.
 * On PostgreSQL (RAMPART_TEST_POSTGRES_URL), two replicas (two pools on one database, each with its
 * change feed): the replica a host is linked to is found by the other, a request made through the
 * other reaches the agent and its answer (or the agent's error, with its code) comes back, a host
 * linked nowhere answers RAMPART_HOST_UNAVAILABLE, an unanswered request times out and leaves no row,
 * and a replica that stops renewing is no longer forwarded to.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { after, test } from 'node:test';
import { RampartError } from '../../api/errors.js';
import { newId } from '../../common/ids.js';
import { createLogger } from '../../common/logger.js';
import { POSTGRES_SKIP, createTestPostgres } from '../../../test/helpers/postgres.js';
import { AgentConnection } from '../agent-link/agent-connection.js';
import { recordHostHello } from '../compute/host-registry.js';
import { openDatabase, type Db } from '../store/database.js';
import { AgentForwarding } from './agent-forwarding.js';
import { ChangeFeed } from './change-feed.js';
import { ReplicaRegistry } from './replica-registry.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-fwd-'));
after(() => rmSync(root, { recursive: true, force: true }));
const log = createLogger('test', 'silent');

type Answer = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } } | null;

/** An agent end that answers each request with `answer(request)` (null: never answers). */
function scriptedAgent(answer: (request: { type: string; id: number }) => Answer): Duplex {
  let buffered = '';
  const stream: Duplex = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, done) {
      buffered += chunk.toString('utf8');
      for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
        const request = JSON.parse(buffered.slice(0, end)) as { type: string; id: number };
        buffered = buffered.slice(end + 1);
        const reply = answer(request);
        if (reply) stream.push(`${JSON.stringify({ type: 'reply', id: request.id, ...reply })}\n`);
      }
      done();
    },
  });
  return stream;
}

async function addHost(db: Db, name: string): Promise<string> {
  const hostId = newId();
  await recordHostHello(db, {
    hostId,
    hostname: name,
    agentVersion: 'test',
    qemuVersion: 'test',
    accelerator: 'tcg',
    acceleratorReason: 'test',
    capacity: { cpus: 2, memoryMiB: 2048, vcpusAllocatable: 2, memoryMiBAllocatable: 2048 },
  });
  return hostId;
}

test('on SQLite a starting server forgets the links and replica rows of its previous run', async () => {
  const db = await openDatabase(join(root, 'rampart.db'));
  try {
    const hostId = await addHost(db, 'one');
    const previous = new ReplicaRegistry(db);
    await previous.start();
    await previous.link(hostId);
    // Killed: no stop(). The next run starts.
    const registry = new ReplicaRegistry(db);
    await registry.start();
    const host = await db
      .selectFrom('hosts')
      .select('linkedReplica')
      .where('id', '=', hostId)
      .executeTakeFirst();
    assert.equal(host?.linkedReplica, null);
    assert.deepEqual(await registry.liveReplicas(), [registry.id]);
    assert.deepEqual(registry.linkedElsewhere(), []);
    await registry.link(hostId);
    assert.equal(await registry.unlink(hostId), true);
    assert.equal(await registry.unlink(hostId), false);
    await registry.stop();
    await previous.stop();
  } finally {
    await db.destroy();
  }
});

test(
  'on PostgreSQL a request through one replica reaches the agent linked to the other',
  { skip: POSTGRES_SKIP },
  async () => {
    const target = await createTestPostgres();
    const dbA = await openDatabase(target.url, { poolSize: 3 });
    const dbB = await openDatabase(target.url, { poolSize: 3 });
    const feedA = new ChangeFeed(dbA);
    const feedB = new ChangeFeed(dbB);
    await feedA.start();
    await feedB.start();
    const a = new ReplicaRegistry(dbA, { feed: feedA, agentEndpoint: '10.0.0.1:8481' });
    const b = new ReplicaRegistry(dbB, { feed: feedB, agentEndpoint: '10.0.0.2:8481', staleMs: 1500 });
    const typed: string[] = [];
    const agentOfA = new AgentConnection(
      scriptedAgent((request) => {
        if (request.type === 'console.write') {
          typed.push((request as unknown as { dataBase64: string }).dataBase64);
          return { ok: true, result: { written: 1 } };
        }
        if (request.type === 'net.counters') return { ok: true, result: { ports: [] } };
        if (request.type === 'remove') return { ok: false, error: { code: 'ENOENT', message: 'no such VM' } };
        return null;
      }),
      log,
    );
    const hostId = await addHost(dbA, 'linked-to-a');
    const secret = randomBytes(32);
    const forwardingA = new AgentForwarding({
      db: dbA,
      secret,
      feed: feedA,
      replicaId: a.id,
      local: (id) => (id === hostId ? agentOfA : null),
      log,
    });
    const forwardingB = new AgentForwarding({
      db: dbB,
      secret,
      feed: feedB,
      replicaId: b.id,
      local: () => null,
      log,
    });
    try {
      await a.start();
      await b.start();
      forwardingA.start();
      forwardingB.start();
      assert.deepEqual((await a.liveReplicas()).sort(), [a.id, b.id].sort());
      assert.deepEqual(await b.agentEndpoints(), ['10.0.0.2:8481', '10.0.0.1:8481']);

      await a.link(hostId);
      await b.refresh();
      assert.equal(b.replicaOf(hostId), a.id);
      assert.equal(a.replicaOf(hostId), null);
      assert.deepEqual(b.linkedElsewhere(), [hostId]);

      // Through B, answered by A's agent.
      const channel = forwardingB.channel(hostId, a.id);
      assert.deepEqual(await channel.request('net.counters', {}), { ports: [] });
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => channel.request('net.counters', {})),
      );
      assert.equal(answers.length, 20);
      // The agent's error comes back with its code.
      await assert.rejects(channel.request('remove', { vmId: newId() }), (error: unknown) => {
        assert.ok(error instanceof RampartError);
        assert.equal(error.code, 'RAMPART_INTERNAL');
        assert.match(error.message, /no such VM/);
        assert.equal(error.details?.agentCode, 'ENOENT');
        return true;
      });
      // A host A has no link to: unavailable, said by A.
      await assert.rejects(
        forwardingB.channel(newId(), a.id).request('net.counters', {}),
        (error: unknown) => error instanceof RampartError && error.code === 'RAMPART_HOST_UNAVAILABLE',
      );
      // The agent never answers: a timeout after the request's own timeout, and no row stays.
      const unanswered = channel.request('firewall', { firewall: { secretMarker: 'hunter2' } as never }, 300);
      // Stored sealed: a passphrase in a request never lies in the database in the clear.
      unanswered.catch(() => undefined);
      let stored: string | undefined;
      for (let i = 0; i < 50 && stored === undefined; i++) {
        stored = (await dbB.selectFrom('agentForwards').select('body').executeTakeFirst())?.body;
        if (stored === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.ok(stored?.startsWith('v1.'), stored);
      assert.ok(!stored?.includes('hunter2') && !stored?.includes('firewall'));
      await assert.rejects(
        unanswered,
        (error: unknown) => error instanceof RampartError && error.code === 'RAMPART_TIMEOUT',
      );
      const rows = await dbB.selectFrom('agentForwards').select('id').execute();
      assert.equal(rows.length, 0);

      // The link moves to B: A's late close does not unlink it.
      await b.link(hostId);
      assert.equal(await a.unlink(hostId), false);
      await a.refresh();
      assert.equal(a.replicaOf(hostId), b.id);

      // A stops renewing (killed): once stale, B no longer sees hosts linked there.
      await a.link(hostId);
      await b.refresh();
      assert.equal(b.replicaOf(hostId), a.id);
      await a.stop();
      await b.refresh();
      assert.equal(b.replicaOf(hostId), null);
    } finally {
      forwardingA.stop();
      forwardingB.stop();
      agentOfA.close();
      await b.stop().catch(() => undefined);
      await a.stop().catch(() => undefined);
      await feedA.stop();
      await feedB.stop();
      await dbA.destroy();
      await dbB.destroy();
      await target.drop();
    }
  },
);

test('a replica that stops renewing is stale for the others', { skip: POSTGRES_SKIP }, async () => {
  const target = await createTestPostgres();
  const db = await openDatabase(target.url, { poolSize: 3 });
  const silent = new ReplicaRegistry(db, { renewMs: 60_000 });
  const watcher = new ReplicaRegistry(db, { staleMs: 400, renewMs: 100 });
  try {
    const hostId = await addHost(db, 'silent');
    await silent.start();
    await watcher.start();
    await silent.link(hostId);
    await watcher.refresh();
    assert.equal(watcher.replicaOf(hostId), silent.id);
    await new Promise((resolve) => setTimeout(resolve, 600));
    await watcher.refresh();
    assert.equal(watcher.replicaOf(hostId), null);
    assert.deepEqual(await watcher.liveReplicas(), [watcher.id]);
  } finally {
    await watcher.stop();
    await silent.stop();
    await db.destroy();
    await target.drop();
  }
});

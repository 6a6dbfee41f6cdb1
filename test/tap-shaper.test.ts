/**
 * System test of src/agent/net/tap-shaper.ts on real kernel devices (needs root; fails, never skips,
 * without it). Two network namespaces we create are joined by a veth pair; the end in namespace A
 * plays the VM's tap: its root tbf shapes traffic leaving it (A -> B, "to the guest") and its
 * ingress -> ifb path shapes traffic arriving on it (B -> A, "from the guest"). Throughput is measured
 * with busybox httpd + wget, first unshaped, then shaped. No traffic leaves the two namespaces, and
 * after() deletes them (with the veths and ifb inside) even when a test failed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  applyShaping,
  ifbNameFor,
  readShaping,
  removeShaping,
  type ShapingState,
} from '../src/agent/net/tap-shaper.js';
import { run, runJson } from '../src/common/subprocess.js';

const TO_GUEST_MBPS = 8;
const FROM_GUEST_MBPS = 4;
const BLOB_BYTES = 3 * 1024 * 1024;
const PORT = 8080;
/** The "tap" (in namespace A) and its peer (in namespace B). */
const TAP = 'shp-a';
const PEER = 'shp-b';

const suffix = randomBytes(4).toString('hex');
const nsA = `rampart-shp-${suffix}-a`;
const nsB = `rampart-shp-${suffix}-b`;
const net = `10.${randomInt(16, 250)}.${randomInt(0, 64) * 4}`;
const addrA = `${net}.1`;
const addrB = `${net}.2`;

function inNs(ns: string, command: string, args: string[], timeoutMs = 10_000) {
  return run('ip', ['netns', 'exec', ns, command, ...args], { timeoutMs });
}

/** Downloads the blob over HTTP inside `ns`; returns the goodput in Mbit/s. */
async function measureMbps(ns: string, server: string): Promise<number> {
  const started = performance.now();
  // busybox 1.35's `wget -T` segfaults: bound it with timeout(1) instead.
  await inNs(
    ns,
    'timeout',
    ['20', 'busybox', 'wget', '-q', '-O', '/dev/null', `http://${server}:${PORT}/blob.bin`],
    25_000,
  );
  const seconds = (performance.now() - started) / 1000;
  return (BLOB_BYTES * 8) / seconds / 1_000_000;
}

/** The shaping parameters without the counters (which change with traffic). */
function parameters(state: ShapingState) {
  const strip = (tbf: ShapingState['toGuest']) =>
    tbf && { rateMbps: tbf.rateMbps, burstBytes: tbf.burstBytes, latencyUs: tbf.latencyUs };
  return { ...state, toGuest: strip(state.toGuest), fromGuest: strip(state.fromGuest) };
}

async function linkExists(ns: string, dev: string): Promise<boolean> {
  const links = await runJson<Array<{ ifname: string }>>('ip', [
    'netns',
    'exec',
    ns,
    'ip',
    '-json',
    'link',
    'show',
  ]);
  return links.some((link) => link.ifname === dev);
}

function assertNear(measured: number, limit: number, what: string): void {
  assert.ok(
    measured >= limit * 0.6 && measured <= limit * 1.1,
    `${what}: measured ${measured.toFixed(2)} Mbit/s, limit ${limit} Mbit/s (want 60%..110%)`,
  );
}

void describe('tap shaping on real devices', { timeout: 90_000 }, () => {
  const opts = { netns: nsA };
  const servers: ChildProcess[] = [];
  let dir: string | undefined;
  const unshaped = { toGuest: 0, fromGuest: 0 };

  before(async () => {
    assert.equal(
      process.getuid?.(),
      0,
      'this system test needs root (network namespaces, tc); it is not skipped',
    );
    dir = await mkdtemp(join(tmpdir(), 'rampart-shp-'));
    await writeFile(join(dir, 'blob.bin'), randomBytes(BLOB_BYTES));
    await writeFile(join(dir, 'httpd.conf'), '');
    await writeFile(join(dir, 'ready.txt'), 'ready\n');

    await run('ip', ['netns', 'add', nsA]);
    await run('ip', ['netns', 'add', nsB]);
    // Both ends are created directly inside their namespaces: nothing appears in the host namespace.
    await run('ip', [
      'link',
      'add',
      'name',
      TAP,
      'netns',
      nsA,
      'type',
      'veth',
      'peer',
      'name',
      PEER,
      'netns',
      nsB,
    ]);
    for (const [ns, dev, addr] of [
      [nsA, TAP, addrA],
      [nsB, PEER, addrB],
    ] as const) {
      await inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
      await inNs(ns, 'ip', ['address', 'add', `${addr}/30`, 'dev', dev]);
      await inNs(ns, 'ip', ['link', 'set', dev, 'up']);
      const server = spawn(
        'ip',
        [
          'netns',
          'exec',
          ns,
          'busybox',
          'httpd',
          '-f',
          '-p',
          `${addr}:${PORT}`,
          '-h',
          dir,
          '-c',
          join(dir, 'httpd.conf'),
        ],
        { stdio: 'ignore' },
      );
      servers.push(server);
    }
    // Wait until both servers answer.
    const deadline = Date.now() + 10_000;
    for (const [ns, server] of [
      [nsB, addrA],
      [nsA, addrB],
    ] as const) {
      for (;;) {
        try {
          await inNs(ns, 'timeout', [
            '5',
            'busybox',
            'wget',
            '-q',
            '-O',
            '/dev/null',
            `http://${server}:${PORT}/ready.txt`,
          ]);
          break;
        } catch (error) {
          if (Date.now() > deadline) throw error;
          await delay(100);
        }
      }
    }
  });

  after(async () => {
    await Promise.all(
      servers.map(async (server) => {
        if (server.exitCode !== null || server.signalCode !== null) return;
        const exited = new Promise((resolve) => server.once('exit', resolve));
        server.kill('SIGKILL');
        await exited;
      }),
    );
    await removeShaping(TAP, opts).catch(() => {});
    // Deleting a namespace destroys the veth pair and the ifb inside it.
    for (const ns of [nsA, nsB]) await run('ip', ['netns', 'del', ns]).catch(() => {});
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void test('unshaped throughput (both directions)', async (t) => {
    assert.deepEqual(parameters(await readShaping(TAP, opts)), {
      tap: TAP,
      ifb: ifbNameFor(TAP),
      toGuest: null,
      fromGuest: null,
      partial: false,
    });
    // Best of two: the first transfer also warms caches.
    for (let i = 0; i < 2; i++) {
      unshaped.toGuest = Math.max(unshaped.toGuest, await measureMbps(nsB, addrA));
      unshaped.fromGuest = Math.max(unshaped.fromGuest, await measureMbps(nsA, addrB));
    }
    t.diagnostic(
      `unshaped: to guest ${unshaped.toGuest.toFixed(0)} Mbit/s, from guest ${unshaped.fromGuest.toFixed(0)} Mbit/s`,
    );
    assert.ok(unshaped.toGuest > TO_GUEST_MBPS * 5, `unshaped to guest only ${unshaped.toGuest} Mbit/s`);
    assert.ok(
      unshaped.fromGuest > FROM_GUEST_MBPS * 5,
      `unshaped from guest only ${unshaped.fromGuest} Mbit/s`,
    );
  });

  void test('a failure part-way leaves nothing applied', async () => {
    // Occupy the ifb's name with a device of another kind: the to-guest tbf goes on first, then the
    // from-guest step fails, and the reverter must take the tbf off again.
    const squatter = ifbNameFor(TAP);
    await inNs(nsA, 'ip', ['link', 'add', squatter, 'type', 'veth', 'peer', 'name', 'shp-squat']);
    try {
      await assert.rejects(
        applyShaping(TAP, { toGuestMbps: TO_GUEST_MBPS, fromGuestMbps: FROM_GUEST_MBPS }, opts),
        /is not an ifb device/,
      );
      const state = await readShaping(TAP, opts);
      assert.equal(state.toGuest, null);
      assert.equal(state.fromGuest, null);
      assert.equal(state.partial, false);
      // removeShaping leaves a device that is not an ifb alone.
      await removeShaping(TAP, opts);
      assert.ok(await linkExists(nsA, squatter));
    } finally {
      await inNs(nsA, 'ip', ['link', 'del', squatter]);
    }
  });

  void test('apply is idempotent and readShaping reports the tbf and the ifb', async () => {
    const limits = { toGuestMbps: TO_GUEST_MBPS, fromGuestMbps: FROM_GUEST_MBPS };
    await applyShaping(TAP, limits, opts);
    const first = await readShaping(TAP, opts);
    assert.equal(first.toGuest?.rateMbps, TO_GUEST_MBPS);
    assert.equal(first.fromGuest?.rateMbps, FROM_GUEST_MBPS);
    assert.ok(Math.abs((first.toGuest?.burstBytes ?? 0) - 15_140) <= 2, JSON.stringify(first.toGuest));
    assert.equal(first.partial, false);
    assert.ok(await linkExists(nsA, first.ifb), `${first.ifb} should exist`);

    await applyShaping(TAP, limits, opts);
    const second = await readShaping(TAP, opts);
    assert.deepEqual(parameters(second), parameters(first));
    // Exactly one ingress qdisc and one redirect filter, whatever the number of calls.
    const filters = await runJson<Array<{ pref: number; options?: { actions?: unknown[] } }>>('ip', [
      'netns',
      'exec',
      nsA,
      'tc',
      '-json',
      'filter',
      'show',
      'dev',
      TAP,
      'parent',
      'ffff:',
    ]);
    assert.equal(filters.filter((f) => f.options?.actions).length, 1, JSON.stringify(filters));
  });

  void test('shaped throughput is near the limits', async (t) => {
    const toGuest = await measureMbps(nsB, addrA);
    const fromGuest = await measureMbps(nsA, addrB);
    t.diagnostic(
      `shaped: to guest ${toGuest.toFixed(2)} Mbit/s (limit ${TO_GUEST_MBPS}), ` +
        `from guest ${fromGuest.toFixed(2)} Mbit/s (limit ${FROM_GUEST_MBPS})`,
    );
    assertNear(toGuest, TO_GUEST_MBPS, 'to guest');
    assertNear(fromGuest, FROM_GUEST_MBPS, 'from guest');
    assert.ok(toGuest < unshaped.toGuest / 5 && fromGuest < unshaped.fromGuest / 5);

    // The counters saw the transfers and the limit being hit.
    const state = await readShaping(TAP, opts);
    for (const [direction, tbf] of [
      ['to guest', state.toGuest],
      ['from guest', state.fromGuest],
    ] as const) {
      assert.ok(tbf, direction);
      assert.ok(tbf.counters.bytes >= BLOB_BYTES, `${direction}: ${JSON.stringify(tbf.counters)}`);
      assert.ok(tbf.counters.overlimits > 0, `${direction}: ${JSON.stringify(tbf.counters)}`);
    }
  });

  void test('an absent direction is unshaped; limits change in place', async () => {
    await applyShaping(TAP, { toGuestMbps: 2 }, opts);
    let state = await readShaping(TAP, opts);
    assert.equal(state.toGuest?.rateMbps, 2);
    assert.equal(state.fromGuest, null);
    assert.equal(state.partial, false);
    assert.equal(await linkExists(nsA, state.ifb), false);

    await applyShaping(TAP, { fromGuestMbps: 1.5 }, opts);
    state = await readShaping(TAP, opts);
    assert.equal(state.toGuest, null);
    assert.equal(state.fromGuest?.rateMbps, 1.5);
    assert.equal(state.partial, false);
  });

  void test('removeShaping removes the qdiscs and the ifb, and is idempotent', async () => {
    await applyShaping(TAP, { toGuestMbps: TO_GUEST_MBPS, fromGuestMbps: FROM_GUEST_MBPS }, opts);
    const ifb = ifbNameFor(TAP);
    await removeShaping(TAP, opts);
    assert.deepEqual(parameters(await readShaping(TAP, opts)), {
      tap: TAP,
      ifb,
      toGuest: null,
      fromGuest: null,
      partial: false,
    });
    const qdiscs = await runJson<Array<{ kind: string }>>('ip', [
      'netns',
      'exec',
      nsA,
      'tc',
      '-json',
      'qdisc',
      'show',
      'dev',
      TAP,
    ]);
    assert.deepEqual(
      qdiscs.filter((q) => q.kind === 'tbf' || q.kind === 'ingress'),
      [],
    );
    assert.equal(await linkExists(nsA, ifb), false);
    await removeShaping(TAP, opts);

    // Traffic flows unshaped again.
    const rate = await measureMbps(nsB, addrA);
    assert.ok(rate > TO_GUEST_MBPS * 5, `after removal: ${rate} Mbit/s`);
  });

  void test('a partial setup is reported and repaired', async () => {
    await applyShaping(TAP, { fromGuestMbps: FROM_GUEST_MBPS }, opts);
    // Someone deletes the ifb: the tap's ingress redirect is left pointing nowhere.
    await inNs(nsA, 'ip', ['link', 'del', ifbNameFor(TAP)]);
    const broken = await readShaping(TAP, opts);
    assert.equal(broken.fromGuest, null);
    assert.equal(broken.partial, true);
    await applyShaping(TAP, { fromGuestMbps: FROM_GUEST_MBPS }, opts);
    const repaired = await readShaping(TAP, opts);
    assert.equal(repaired.fromGuest?.rateMbps, FROM_GUEST_MBPS);
    assert.equal(repaired.partial, false);
    // The redirect goes to the new ifb (a mirred whose device vanished would drop everything).
    await inNs(nsA, 'timeout', [
      '5',
      'busybox',
      'wget',
      '-q',
      '-O',
      '/dev/null',
      `http://${addrB}:${PORT}/ready.txt`,
    ]);

    // Removal also works once the tap itself is gone (the ifb would otherwise stay behind).
    await inNs(nsA, 'ip', ['link', 'del', TAP]);
    assert.ok(await linkExists(nsA, repaired.ifb));
    await removeShaping(TAP, opts);
    assert.equal(await linkExists(nsA, repaired.ifb), false);
    await assert.rejects(readShaping(TAP, opts));
  });
});

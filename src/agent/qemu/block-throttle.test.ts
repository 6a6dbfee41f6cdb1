/**
 * Tests of the throttle-group arguments and QMP commands: unit tests of the exact strings, then a real
 * QEMU (TCG, -machine none, the full -sandbox deny set) with a raw scratch disk behind the throttle
 * layer, whose limits are read and changed over QMP and which really throttles I/O. The QEMU test
 * fails, never skips, when qemu-system-x86_64 is missing.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  blockThrottleArgs,
  getThrottleLimitsCommand,
  MAX_BPS,
  MAX_IOPS,
  MAX_THROTTLE_ID_LENGTH,
  parseThrottleLimits,
  setThrottleLimitsCommand,
  throttleGroupArgs,
  throttleNodeArgs,
  throttleNodeName,
  validateThrottleLimits,
  type QmpCommand,
} from './block-throttle.js';
import { SANDBOX } from './command-line.js';
import { connectWhenReady } from './qmp-test-connect.js';
import { QmpClient } from './qmp-client.js';

void describe('block throttle arguments', () => {
  void test('throttle-group object carries only the given limits', () => {
    assert.deepEqual(
      throttleGroupArgs({ id: 'disk0', iopsTotal: 500, bpsRead: 10_485_760, bpsWrite: 5_242_880 }),
      ['-object', 'throttle-group,id=tg-disk0,x-iops-total=500,x-bps-read=10485760,x-bps-write=5242880'],
    );
    assert.deepEqual(throttleGroupArgs({ id: 'd1', iopsRead: 100, iopsWrite: 50, bpsTotal: 4096 }), [
      '-object',
      'throttle-group,id=tg-d1,x-iops-read=100,x-iops-write=50,x-bps-total=4096',
    ]);
    // No limits yet is allowed: the layer is in place and limits can be set live.
    assert.deepEqual(throttleGroupArgs({ id: 'd2' }), ['-object', 'throttle-group,id=tg-d2']);
  });

  void test('throttle filter node goes over the format node', () => {
    assert.deepEqual(throttleNodeArgs('disk0', 'fmt-disk0'), [
      '-blockdev',
      'driver=throttle,node-name=throttle-disk0,throttle-group=tg-disk0,file=fmt-disk0',
    ]);
    assert.deepEqual(blockThrottleArgs({ id: 'disk0', iopsTotal: 10 }, 'fmt0'), [
      '-object',
      'throttle-group,id=tg-disk0,x-iops-total=10',
      '-blockdev',
      'driver=throttle,node-name=throttle-disk0,throttle-group=tg-disk0,file=fmt0',
    ]);
  });

  void test('live change sends every field, 0 for unlimited', () => {
    assert.deepEqual(setThrottleLimitsCommand('disk0', { iopsTotal: 200, bpsWrite: 1_048_576 }), {
      execute: 'qom-set',
      arguments: {
        path: '/objects/tg-disk0',
        property: 'limits',
        value: {
          'iops-total': 200,
          'iops-read': 0,
          'iops-write': 0,
          'bps-total': 0,
          'bps-read': 0,
          'bps-write': 1_048_576,
        },
      },
    });
    assert.deepEqual(getThrottleLimitsCommand('disk0'), {
      execute: 'qom-get',
      arguments: { path: '/objects/tg-disk0', property: 'limits' },
    });
  });

  void test('parses QEMU ThrottleLimits, 0 meaning unlimited', () => {
    assert.deepEqual(
      parseThrottleLimits({
        'iops-total': 100,
        'iops-total-max': 0,
        'iops-read': 0,
        'iops-write': 0,
        'bps-total': 0,
        'bps-read': 0,
        'bps-write': 1048576,
        'iops-size': 0,
      }),
      { iopsTotal: 100, bpsWrite: 1048576 },
    );
    assert.throws(() => parseThrottleLimits(null));
  });

  void test('rejects bad numbers', () => {
    for (const bad of [
      0,
      -1,
      1.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      MAX_IOPS + 1,
      '100' as unknown as number,
    ]) {
      assert.throws(() => throttleGroupArgs({ id: 'd', iopsTotal: bad }), /iopsTotal must be an integer/);
    }
    assert.throws(() => validateThrottleLimits({ bpsRead: 4095 }), /bpsRead must be an integer between 4096/);
    assert.throws(() => validateThrottleLimits({ bpsWrite: MAX_BPS + 1 }), /bpsWrite/);
    assert.deepEqual(validateThrottleLimits({ iopsWrite: MAX_IOPS, bpsRead: MAX_BPS }), {
      iopsWrite: MAX_IOPS,
      bpsRead: MAX_BPS,
    });
    assert.throws(() => setThrottleLimitsCommand('d', { iopsWrite: 0 }), /iopsWrite/);
  });

  void test('rejects total together with read/write (QEMU refuses it)', () => {
    assert.throws(
      () => validateThrottleLimits({ iopsTotal: 10, iopsRead: 5 }),
      /iopsTotal cannot be combined/,
    );
    assert.throws(
      () => validateThrottleLimits({ bpsTotal: 8192, bpsWrite: 8192 }),
      /bpsTotal cannot be combined/,
    );
    assert.deepEqual(validateThrottleLimits({ iopsTotal: 10, bpsRead: 8192, bpsWrite: 8192 }), {
      iopsTotal: 10,
      bpsRead: 8192,
      bpsWrite: 8192,
    });
  });

  void test('ids and node names cannot inject QEMU options', () => {
    for (const bad of ['', 'a,b', 'a=b', 'a b', 'a.b', 'a/b', 'x'.repeat(MAX_THROTTLE_ID_LENGTH + 1)]) {
      assert.throws(() => throttleGroupArgs({ id: bad }), /throttle id/, bad);
    }
    assert.equal(throttleNodeName('x'.repeat(MAX_THROTTLE_ID_LENGTH)).length, 31);
    for (const bad of ['', '0fmt', 'fmt,driver=file', 'f'.repeat(32), '-x']) {
      assert.throws(() => throttleNodeArgs('d', bad), /format node name/, bad);
    }
  });
});

function findOnPath(command: string): string | undefined {
  for (const directory of (process.env.PATH ?? '').split(delimiter)) {
    if (directory && existsSync(join(directory, command))) return join(directory, command);
  }
  return undefined;
}

function execute<T>(client: QmpClient, command: QmpCommand): Promise<T> {
  return client.execute<T>(command.execute, command.arguments);
}

/** Runs `qemu-io <node> "<command>"` in QEMU through HMP; fails on an HMP-level error message. */
async function qemuIo(client: QmpClient, node: string, command: string): Promise<void> {
  const output = await client.execute<string>('human-monitor-command', {
    'command-line': `qemu-io ${node} "${command}"`,
  });
  assert.doesNotMatch(output, /error/i, `qemu-io ${command}: ${output}`);
}

/** Times `count` sequential 4 KiB writes through the node. */
async function timeWrites(client: QmpClient, node: string, count: number): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < count; i++) await qemuIo(client, node, `write ${i * 4096} 4k`);
  return (performance.now() - started) / 1000;
}

void describe('block throttle in real QEMU', () => {
  void test(
    'limits are applied, read back and changed live over QMP, under -sandbox',
    { timeout: 60_000 },
    async (t) => {
      const qemu = findOnPath('qemu-system-x86_64');
      assert.ok(
        qemu,
        'qemu-system-x86_64 is not on PATH. This test requires QEMU (Debian: apt-get install qemu-system-x86); it is not skipped.',
      );
      const dir = await mkdtemp(join(tmpdir(), 'rampart-throttle-'));
      t.after(() => rm(dir, { recursive: true, force: true }));
      const disk = join(dir, 'scratch.raw');
      await writeFile(disk, Buffer.alloc(1024 * 1024));
      const socketPath = join(dir, 'qmp.sock');

      const id = 'disk0';
      const child = spawn(
        qemu,
        [
          '-machine',
          'none',
          '-accel',
          'tcg',
          '-nodefaults',
          '-no-user-config',
          '-display',
          'none',
          '-S',
          '-blockdev',
          `driver=file,node-name=file-${id},filename=${disk}`,
          '-blockdev',
          `driver=raw,node-name=fmt-${id},file=file-${id}`,
          ...blockThrottleArgs({ id, iopsTotal: 5, bpsWrite: 8_388_608 }, `fmt-${id}`),
          '-chardev',
          `socket,id=qmp0,path=${socketPath},server=on,wait=off`,
          '-mon',
          'chardev=qmp0,mode=control',
          '-sandbox',
          SANDBOX,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      let spawnError: Error | undefined;
      const exited = new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.once('error', (error) => {
          spawnError = error;
          resolve();
        });
      });

      let client: QmpClient | undefined;
      try {
        client = await connectWhenReady({
          child,
          qemu,
          socketPath,
          stderr: () => stderr,
          spawnError: () => spawnError,
        });

        // The sandbox is really on.
        assert.match(await readFile(`/proc/${child.pid}/status`, 'utf8'), /^Seccomp:\s+2$/m);

        // The filter node sits over the format node.
        const nodes =
          await client.execute<Array<{ 'node-name': string; drv: string; file: string }>>(
            'query-named-block-nodes',
          );
        const throttleNode = nodes.find((node) => node['node-name'] === throttleNodeName(id));
        assert.ok(throttleNode, JSON.stringify(nodes.map((node) => node['node-name'])));
        assert.equal(throttleNode.drv, 'throttle');
        assert.match(throttleNode.file, /"throttle-group": "tg-disk0"/);

        // Limits as configured on the command line.
        const initial = await execute<Record<string, number>>(client, getThrottleLimitsCommand(id));
        assert.deepEqual(parseThrottleLimits(initial), { iopsTotal: 5, bpsWrite: 8_388_608 });

        // 5 IOPS: after the first write, each waits ~200 ms (10 writes ~1.8 s).
        const throttled = await timeWrites(client, throttleNodeName(id), 10);
        assert.ok(throttled > 1.2, `10 writes at 5 IOPS took ${throttled.toFixed(2)} s`);

        // Change live: iopsTotal gone (must be sent as 0), bpsWrite changed, bpsRead added.
        await execute(client, setThrottleLimitsCommand(id, { bpsRead: 1_048_576, bpsWrite: 2_097_152 }));
        const changed = await execute<Record<string, number>>(client, getThrottleLimitsCommand(id));
        assert.deepEqual(parseThrottleLimits(changed), { bpsRead: 1_048_576, bpsWrite: 2_097_152 });

        const unthrottled = await timeWrites(client, throttleNodeName(id), 10);
        assert.ok(unthrottled < 0.5, `10 writes without an IOPS limit took ${unthrottled.toFixed(2)} s`);
        t.diagnostic(
          `10 x 4 KiB writes: ${throttled.toFixed(2)} s at 5 IOPS, ${unthrottled.toFixed(3)} s without`,
        );

        // QEMU's own check of the combination agrees with ours.
        await assert.rejects(
          client.execute('qom-set', {
            path: '/objects/tg-disk0',
            property: 'limits',
            value: { 'iops-total': 5, 'iops-read': 5 },
          }),
          /cannot be used at the same time/,
        );

        // Remove all limits.
        await execute(client, setThrottleLimitsCommand(id, {}));
        assert.deepEqual(parseThrottleLimits(await execute(client, getThrottleLimitsCommand(id))), {});
      } finally {
        await client?.close();
        if (child.exitCode === null && child.signalCode === null && !spawnError) {
          child.kill('SIGKILL');
          await exited;
        }
      }
    },
  );
});

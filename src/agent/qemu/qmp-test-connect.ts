/**
 * For tests that start a real QEMU: connect to its QMP socket as soon as it is ready, failing fast (with
 * QEMU's stderr) when QEMU could not be started or exited early.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { QmpClient } from './qmp-client.js';
import { QmpDisconnectedError } from './qmp-errors.js';

export interface QemuUnderTest {
  child: ChildProcess;
  qemu: string;
  socketPath: string;
  stderr: () => string;
  spawnError: () => Error | undefined;
}

export async function connectWhenReady(target: QemuUnderTest, timeoutMs = 20_000): Promise<QmpClient> {
  const { child, qemu, socketPath } = target;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const spawnError = target.spawnError();
    if (spawnError) throw new Error(`could not start ${qemu}: ${spawnError.message}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`QEMU exited early (${child.exitCode ?? child.signalCode}): ${target.stderr()}`);
    }
    if (Date.now() > deadline) throw new Error(`QMP socket never became ready: ${target.stderr()}`);
    if (existsSync(socketPath)) {
      try {
        return await QmpClient.connect(socketPath, { connectTimeoutMs: 5_000, commandTimeoutMs: 10_000 });
      } catch (error) {
        if (!(error instanceof QmpDisconnectedError)) throw error;
      }
    }
    await delay(50);
  }
}

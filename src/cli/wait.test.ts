import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Vm } from '../api/vm.js';
import type { ApiClient } from './api-client.js';
import { ApiError, WaitError } from './errors.js';
import { vmFixture } from './testing.js';
import { describeVm, waitForVm } from './wait.js';

/** A client whose getVm walks through a script of states (the last one repeats). */
function scriptedClient(script: (Partial<Vm> | 'gone')[]): { client: ApiClient; calls: () => number } {
  let calls = 0;
  const client = {
    getVm: async () => {
      const step = script[Math.min(calls, script.length - 1)];
      calls++;
      if (step === 'gone') throw new ApiError(404, 'RAMPART_NOT_FOUND', 'vm "web1" not found');
      return vmFixture(step);
    },
  } as unknown as ApiClient;
  return { client, calls: () => calls };
}

const fast = { intervalMs: 1 };

void describe('waitForVm', () => {
  void it('prints a line per state change and returns the running VM', async () => {
    const lines: string[] = [];
    const { client } = scriptedClient([{ state: 'starting' }, { state: 'starting' }, { state: 'running' }]);
    const vm = await waitForVm(client, 'web1', 'running', {
      ...fast,
      timeoutMs: 5000,
      initial: vmFixture({ state: 'pending' }),
      progress: (line) => lines.push(line),
    });
    assert.equal(vm?.state, 'running');
    assert.deepEqual(lines, [
      'web1: pending',
      'web1: starting',
      'web1: running (booted in 3.1 s, 10.0.2.15/24)',
    ]);
  });

  void it('fails on state error with the VM error', async () => {
    const { client } = scriptedClient([
      { state: 'starting' },
      { state: 'error', error: 'qemu exited with code 1' },
    ]);
    await assert.rejects(
      waitForVm(client, 'web1', 'running', { ...fast, timeoutMs: 5000, progress: () => undefined }),
      (err: unknown) =>
        err instanceof WaitError && err.exitCode === 6 && /qemu exited with code 1/.test(err.message),
    );
  });

  void it('fails when a starting VM ends up stopped', async () => {
    const { client } = scriptedClient([{ state: 'starting' }, { state: 'stopped' }]);
    await assert.rejects(
      waitForVm(client, 'web1', 'running', { ...fast, timeoutMs: 5000, progress: () => undefined }),
      /stopped while starting/,
    );
  });

  void it('times out', async () => {
    let t = 0;
    const { client } = scriptedClient([{ state: 'stopping' }]);
    await assert.rejects(
      waitForVm(client, 'web1', 'stopped', {
        timeoutMs: 1000,
        progress: () => undefined,
        now: () => t,
        sleep: async (ms) => {
          t += ms;
        },
      }),
      (err: unknown) =>
        err instanceof WaitError && /timed out after 1 s .* \(state: stopping\)/.test(err.message),
    );
  });

  void it('waits for a deleted VM to be gone', async () => {
    const lines: string[] = [];
    const { client } = scriptedClient([{ state: 'deleting' }, 'gone']);
    const result = await waitForVm(client, 'web1', 'deleted', {
      ...fast,
      timeoutMs: 5000,
      progress: (l) => lines.push(l),
    });
    assert.equal(result, null);
    assert.deepEqual(lines, ['web1: deleting', 'web1: deleted']);
  });

  void it('fails when the VM disappears while waiting for another state', async () => {
    const { client } = scriptedClient(['gone']);
    await assert.rejects(
      waitForVm(client, 'web1', 'running', { ...fast, timeoutMs: 5000, progress: () => undefined }),
      WaitError,
    );
  });

  void it('returns at once when the initial state is the target', async () => {
    const { client, calls } = scriptedClient([{ state: 'running' }]);
    const vm = await waitForVm(client, 'web1', 'stopped', {
      ...fast,
      timeoutMs: 5000,
      initial: vmFixture({ state: 'stopped' }),
      progress: () => undefined,
    });
    assert.equal(vm?.state, 'stopped');
    assert.equal(calls(), 0);
  });

  void it('describes VMs', () => {
    assert.equal(describeVm(vmFixture({ bootMs: null, guestIps: [] })), 'web1: running');
    assert.equal(describeVm(vmFixture({ state: 'error', error: 'boom' })), 'web1: error (boom)');
  });
});

/**
 * `--wait`: poll a VM until it reaches the target state, printing a progress line on stderr each time
 * its state changes. Fails (exit 6) on state `error`, on a VM that stops while starting, on a VM that
 * vanishes, and on timeout.
 */
import type { Vm } from '../api/vm.js';
import type { ApiClient } from './api-client.js';
import { ApiError, WaitError } from './errors.js';
import { formatBootTime } from './views.js';

export type WaitTarget = 'running' | 'stopped' | 'deleted';

export const DEFAULT_WAIT_TIMEOUT_SECONDS = 300;
export const WAIT_INTERVAL_MS = 250;

export interface WaitOptions {
  timeoutMs: number;
  /** Receives each progress line (`web1: starting`). */
  progress: (line: string) => void;
  /** The VM as the request that started the operation returned it; printed as the first state. */
  initial?: Vm;
  intervalMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The progress line for a VM: `web1: running (booted in 3.1 s, 10.0.2.15/24)`. */
export function describeVm(vm: Vm): string {
  const extra: string[] = [];
  if (vm.state === 'running') {
    if (typeof vm.bootMs === 'number') extra.push(`booted in ${formatBootTime(vm.bootMs)}`);
    if (vm.guestIps && vm.guestIps.length > 0) extra.push(vm.guestIps.join(', '));
  } else if (vm.state === 'error' && vm.error) {
    extra.push(vm.error);
  }
  return extra.length > 0 ? `${vm.name}: ${vm.state} (${extra.join(', ')})` : `${vm.name}: ${vm.state}`;
}

function isNotFound(err: unknown): boolean {
  return err instanceof ApiError && (err.code === 'RAMPART_NOT_FOUND' || err.status === 404);
}

/**
 * Waits for `ref` to reach `target`. Returns the VM in its target state, or null once a deleted VM is
 * gone (GET answers 404). Other API and transport errors propagate with their own exit codes.
 */
export async function waitForVm(
  client: ApiClient,
  ref: string,
  target: WaitTarget,
  options: WaitOptions,
): Promise<Vm | null> {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? defaultSleep;
  const intervalMs = options.intervalMs ?? WAIT_INTERVAL_MS;
  const deadline = now() + options.timeoutMs;
  let name = options.initial?.name ?? ref;
  let lastState: string | undefined;
  let sawStarting = false;
  const goal = target === 'deleted' ? 'be deleted' : `be ${target}`;

  const observe = (vm: Vm): Vm | null | undefined => {
    name = vm.name;
    if (vm.state !== lastState) {
      options.progress(describeVm(vm));
      lastState = vm.state;
    }
    if (vm.state === target) return vm;
    if (vm.state === 'error') {
      throw new WaitError(`vm ${name} failed: ${vm.error ?? 'the server gave no reason'}`);
    }
    if (vm.state === 'deleting' && target !== 'deleted') {
      throw new WaitError(`vm ${name} is being deleted; it will not ${goal}`);
    }
    if (target === 'running') {
      if (vm.state === 'starting' || vm.state === 'pending') sawStarting = true;
      else if (vm.state === 'stopped' && sawStarting) {
        throw new WaitError(`vm ${name} stopped while starting${vm.error ? `: ${vm.error}` : ''}`);
      }
    }
    return undefined;
  };

  if (options.initial) {
    const done = observe(options.initial);
    if (done !== undefined) return done;
  }
  for (;;) {
    let vm: Vm;
    try {
      vm = await client.getVm(ref);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      if (target === 'deleted') {
        options.progress(`${name}: deleted`);
        return null;
      }
      throw new WaitError(`vm ${name} disappeared while waiting for it to ${goal}`);
    }
    const done = observe(vm);
    if (done !== undefined) return done;
    const left = deadline - now();
    if (left <= 0) {
      const seconds = Math.round(options.timeoutMs / 100) / 10;
      throw new WaitError(
        `timed out after ${seconds} s waiting for vm ${name} to ${goal} (state: ${vm.state})`,
      );
    }
    await sleep(Math.min(intervalMs, left));
  }
}

/**
 * Chooses the accelerator by a real probe boot: /dev/kvm existing (even KVM_CREATE_VM working) is not
 * KVM being usable — on nested hosts guests hang after decompression. The tiny guest is booted under
 * KVM with `rampart.probe=1`; it prints RAMPART-PROBE-OK from /init and powers off. No answer in time
 * means TCG. The verdict is cached per QEMU version, host kernel and probe image.
 */
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { release } from 'node:os';
import type { Accelerator } from '../../api/host.js';
import { CommandError, run } from '../../common/subprocess.js';
import type { AccelMode } from '../config.js';
import { unprivilegedPrefix } from './command-line.js';

export interface AcceleratorVerdict {
  accelerator: Accelerator;
  reason: string;
}

export interface ProbeInputs {
  mode: AccelMode;
  qemuBinary: string;
  qemuVersion: string;
  kernel: string | null;
  initrd: string | null;
  cacheFile: string;
  kvmGroup: number | null;
  timeoutMs?: number;
}

export const PROBE_MARKER = 'RAMPART-PROBE-OK';

function kvmDeviceUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function cacheKey(inputs: ProbeInputs): string {
  const kernel =
    inputs.kernel && existsSync(inputs.kernel)
      ? createHash('sha256').update(readFileSync(inputs.kernel)).digest('hex')
      : 'none';
  return createHash('sha256').update([inputs.qemuVersion, release(), kernel].join('\n')).digest('hex');
}

export async function chooseAccelerator(inputs: ProbeInputs): Promise<AcceleratorVerdict> {
  if (inputs.mode === 'tcg') return { accelerator: 'tcg', reason: 'configured (accel = tcg)' };
  if (inputs.mode === 'kvm') return { accelerator: 'kvm', reason: 'configured (accel = kvm)' };
  if (!existsSync('/dev/kvm')) return { accelerator: 'tcg', reason: '/dev/kvm does not exist' };
  if (!kvmDeviceUsable()) return { accelerator: 'tcg', reason: '/dev/kvm is not accessible' };
  if (!inputs.kernel || !inputs.initrd)
    return { accelerator: 'tcg', reason: 'no probe image to test KVM with' };
  const key = cacheKey(inputs);
  try {
    const cached = JSON.parse(readFileSync(inputs.cacheFile, 'utf8')) as {
      key: string;
      verdict: AcceleratorVerdict;
    };
    if (cached.key === key) return cached.verdict;
  } catch {
    // no cache yet
  }
  const verdict = await probeKvm(inputs);
  mkdirSync(dirname(inputs.cacheFile), { recursive: true });
  writeFileSync(inputs.cacheFile, JSON.stringify({ key, verdict, at: new Date().toISOString() }), {
    mode: 0o600,
  });
  return verdict;
}

async function probeKvm(inputs: ProbeInputs): Promise<AcceleratorVerdict> {
  const timeoutMs = inputs.timeoutMs ?? 6000;
  const qemuArgs = [
    '-machine',
    'pc',
    '-accel',
    'kvm',
    '-cpu',
    'host',
    '-m',
    '128',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-kernel',
    inputs.kernel!,
    '-initrd',
    inputs.initrd!,
    '-append',
    'console=ttyS0 panic=-1 quiet rampart.probe=1',
    '-serial',
    'stdio',
    '-no-reboot',
    '-sandbox',
    'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
  ];
  const prefix = unprivilegedPrefix(65534, 65534, inputs.kvmGroup === null ? [] : [inputs.kvmGroup]);
  const started = Date.now();
  try {
    const { stdout } = await run('setpriv', [...prefix, inputs.qemuBinary, ...qemuArgs], { timeoutMs });
    if (stdout.includes(PROBE_MARKER))
      return { accelerator: 'kvm', reason: `probe boot under KVM succeeded in ${Date.now() - started} ms` };
    return { accelerator: 'tcg', reason: 'probe boot under KVM ended without reaching the guest init' };
  } catch (error) {
    const stderr = error instanceof CommandError ? error.stderr.trim().split('\n').slice(-2).join(' ') : '';
    const message = stderr || (error as Error).message;
    if (/SIGKILL|timed out/i.test(message) || Date.now() - started >= timeoutMs - 50) {
      return {
        accelerator: 'tcg',
        reason: `probe boot under KVM did not finish within ${timeoutMs} ms (nested virtualization broken?)`,
      };
    }
    return { accelerator: 'tcg', reason: `probe boot under KVM failed: ${message.slice(0, 200)}` };
  }
}

/**
 * The one place Rampart runs host commands. Arguments are always arrays (never a shell string), every
 * call has a timeout, and the environment is explicit. Long-running children (QEMU, the agent) are
 * started with `spawnDetached`, which puts them in their own session so they outlive their parent.
 */
import { execFile, spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { closeSync } from 'node:fs';
import { openNoFollow } from './no-follow.js';

export interface RunOptions {
  timeoutMs?: number;
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  maxBufferBytes?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** A host command failed; carries the command name and exit status but never the environment. */
export class CommandError extends Error {
  override name = 'CommandError';
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly stderr: string,
  ) {
    super(
      `${command} ${args.join(' ')} failed (${signal ?? `exit ${exitCode}`}): ${stderr.trim().slice(0, 500)}`,
    );
  }
}

const DEFAULT_TIMEOUT_MS = 30_000;

export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      [...args],
      {
        timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        killSignal: 'SIGKILL',
        env: options.env ?? { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
        cwd: options.cwd,
        maxBuffer: options.maxBufferBytes ?? 16 * 1024 * 1024,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        if (error) {
          const code = typeof error.code === 'number' ? error.code : null;
          reject(new CommandError(command, args, code, error.signal ?? null, stderr || error.message));
          return;
        }
        resolve({ stdout, stderr });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** How a command ended, whatever its exit status: for tools whose exit codes carry meaning (clamscan). */
export interface SettledResult {
  stdout: string;
  stderr: string;
  /** null when it was killed by a signal or could not be started. */
  exitCode: number | null;
  signal: string | null;
  /** Why it did not run to completion: not found, timed out (killed), output too large. */
  failure: string | null;
}

/** Like run(), but never rejects: the caller decides what each exit status means. */
export function runSettled(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<SettledResult> {
  return new Promise((resolve) => {
    const child = execFile(
      command,
      [...args],
      {
        timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        killSignal: 'SIGKILL',
        env: options.env ?? { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
        cwd: options.cwd,
        maxBuffer: options.maxBufferBytes ?? 16 * 1024 * 1024,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        if (!error) {
          resolve({ stdout, stderr, exitCode: 0, signal: null, failure: null });
          return;
        }
        const exitCode = typeof error.code === 'number' ? error.code : null;
        let failure: string | null = null;
        if (typeof error.code === 'string') failure = `${error.code}: ${error.message}`;
        else if (error.killed && error.signal) failure = `killed by ${error.signal} (timeout?)`;
        else if (/maxBuffer/i.test(error.message)) failure = error.message;
        resolve({ stdout, stderr, exitCode, signal: error.signal ?? null, failure });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/**
 * Starts a command with piped stdin/stdout/stderr for streaming (compression filters). The caller owns
 * the child: it must watch 'exit' and 'error' and kill it when abandoned.
 */
export function spawnPiped(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): ChildProcessWithoutNullStreams {
  return spawn(command, [...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: options.env ?? { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
    cwd: options.cwd,
  });
}

/** Runs a command whose stdout is JSON (`ip -json`, `nft --json`, `qemu-img info --output=json`). */
export async function runJson<T>(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<T> {
  const { stdout } = await run(command, args, options);
  return JSON.parse(stdout) as T;
}

export interface DetachedOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** stdout and stderr go here (appended); /dev/null when absent. */
  logFile?: string;
}

/**
 * Starts a long-running process in its own session (setsid) with stdin closed and output sent to a
 * log file. Only the three standard descriptors are passed; Node opens everything else close-on-exec.
 */
export function spawnDetached(
  command: string,
  args: readonly string[],
  options: DetachedOptions = {},
): ChildProcess {
  const out = options.logFile ? openNoFollow(options.logFile, 'append') : 'ignore';
  try {
    const child = spawn(command, [...args], {
      detached: true,
      stdio: ['ignore', out, out],
      env: options.env ?? {},
      cwd: options.cwd,
    });
    child.unref();
    return child;
  } finally {
    if (typeof out === 'number') closeSync(out);
  }
}

function exited(child: ChildProcess, name: string): Promise<void> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    if (stderr.length < 4096) stderr += chunk.toString();
  });
  return new Promise((resolve, reject) => {
    child.once('error', (error) => reject(new Error(`${name}: ${error.message}`)));
    child.once('close', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`${name} failed (${signal ?? `exit ${code}`}): ${stderr.trim().slice(0, 500)}`)),
    );
  });
}

/**
 * `producer | consumer` without a shell: argument arrays and the minimal environment, the producer's
 * stdout handed to the consumer as its stdin (a kernel pipe: no copy through this process). Rejects
 * when either fails; both are killed then.
 */
export async function runPipeline(producer: readonly string[], consumer: readonly string[]): Promise<void> {
  const [pCmd, ...pArgs] = producer;
  const [cCmd, ...cArgs] = consumer;
  if (!pCmd || !cCmd) throw new Error('runPipeline needs two commands');
  const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  const first = spawn(pCmd, pArgs, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const second = spawn(cCmd, cArgs, { stdio: [first.stdout, 'ignore', 'pipe'], env });
  first.stdout.destroy(); // the consumer holds its own copy of the pipe; this process must not read it
  try {
    await Promise.all([exited(first, pCmd), exited(second, cCmd)]);
  } catch (error) {
    first.kill('SIGKILL');
    second.kill('SIGKILL');
    throw error;
  }
}

/** Runs the built `rampart` CLI against a test server, as a separate process, and collects its output. */
import { spawn } from 'node:child_process';
import { CLI_MAIN } from './repo.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliTarget {
  url: string;
  token: string;
}

/** `rampart <args>` with RAMPART_URL/RAMPART_TOKEN of `target` (a harness) and nothing else inherited. */
export function runCli(target: CliTarget, args: readonly string[], token = target.token): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], {
      env: { PATH: process.env.PATH, RAMPART_URL: target.url, RAMPART_TOKEN: token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * What a command runs with: the process streams and environment (injectable for tests), the resolved
 * global options (`--url`, `--token`, `--output`) and the API client built from them.
 */
import type { Command } from 'commander';
import { ApiClient, DEFAULT_URL, isLoopbackHost } from './api-client.js';
import { Output, type OutStream, type OutputFormat } from './output.js';

/** The readable side the console uses: process.stdin or a test stand-in. */
export interface InStream extends NodeJS.EventEmitter {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
  resume(): unknown;
  pause(): unknown;
}

export interface CliIo {
  stdout: OutStream;
  stderr: OutStream;
  stdin: InStream;
  env: Readonly<Record<string, string | undefined>>;
  /** Wall clock in ms (tests pin it). */
  now?: () => number;
  /** Poll interval for `--wait`, ms (tests shorten it). */
  waitIntervalMs?: number;
}

export interface GlobalOptions {
  output: OutputFormat;
  url?: string;
  token?: string;
}

export interface CliContext {
  io: CliIo;
  client: ApiClient;
  out: Output;
  now: () => number;
}

export interface CommandDeps {
  io: CliIo;
  /** Builds the context of a command from its (and its parents') options. */
  context(cmd: Command): CliContext;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** Flag first, then environment, then the default. */
export function resolveConnection(
  options: Pick<GlobalOptions, 'url' | 'token'>,
  env: CliIo['env'],
): { url: string; token: string | undefined } {
  return {
    url: nonEmpty(options.url) ?? nonEmpty(env.RAMPART_URL) ?? DEFAULT_URL,
    token: nonEmpty(options.token) ?? nonEmpty(env.RAMPART_TOKEN),
  };
}

/**
 * Creates the context for a command. `onSecret` learns the token so that error output can mask it.
 */
export function createContext(
  options: GlobalOptions,
  io: CliIo,
  onSecret: (secret: string) => void,
): CliContext {
  const { url, token } = resolveConnection(options, io.env);
  if (token !== undefined) onSecret(token);
  const client = new ApiClient({ baseUrl: url, token, userAgent: 'rampart-cli' });
  const out = new Output(io.stdout, io.stderr, options.output, io.env);
  if (
    token !== undefined &&
    client.baseUrl.protocol === 'http:' &&
    !isLoopbackHost(client.baseUrl.hostname)
  ) {
    out.progress(`rampart: warning: sending the API token unencrypted to ${client.baseUrl.host}; use https`);
  }
  return { io, client, out, now: io.now ?? Date.now };
}

/**
 * What a command runs with: the process streams and environment (injectable for tests), the resolved
 * global options (`--url`, `--token`, `--tenant`, `--output`), the credentials (an explicit API token,
 * else the stored login session for that URL) and the API client built from them.
 */
import type { Command } from 'commander';
import { ApiClient, DEFAULT_URL, checkToken, isLoopbackHost, parseBaseUrl } from './api-client.js';
import { SessionAuth, StaticToken, type Authenticator } from './credentials.js';
import { UsageError } from './errors.js';
import { Output, type OutStream, type OutputFormat } from './output.js';
import { sessionFilePath } from './session.js';
import { parseTenant } from './validation.js';

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
  tenant?: string;
}

export interface CliContext {
  io: CliIo;
  client: ApiClient;
  out: Output;
  now: () => number;
  /** The effective server URL, normalised (what a stored session is matched against). */
  url: string;
  /** `--tenant` or RAMPART_TENANT, if given. */
  tenant: string | undefined;
  /** Where the login session is stored. */
  sessionFile: string;
  /** The stored session, when no API token was given (it may hold no session for this URL). */
  session: SessionAuth | undefined;
  /** Registers a secret (a password, a new token) so that error output masks it. */
  secret: (value: string) => void;
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

/** `--tenant` first, then RAMPART_TENANT (checked like the flag), else none. */
export function resolveTenant(options: Pick<GlobalOptions, 'tenant'>, env: CliIo['env']): string | undefined {
  if (options.tenant !== undefined) return options.tenant;
  const value = nonEmpty(env.RAMPART_TENANT);
  if (value === undefined) return undefined;
  try {
    return parseTenant(value);
  } catch (err) {
    throw new UsageError(`invalid RAMPART_TENANT ${JSON.stringify(value)}: ${(err as Error).message}`);
  }
}

/**
 * Creates the context for a command. `onSecret` learns every token (and password) so that error output
 * can mask it. Precedence: --token / RAMPART_TOKEN, then the stored session, used only when it was made
 * for the same server URL (it is read on the first request that needs credentials).
 */
export function createContext(
  options: GlobalOptions,
  io: CliIo,
  onSecret: (secret: string) => void,
): CliContext {
  const { url, token } = resolveConnection(options, io.env);
  const tenant = resolveTenant(options, io.env);
  const now = io.now ?? Date.now;
  const baseUrl = parseBaseUrl(url);
  const out = new Output(io.stdout, io.stderr, options.output, io.env);
  const sessionFile = sessionFilePath(io.env);
  const plainHttp = baseUrl.protocol === 'http:' && !isLoopbackHost(baseUrl.hostname);
  let session: SessionAuth | undefined;
  let auth: Authenticator;
  if (token !== undefined) {
    onSecret(token);
    auth = new StaticToken(checkToken(token));
    if (plainHttp)
      out.progress(`rampart: warning: sending the API token unencrypted to ${baseUrl.host}; use https`);
  } else {
    session = new SessionAuth({
      url: baseUrl.href,
      path: sessionFile,
      now,
      // Refreshing sends no credentials, so the client does not come back here.
      refresh: (refreshToken) => client.refreshSession(refreshToken),
      onSecret,
      onLoad: () => {
        if (plainHttp)
          out.progress(
            `rampart: warning: sending the session token unencrypted to ${baseUrl.host}; use https`,
          );
      },
    });
    auth = session;
  }
  const client = new ApiClient({ baseUrl: url, auth, tenant, userAgent: 'rampart-cli' });
  return {
    io,
    client,
    out,
    now,
    url: baseUrl.href,
    tenant,
    sessionFile,
    session,
    secret: onSecret,
  };
}

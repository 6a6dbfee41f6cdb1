/**
 * The CLI's error family. Each carries its exit code; `formatError` turns any thrown value into the one
 * line printed on stderr: `rampart: <message> (<code>, request <requestId>)`.
 */
import { ExitCode, exitCodeForApiError } from './exit-codes.js';
import { sanitize } from './output.js';

export abstract class CliError extends Error {
  abstract readonly exitCode: ExitCode;
}

/** Bad arguments, options or environment, found before anything was sent. */
export class UsageError extends CliError {
  override name = 'UsageError';
  readonly exitCode = ExitCode.USAGE;
}

/** Something the CLI looked for locally (e.g. a host id prefix) does not exist. */
export class LocalNotFoundError extends CliError {
  override name = 'LocalNotFoundError';
  readonly exitCode = ExitCode.NOT_FOUND;
}

/** The server answered with an error status. */
export class ApiError extends CliError {
  override name = 'ApiError';
  readonly exitCode: ExitCode;
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId?: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.exitCode = exitCodeForApiError(status, code);
  }
}

/** The server could not be reached (refused, DNS, TLS, timeout, connection lost). */
export class UnreachableError extends CliError {
  override name = 'UnreachableError';
  readonly exitCode = ExitCode.UNREACHABLE;
}

/** `--wait` saw the VM fail, vanish or not reach its target state in time. */
export class WaitError extends CliError {
  override name = 'WaitError';
  readonly exitCode = ExitCode.WAIT_FAILED;
}

/** No usable credentials: the stored session expired or was revoked, or it cannot be used. */
export class AuthError extends CliError {
  override name = 'AuthError';
  readonly exitCode = ExitCode.AUTH;
}

/** A verification failed: an audit record or checkpoint (`audit verify`), or an image signature. */
export class VerificationError extends CliError {
  override name = 'VerificationError';
  readonly exitCode = ExitCode.VERIFY_FAILED;
}

/** The server did only part of what was asked (e.g. some VMs could not be evacuated): a conflict. */
export class IncompleteError extends CliError {
  override name = 'IncompleteError';
  readonly exitCode = ExitCode.CONFLICT;
}

/** Any other failure that the CLI itself detected (bad answer from the server, console closed badly). */
export class GeneralError extends CliError {
  override name = 'GeneralError';
  readonly exitCode = ExitCode.ERROR;
}

export function exitCodeFor(err: unknown): ExitCode {
  return err instanceof CliError ? err.exitCode : ExitCode.ERROR;
}

/**
 * The stderr line for an error. Control characters from the server are neutralised and every secret
 * (the API token) is masked, whatever the message says.
 */
export function formatError(err: unknown, secrets: readonly string[] = []): string {
  let line: string;
  if (err instanceof ApiError) {
    const where = err.requestId ? `${err.code}, request ${err.requestId}` : err.code;
    line = `${err.message} (${where})`;
  } else if (err instanceof Error) {
    line = err.message || err.name;
  } else {
    line = String(err);
  }
  for (const secret of secrets) {
    if (secret.length > 0) line = line.split(secret).join('***');
  }
  return `rampart: ${sanitize(line)}`;
}

/**
 * Argument checks done before anything is sent, as Commander argument parsers (a failure is a usage
 * error, exit 2). The patterns and limits mirror src/api (importing those modules at run time would load
 * typebox, which costs more than the rest of the CLI); validation.test.ts keeps the copies in step.
 */
import { InvalidArgumentError } from 'commander';

/** DNS-label names (src/api/common.ts NAME_PATTERN). */
export const NAME_PATTERN = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';
/** An id or a name in a path (src/api/common.ts Ref). */
export const REF_PATTERN = '^[a-z0-9][a-z0-9-]{0,62}$';
export const UUID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
/** src/api/vm.ts RESTART_POLICIES. */
export const RESTART_POLICIES = ['never', 'on-failure', 'always'] as const;
/** src/api/flavor.ts LIMITS. */
export const FLAVOR_LIMITS = {
  vcpus: { minimum: 1, maximum: 64 },
  memoryMiB: { minimum: 64, maximum: 262_144 },
  diskGiB: { minimum: 0, maximum: 65_536 },
} as const;
/** src/api/vm.ts VmStopBody.timeoutSeconds. */
export const STOP_TIMEOUT_MAX_SECONDS = 3600;
/** The most the server returns of a console tail (it clamps `bytes` to this). */
export const CONSOLE_BYTES_MAX = 1_048_576;
/** The longest `--timeout` accepted for `--wait` (a week). */
export const WAIT_TIMEOUT_MAX_SECONDS = 7 * 24 * 3600;

const NAME_RE = new RegExp(NAME_PATTERN);
const REF_RE = new RegExp(REF_PATTERN);
const UUID_RE = new RegExp(UUID_PATTERN);
const HOST_REF_RE = /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/;

export function isUuid(value: string): boolean {
  return UUID_RE.test(value);
}

/** A new object's name: a lowercase DNS label. */
export function parseName(value: string): string {
  if (!NAME_RE.test(value)) {
    throw new InvalidArgumentError(
      'Names are 1-63 lowercase letters, digits and dashes, starting and ending with a letter or digit.',
    );
  }
  return value;
}

/** An existing object's id or name. */
export function parseRef(value: string): string {
  if (!REF_RE.test(value)) {
    throw new InvalidArgumentError(
      'Expected an id or a name (lowercase letters, digits and dashes, at most 63).',
    );
  }
  return value;
}

/** A host id, id prefix or hostname. */
export function parseHostRef(value: string): string {
  if (!HOST_REF_RE.test(value)) {
    throw new InvalidArgumentError('Expected a host id, an id prefix or a hostname.');
  }
  return value;
}

/** A Commander parser for an integer in [min, max]. */
export function integerIn(min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`Expected an integer from ${min} to ${max}.`);
    }
    return n;
  };
}

/** A positive number of seconds (fractions allowed), for `--timeout`. */
export function parseWaitTimeout(value: string): number {
  const n = /^[0-9]+(\.[0-9]+)?$/.test(value) ? Number(value) : Number.NaN;
  if (!(n > 0) || n > WAIT_TIMEOUT_MAX_SECONDS) {
    throw new InvalidArgumentError(
      `Expected a number of seconds above 0 and at most ${WAIT_TIMEOUT_MAX_SECONDS}.`,
    );
  }
  return n;
}

/** `HOST:PORT` (IPv6 hosts in brackets), for `rampart server --listen`. */
export function parseListen(value: string): string {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(value);
  const port = match ? Number(match[2]) : Number.NaN;
  if (!match || port > 65_535) {
    throw new InvalidArgumentError('Expected HOST:PORT, e.g. 127.0.0.1:8480 or [::1]:8480.');
  }
  return value;
}

/** A non-empty path, for --data-dir, --config and --socket. */
export function parsePath(value: string): string {
  if (value.length === 0 || value.includes('\0')) throw new InvalidArgumentError('Expected a path.');
  return value;
}

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
  cpuLimitPercent: { minimum: 1, maximum: 6_400 },
  cpuWeight: { minimum: 1, maximum: 10_000 },
  pidsMax: { minimum: 16, maximum: 65_536 },
  networkMbps: { minimum: 1, maximum: 100_000 },
  diskIops: { minimum: 1, maximum: 1_000_000 },
  diskMiBps: { minimum: 1, maximum: 102_400 },
} as const;
/** src/api/flavor.ts DEFAULT_CPU_WEIGHT and DEFAULT_PIDS_MAX: what a flavor gets when they are not given. */
export const FLAVOR_DEFAULTS = { cpuWeight: 100, pidsMax: 512 } as const;
/** src/api/vm.ts VmStopBody.timeoutSeconds. */
export const STOP_TIMEOUT_MAX_SECONDS = 3600;
/** The most the server returns of a console tail (it clamps `bytes` to this). */
export const CONSOLE_BYTES_MAX = 1_048_576;
/** The longest `--timeout` accepted for `--wait` (a week). */
export const WAIT_TIMEOUT_MAX_SECONDS = 7 * 24 * 3600;
/** Usernames (src/api/iam.ts USERNAME_PATTERN): a name or a user id both match it. */
export const USERNAME_PATTERN = '^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$';
/** `resource:verb` or `platform:resource:verb` (src/api/iam.ts PERMISSION_PATTERN). */
export const PERMISSION_PATTERN = '^[a-z]+(:[a-z]+){1,2}$';
export const PERMISSION_MAX_LENGTH = 64;
/** src/api/iam.ts TotpCode and RecoveryCode. */
export const TOTP_PATTERN = '^[0-9]{6}$';
export const RECOVERY_CODE_PATTERN = '^[A-Za-z0-9 -]{8,40}$';
/** src/api/audit.ts AUDIT_OUTCOMES and the AuditQuery `action` pattern. */
export const AUDIT_OUTCOMES = ['success', 'denied', 'failure'] as const;
export const AUDIT_ACTION_PATTERN = '^[a-z0-9.:_-]+$';
/** src/api/iam.ts ApiTokenCreate.expiresInDays. */
export const TOKEN_EXPIRY_MAX_DAYS = 365;
/** src/api/iam.ts RoleCreate.description. */
export const ROLE_DESCRIPTION_MAX_LENGTH = 200;

const NAME_RE = new RegExp(NAME_PATTERN);
const REF_RE = new RegExp(REF_PATTERN);
const UUID_RE = new RegExp(UUID_PATTERN);
const HOST_REF_RE = /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/;
const USERNAME_RE = new RegExp(USERNAME_PATTERN);
const PERMISSION_RE = new RegExp(PERMISSION_PATTERN);
const TOTP_RE = new RegExp(TOTP_PATTERN);
const RECOVERY_CODE_RE = new RegExp(RECOVERY_CODE_PATTERN);
const AUDIT_ACTION_RE = new RegExp(AUDIT_ACTION_PATTERN);

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

/** `--tenant` and RAMPART_TENANT: a tenant name (or id), checked with the name pattern. */
export function parseTenant(value: string): string {
  if (!NAME_RE.test(value)) {
    throw new InvalidArgumentError(
      'Expected a tenant name: 1-63 lowercase letters, digits and dashes, starting and ending with a letter or digit.',
    );
  }
  return value;
}

/** A username (new or existing) or a user id. */
export function parseUsername(value: string): string {
  if (!USERNAME_RE.test(value)) {
    throw new InvalidArgumentError(
      'Usernames are 1-64 lowercase letters, digits, dots, dashes and underscores, starting and ending with a letter or digit.',
    );
  }
  return value;
}

/** A permission such as `vm:read` or `platform:user:create`. */
export function parsePermission(value: string): string {
  if (value.length > PERMISSION_MAX_LENGTH || !PERMISSION_RE.test(value)) {
    throw new InvalidArgumentError(
      `Expected a permission such as vm:read or platform:user:read, not ${JSON.stringify(value)}.`,
    );
  }
  return value;
}

/**
 * A Commander collector for a repeatable `--permission`: each occurrence adds one permission, or several
 * separated by commas. Duplicates are dropped (the API wants unique items).
 */
export function collectPermissions(value: string, previous: string[] | undefined): string[] {
  const list = [...(previous ?? [])];
  for (const part of value.split(',')) {
    const permission = parsePermission(part.trim());
    if (!list.includes(permission)) list.push(permission);
  }
  return list;
}

/** A six-digit TOTP code. */
export function parseTotp(value: string): string {
  if (!TOTP_RE.test(value))
    throw new InvalidArgumentError('Expected the 6-digit code of your authenticator app.');
  return value;
}

export function parseRecoveryCode(value: string): string {
  if (!RECOVERY_CODE_RE.test(value)) {
    throw new InvalidArgumentError('Expected a recovery code (8-40 letters, digits, dashes and spaces).');
  }
  return value;
}

/** `on` or `off` (also true/false, yes/no, 1/0). */
export function parseOnOff(value: string): boolean {
  const v = value.toLowerCase();
  if (['on', 'true', 'yes', '1'].includes(v)) return true;
  if (['off', 'false', 'no', '0'].includes(v)) return false;
  throw new InvalidArgumentError('Expected on or off.');
}

/** An audit action filter, e.g. `auth.login`. */
export function parseAuditAction(value: string): string {
  if (value.length > 64 || !AUDIT_ACTION_RE.test(value)) {
    throw new InvalidArgumentError('Expected an action: lowercase letters, digits and . : _ - (at most 64).');
  }
  return value;
}

/** An audit actor filter (a username, or a name such as `system`). */
export function parseActor(value: string): string {
  // eslint-disable-next-line no-control-regex
  if (value.length < 1 || value.length > 64 || /[\u0000-\u001f\u007f]/.test(value)) {
    throw new InvalidArgumentError('Expected an actor: 1-64 printable characters.');
  }
  return value;
}

const RELATIVE_TIME_RE = /^([0-9]{1,6})(s|m|h|d|w)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * A point in time for `--since`/`--until`: an ISO 8601 timestamp (a date alone means midnight UTC) or
 * an age such as `30m`, `12h`, `7d` (that long before now). Returns the value checked but unresolved;
 * `resolveTime` turns it into the RFC 3339 timestamp the API wants.
 */
export function parseTime(value: string): string {
  if (RELATIVE_TIME_RE.test(value)) return value;
  if (/^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2})?)?$/i.test(value)) {
    if (!Number.isNaN(Date.parse(value))) return value;
  }
  throw new InvalidArgumentError(
    'Expected an ISO 8601 time (e.g. 2026-01-31T12:00:00Z) or an age such as 30m, 12h or 7d.',
  );
}

export function resolveTime(value: string, nowMs: number): string {
  const relative = RELATIVE_TIME_RE.exec(value);
  if (relative)
    return new Date(nowMs - Number(relative[1]) * (UNIT_MS[relative[2] ?? 's'] ?? 1000)).toISOString();
  return new Date(Date.parse(value)).toISOString();
}

/** A duration such as `90s`, `30m`, `1h`, `2d` (or plain seconds), for `host join-token --ttl`. */
export function parseDurationSeconds(value: string): number {
  const match = /^([0-9]{1,7})([smhd]?)$/.exec(value);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[match?.[2] ?? ''] ?? 1;
  const seconds = match ? Number(match[1]) * unit : Number.NaN;
  if (!(seconds >= 60 && seconds <= 7 * 86_400)) {
    throw new InvalidArgumentError('Expected a duration from 60s to 7d, e.g. 30m, 1h or 2d.');
  }
  return seconds;
}

/** A host name (letters, digits, dots and dashes; the CN of a remote host's certificate request). */
export function parseHostName(value: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/.test(value)) {
    throw new InvalidArgumentError('Expected a host name (letters, digits, dots and dashes).');
  }
  return value;
}

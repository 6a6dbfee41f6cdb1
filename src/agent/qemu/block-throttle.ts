/**
 * Disk I/O limits for a VM disk, done with QEMU throttle groups: an `-object throttle-group` holds the
 * limits, and a `throttle` filter node layered over the disk's format node enforces them for whatever
 * device is attached on top. This is the modern replacement for the legacy per-drive `iops=`/`bps=`
 * options (and `block_set_io_throttle`): it works with `-blockdev`, and the limits can be changed live
 * with `qom-set` on the group's `limits` property without touching the block graph.
 *
 * The throttle layer is cheap when a group has no limits, so the disks issue can always insert it and
 * add limits later at runtime. Everything rendered into a QEMU option string is validated here: ids are
 * restricted to characters that cannot break QEMU's `key=value,...` syntax, and numbers are positive
 * integers within sane bounds.
 */

export interface BlockThrottleLimits {
  /** I/O operations per second, reads + writes. Cannot be combined with iopsRead/iopsWrite. */
  iopsTotal?: number;
  iopsRead?: number;
  iopsWrite?: number;
  /** Bytes per second, reads + writes. Cannot be combined with bpsRead/bpsWrite. */
  bpsTotal?: number;
  bpsRead?: number;
  bpsWrite?: number;
}

export interface BlockThrottleSpec extends BlockThrottleLimits {
  /** The disk's id (e.g. "disk0"): names the group `tg-<id>` and the filter node `throttle-<id>`. */
  id: string;
}

/** A QMP command in wire shape, ready for `QmpClient.execute(cmd.execute, cmd.arguments)`. */
export interface QmpCommand {
  execute: string;
  arguments: Record<string, unknown>;
}

/** A million IOPS is beyond any single virtual disk we will offer. */
export const MAX_IOPS = 1_000_000;
/** Below one 4 KiB block per second a limit is a misconfiguration, not a limit. */
export const MIN_BPS = 4096;
/** 100 GiB/s. */
export const MAX_BPS = 100 * 1024 ** 3;
/** QEMU stores node names in a 32-byte buffer, NUL included. */
export const MAX_NODE_NAME_LENGTH = 31;
/** Longest disk id such that `throttle-<id>` is still a valid node name. */
export const MAX_THROTTLE_ID_LENGTH = MAX_NODE_NAME_LENGTH - 'throttle-'.length;

const THROTTLE_ID = /^[A-Za-z0-9_-]+$/;
/** QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'. */
const QEMU_NODE_NAME = /^[A-Za-z][A-Za-z0-9_.-]*$/;

type LimitKey = keyof BlockThrottleLimits;

/** Our field, QEMU's `-object throttle-group` property, the key in QMP's ThrottleLimits, the bounds. */
const FIELDS: ReadonlyArray<{ key: LimitKey; property: string; qmp: string; min: number; max: number }> = [
  { key: 'iopsTotal', property: 'x-iops-total', qmp: 'iops-total', min: 1, max: MAX_IOPS },
  { key: 'iopsRead', property: 'x-iops-read', qmp: 'iops-read', min: 1, max: MAX_IOPS },
  { key: 'iopsWrite', property: 'x-iops-write', qmp: 'iops-write', min: 1, max: MAX_IOPS },
  { key: 'bpsTotal', property: 'x-bps-total', qmp: 'bps-total', min: MIN_BPS, max: MAX_BPS },
  { key: 'bpsRead', property: 'x-bps-read', qmp: 'bps-read', min: MIN_BPS, max: MAX_BPS },
  { key: 'bpsWrite', property: 'x-bps-write', qmp: 'bps-write', min: MIN_BPS, max: MAX_BPS },
];

function assertThrottleId(id: string): string {
  if (typeof id !== 'string' || !THROTTLE_ID.test(id) || id.length > MAX_THROTTLE_ID_LENGTH) {
    throw new Error(
      `throttle id ${JSON.stringify(id)} is not valid: 1-${MAX_THROTTLE_ID_LENGTH} characters of [A-Za-z0-9_-]`,
    );
  }
  return id;
}

function assertNodeName(name: string, what: string): string {
  if (typeof name !== 'string' || !QEMU_NODE_NAME.test(name) || name.length > MAX_NODE_NAME_LENGTH) {
    throw new Error(`${what} ${JSON.stringify(name)} is not a valid QEMU node name`);
  }
  return name;
}

/**
 * Checks every given limit (a positive integer within bounds) and the combinations QEMU refuses
 * ("total and read/write values cannot be used at the same time"), so the error is ours and early.
 */
export function validateThrottleLimits(limits: BlockThrottleLimits): BlockThrottleLimits {
  if (typeof limits !== 'object' || limits === null) throw new Error('throttle limits must be an object');
  const valid: BlockThrottleLimits = {};
  for (const { key, min, max } of FIELDS) {
    const value = limits[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new Error(`${key} must be an integer between ${min} and ${max}, got ${String(value)}`);
    }
    valid[key] = value;
  }
  if (valid.iopsTotal !== undefined && (valid.iopsRead !== undefined || valid.iopsWrite !== undefined)) {
    throw new Error('iopsTotal cannot be combined with iopsRead or iopsWrite');
  }
  if (valid.bpsTotal !== undefined && (valid.bpsRead !== undefined || valid.bpsWrite !== undefined)) {
    throw new Error('bpsTotal cannot be combined with bpsRead or bpsWrite');
  }
  return valid;
}

export function throttleGroupId(id: string): string {
  return `tg-${assertThrottleId(id)}`;
}

export function throttleNodeName(id: string): string {
  return `throttle-${assertThrottleId(id)}`;
}

/** QOM path of the group, for qom-get/qom-set (objects from -object live under /objects). */
export function throttleGroupPath(id: string): string {
  return `/objects/${throttleGroupId(id)}`;
}

/** `-object throttle-group,id=tg-<id>,x-iops-total=...` with only the given limits. */
export function throttleGroupArgs(spec: BlockThrottleSpec): string[] {
  const limits = validateThrottleLimits(spec);
  const options = [`throttle-group`, `id=${throttleGroupId(spec.id)}`];
  for (const { key, property } of FIELDS) {
    const value = limits[key];
    if (value !== undefined) options.push(`${property}=${value}`);
  }
  return ['-object', options.join(',')];
}

/** `-blockdev driver=throttle,...,file=<formatNode>`: the filter node over the disk's format node. */
export function throttleNodeArgs(id: string, formatNode: string): string[] {
  return [
    '-blockdev',
    [
      'driver=throttle',
      `node-name=${throttleNodeName(id)}`,
      `throttle-group=${throttleGroupId(id)}`,
      `file=${assertNodeName(formatNode, 'format node name')}`,
    ].join(','),
  ];
}

/**
 * Both pieces, group first (the filter node refers to it). The guest device then attaches to
 * `throttleNodeName(spec.id)` instead of the format node.
 */
export function blockThrottleArgs(spec: BlockThrottleSpec, formatNode: string): string[] {
  return [...throttleGroupArgs(spec), ...throttleNodeArgs(spec.id, formatNode)];
}

/**
 * The QMP command that replaces the group's limits live. qom-set on `limits` only changes the fields it
 * is given and keeps the others, so every field is sent and an absent limit is sent as 0 (unlimited):
 * the result is exactly `limits`, whatever was set before.
 */
export function setThrottleLimitsCommand(id: string, limits: BlockThrottleLimits): QmpCommand {
  const valid = validateThrottleLimits(limits);
  const value: Record<string, number> = {};
  for (const { key, qmp } of FIELDS) value[qmp] = valid[key] ?? 0;
  return { execute: 'qom-set', arguments: { path: throttleGroupPath(id), property: 'limits', value } };
}

/** The QMP command that reads the group's limits; parse its result with parseThrottleLimits(). */
export function getThrottleLimitsCommand(id: string): QmpCommand {
  return { execute: 'qom-get', arguments: { path: throttleGroupPath(id), property: 'limits' } };
}

/** Turns QEMU's ThrottleLimits (all fields present, 0 = unlimited) into our shape (unlimited = absent). */
export function parseThrottleLimits(value: unknown): BlockThrottleLimits {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error('ThrottleLimits must be an object');
  }
  const record = value as Record<string, unknown>;
  const limits: BlockThrottleLimits = {};
  for (const { key, qmp } of FIELDS) {
    const field = record[qmp];
    if (typeof field === 'number' && field > 0) limits[key] = field;
  }
  return limits;
}

/**
 * Checks an uploaded, untrusted disk image before Rampart accepts it.
 *
 * The threat (OpenStack OSSA-2024-001 / CVE-2024-32498, and CVE-2024-4467 in QEMU itself): image formats
 * can name *other* host files. A qcow2 may carry a backing file or an external data file, a VMDK
 * descriptor names its extents, and all of them are opened by QEMU tools. An image uploaded as "raw" but
 * whose bytes are a qcow2 or VMDK is reinterpreted by anything that probes the format, so a later
 * `qemu-img convert` or a VM boot can read (or write) `/etc/shadow` or another tenant's disk. Crafted
 * metadata can also make qemu-img burn memory and CPU.
 *
 * What is checked, in this order (the first failure rejects with `DiskImageRejected`):
 * 1. `lstat`: the path must be a regular file (symlinks and devices refused); it is then opened with
 *    O_NOFOLLOW and must still be the same inode.
 * 2. Rampart's own format sniffing of the first 64 KiB and the last 512 bytes, covering at least every
 *    magic that qemu-img's own probing accepts (qcow/qcow2, QED, VMDK binary and text descriptors, VHDX,
 *    VHD, VDI, LUKS, Parallels, Bochs, cloop, DMG). The sniffed format must equal the declared one.
 *    This runs *before* qemu-img is ever asked to probe, because probing a VMDK descriptor opens its
 *    extents on the host.
 * 3. For qcow2, the header is parsed here as well: a backing file, an external data file (incompatible
 *    feature bit or header extension), encryption, the corrupt bit, qcow version 1 and unknown
 *    incompatible features are refused without involving qemu-img.
 * 4. `qemu-img info` without `-f` (qemu-img's own probe) must agree with the declared format.
 * 5. `qemu-img info -f <declared>`: no backing file, no data file, no encryption, not marked corrupt, and
 *    a virtual size within `maxVirtualSizeBytes` (default 2 TiB).
 * 6. For qcow2, `qemu-img check`: corruptions or check errors reject; leaked clusters alone are accepted
 *    and reported in `leakedClusters`.
 *
 * qemu-img always runs through the subprocess helper with an argument array, `-U` (no image locking: the
 * upload is quiescent and nothing else must block the check), an absolute path (so no `json:` or
 * `proto:` pseudo-filename is possible), a timeout, and under `prlimit --as=1GiB --cpu=30` as OpenStack
 * does. `qemu-img info` never opens backing files; `qemu-img check` does open an external data file,
 * which is why it only runs after steps 3 and 5 have refused those.
 *
 * Errors: a problem with the image is a `DiskImageRejected`; a broken host (prlimit or qemu-img missing)
 * is a plain `Error`. Callers must treat both as "not accepted". The check is only as good as the
 * caller's control over the path: the upload directory must not be writable by anyone else, since
 * qemu-img reopens the file by name.
 */
import { constants, type Stats } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import { resolve } from 'node:path';
import { runSettled, type SettledResult } from '../../common/subprocess.js';

export type DiskFormat = 'raw' | 'qcow2';

export interface DiskInspection {
  format: DiskFormat;
  virtualSizeBytes: number;
  /** Bytes allocated on the host filesystem (qemu-img's `actual-size`). */
  actualSizeBytes: number;
  qemuImgVersion: string;
  /** qcow2 only: clusters `qemu-img check` found leaked (harmless wasted space, accepted). */
  leakedClusters?: number;
}

/** The image was refused; `reason` is safe to show to the uploader. */
export class DiskImageRejected extends Error {
  override name = 'DiskImageRejected';
  constructor(readonly reason: string) {
    super(reason);
  }
}

export interface InspectOptions {
  /** Largest accepted virtual (guest-visible) size; default 2 TiB. */
  maxVirtualSizeBytes?: number;
  /** Per qemu-img invocation; default 60 s. */
  timeoutMs?: number;
  /** The qemu-img binary; default `qemu-img` on PATH. */
  qemuImg?: string;
}

export const DEFAULT_MAX_VIRTUAL_SIZE_BYTES = 2 * 1024 ** 4;
const DEFAULT_TIMEOUT_MS = 60_000;
const VERSION_TIMEOUT_MS = 10_000;
const PRLIMIT = '/usr/bin/prlimit';
/** The limits OpenStack uses for qemu-img info on untrusted images. */
const PRLIMIT_ARGS = ['--as=1073741824', '--cpu=30', '--'];
const HEAD_BYTES = 64 * 1024;
const TAIL_BYTES = 512;
const STDERR_CHARS = 200;

// ---------------------------------------------------------------------------------------------------------
// Format sniffing
// ---------------------------------------------------------------------------------------------------------

/** What the first bytes of a file say it is; `raw` when no known format signature matches. */
export type SniffedFormat =
  | 'raw'
  | 'qcow'
  | 'qcow2'
  | 'qed'
  | 'vmdk'
  | 'vhdx'
  | 'vpc'
  | 'vdi'
  | 'luks'
  | 'parallels'
  | 'bochs'
  | 'cloop'
  | 'dmg';

function startsWith(buf: Buffer, text: string | Buffer, offset = 0): boolean {
  const needle = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  return buf.length >= offset + needle.length && buf.subarray(offset, offset + needle.length).equals(needle);
}

/**
 * A VMDK text descriptor as QEMU's vmdk_probe sees it: comment lines and blank lines, then `version=N`.
 * Broader than QEMU (any digit, any buffer length) plus the customary header line anywhere near the top.
 */
function isVmdkDescriptor(head: Buffer): boolean {
  const text = head.toString('latin1');
  if (/#\s*Disk\s*DescriptorFile/i.test(text.slice(0, 4096))) return true;
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/\r$/, '');
    if (line.startsWith('#')) continue;
    if (line.trim() === '') continue;
    return /^version=\d/.test(line);
  }
  return false;
}

/**
 * Identifies every image format that qemu-img can probe, by the same signatures (or broader ones).
 * `head` is the start of the file (64 KiB is plenty), `tail` its last 512 bytes (for DMG's trailer).
 */
export function sniffFormat(head: Buffer, tail: Buffer = Buffer.alloc(0)): SniffedFormat {
  if (startsWith(head, Buffer.from([0x51, 0x46, 0x49, 0xfb]))) {
    return head.length >= 8 && head.readUInt32BE(4) === 1 ? 'qcow' : 'qcow2';
  }
  if (startsWith(head, Buffer.from('QED\0', 'latin1'))) return 'qed';
  if (startsWith(head, 'KDMV') || startsWith(head, 'COWD')) return 'vmdk';
  if (startsWith(head, 'vhdxfile')) return 'vhdx';
  if (startsWith(head, 'conectix')) return 'vpc';
  if (head.length >= 68 && head.readUInt32LE(64) === 0xbeda107f) return 'vdi';
  if (startsWith(head, Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]))) return 'luks';
  if (startsWith(head, 'WithoutFreeSpace') || startsWith(head, 'WithouFreSpacExt')) return 'parallels';
  if (startsWith(head, 'Bochs Virtual HD Image')) return 'bochs';
  if (startsWith(head, '#!/bin/sh\n#V2.0 Format\n')) return 'cloop';
  if (tail.length >= 4 && startsWith(tail, 'koly')) return 'dmg';
  if (isVmdkDescriptor(head)) return 'vmdk';
  return 'raw';
}

// ---------------------------------------------------------------------------------------------------------
// qcow2 header
// ---------------------------------------------------------------------------------------------------------

const QCOW2_INCOMPAT_CORRUPT = 1n << 1n;
const QCOW2_INCOMPAT_DATA_FILE = 1n << 2n;
/** dirty, corrupt, external data file, compression type, extended L2: the bits QEMU 7-9 know. */
const QCOW2_INCOMPAT_KNOWN = 0x1fn;
const QCOW2_EXT_END = 0x00000000;
const QCOW2_EXT_DATA_FILE = 0x44415441;
const QCOW2_EXT_CRYPTO = 0x0537be77;

/** Refuses qcow2 headers that reference other files, are encrypted, or that qemu-img should not parse. */
export function checkQcow2Header(head: Buffer): void {
  if (head.length < 72) throw new DiskImageRejected('qcow2 header is truncated');
  const version = head.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw new DiskImageRejected(`unsupported qcow2 version ${version}`);
  const backingOffset = head.readBigUInt64BE(8);
  const backingSize = head.readUInt32BE(16);
  if (backingOffset !== 0n || backingSize !== 0) {
    throw new DiskImageRejected('qcow2 image has a backing file');
  }
  const clusterBits = head.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21)
    throw new DiskImageRejected('qcow2 header has an invalid cluster size');
  if (head.readUInt32BE(32) !== 0) throw new DiskImageRejected('qcow2 image is encrypted');

  let extensionsAt = 72;
  if (version === 3) {
    if (head.length < 104) throw new DiskImageRejected('qcow2 header is truncated');
    const incompatible = head.readBigUInt64BE(72);
    if (incompatible & QCOW2_INCOMPAT_DATA_FILE) {
      throw new DiskImageRejected('qcow2 image uses an external data file');
    }
    if (incompatible & QCOW2_INCOMPAT_CORRUPT) throw new DiskImageRejected('qcow2 image is marked corrupt');
    if (incompatible & ~QCOW2_INCOMPAT_KNOWN) {
      throw new DiskImageRejected('qcow2 image uses unknown incompatible features');
    }
    extensionsAt = head.readUInt32BE(100);
    if (extensionsAt < 104 || extensionsAt % 8 !== 0) {
      throw new DiskImageRejected('qcow2 header has an invalid length');
    }
  }

  // Header extensions: (type u32, length u32, data padded to 8 bytes)*, ended by type 0.
  let at = extensionsAt;
  for (;;) {
    if (at + 8 > head.length)
      throw new DiskImageRejected('qcow2 header extensions are malformed or too large');
    const type = head.readUInt32BE(at);
    const length = head.readUInt32BE(at + 4);
    if (type === QCOW2_EXT_END) break;
    if (type === QCOW2_EXT_DATA_FILE) throw new DiskImageRejected('qcow2 image names an external data file');
    if (type === QCOW2_EXT_CRYPTO) throw new DiskImageRejected('qcow2 image is encrypted');
    at += 8 + Math.ceil(length / 8) * 8;
  }
}

// ---------------------------------------------------------------------------------------------------------
// qemu-img
// ---------------------------------------------------------------------------------------------------------

function brief(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > STDERR_CHARS ? `${oneLine.slice(0, STDERR_CHARS)}…` : oneLine;
}

async function qemuImg(binary: string, args: readonly string[], timeoutMs: number): Promise<SettledResult> {
  const result = await runSettled(PRLIMIT, [...PRLIMIT_ARGS, binary, ...args], {
    timeoutMs,
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
    maxBufferBytes: 4 * 1024 * 1024,
  });
  if (result.failure?.startsWith('ENOENT')) throw new Error(`cannot run ${PRLIMIT}: ${result.failure}`);
  // prlimit exits 127 when it cannot exec qemu-img (126 when not executable): the host is broken.
  if (result.exitCode === 127 || result.exitCode === 126) {
    throw new Error(`cannot run ${binary} under prlimit: ${brief(result.stderr)}`);
  }
  return result;
}

function describeFailure(what: string, result: SettledResult): string {
  if (result.failure !== null) return `${what} did not complete: ${brief(result.failure)}`;
  if (result.signal !== null) return `${what} was killed by ${result.signal} (resource limit exceeded?)`;
  return `${what} failed (exit ${result.exitCode}): ${brief(result.stderr) || 'no error message'}`;
}

function parseJsonObject(what: string, stdout: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(stdout);
  } catch {
    throw new DiskImageRejected(`${what} produced unparsable output`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DiskImageRejected(`${what} produced unexpected output`);
  }
  return value as Record<string, unknown>;
}

async function qemuImgInfo(
  binary: string,
  path: string,
  format: DiskFormat | null,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  const what = format === null ? 'qemu-img info (probe)' : `qemu-img info -f ${format}`;
  const args = ['info', '-U', '--output=json', ...(format === null ? [] : ['-f', format]), path];
  const result = await qemuImg(binary, args, timeoutMs);
  if (result.exitCode !== 0 || result.failure !== null) {
    throw new DiskImageRejected(describeFailure(what, result));
  }
  return parseJsonObject(what, result.stdout);
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

function nonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

let versionCache: { binary: string; version: string } | null = null;

/** The first line of `qemu-img --version`, e.g. `qemu-img version 7.2.22 (Debian ...)`; cached. */
export async function qemuImgVersion(binary = 'qemu-img'): Promise<string> {
  if (versionCache?.binary === binary) return versionCache.version;
  const result = await runSettled(binary, ['--version'], {
    timeoutMs: VERSION_TIMEOUT_MS,
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
  });
  const line = result.stdout.split('\n')[0]?.trim() ?? '';
  if (result.exitCode !== 0 || !/^qemu-img version \d/.test(line)) {
    throw new Error(`${binary} --version failed: ${result.failure ?? (brief(result.stderr) || line)}`);
  }
  versionCache = { binary, version: line };
  return line;
}

// ---------------------------------------------------------------------------------------------------------
// Inspection
// ---------------------------------------------------------------------------------------------------------

function describeFormat(format: SniffedFormat): string {
  return format === 'raw' ? 'raw data' : `a ${format} image`;
}

/** lstat, then open without following links and make sure it is the same file; returns its head and tail. */
async function readEnds(path: string): Promise<{ stats: Stats; head: Buffer; tail: Buffer }> {
  let stats: Stats;
  try {
    stats = await lstat(path);
  } catch (error) {
    throw new DiskImageRejected(`cannot stat the image: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (stats.isSymbolicLink()) throw new DiskImageRejected('the image is a symbolic link');
  if (!stats.isFile()) throw new DiskImageRejected('the image is not a regular file');

  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    throw new DiskImageRejected(`cannot open the image: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  try {
    const opened = await handle.stat();
    if (!opened.isFile() || opened.ino !== stats.ino || opened.dev !== stats.dev) {
      throw new DiskImageRejected('the image changed while it was being inspected');
    }
    const head = Buffer.alloc(Math.min(HEAD_BYTES, opened.size));
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    const tailLength = Math.min(TAIL_BYTES, opened.size);
    const tail = Buffer.alloc(tailLength);
    const tailRead = await handle.read(tail, 0, tailLength, opened.size - tailLength);
    return { stats: opened, head: head.subarray(0, bytesRead), tail: tail.subarray(0, tailRead.bytesRead) };
  } finally {
    await handle.close();
  }
}

/**
 * Inspects an untrusted disk image uploaded as `declared`; resolves with its sizes when it is acceptable,
 * rejects with `DiskImageRejected` (reason safe to show) when it is not.
 */
export async function inspectDiskImage(
  path: string,
  declared: DiskFormat,
  opts: InspectOptions = {},
): Promise<DiskInspection> {
  if (declared !== 'raw' && declared !== 'qcow2') {
    throw new DiskImageRejected(`unsupported declared format ${String(declared)}`);
  }
  const binary = opts.qemuImg ?? 'qemu-img';
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxVirtual = opts.maxVirtualSizeBytes ?? DEFAULT_MAX_VIRTUAL_SIZE_BYTES;
  // Absolute, so qemu-img can never read it as a `json:` or `protocol:` pseudo-filename.
  const absolute = resolve(path);

  const version = await qemuImgVersion(binary);

  // 1-3: Rampart's own look at the bytes, before qemu-img is allowed to probe anything.
  const { head, tail } = await readEnds(absolute);
  const sniffed = sniffFormat(head, tail);
  if (sniffed !== declared) {
    throw new DiskImageRejected(`declared ${declared} but the content is ${describeFormat(sniffed)}`);
  }
  if (declared === 'qcow2') checkQcow2Header(head);

  // 4: qemu-img's own probe must agree.
  const probed = await qemuImgInfo(binary, absolute, null, timeoutMs);
  if (probed.format !== declared) {
    const what = typeof probed.format === 'string' ? `a ${probed.format} image` : 'of unknown format';
    throw new DiskImageRejected(`declared ${declared} but qemu-img says the content is ${what}`);
  }

  // 5: the metadata with the format forced.
  const info = await qemuImgInfo(binary, absolute, declared, timeoutMs);
  if (info.format !== declared)
    throw new DiskImageRejected(`qemu-img info reports format ${String(info.format)}`);
  if ('backing-filename' in info || 'full-backing-filename' in info || 'backing-filename-format' in info) {
    throw new DiskImageRejected('the image has a backing file');
  }
  const specific = asRecord(asRecord(info['format-specific'])?.data);
  if (specific && 'data-file' in specific)
    throw new DiskImageRejected('the image uses an external data file');
  if (info.encrypted === true || (specific && 'encrypt' in specific)) {
    throw new DiskImageRejected('the image is encrypted');
  }
  if (specific?.corrupt === true) throw new DiskImageRejected('the image is marked corrupt');
  const virtualSize = info['virtual-size'];
  const actualSize = info['actual-size'];
  if (!nonNegativeInteger(virtualSize)) throw new DiskImageRejected('qemu-img info reports no virtual size');
  if (virtualSize > maxVirtual) {
    throw new DiskImageRejected(`virtual size ${virtualSize} bytes exceeds the limit of ${maxVirtual} bytes`);
  }

  const inspection: DiskInspection = {
    format: declared,
    virtualSizeBytes: virtualSize,
    actualSizeBytes: nonNegativeInteger(actualSize) ? actualSize : 0,
    qemuImgVersion: version,
  };

  // 6: qcow2 metadata consistency. Exit 0 clean, 2 corruptions, 3 leaks only, 1 check failed, 63 unsupported.
  if (declared === 'qcow2') {
    const what = 'qemu-img check';
    const result = await qemuImg(
      binary,
      ['check', '-U', '-f', 'qcow2', '--output=json', absolute],
      timeoutMs,
    );
    if (
      result.failure !== null ||
      (result.exitCode !== 0 && result.exitCode !== 2 && result.exitCode !== 3)
    ) {
      throw new DiskImageRejected(describeFailure(what, result));
    }
    const report = parseJsonObject(what, result.stdout);
    const count = (key: string): number => {
      const value = report[key];
      if (value === undefined) return 0;
      if (!nonNegativeInteger(value)) throw new DiskImageRejected(`${what} reports an invalid ${key}`);
      return value;
    };
    const corruptions = count('corruptions');
    const checkErrors = count('check-errors');
    if (corruptions > 0 || result.exitCode === 2) {
      throw new DiskImageRejected(`the qcow2 image is corrupt (${corruptions} corruptions found)`);
    }
    if (checkErrors > 0) {
      throw new DiskImageRejected(`the qcow2 image could not be fully checked (${checkErrors} check errors)`);
    }
    inspection.leakedClusters = count('leaks');
  }
  return inspection;
}

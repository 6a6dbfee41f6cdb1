/**
 * Malware scanning of imported images with Debian's ClamAV command-line scanner (`clamscan`).
 *
 * Why clamscan and not clamd: imports are rare and large, the signature sets Rampart uses are small (its
 * own files in security/clamav/ plus whatever database the operator points to), and a per-scan process
 * needs no long-lived root daemon, no socket and no shared state between tenants. The cost is loading the
 * database on every scan (seconds with the official database).
 *
 * The verdict is fail-closed: only exit status 0 with no hit is `clean`. Exit 1 with signature names is
 * `infected`; everything else (exit 2, a timeout, a signal, unparseable output, a file too large to scan,
 * a database that does not load) is `error`, which callers must treat like a hit for admission purposes.
 * clamscan silently skips and reports clean files above --max-filesize, so Rampart passes
 * --alert-exceeds-max=yes and maps the resulting Heuristics.Limits.Exceeded.* alerts to `error`.
 * clamscan also looks inside archives and compressed data (gzip, bzip2, xz, tar, cpio, zip...) by default;
 * --allmatch makes it report every matching signature instead of stopping at the first.
 *
 * `databaseVersion` identifies the signature set: a SHA-256 over each database file's name and identity,
 * where the identity of a signed ClamAV database (.cvd/.cld/.cud) is its header version and build time and
 * that of any other file is the SHA-256 of its content. A change of database changes the string, which is
 * how re-scans on database updates are triggered.
 *
 * clamscan runs through the subprocess helper (runSettled) with an argument array, an explicit environment, a timeout
 * and SIGKILL, as in src/common/subprocess.ts: that helper's run() rejects on exit status 1 and drops
 * stdout, where clamscan reports its hits, so it cannot be used here as is.
 */
import { runSettled } from '../../common/subprocess.js';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type ScanVerdict = 'clean' | 'infected' | 'error';

export interface ScanOptions {
  /** Operator databases (e.g. a mirror of the official main.cvd/daily.cld), loaded after Rampart's own. */
  extraDatabaseDirs?: string[];
  /** Replaces Rampart's shipped signature directory (tests). */
  shippedDatabaseDir?: string;
  /** Whole-scan time limit; default 10 minutes. On expiry clamscan is killed and the verdict is `error`. */
  timeoutMs?: number;
  /**
   * Largest file (and largest amount of data scanned per container) accepted; bigger ones are `error`,
   * never clean. Default and maximum: 2 GiB - 1, the most clamscan can scan.
   */
  maxFileSizeBytes?: number;
  /** The clamscan executable; default `clamscan` from PATH. */
  clamscanBinary?: string;
}

export interface DatabaseFile {
  /** Directory index (0 = shipped) and file name, e.g. `0/rampart.ndb`. */
  name: string;
  /** `cvd:<version>:<build time>` for signed ClamAV databases, else `sha256:<hex>` of the content. */
  identity: string;
}

export interface ScanResult {
  verdict: ScanVerdict;
  /** Names of the signatures that hit, as clamscan reports them (unsigned databases add `.UNOFFICIAL`). */
  signatures: string[];
  /** e.g. `ClamAV 1.4.6`; empty when clamscan could not be run. */
  engineVersion: string;
  /** `sha256:<hex>` over the database files used (see the top of this file); empty if unreadable. */
  databaseVersion: string;
  databases: DatabaseFile[];
  /** Why the verdict is `error`. */
  error?: string;
  scannedAt: string;
  durationMs: number;
}

/** The most clamscan can scan: it refuses files of 2 GiB and more. */
export const CLAMSCAN_MAX_FILE_SIZE = 2 ** 31 - 1;
const DEFAULT_TIMEOUT_MS = 10 * 60_000;
const VERSION_TIMEOUT_MS = 15_000;
const DATABASE_EXTENSIONS = new Set([
  'cvd',
  'cld',
  'cud',
  'ndb',
  'ndu',
  'hdb',
  'hsb',
  'mdb',
  'msb',
  'ldb',
  'ldu',
  'ign2',
  'fp',
  'sfp',
  'yar',
  'yara',
  'cdb',
  'cbc',
  'pdb',
  'gdb',
  'wdb',
  'ftm',
  'idb',
  'crb',
  'info',
]);
const LIMIT_ALERT = /^Heuristics\.Limits\.Exceeded/;

function findShippedDir(): string {
  // This file compiles to dist/src/server/images/; the signatures live in <repo>/security/clamav.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (basename(dir) === 'dist') return join(dirname(dir), 'security', 'clamav');
    dir = dirname(dir);
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'security', 'clamav');
}

/** Rampart's own signature files (EICAR and Rampart rules), see security/clamav/README.md. */
export const SHIPPED_DATABASE_DIR = findShippedDir();

interface ExecOutcome {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: string | null;
  spawnError?: string;
}

/** clamscan through the one subprocess helper; its exit status is interpreted by the caller. */
async function exec(binary: string, args: readonly string[], timeoutMs: number): Promise<ExecOutcome> {
  const result = await runSettled(binary, args, {
    timeoutMs,
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
    maxBufferBytes: 4 * 1024 * 1024,
  });
  const outcome: ExecOutcome = {
    stdout: result.stdout,
    stderr: result.stderr,
    code: result.exitCode,
    signal: result.signal,
  };
  if (result.failure !== null) outcome.spawnError = result.failure;
  return outcome;
}

let engineVersionCache: { binary: string; version: string } | null = null;

/** `ClamAV 1.4.6` (the first field of `clamscan --version`); throws if clamscan cannot run. */
export async function clamscanVersion(binary = 'clamscan'): Promise<string> {
  if (engineVersionCache?.binary === binary) return engineVersionCache.version;
  const outcome = await exec(binary, ['--version'], VERSION_TIMEOUT_MS);
  const line = outcome.stdout.trim().split('\n')[0] ?? '';
  // `ClamAV 1.4.6` or, with a database in the default location, `ClamAV 1.4.6/27000/<date>`.
  const match = /^(ClamAV \S+?)(?:\/|\s|$)/.exec(line);
  if (outcome.code !== 0 || !match) {
    throw new Error(`${binary} --version failed: ${outcome.spawnError ?? (outcome.stderr.trim() || line)}`);
  }
  engineVersionCache = { binary, version: match[1]! };
  return match[1]!;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The header of a signed ClamAV database: `ClamAV-VDB:<build time>:<version>:<signatures>:...`. */
async function cvdIdentity(path: string): Promise<string | null> {
  const handle = await open(path, 'r');
  try {
    const header = Buffer.alloc(512);
    const { bytesRead } = await handle.read(header, 0, 512, 0);
    const fields = header.subarray(0, bytesRead).toString('latin1').split(':');
    if (fields[0] !== 'ClamAV-VDB' || !fields[1] || !fields[2]) return null;
    return `cvd:${fields[2].trim()}:${fields[1].trim()}`;
  } finally {
    await handle.close();
  }
}

const identityCache = new Map<string, { key: string; identity: string }>();

async function fileIdentity(path: string): Promise<string> {
  const info = await stat(path);
  const key = `${info.size}:${info.mtimeMs}:${info.ino}`;
  const cached = identityCache.get(path);
  if (cached?.key === key) return cached.identity;
  const extension = path.slice(path.lastIndexOf('.') + 1).toLowerCase();
  let identity: string | null = null;
  if (extension === 'cvd' || extension === 'cld' || extension === 'cud') identity = await cvdIdentity(path);
  identity ??= `sha256:${await sha256File(path)}`;
  identityCache.set(path, { key, identity });
  return identity;
}

/** Lists and identifies the database files of each directory; throws if a directory is unreadable. */
export async function describeDatabases(
  dirs: readonly string[],
): Promise<{ databaseVersion: string; databases: DatabaseFile[] }> {
  const databases: DatabaseFile[] = [];
  for (const [index, dir] of dirs.entries()) {
    const entries = (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isFile() && DATABASE_EXTENSIONS.has(e.name.slice(e.name.lastIndexOf('.') + 1)))
      .map((e) => e.name)
      .sort();
    for (const name of entries) {
      databases.push({ name: `${index}/${name}`, identity: await fileIdentity(join(dir, name)) });
    }
  }
  const hash = createHash('sha256');
  for (const db of databases) hash.update(`${db.name}\0${db.identity}\n`);
  return { databaseVersion: `sha256:${hash.digest('hex')}`, databases };
}

/**
 * Hits in clamscan's `--infected --stdout` output: lines `<path>: <signature> FOUND`. Signature names
 * contain no spaces; the path may contain anything, so the line is matched from its end.
 */
export function parseClamscanOutput(stdout: string): string[] {
  const hits: string[] = [];
  for (const line of stdout.split('\n')) {
    const match = /: (\S+) FOUND$/.exec(line.trimEnd());
    if (match && !hits.includes(match[1]!)) hits.push(match[1]!);
  }
  return hits;
}

/** Scans one file. Never throws: failures come back as verdict `error` with a reason. */
export async function scanFile(path: string, options: ScanOptions = {}): Promise<ScanResult> {
  const started = performance.now();
  const scannedAt = new Date().toISOString();
  const binary = options.clamscanBinary ?? 'clamscan';
  const maxFileSize = Math.min(options.maxFileSizeBytes ?? CLAMSCAN_MAX_FILE_SIZE, CLAMSCAN_MAX_FILE_SIZE);
  const dirs = [options.shippedDatabaseDir ?? SHIPPED_DATABASE_DIR, ...(options.extraDatabaseDirs ?? [])].map(
    (d) => resolve(d),
  );
  const result: ScanResult = {
    verdict: 'error',
    signatures: [],
    engineVersion: '',
    databaseVersion: '',
    databases: [],
    scannedAt,
    durationMs: 0,
  };
  const finish = (patch: Partial<ScanResult>): ScanResult => {
    Object.assign(result, patch);
    result.durationMs = Math.round(performance.now() - started);
    return result;
  };

  try {
    result.engineVersion = await clamscanVersion(binary);
  } catch (error) {
    return finish({ error: error instanceof Error ? error.message : String(error) });
  }
  try {
    Object.assign(result, await describeDatabases(dirs));
  } catch (error) {
    return finish({ error: `signature database unreadable: ${(error as Error).message}` });
  }
  if (result.databases.length === 0) return finish({ error: 'no signature database files found' });

  const target = resolve(path);
  try {
    const info = await stat(target);
    if (!info.isFile()) return finish({ error: `${path} is not a regular file` });
    if (info.size > maxFileSize) {
      return finish({ error: `${path} is ${info.size} bytes, above the scan limit of ${maxFileSize}` });
    }
  } catch (error) {
    return finish({ error: `cannot scan ${path}: ${(error as Error).message}` });
  }

  const args = ['--no-summary', '--infected', '--stdout', '--allmatch=yes'];
  for (const dir of dirs) args.push('-d', dir);
  args.push(
    `--max-filesize=${maxFileSize}`,
    `--max-scansize=${maxFileSize}`,
    '--alert-exceeds-max=yes',
    '--',
    target,
  );
  const outcome = await exec(binary, args, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const hits = parseClamscanOutput(outcome.stdout);
  const reason = (): string =>
    outcome.spawnError ??
    `clamscan exit ${outcome.signal ?? outcome.code}: ${`${outcome.stderr}\n${outcome.stdout}`.trim().slice(0, 500)}`;

  // A real hit is a hit even if clamscan then failed or timed out: it can only make the verdict stricter.
  const real = hits.filter((h) => !LIMIT_ALERT.test(h));
  if (real.length > 0) return finish({ verdict: 'infected', signatures: hits });
  if (outcome.spawnError === undefined && outcome.code === 0 && hits.length === 0) {
    return finish({ verdict: 'clean' });
  }
  if (outcome.code === 1 && hits.length > 0) {
    return finish({ signatures: hits, error: `not fully scannable (limits exceeded): ${hits.join(', ')}` });
  }
  return finish({ signatures: hits, error: reason() });
}

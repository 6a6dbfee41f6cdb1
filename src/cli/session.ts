/**
 * The stored login session: `$XDG_CONFIG_HOME/rampart/session.json` (default ~/.config/rampart/,
 * RAMPART_SESSION_FILE overrides the path). The directory is created 0700 and the file 0600; the file is
 * always replaced atomically (a temporary file created with its final mode, then renamed over it), so a
 * reader never sees half a session and a crash never leaves one behind. A session file that other users
 * could read, or that belongs to someone else, is refused.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import type { SessionTokens } from '../api/iam.js';
import { GeneralError } from './errors.js';

export const SESSION_FILE_MODE = 0o600;
export const SESSION_DIR_MODE = 0o700;
/** A session file is a few hundred bytes; anything far bigger is not one. */
const MAX_SESSION_FILE_BYTES = 64 * 1024;

export interface StoredSession {
  /** The server's base URL, normalised (as `parseBaseUrl(...).href`). */
  url: string;
  username: string;
  token: string;
  expiresAt: string;
  refreshToken: string;
  refreshExpiresAt: string;
}

const FIELDS = ['url', 'username', 'token', 'expiresAt', 'refreshToken', 'refreshExpiresAt'] as const;

/** Where the session lives: RAMPART_SESSION_FILE, else $XDG_CONFIG_HOME (if absolute) or ~/.config. */
export function sessionFilePath(env: Readonly<Record<string, string | undefined>>): string {
  const override = env.RAMPART_SESSION_FILE;
  if (override) return override;
  const xdg = env.XDG_CONFIG_HOME;
  // The XDG spec says relative values are invalid and must be ignored.
  const base = xdg && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), '.config');
  return join(base, 'rampart', 'session.json');
}

/** The session to store for a login (or refresh, or password change) answer. */
export function sessionFromTokens(url: string, tokens: SessionTokens): StoredSession {
  return {
    url,
    username: tokens.user.username,
    token: tokens.token,
    expiresAt: tokens.expiresAt,
    refreshToken: tokens.refreshToken,
    refreshExpiresAt: tokens.refreshExpiresAt,
  };
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

function damaged(path: string, why: string): GeneralError {
  return new GeneralError(
    `the session file ${path} ${why}; delete it (or run \`rampart logout\`) and log in again with \`rampart login\``,
  );
}

/** Checks the parsed JSON of a session file. */
export function parseSession(text: string, path: string): StoredSession {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw damaged(path, 'is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw damaged(path, 'is damaged');
  const record = value as Record<string, unknown>;
  for (const field of FIELDS) {
    if (typeof record[field] !== 'string' || record[field] === '') {
      throw damaged(path, `is damaged (no ${field})`);
    }
  }
  return sessionFields(record as unknown as StoredSession);
}

/**
 * Reads the stored session; undefined when there is none. The file is opened without following a
 * symbolic link, and refused when it is not a regular file of this user that only this user can read.
 */
export function readSession(path: string): StoredSession | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    if (isErrno(err, 'ELOOP')) throw damaged(path, 'is a symbolic link');
    throw new GeneralError(`cannot read the session file ${path}: ${(err as Error).message}`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw damaged(path, 'is not a regular file');
    const uid = process.getuid?.();
    if (uid !== undefined && stat.uid !== uid) throw damaged(path, 'belongs to another user');
    if ((stat.mode & 0o077) !== 0) {
      throw damaged(
        path,
        `can be read by other users (mode ${(stat.mode & 0o777).toString(8).padStart(4, '0')}), so it is not used`,
      );
    }
    if (stat.size > MAX_SESSION_FILE_BYTES) throw damaged(path, 'is too large');
    return parseSession(readFileSync(fd, 'utf8'), path);
  } finally {
    closeSync(fd);
  }
}

/**
 * Stores the session atomically: the directory is created 0700 if missing, a temporary file beside the
 * target is created exclusively with mode 0600, written and synced, then renamed over the target.
 */
export function writeSession(path: string, session: StoredSession): void {
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true, mode: SESSION_DIR_MODE });
  } catch (err) {
    throw new GeneralError(`cannot create the directory ${dir} for the session: ${(err as Error).message}`);
  }
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const text = `${JSON.stringify(sessionFields(session), null, 2)}\n`;
  let fd: number | undefined;
  try {
    fd = openSync(
      tmp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      SESSION_FILE_MODE,
    );
    writeSync(fd, text);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // it was never created, or is already gone
    }
    throw new GeneralError(`cannot store the session in ${path}: ${(err as Error).message}`);
  }
  syncDirectory(dir);
}

/** Only the known fields, in a fixed order, whatever else the object carries. */
function sessionFields(session: StoredSession): StoredSession {
  return {
    url: session.url,
    username: session.username,
    token: session.token,
    expiresAt: session.expiresAt,
    refreshToken: session.refreshToken,
    refreshExpiresAt: session.refreshExpiresAt,
  };
}

/** Makes the rename durable (best effort: not every file system allows syncing a directory). */
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, constants.O_RDONLY);
    fsyncSync(fd);
  } catch {
    // not supported here; the rename itself is still atomic
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Deletes the stored session; false when there was none. */
export function deleteSession(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw new GeneralError(`cannot delete the session file ${path}: ${(err as Error).message}`);
  }
}

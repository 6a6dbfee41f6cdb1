/**
 * Secret files on the local disk (the master key, the platform signing key): read only when they are a
 * regular file (never through a symlink: O_NOFOLLOW), owned by this process's user and not accessible by
 * group or others; created exclusively (O_EXCL) with mode 0600 in a 0700 directory and fsynced with it.
 * The caller owns the bytes it reads or writes and should zero them when done (buffer.fill(0)).
 */
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';

/**
 * Reads a secret file; null when it does not exist. `label` names it in errors ("master key file").
 * Throws when it cannot be opened (a symlink among others), is not a regular file, has any group/other
 * permission bit, or is owned by another user.
 */
export function readSecretFile(path: string, label: string): Buffer | null {
  let fd: number;
  try {
    // O_NOFOLLOW: a symlink planted in place of the file is refused rather than followed.
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`cannot open ${label} ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new Error(`${label} ${path} is not a regular file`);
    const mode = stat.mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new Error(
        `${label} ${path} has mode 0${mode.toString(8)}; it must not be accessible by group or others ` +
          `(run: chmod 600 ${path})`,
      );
    }
    if (typeof process.getuid === 'function' && stat.uid !== process.getuid()) {
      throw new Error(`${label} ${path} is owned by uid ${stat.uid}, not by this process's user`);
    }
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Creates a secret file holding `content`, mode 0600, in its directory (created 0700 if missing), and
 * fsyncs the file and the directory. O_EXCL: two processes starting at once cannot both create (and one
 * overwrite) it; an existing file is an EEXIST error.
 */
export function createSecretFile(path: string, content: Uint8Array): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const fd = openSync(
    path,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const dirFd = openSync(dir, constants.O_RDONLY);
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

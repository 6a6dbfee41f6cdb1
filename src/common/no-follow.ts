/**
 * File writes that never follow a symbolic link. Rampart (root) writes logs and state inside per-VM
 * directories; a link planted there (by mistake, or by anything that got write access) must not turn
 * such a write into one on a file elsewhere. A link found in place of the file is removed (the link,
 * never its target) and the file is created fresh; anything else that is not a regular file is refused.
 */
import { closeSync, constants, lstatSync, openSync, unlinkSync, writeSync } from 'node:fs';

/** Removes `path` if it is a symbolic link; throws if it exists and is neither a link nor a file. */
export function removePlantedLink(path: string): void {
  let kind: 'link' | 'file' | 'other' | 'absent';
  try {
    const stat = lstatSync(path);
    kind = stat.isSymbolicLink() ? 'link' : stat.isFile() ? 'file' : 'other';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    kind = 'absent';
  }
  if (kind === 'link') unlinkSync(path);
  if (kind === 'other') throw new Error(`${path} is not a regular file`);
}

/** Opens `path` for writing (created 0600 if missing) without following a link; returns the fd. */
export function openNoFollow(path: string, mode: 'append' | 'truncate', permissions = 0o600): number {
  removePlantedLink(path);
  const flags =
    constants.O_WRONLY |
    constants.O_CREAT |
    constants.O_NOFOLLOW |
    (mode === 'append' ? constants.O_APPEND : constants.O_TRUNC);
  return openSync(path, flags, permissions);
}

/** Writes (or appends) `data` to `path` without following a link. */
export function writeNoFollow(path: string, data: Uint8Array | string, mode: 'append' | 'truncate'): void {
  const fd = openNoFollow(path, mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
  } finally {
    closeSync(fd);
  }
}

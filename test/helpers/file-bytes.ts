/**
 * Byte-level checks on large host files (volume files, snapshots, backups), read in chunks: files of
 * several GiB never go through one Buffer.
 */
import { closeSync, openSync, readSync } from 'node:fs';

const CHUNK = 8 * 1024 * 1024;

/** The first `n` bytes of a file. */
export function head(path: string, n: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(n);
    return buffer.subarray(0, readSync(fd, buffer, 0, n, 0));
  } finally {
    closeSync(fd);
  }
}

/** Whether `needle` occurs anywhere in the file (chunks overlap by the needle's length). */
export function fileContains(path: string, needle: string | Buffer): boolean {
  const wanted = typeof needle === 'string' ? Buffer.from(needle) : needle;
  const fd = openSync(path, 'r');
  try {
    const chunk = Buffer.alloc(CHUNK);
    let carry = Buffer.alloc(0);
    for (let offset = 0; ;) {
      const n = readSync(fd, chunk, 0, chunk.length, offset);
      if (n === 0) return false;
      const window = Buffer.concat([carry, chunk.subarray(0, n)]);
      if (window.includes(wanted)) return true;
      carry = window.subarray(Math.max(0, window.length - wanted.length));
      offset += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** Whether every byte of the file is zero. */
export function allZero(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const chunk = Buffer.alloc(CHUNK);
    for (let offset = 0; ;) {
      const n = readSync(fd, chunk, 0, chunk.length, offset);
      if (n === 0) return true;
      for (let i = 0; i < n; i++) if (chunk[i] !== 0) return false;
      offset += n;
    }
  } finally {
    closeSync(fd);
  }
}

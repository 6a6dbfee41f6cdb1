/**
 * Secure erase of a file: every byte zeroed in place (same inode, never truncated), fsynced, then the
 * name removed and the directory fsynced. A link (never followed) or anything but a regular file is
 * refused. Used for volumes and snapshots on hosts and for backups on the server.
 *
 * Chunk by chunk over the file's whole length: a block that holds anything but zeros is overwritten with
 * zeros; one that already reads as zeros is left as it is — a hole of a sparse file (never written: no
 * block on disk to erase) or zeros already — so the erase never allocates a sparse file's unwritten
 * space. `bytes` is the length made (and verified) zero: the whole file. Asynchronous I/O.
 */
import { closeSync, constants, fsyncSync, lstatSync, openSync, unlinkSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

const ERASE_CHUNK_BYTES = 4 * 1024 * 1024;
/** Within a chunk, what is written when it holds anything but zeros. */
const ERASE_BLOCK_BYTES = 64 * 1024;

export interface ErasedFile {
  existed: boolean;
  bytes: number;
}

/** `id` names the file in error messages (e.g. "volume <id>"). */
export async function eraseFileInPlace(path: string, id: string): Promise<ErasedFile> {
  const dir = dirname(path);
  const seen = lstatSync(path, { throwIfNoEntry: false });
  if (!seen) return { existed: false, bytes: 0 };
  if (seen.isSymbolicLink()) throw new Error(`${id}: a link in place of its file, refused`);
  if (!seen.isFile()) throw new Error(`${id}: not a regular file, refused`);
  let file: FileHandle;
  try {
    // O_RDWR without O_TRUNC or O_CREAT: the same inode, zeroed in place.
    file = await open(path, constants.O_RDWR | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { existed: false, bytes: 0 };
    if (code === 'ELOOP') throw new Error(`${id}: a link in place of its file, refused`, { cause: error });
    throw error;
  }
  let bytes = 0;
  try {
    const stat = await file.stat();
    if (!stat.isFile()) throw new Error(`${id}: not a regular file, refused`);
    const zeros = Buffer.alloc(ERASE_CHUNK_BYTES);
    const chunk = Buffer.alloc(ERASE_CHUNK_BYTES);
    while (bytes < stat.size) {
      const length = Math.min(ERASE_CHUNK_BYTES, stat.size - bytes);
      const { bytesRead } = await file.read(chunk, 0, length, bytes);
      if (bytesRead !== length) throw new Error(`${id}: short read at ${bytes}`);
      // Only the blocks that hold something are written (a written hole would be allocated).
      for (let at = 0; at < length; at += ERASE_BLOCK_BYTES) {
        const end = Math.min(at + ERASE_BLOCK_BYTES, length);
        if (chunk.subarray(at, end).equals(zeros.subarray(at, end))) continue;
        const { bytesWritten } = await file.write(zeros, at, end - at, bytes + at);
        if (bytesWritten !== end - at) throw new Error(`${id}: short write at ${bytes + at}`);
      }
      bytes += length;
    }
    await file.sync();
  } finally {
    await file.close();
  }
  // Only the name that was overwritten goes (a link swapped in meanwhile is refused, not followed).
  const now = lstatSync(path, { throwIfNoEntry: false });
  if (now?.isFile()) unlinkSync(path);
  const dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
  return { existed: true, bytes };
}

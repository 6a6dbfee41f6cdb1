/**
 * A VM's serial console kept on disk with a hard size cap: when an append would pass the cap, the
 * oldest bytes are dropped so that the newest half of the cap (plus the new data) remains. A guest
 * flooding its console can therefore never grow the file past `capBytes`.
 */
import { closeSync, existsSync, openSync, readSync, renameSync, statSync, fstatSync } from 'node:fs';
import { writeNoFollow } from '../../common/no-follow.js';

export class ConsoleLog {
  private size: number;

  constructor(
    readonly path: string,
    readonly capBytes: number,
  ) {
    this.size = existsSync(path) ? statSync(path).size : 0;
    if (this.size > capBytes) this.compact(Buffer.alloc(0));
  }

  append(data: Buffer): void {
    if (data.length === 0) return;
    if (this.size + data.length > this.capBytes) {
      this.compact(data);
      return;
    }
    writeNoFollow(this.path, data, 'append');
    this.size += data.length;
  }

  /** The last `bytes` bytes (or fewer). */
  tail(bytes: number): Buffer {
    if (!existsSync(this.path)) return Buffer.alloc(0);
    const fd = openSync(this.path, 'r');
    try {
      const size = fstatSync(fd).size;
      const length = Math.min(bytes, size);
      const buffer = Buffer.alloc(length);
      readSync(fd, buffer, 0, length, size - length);
      return buffer;
    } finally {
      closeSync(fd);
    }
  }

  get sizeBytes(): number {
    return this.size;
  }

  private compact(incoming: Buffer): void {
    const keep = Math.floor(this.capBytes / 2);
    const combined = Buffer.concat([this.tail(keep), incoming]);
    const kept = combined.subarray(Math.max(0, combined.length - this.capBytes));
    const tmp = `${this.path}.tmp`;
    writeNoFollow(tmp, kept, 'truncate');
    renameSync(tmp, this.path);
    this.size = kept.length;
  }
}

/**
 * At-rest compression of image content, streaming and with bounded memory.
 *
 * Why Debian's `zstd` binary and not node:zlib: measured in bench/compression.bench.ts (numbers and the
 * decision in docs/compression-choice.md), zstd -3 compresses disk-like image content several times
 * faster than gzip -6 or brotli -4 at a ratio as good or better, and decompresses (the boot path)
 * faster than anything node:zlib has. Node has no zstd binding on Node 20, so the codec runs as a child
 * process: each stream is one `zstd` process fed through stdin and read from stdout, wrapped as a Duplex.
 *
 * Safety rules of the wrapper:
 * - started through the subprocess helper's spawnPiped: argument arrays only, explicit minimal
 *   environment, no shell;
 * - backpressure in both directions (the child's stdin waits for 'drain', its stdout is paused while
 *   our readable side is full), so memory stays at a few pipe buffers plus zstd's own window;
 * - the decompressor refuses frames whose window needs more than DECOMPRESS_MEMORY_LIMIT;
 * - the stream only ends cleanly when zstd exited with status 0: corrupted or truncated input, a killed
 *   child or a stall longer than the idle timeout destroy the stream with a CompressionError, even when
 *   some output was already produced (zstd checks its content checksum at the end of each frame);
 * - destroying the stream kills the child.
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { spawnPiped } from '../../common/subprocess.js';
import { Duplex } from 'node:stream';

/** The codec Rampart stores images with; recorded next to each blob so it can change later. */
export const COMPRESSION_CODEC = 'zstd';
/** Chosen from the benchmark: the best ratio among the fast settings at well over 100 MB/s. */
export const DEFAULT_COMPRESSION_LEVEL = 3;
/** zstd -3 uses a 2 MiB window at most; 64 MiB leaves room for other levels and refuses absurd frames. */
export const DECOMPRESS_MEMORY_LIMIT = '64MB';
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
const STDERR_LIMIT = 4096;

export interface CompressionOptions {
  /** zstd level, 1..19 (default DEFAULT_COMPRESSION_LEVEL). Compression only. */
  level?: number;
  /**
   * The stream fails when nothing moves (no input written, no output produced, no read requested) for
   * this long. Default 60 s. A slow but moving upload never times out.
   */
  idleTimeoutMs?: number;
  /** The zstd executable (default `zstd` from PATH). */
  binary?: string;
}

/** The codec failed: corrupted or truncated input, the binary missing, killed or stalled. */
export class CompressionError extends Error {
  override name = 'CompressionError';
}

/** One zstd child process as a Duplex: bytes written go to its stdin, its stdout is the readable side. */
export class ZstdProcessStream extends Duplex {
  private readonly child: ChildProcessWithoutNullStreams;
  private stderr = '';
  private stdoutEnded = false;
  private exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly idleTimeoutMs: number;
  private readonly what: string;

  constructor(args: readonly string[], options: CompressionOptions = {}) {
    super({ highWaterMark: 1024 * 1024 });
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    const binary = options.binary ?? 'zstd';
    this.what = `${binary} ${args.join(' ')}`;
    this.child = spawnPiped(binary, args, {
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
    });
    this.child.on('error', (error) => this.fail(`could not run ${binary}: ${error.message}`));
    // EPIPE when zstd quit early (bad input): the exit status carries the real reason.
    this.child.stdin.on('error', () => undefined);
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (text: string) => {
      if (this.stderr.length < STDERR_LIMIT) this.stderr += text.slice(0, STDERR_LIMIT - this.stderr.length);
    });
    this.child.stdout.on('data', (chunk: Buffer) => {
      this.touch();
      if (!this.push(chunk)) this.child.stdout.pause();
    });
    this.child.stdout.on('end', () => {
      this.stdoutEnded = true;
      this.settle();
    });
    this.child.on('exit', (code, signal) => {
      this.exit = { code, signal };
      this.settle();
    });
    this.touch();
  }

  override _read(): void {
    this.touch();
    this.child.stdout.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.touch();
    if (this.exit !== null) {
      callback(this.exitError() ?? new CompressionError(`${this.what} exited before its input ended`));
      return;
    }
    if (this.child.stdin.write(chunk)) callback();
    else {
      const onDrain = (): void => {
        this.child.off('exit', onExit);
        callback();
      };
      const onExit = (): void => {
        this.child.stdin.off('drain', onDrain);
        callback(this.exitError() ?? new CompressionError(`${this.what} exited before its input ended`));
      };
      this.child.stdin.once('drain', onDrain);
      this.child.once('exit', onExit);
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.touch();
    this.child.stdin.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.clearIdle();
    if (this.exit === null) this.child.kill('SIGKILL');
    this.child.stdout.destroy();
    this.child.stdin.destroy();
    callback(error);
  }

  /** Ends the readable side once both stdout is drained and the exit status is known. */
  private settle(): void {
    if (!this.stdoutEnded || this.exit === null || this.destroyed) return;
    this.clearIdle();
    const error = this.exitError();
    if (error) this.destroy(error);
    else this.push(null);
  }

  private exitError(): CompressionError | null {
    if (this.exit === null) return null;
    const { code, signal } = this.exit;
    if (code === 0) return null;
    const reason = this.stderr.trim().split('\n').slice(-3).join('; ').slice(0, 500);
    return new CompressionError(
      `${this.what} failed (${signal ?? `exit ${code}`})${reason ? `: ${reason}` : ''}`,
    );
  }

  private fail(message: string): void {
    if (!this.destroyed) this.destroy(new CompressionError(message));
  }

  private touch(): void {
    this.clearIdle();
    if (this.destroyed || (this.exit !== null && this.stdoutEnded)) return;
    this.idleTimer = setTimeout(
      () => this.fail(`${this.what} made no progress for ${this.idleTimeoutMs} ms`),
      this.idleTimeoutMs,
    );
    this.idleTimer.unref();
  }

  private clearIdle(): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}

/** A stream that compresses what is written to it (one zstd frame, with content checksum). */
export function createCompressStream(options: CompressionOptions = {}): ZstdProcessStream {
  const level = options.level ?? DEFAULT_COMPRESSION_LEVEL;
  if (!Number.isInteger(level) || level < 1 || level > 19) {
    throw new RangeError(`zstd level must be an integer 1..19, got ${level}`);
  }
  return new ZstdProcessStream(['-q', '-c', `-${level}`, '-T1', '--check', '-'], options);
}

/** A stream that decompresses zstd data; fails on corrupted, truncated or empty input. */
export function createDecompressStream(options: CompressionOptions = {}): ZstdProcessStream {
  return new ZstdProcessStream(['-q', '-d', '-c', `--memory=${DECOMPRESS_MEMORY_LIMIT}`, '-'], options);
}

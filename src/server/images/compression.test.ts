/**
 * The zstd stream wrapper: round trips of empty, small and large data; corrupted, truncated, foreign and
 * empty input fail with a CompressionError (never a silent short result); a missing binary, a stall and
 * an early destroy clean up the child; memory stays bounded while a large stream goes through.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import {
  CompressionError,
  createCompressStream,
  createDecompressStream,
  ZstdProcessStream,
} from './compression.js';

async function collect(input: Buffer | Iterable<Buffer>, transform: ZstdProcessStream): Promise<Buffer> {
  const out: Buffer[] = [];
  const source = Buffer.isBuffer(input) ? Readable.from([input]) : Readable.from(input);
  await pipeline(
    source,
    transform,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        out.push(chunk);
        callback();
      },
    }),
  );
  return Buffer.concat(out);
}

async function roundTrip(data: Buffer): Promise<{ compressed: Buffer; restored: Buffer }> {
  const compressed = await collect(data, createCompressStream());
  const restored = await collect(compressed, createDecompressStream());
  return { compressed, restored };
}

describe('zstd compression streams', () => {
  test('empty input round-trips (the compressed form is one valid frame)', async () => {
    const { compressed, restored } = await roundTrip(Buffer.alloc(0));
    assert.ok(compressed.length > 0);
    assert.equal(compressed.readUInt32LE(0), 0xfd2fb528); // zstd frame magic
    assert.equal(restored.length, 0);
  });

  test('small input round-trips', async () => {
    const data = Buffer.from('hello, rampart\n');
    assert.deepEqual((await roundTrip(data)).restored, data);
  });

  test('large mixed input round-trips and compresses', async () => {
    const parts: Buffer[] = [];
    for (let i = 0; i < 24; i++) {
      parts.push(i % 3 === 0 ? randomBytes(1024 * 1024) : Buffer.alloc(1024 * 1024, i));
    }
    const data = Buffer.concat(parts);
    const { compressed, restored } = await roundTrip(data);
    assert.ok(compressed.length < data.length / 2, `compressed to ${compressed.length}`);
    assert.equal(restored.length, data.length);
    assert.ok(restored.equals(data));
  });

  test('levels are validated', () => {
    assert.throws(() => createCompressStream({ level: 0 }), RangeError);
    assert.throws(() => createCompressStream({ level: 1.5 }), RangeError);
  });

  test('corrupted input fails with a CompressionError', async () => {
    const data = randomBytes(256 * 1024);
    const compressed = await collect(Buffer.concat([data, data]), createCompressStream());
    const corrupted = Buffer.from(compressed);
    corrupted[Math.floor(corrupted.length / 2)]! ^= 0x40;
    await assert.rejects(collect(corrupted, createDecompressStream()), CompressionError);
  });

  test('truncated input fails even after some output was produced', async () => {
    const compressed = await collect(randomBytes(512 * 1024), createCompressStream());
    const truncated = compressed.subarray(0, compressed.length - 100);
    await assert.rejects(collect(truncated, createDecompressStream()), (error: unknown) => {
      assert.ok(error instanceof CompressionError);
      assert.match(error.message, /exit 1/);
      return true;
    });
  });

  test('foreign and empty input fail', async () => {
    await assert.rejects(collect(Buffer.from('not zstd at all'), createDecompressStream()), CompressionError);
    await assert.rejects(collect(Buffer.alloc(0), createDecompressStream()), CompressionError);
  });

  test('a missing binary fails with a CompressionError', async () => {
    await assert.rejects(
      collect(Buffer.from('x'), createCompressStream({ binary: '/nonexistent/zstd' })),
      CompressionError,
    );
  });

  test('a stalled stream times out and kills the child', async () => {
    const stream = createDecompressStream({ idleTimeoutMs: 200 });
    const failed = new Promise<Error>((resolve) => stream.once('error', resolve));
    stream.resume();
    stream.write(Buffer.from([0x28, 0xb5])); // half a frame header, then nothing
    const error = await failed;
    assert.ok(error instanceof CompressionError);
    assert.match(error.message, /no progress/);
  });

  test('destroying the stream early kills the child', async () => {
    const stream = createCompressStream();
    const child = (stream as unknown as { child: { pid: number; exitCode: number | null } }).child;
    stream.write(randomBytes(1024));
    stream.destroy();
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.throws(() => process.kill(child.pid, 0), /ESRCH/);
  });

  test('memory stays bounded while 512 MiB stream through both directions', async () => {
    const total = 512 * 1024 * 1024;
    const chunk = randomBytes(1024 * 1024);
    let produced = 0;
    const source = new Readable({
      read() {
        if (produced >= total) this.push(null);
        else {
          // Half random (incompressible), half zeros: both directions move real volume.
          this.push(produced % (2 * chunk.length) === 0 ? chunk : Buffer.alloc(chunk.length));
          produced += chunk.length;
        }
      },
    });
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const hash = createHash('sha256');
    let restored = 0;
    try {
      await pipeline(
        source,
        createCompressStream({ level: 1 }),
        createDecompressStream(),
        new Writable({
          write(data: Buffer, _encoding, callback) {
            restored += data.length;
            hash.update(data);
            callback();
          },
        }),
      );
    } finally {
      clearInterval(sampler);
    }
    assert.equal(restored, total);
    const growthMiB = (peak - before) / 2 ** 20;
    assert.ok(growthMiB < 96, `RSS grew by ${growthMiB.toFixed(0)} MiB for a 512 MiB stream`);
  });
});

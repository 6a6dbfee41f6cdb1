/**
 * Throughput of the chunked AEAD on a 256 MiB stream (in memory, so the disk is not measured), and of
 * verifyBlob() over a file of it: node dist/src/server/images/crypto/chunked-aead.bench.js [MiB]
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createDecryptStream, createEncryptStream, verifyBlob } from './chunked-aead.js';

const mib = Number(process.argv[2] ?? 256);
const key = randomBytes(32);
const piece = randomBytes(1024 * 1024);
const source = (): Readable =>
  Readable.from(
    (function* () {
      for (let i = 0; i < mib; i += 1) yield piece;
    })(),
  );

const rate = (start: bigint): string => {
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return `${(mib / seconds).toFixed(0)} MiB/s (${seconds.toFixed(2)} s)`;
};

const dir = mkdtempSync(join(tmpdir(), 'rampart-aead-bench-'));
try {
  const blob: Buffer[] = [];
  let start = process.hrtime.bigint();
  await pipeline(
    source(),
    createEncryptStream(key, { keyId: 'bench/v1' }),
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        blob.push(chunk);
        cb();
      },
    }),
  );
  console.log(`encrypt ${mib} MiB: ${rate(start)}`);

  start = process.hrtime.bigint();
  await pipeline(
    Readable.from(blob),
    createDecryptStream(key),
    new Writable({ write: (_c, _e, cb) => cb() }),
  );
  console.log(`decrypt ${mib} MiB: ${rate(start)}`);

  const path = join(dir, 'blob');
  await pipeline(Readable.from(blob), createWriteStream(path));
  blob.length = 0;
  start = process.hrtime.bigint();
  await verifyBlob(path, key);
  console.log(`verifyBlob ${mib} MiB (page-cached file): ${rate(start)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

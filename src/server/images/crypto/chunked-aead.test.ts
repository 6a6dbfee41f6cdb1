/**
 * The chunked AEAD format: round trips at the size edges, and every kind of tampering (bit flips in the
 * header, nonces, ciphertext and tags; truncation; reordering; appended data; a wrong key) is detected and
 * names the header or the chunk at fault, by the stream and by the random-access reader alike. Also
 * checks that a 64 MiB stream passes through with bounded memory.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  ChunkedAeadError,
  createDecryptStream,
  createEncryptStream,
  decryptChunk,
  NONCE_BYTES,
  readKeyId,
  TAG_BYTES,
  verifyBlob,
  type KeySource,
} from './chunked-aead.js';

const dir = mkdtempSync(join(tmpdir(), 'rampart-aead-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const KEY = randomBytes(32);
const CHUNK = 1024;
const KEY_ID = 'tenant-a/v1';
/** Header length for KEY_ID: fixed 35 bytes + key id + 16-byte tag. */
const HEADER = 35 + Buffer.byteLength(KEY_ID) + 16;
const RECORD = NONCE_BYTES + CHUNK + TAG_BYTES;

/** Feeds buf in uneven pieces so the parsers see data split at arbitrary offsets. */
function pieces(buf: Buffer): Readable {
  const parts: Buffer[] = [];
  for (let offset = 0, step = 1; offset < buf.length; offset += step, step = (step * 7 + 3) % 1500) {
    parts.push(buf.subarray(offset, offset + step));
  }
  return Readable.from(parts, { objectMode: false });
}

async function collect(source: Readable, transform: NodeJS.ReadWriteStream): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    source,
    transform,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

function encrypt(plain: Buffer, key = KEY, chunkSize = CHUNK): Promise<Buffer> {
  return collect(pieces(plain), createEncryptStream(key, { keyId: KEY_ID, chunkSize }));
}

function decrypt(blob: Buffer, key: KeySource = KEY): Promise<Buffer> {
  return collect(pieces(blob), createDecryptStream(key));
}

let fileCounter = 0;
function store(blob: Buffer): string {
  const path = join(dir, `blob-${fileCounter++}`);
  writeFileSync(path, blob);
  return path;
}

/** Asserts that the stream decryptor and verifyBlob() both reject blob, naming chunk (null = header). */
async function assertRejected(blob: Buffer, chunk: number | null, key: KeySource = KEY): Promise<void> {
  const check = (err: unknown): boolean => {
    assert.ok(err instanceof ChunkedAeadError, `expected ChunkedAeadError, got ${String(err)}`);
    assert.equal(err.chunkIndex, chunk, err.message);
    assert.match(err.message, chunk === null ? /header/ : new RegExp(`chunk ${chunk}\\b`));
    return true;
  };
  await assert.rejects(decrypt(blob, key), check);
  await assert.rejects(verifyBlob(store(blob), key), check);
}

function flipBit(blob: Buffer, offset: number): Buffer {
  const copy = Buffer.from(blob);
  copy[offset] = (copy[offset] ?? 0) ^ 0x10;
  return copy;
}

test('round trips empty, 1 byte, exact multiples and odd sizes, stream and file', async () => {
  for (const size of [0, 1, CHUNK - 1, CHUNK, 2 * CHUNK, 3 * CHUNK + 517]) {
    const plain = randomBytes(size);
    const blob = await encrypt(plain);
    const chunks = Math.floor(size / CHUNK) + 1;
    // The final chunk is always short (empty on exact multiples): its length tells it is final.
    assert.equal(blob.length, HEADER + chunks * (NONCE_BYTES + TAG_BYTES) + size, `size ${size}`);
    assert.deepEqual(await decrypt(blob), plain, `size ${size}`);
    const path = store(blob);
    assert.deepEqual(await verifyBlob(path, KEY), {
      keyId: KEY_ID,
      chunkSize: CHUNK,
      chunkCount: chunks,
      plaintextBytes: size,
    });
    const last = await decryptChunk(path, chunks - 1, KEY);
    assert.deepEqual(last, plain.subarray((chunks - 1) * CHUNK));
    assert.equal(await readKeyId(path), KEY_ID);
  }
});

test('the default chunk size is 1 MiB and a key lookup receives the key id', async () => {
  const plain = randomBytes(2.5 * 1024 * 1024);
  const blob = await collect(pieces(plain), createEncryptStream(KEY, { keyId: 'tenant-b/v7' }));
  const seen: string[] = [];
  const out = await collect(
    Readable.from([blob]),
    createDecryptStream((keyId) => {
      seen.push(keyId);
      return KEY;
    }),
  );
  assert.deepEqual(out, plain);
  assert.deepEqual(seen, ['tenant-b/v7']);
  const path = store(blob);
  assert.equal((await verifyBlob(path, KEY)).chunkCount, 3);
  assert.deepEqual(await decryptChunk(path, 1, KEY), plain.subarray(1024 * 1024, 2 * 1024 * 1024));
});

test('encrypting the same plaintext twice gives unrelated ciphertexts', async () => {
  const plain = randomBytes(3000);
  const a = await encrypt(plain);
  const b = await encrypt(plain);
  assert.notDeepEqual(a.subarray(HEADER), b.subarray(HEADER));
});

test('a flipped bit anywhere in the header is rejected as a header failure', async () => {
  const blob = await encrypt(randomBytes(3 * CHUNK + 10));
  for (let offset = 0; offset < HEADER; offset += 1) {
    const tampered = flipBit(blob, offset);
    await assert.rejects(decrypt(tampered), (err: unknown) => {
      assert.ok(err instanceof ChunkedAeadError, String(err));
      assert.equal(err.chunkIndex, null, `offset ${offset}: ${err.message}`);
      return true;
    });
  }
  // Key id, file id and header tag edits reach authentication; both readers agree.
  await assertRejected(flipBit(blob, 20), null);
  await assertRejected(flipBit(blob, HEADER - 1), null);
});

test('a flipped bit in any chunk nonce, ciphertext or tag fails naming that chunk', async () => {
  const plain = randomBytes(3 * CHUNK + 10);
  const blob = await encrypt(plain);
  for (let chunk = 0; chunk < 4; chunk += 1) {
    const start = HEADER + chunk * RECORD;
    const end = Math.min(start + RECORD, blob.length);
    for (const offset of [
      start,
      start + NONCE_BYTES - 1,
      start + NONCE_BYTES,
      end - TAG_BYTES - 1,
      end - 1,
    ]) {
      await assertRejected(flipBit(blob, offset), chunk);
    }
  }
  // Random access checks the requested chunk only, and still catches its tampering.
  const path = store(flipBit(blob, HEADER + 2 * RECORD + 100));
  assert.deepEqual(await decryptChunk(path, 1, KEY), plain.subarray(CHUNK, 2 * CHUNK));
  await assert.rejects(decryptChunk(path, 2, KEY), /chunk 2: authentication failed/);
});

test('the stream emits no plaintext of a chunk that fails', async () => {
  const plain = randomBytes(3 * CHUNK);
  const blob = flipBit(await encrypt(plain), HEADER + RECORD + 50);
  const out: Buffer[] = [];
  await assert.rejects(
    pipeline(
      Readable.from([blob]),
      createDecryptStream(KEY),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          out.push(chunk);
          cb();
        },
      }),
    ),
    /chunk 1/,
  );
  assert.deepEqual(Buffer.concat(out), plain.subarray(0, CHUNK));
});

test('truncation, reordering, duplication and appended data are detected', async () => {
  const blob = await encrypt(randomBytes(3 * CHUNK + 10));
  const records = [0, 1, 2, 3].map((i) => blob.subarray(HEADER + i * RECORD, HEADER + (i + 1) * RECORD));
  const [r0, r1, r2, r3] = records as [Buffer, Buffer, Buffer, Buffer];
  const head = blob.subarray(0, HEADER);
  // Drop the final chunk: the blob now ends on a non-final chunk.
  await assertRejected(Buffer.concat([head, r0, r1, r2]), 3);
  // Drop the last two: same, earlier.
  await assertRejected(Buffer.concat([head, r0, r1]), 2);
  // Only the header is left.
  await assertRejected(head, 0);
  // Cut in the middle of a chunk: that partial record is taken as final and fails.
  await assertRejected(blob.subarray(0, HEADER + RECORD + 500), 1);
  await assertRejected(blob.subarray(0, blob.length - 1), 3);
  // Cut inside the header.
  await assertRejected(blob.subarray(0, HEADER - 3), null);
  // Swap two chunks, duplicate one, replace one by another blob's chunk at the same index.
  await assertRejected(Buffer.concat([head, r1, r0, r2, r3]), 0);
  await assertRejected(Buffer.concat([head, r0, r0, r2, r3]), 1);
  const other = await encrypt(randomBytes(3 * CHUNK + 10));
  await assertRejected(
    Buffer.concat([head, r0, other.subarray(HEADER + RECORD, HEADER + 2 * RECORD), r2, r3]),
    1,
  );
  // Appended data: a few bytes lengthen the final record; a whole extra record follows the final one.
  await assertRejected(Buffer.concat([blob, Buffer.from('x')]), 3);
  await assertRejected(Buffer.concat([blob, randomBytes(RECORD + 40)]), 3);
  // A final chunk sealed as final cannot be replaced by a truncated non-final one and vice versa.
  await assertRejected(Buffer.concat([head, r0, r1, r2, r2.subarray(0, 40)]), 3);
});

test('another key fails at the header, as does a lookup that has no key', async () => {
  const blob = await encrypt(randomBytes(CHUNK + 1));
  await assertRejected(blob, null, randomBytes(32));
  await assert.rejects(
    decrypt(blob, () => {
      throw new Error('unknown key version');
    }),
    /header: no key for key id "tenant-a\/v1": unknown key version/,
  );
  await assert.rejects(decrypt(Buffer.from('not an encrypted blob at all')), /bad magic/);
});

test('header fields are validated: huge chunk sizes and short keys are refused', async () => {
  const blob = await encrypt(randomBytes(10));
  const huge = Buffer.from(blob);
  huge.writeUInt32BE(0x7fffffff, 10);
  await assertRejected(huge, null);
  assert.throws(() => createEncryptStream(randomBytes(16), { keyId: 'k' }), /32 bytes/);
  assert.throws(() => createEncryptStream(KEY, { keyId: '' }), /key id/);
  assert.throws(() => createEncryptStream(KEY, { keyId: 'k', chunkSize: 0 }), /chunk size/);
  await assert.rejects(decryptChunk(store(blob), 1, KEY), RangeError);
});

test('64 MiB through encrypt and decrypt with bounded memory', async (t) => {
  // Without a forced GC, V8 lets up to ~64 MiB of dead external buffers pile up before collecting, so
  // peak RSS would measure GC laziness rather than what the streams retain. Collect every 2 MiB instead.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const total = 64 * 1024 * 1024;
  const piece = 256 * 1024;
  const blobPath = join(dir, 'big');
  const inputHash = createHash('sha256');
  const outputHash = createHash('sha256');
  let outputBytes = 0;
  let peak = 0;
  const sample = (bytes: number): void => {
    if (bytes % (2 * 1024 * 1024) === 0) gc();
    peak = Math.max(peak, process.memoryUsage().rss);
  };
  async function* source() {
    for (let sent = 0; sent < total; sent += piece) {
      const buf = randomBytes(piece);
      inputHash.update(buf);
      sample(sent);
      yield buf;
    }
  }
  // Warm up crypto and streams so their one-time allocations do not count.
  await pipeline(
    Readable.from([randomBytes(3 * 1024 * 1024)]),
    createEncryptStream(KEY, { keyId: KEY_ID }),
    new Writable({ write: (_c, _e, cb) => cb() }),
  );
  gc();
  const base = process.memoryUsage().rss;
  try {
    await pipeline(
      Readable.from(source()),
      createEncryptStream(KEY, { keyId: KEY_ID }),
      createWriteStream(blobPath),
    );
    await pipeline(
      createReadStream(blobPath),
      createDecryptStream(KEY),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          outputHash.update(chunk);
          outputBytes += chunk.length;
          sample(outputBytes);
          cb();
        },
      }),
    );
    assert.equal((await verifyBlob(blobPath, KEY)).plaintextBytes, total);
  } finally {
    rmSync(blobPath, { force: true });
  }
  assert.equal(outputBytes, total);
  assert.equal(outputHash.digest('hex'), inputHash.digest('hex'));
  const growthMiB = (peak - base) / (1024 * 1024);
  t.diagnostic(`peak RSS growth ${growthMiB.toFixed(1)} MiB`);
  assert.ok(growthMiB < 32, `RSS grew by ${growthMiB.toFixed(1)} MiB`);
});

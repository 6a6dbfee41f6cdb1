/**
 * Chunked authenticated encryption for large blobs (images at rest), with bounded memory.
 *
 * Why chunks: one AES-GCM tag over a multi-GiB image would force a reader to buffer (or re-read) the
 * whole plaintext before it may trust any byte of it. Instead the plaintext is cut into fixed-size chunks
 * (1 MiB by default), each sealed with its own tag, so a reader holds at most one chunk, only releases a
 * chunk's plaintext after its tag verified, and a flipped byte is reported with the chunk that holds it.
 *
 * Format (all integers big-endian):
 *   header  magic "RPTENC1\0" (8) | version=1 (1) | algorithm=1 (1) | chunk size (4) | file id (16)
 *           | nonce prefix (4) | key id length n (1) | key id UTF-8 (n) | header tag (16)
 *   chunk*  nonce (12) | ciphertext (chunk size, or less for the final chunk) | GCM tag (16)
 * The last chunk is always shorter than the chunk size (it is empty when the plaintext length is an exact
 * multiple), so a record's length alone tells whether it is final and a stream needs no look-ahead.
 *
 * Keys: the caller's 32-byte key (a tenant data key) is never used directly. HKDF-SHA256 with the random
 * 16-byte file id as salt derives a per-blob encryption key and a per-blob header-MAC key. So GCM nonce
 * uniqueness only has to hold inside one blob, and two blobs under the same tenant key can never collide
 * on (key, nonce) unless their 128-bit file ids collide.
 *
 * Nonces: nonce = random 4-byte per-blob prefix | 8-byte chunk counter. The counter never repeats within a
 * blob, so no nonce is reused under a per-blob key. The nonce is also stored with each chunk and a reader
 * rejects any chunk whose stored nonce is not prefix|index, which catches moved or edited nonces early.
 *
 * AAD of every chunk = SHA-256(header including its tag) (32) | chunk index (8) | final flag (1). Binding
 * the header hash detects header edits (and splicing chunks between blobs); the index detects reordering
 * and duplication; the final flag detects truncation at a chunk boundary (the new last chunk was sealed as
 * non-final) and lets a missing final chunk be reported. Appended bytes either form a bogus extra record
 * or lengthen the final one, so they fail authentication too. The header tag (HMAC-SHA256, truncated to
 * 16 bytes, under the per-blob MAC key) lets a reader reject a wrong key or an edited header before it
 * touches any chunk.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';

export const MAGIC = Buffer.from('RPTENC1\0', 'latin1');
export const FORMAT_VERSION = 1;
/** AES-256-GCM with HKDF-SHA256 per-blob keys. */
export const ALGORITHM_AES256GCM_HKDF = 1;
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;
/** Upper bound on the chunk size a reader accepts: a forged header must not make it allocate gigabytes. */
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const KEY_BYTES = 32;
const FILE_ID_BYTES = 16;
const NONCE_PREFIX_BYTES = 4;
const HEADER_TAG_BYTES = 16;
/** Bytes of the header before the key id: magic, version, algorithm, chunk size, file id, prefix, n. */
const HEADER_FIXED_BYTES = 8 + 1 + 1 + 4 + FILE_ID_BYTES + NONCE_PREFIX_BYTES + 1;
export const MAX_HEADER_BYTES = HEADER_FIXED_BYTES + 255 + HEADER_TAG_BYTES;
const HKDF_INFO_ENC = Buffer.from('rampart chunked-aead v1 encryption key');
const HKDF_INFO_MAC = Buffer.from('rampart chunked-aead v1 header mac key');

/** Looks up the 32-byte key named by a blob's key id (e.g. a tenant data key version). */
export type KeyLookup = (keyId: string) => Buffer | Promise<Buffer>;
/** A key, or a lookup by the key id recorded in the blob's header. */
export type KeySource = Buffer | KeyLookup;

export interface EncryptOptions {
  /** Names the key in the header, e.g. "tenant-a/v1"; 1-255 bytes of UTF-8. */
  keyId: string;
  /** Plaintext bytes per chunk; 1 byte .. 64 MiB, default 1 MiB. */
  chunkSize?: number;
}

/** A blob that is malformed or failed authentication. chunkIndex is null when the header is at fault. */
export class ChunkedAeadError extends Error {
  constructor(
    readonly chunkIndex: number | null,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(
      chunkIndex === null
        ? `encrypted blob header: ${reason}`
        : `encrypted blob chunk ${chunkIndex}: ${reason}`,
      options,
    );
    this.name = 'ChunkedAeadError';
  }
}

interface Header {
  chunkSize: number;
  fileId: Buffer;
  noncePrefix: Buffer;
  keyId: string;
  /** The complete serialized header, tag included. */
  bytes: Buffer;
}

interface BlobKeys {
  enc: Buffer;
  mac: Buffer;
}

function checkKey(key: Buffer): void {
  if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
    throw new Error(`chunked-aead: the key must be ${KEY_BYTES} bytes`);
  }
}

function deriveKeys(key: Buffer, fileId: Buffer): BlobKeys {
  checkKey(key);
  return {
    enc: Buffer.from(hkdfSync('sha256', key, fileId, HKDF_INFO_ENC, KEY_BYTES)),
    mac: Buffer.from(hkdfSync('sha256', key, fileId, HKDF_INFO_MAC, KEY_BYTES)),
  };
}

function wipe(keys: BlobKeys | undefined): void {
  keys?.enc.fill(0);
  keys?.mac.fill(0);
}

function headerTag(mac: Buffer, unsignedHeader: Buffer): Buffer {
  return createHmac('sha256', mac).update(unsignedHeader).digest().subarray(0, HEADER_TAG_BYTES);
}

function checkChunkSize(chunkSize: number): void {
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE) {
    throw new Error(`chunked-aead: chunk size must be an integer between 1 and ${MAX_CHUNK_SIZE}`);
  }
}

function buildHeader(
  opts: EncryptOptions,
  chunkSize: number,
  fileId: Buffer,
  noncePrefix: Buffer,
  mac: Buffer,
) {
  const keyId = Buffer.from(opts.keyId, 'utf8');
  if (keyId.length < 1 || keyId.length > 255) throw new Error('chunked-aead: the key id must be 1-255 bytes');
  const unsigned = Buffer.alloc(HEADER_FIXED_BYTES + keyId.length);
  MAGIC.copy(unsigned, 0);
  unsigned.writeUInt8(FORMAT_VERSION, 8);
  unsigned.writeUInt8(ALGORITHM_AES256GCM_HKDF, 9);
  unsigned.writeUInt32BE(chunkSize, 10);
  fileId.copy(unsigned, 14);
  noncePrefix.copy(unsigned, 14 + FILE_ID_BYTES);
  unsigned.writeUInt8(keyId.length, HEADER_FIXED_BYTES - 1);
  keyId.copy(unsigned, HEADER_FIXED_BYTES);
  return Buffer.concat([unsigned, headerTag(mac, unsigned)]);
}

/**
 * Parses the header at the start of buf. Returns undefined when buf is too short to hold it yet, so a
 * stream can wait for more bytes. Checks structure only; the tag is checked by authenticateHeader().
 */
function parseHeader(buf: Buffer, maxChunkSize: number): Header | undefined {
  if (buf.length < HEADER_FIXED_BYTES) {
    if (!MAGIC.subarray(0, Math.min(buf.length, MAGIC.length)).equals(buf.subarray(0, MAGIC.length))) {
      throw new ChunkedAeadError(null, 'bad magic (not a Rampart encrypted blob)');
    }
    return undefined;
  }
  if (!buf.subarray(0, 8).equals(MAGIC))
    throw new ChunkedAeadError(null, 'bad magic (not a Rampart encrypted blob)');
  const version = buf.readUInt8(8);
  if (version !== FORMAT_VERSION) throw new ChunkedAeadError(null, `unsupported format version ${version}`);
  const algorithm = buf.readUInt8(9);
  if (algorithm !== ALGORITHM_AES256GCM_HKDF)
    throw new ChunkedAeadError(null, `unsupported algorithm ${algorithm}`);
  const chunkSize = buf.readUInt32BE(10);
  if (chunkSize < 1 || chunkSize > maxChunkSize) {
    throw new ChunkedAeadError(null, `chunk size ${chunkSize} outside 1..${maxChunkSize}`);
  }
  const keyIdLength = buf.readUInt8(HEADER_FIXED_BYTES - 1);
  if (keyIdLength === 0) throw new ChunkedAeadError(null, 'empty key id');
  const total = HEADER_FIXED_BYTES + keyIdLength + HEADER_TAG_BYTES;
  if (buf.length < total) return undefined;
  const bytes = Buffer.from(buf.subarray(0, total));
  return {
    chunkSize,
    fileId: bytes.subarray(14, 14 + FILE_ID_BYTES),
    noncePrefix: bytes.subarray(14 + FILE_ID_BYTES, 14 + FILE_ID_BYTES + NONCE_PREFIX_BYTES),
    keyId: bytes.toString('utf8', HEADER_FIXED_BYTES, HEADER_FIXED_BYTES + keyIdLength),
    bytes,
  };
}

async function resolveKey(source: KeySource, keyId: string): Promise<Buffer> {
  let key: Buffer;
  try {
    key = Buffer.isBuffer(source) ? source : await source(keyId);
  } catch (err) {
    throw new ChunkedAeadError(null, `no key for key id "${keyId}": ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
    throw new ChunkedAeadError(null, `the key for key id "${keyId}" is not ${KEY_BYTES} bytes`);
  }
  return key;
}

/** Derives the blob keys and checks the header tag: a wrong key or an edited header stops here. */
async function authenticateHeader(header: Header, source: KeySource): Promise<BlobKeys> {
  const keys = deriveKeys(await resolveKey(source, header.keyId), header.fileId);
  const signedLength = header.bytes.length - HEADER_TAG_BYTES;
  const expected = headerTag(keys.mac, header.bytes.subarray(0, signedLength));
  if (!timingSafeEqual(expected, header.bytes.subarray(signedLength))) {
    wipe(keys);
    throw new ChunkedAeadError(null, 'authentication failed (wrong key, or the header was modified)');
  }
  return keys;
}

function chunkNonce(prefix: Buffer, index: number): Buffer {
  const nonce = Buffer.alloc(NONCE_BYTES);
  prefix.copy(nonce, 0);
  nonce.writeBigUInt64BE(BigInt(index), NONCE_PREFIX_BYTES);
  return nonce;
}

function chunkAad(headerHash: Buffer, index: number, final: boolean): Buffer {
  const aad = Buffer.alloc(32 + 8 + 1);
  headerHash.copy(aad, 0);
  aad.writeBigUInt64BE(BigInt(index), 32);
  aad.writeUInt8(final ? 1 : 0, 40);
  return aad;
}

function sealChunk(
  keys: BlobKeys,
  header: Header,
  headerHash: Buffer,
  index: number,
  plain: Buffer,
  final: boolean,
) {
  const nonce = chunkNonce(header.noncePrefix, index);
  const cipher = createCipheriv('aes-256-gcm', keys.enc, nonce);
  cipher.setAAD(chunkAad(headerHash, index, final));
  const ciphertext = cipher.update(plain);
  cipher.final();
  return [nonce, ciphertext, cipher.getAuthTag()];
}

/**
 * Opens one record (nonce | ciphertext | tag). Returns the plaintext only after the tag verified; throws
 * a ChunkedAeadError naming the chunk otherwise.
 */
function openChunk(
  keys: BlobKeys,
  header: Header,
  headerHash: Buffer,
  index: number,
  record: Buffer,
  final: boolean,
): Buffer {
  if (record.length < NONCE_BYTES + TAG_BYTES) throw new ChunkedAeadError(index, 'truncated record');
  const nonce = record.subarray(0, NONCE_BYTES);
  if (!nonce.equals(chunkNonce(header.noncePrefix, index))) {
    throw new ChunkedAeadError(index, 'unexpected nonce (chunk moved, duplicated or modified)');
  }
  const decipher = createDecipheriv('aes-256-gcm', keys.enc, nonce);
  decipher.setAAD(chunkAad(headerHash, index, final));
  decipher.setAuthTag(record.subarray(record.length - TAG_BYTES));
  const plain = decipher.update(record.subarray(NONCE_BYTES, record.length - TAG_BYTES));
  try {
    decipher.final();
  } catch {
    plain.fill(0);
    throw new ChunkedAeadError(
      index,
      final
        ? 'authentication failed (modified, truncated, reordered, extended or wrong key)'
        : 'authentication failed (modified, reordered or wrong key)',
    );
  }
  return plain;
}

/** Encrypts a byte stream into the chunked format. Memory: one chunk of plaintext plus its ciphertext. */
export function createEncryptStream(key: Buffer, opts: EncryptOptions): Transform {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  checkChunkSize(chunkSize);
  const fileId = randomBytes(FILE_ID_BYTES);
  const noncePrefix = randomBytes(NONCE_PREFIX_BYTES);
  const keys = deriveKeys(key, fileId);
  const headerBytes = buildHeader(opts, chunkSize, fileId, noncePrefix, keys.mac);
  const header: Header = { chunkSize, fileId, noncePrefix, keyId: opts.keyId, bytes: headerBytes };
  const headerHash = createHash('sha256').update(headerBytes).digest();
  const pending = Buffer.alloc(chunkSize);
  let filled = 0;
  let index = 0;
  let headerSent = false;

  const emit = (stream: Transform, plain: Buffer, final: boolean): void => {
    for (const part of sealChunk(keys, header, headerHash, index, plain, final)) stream.push(part);
    index += 1;
  };
  const sendHeader = (stream: Transform): void => {
    if (!headerSent) stream.push(headerBytes);
    headerSent = true;
  };

  return new Transform({
    transform(data: Buffer, _encoding, callback: TransformCallback) {
      try {
        sendHeader(this);
        let offset = 0;
        while (offset < data.length) {
          const n = Math.min(chunkSize - filled, data.length - offset);
          data.copy(pending, filled, offset, offset + n);
          filled += n;
          offset += n;
          // A full chunk is never final: the final chunk is always shorter, possibly empty.
          if (filled === chunkSize) {
            emit(this, pending, false);
            filled = 0;
          }
        }
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },
    flush(callback: TransformCallback) {
      try {
        sendHeader(this);
        emit(this, pending.subarray(0, filled), true);
        callback();
      } catch (err) {
        callback(err as Error);
      } finally {
        pending.fill(0);
        wipe(keys);
      }
    },
    destroy(err, callback) {
      pending.fill(0);
      wipe(keys);
      callback(err);
    },
  });
}

export interface DecryptOptions {
  /** Refuse headers announcing a larger chunk size (bounded memory); default and maximum 64 MiB. */
  maxChunkSize?: number;
}

/**
 * Decrypts a chunked blob. A chunk's plaintext is pushed only after its tag verified; any failure errors
 * the stream with a ChunkedAeadError naming the header or the chunk. Note that earlier, verified chunks
 * have already been emitted when a later one fails: consumers must treat the output as void on error.
 */
export function createDecryptStream(source: KeySource, opts: DecryptOptions = {}): Transform {
  const maxChunkSize = Math.min(opts.maxChunkSize ?? MAX_CHUNK_SIZE, MAX_CHUNK_SIZE);
  let headerBuf: Buffer | undefined = Buffer.alloc(0);
  let header: Header | undefined;
  let headerHash: Buffer | undefined;
  let keys: BlobKeys | undefined;
  let record: Buffer | undefined;
  let filled = 0;
  let index = 0;

  const consumeRecords = (stream: Transform, data: Buffer): void => {
    if (!record || !header || !keys || !headerHash) throw new Error('chunked-aead: decrypt state');
    let offset = 0;
    while (offset < data.length) {
      const n = Math.min(record.length - filled, data.length - offset);
      data.copy(record, filled, offset, offset + n);
      filled += n;
      offset += n;
      // A full-length record cannot be the final chunk (the final one is always shorter).
      if (filled === record.length) {
        stream.push(openChunk(keys, header, headerHash, index, record, false));
        index += 1;
        filled = 0;
      }
    }
  };

  return new Transform({
    transform(data: Buffer, _encoding, callback: TransformCallback) {
      const run = async (): Promise<void> => {
        if (headerBuf) {
          headerBuf = Buffer.concat([headerBuf, data]);
          const parsed = parseHeader(headerBuf, maxChunkSize);
          if (!parsed) {
            if (headerBuf.length > MAX_HEADER_BYTES) throw new ChunkedAeadError(null, 'header too long');
            return;
          }
          keys = await authenticateHeader(parsed, source);
          header = parsed;
          headerHash = createHash('sha256').update(parsed.bytes).digest();
          record = Buffer.alloc(NONCE_BYTES + parsed.chunkSize + TAG_BYTES);
          const rest = headerBuf.subarray(parsed.bytes.length);
          headerBuf = undefined;
          consumeRecords(this, rest);
          return;
        }
        consumeRecords(this, data);
      };
      run().then(
        () => callback(),
        (err: Error) => callback(err),
      );
    },
    flush(callback: TransformCallback) {
      try {
        if (!header || !keys || !headerHash || !record) {
          throw new ChunkedAeadError(null, 'truncated (the blob ends inside the header)');
        }
        if (filled === 0) throw new ChunkedAeadError(index, 'missing final chunk (the blob was truncated)');
        this.push(openChunk(keys, header, headerHash, index, record.subarray(0, filled), true));
        callback();
      } catch (err) {
        callback(err as Error);
      } finally {
        wipe(keys);
      }
    },
    destroy(err, callback) {
      wipe(keys);
      callback(err);
    },
  });
}

/** An opened blob file for random access: header authenticated, chunk geometry known. */
interface OpenedBlob {
  file: FileHandle;
  header: Header;
  headerHash: Buffer;
  keys: BlobKeys;
  /** Number of chunks including the final one. */
  chunkCount: number;
  finalRecordLength: number;
}

async function openBlob(path: string, source: KeySource): Promise<OpenedBlob> {
  const file = await open(path, 'r');
  try {
    const size = (await file.stat()).size;
    const head = Buffer.alloc(Math.min(size, MAX_HEADER_BYTES));
    await file.read(head, 0, head.length, 0);
    const header = parseHeader(head, MAX_CHUNK_SIZE);
    if (!header) throw new ChunkedAeadError(null, 'truncated (the blob ends inside the header)');
    const keys = await authenticateHeader(header, source);
    const fullRecord = NONCE_BYTES + header.chunkSize + TAG_BYTES;
    const body = size - header.bytes.length;
    const fullCount = Math.floor(body / fullRecord);
    const finalRecordLength = body - fullCount * fullRecord;
    if (finalRecordLength === 0) {
      wipe(keys);
      throw new ChunkedAeadError(fullCount, 'missing final chunk (the blob was truncated)');
    }
    if (finalRecordLength < NONCE_BYTES + TAG_BYTES) {
      wipe(keys);
      throw new ChunkedAeadError(fullCount, 'truncated record');
    }
    const headerHash = createHash('sha256').update(header.bytes).digest();
    return { file, header, headerHash, keys, chunkCount: fullCount + 1, finalRecordLength };
  } catch (err) {
    await file.close();
    throw err;
  }
}

async function readChunk(blob: OpenedBlob, index: number, buf: Buffer): Promise<Buffer> {
  const fullRecord = NONCE_BYTES + blob.header.chunkSize + TAG_BYTES;
  const final = index === blob.chunkCount - 1;
  const length = final ? blob.finalRecordLength : fullRecord;
  const position = blob.header.bytes.length + index * fullRecord;
  const { bytesRead } = await blob.file.read(buf, 0, length, position);
  if (bytesRead !== length) throw new ChunkedAeadError(index, 'short read (the blob changed while reading)');
  return openChunk(blob.keys, blob.header, blob.headerHash, index, buf.subarray(0, length), final);
}

export interface BlobSummary {
  keyId: string;
  chunkSize: number;
  chunkCount: number;
  plaintextBytes: number;
}

/** Reads a blob's key id without any key (to pick the key); the header is NOT authenticated by this. */
export async function readKeyId(path: string): Promise<string> {
  const file = await open(path, 'r');
  try {
    const head = Buffer.alloc(MAX_HEADER_BYTES);
    const { bytesRead } = await file.read(head, 0, head.length, 0);
    const header = parseHeader(head.subarray(0, bytesRead), MAX_CHUNK_SIZE);
    if (!header) throw new ChunkedAeadError(null, 'truncated (the blob ends inside the header)');
    return header.keyId;
  } finally {
    await file.close();
  }
}

/**
 * Checks the header and every chunk's tag of a blob file, holding one chunk in memory at a time.
 * Resolves with the blob's geometry; rejects with a ChunkedAeadError naming the first bad chunk.
 */
export async function verifyBlob(path: string, key: KeySource): Promise<BlobSummary> {
  const blob = await openBlob(path, key);
  try {
    const buf = Buffer.alloc(NONCE_BYTES + blob.header.chunkSize + TAG_BYTES);
    let plaintextBytes = 0;
    for (let index = 0; index < blob.chunkCount; index += 1) {
      const plain = await readChunk(blob, index, buf);
      plaintextBytes += plain.length;
      plain.fill(0);
    }
    return {
      keyId: blob.header.keyId,
      chunkSize: blob.header.chunkSize,
      chunkCount: blob.chunkCount,
      plaintextBytes,
    };
  } finally {
    wipe(blob.keys);
    await blob.file.close();
  }
}

/** Decrypts and authenticates one chunk of a blob file (random access, e.g. serving a byte range). */
export async function decryptChunk(path: string, index: number, key: KeySource): Promise<Buffer> {
  const blob = await openBlob(path, key);
  try {
    if (!Number.isInteger(index) || index < 0 || index >= blob.chunkCount) {
      throw new RangeError(`chunk index ${index} outside 0..${blob.chunkCount - 1}`);
    }
    return await readChunk(blob, index, Buffer.alloc(NONCE_BYTES + blob.header.chunkSize + TAG_BYTES));
  } finally {
    wipe(blob.keys);
    await blob.file.close();
  }
}

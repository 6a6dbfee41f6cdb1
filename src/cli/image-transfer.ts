/**
 * Streaming image transfers for the CLI: uploads read the file in 1 MiB pieces straight into the
 * request body (bounded memory, any size) and report progress; downloads stream to a temporary file,
 * check the SHA-256 the server announced, and only then rename it into place.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, statSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Image, ImagePart } from '../api/image.js';
import { parseErrorBody, type ApiClient } from './api-client.js';
import { GeneralError, UnreachableError, UsageError } from './errors.js';

export type Progress = (done: number, total: number) => void;

function fileUrl(client: ApiClient, ref: string, part: ImagePart): URL {
  return client.url(`/v1/images/${encodeURIComponent(ref)}/files/${part}`, { tenant: client.tenant });
}

async function failure(res: Response): Promise<never> {
  throw parseErrorBody(
    res.status,
    res.statusText,
    await res.text(),
    res.headers.get('x-request-id') ?? undefined,
  );
}

/** Uploads one file of a queued image; answers the image as the server left it (scan verdict etc.). */
export async function uploadImageFile(
  client: ApiClient,
  ref: string,
  part: ImagePart,
  path: string,
  onProgress?: Progress,
): Promise<Image> {
  let size: number;
  try {
    const info = statSync(path);
    if (!info.isFile()) throw new UsageError(`${path} is not a regular file`);
    size = info.size;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let sent = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, callback) {
      sent += chunk.length;
      onProgress?.(sent, size);
      callback(null, chunk);
    },
  });
  const body = Readable.toWeb(createReadStream(path, { highWaterMark: 1024 * 1024 }).pipe(counter));
  let res: Response;
  try {
    res = await fetch(fileUrl(client, ref, part), {
      method: 'PUT',
      headers: {
        ...(await client.authHeaders()),
        'content-type': 'application/octet-stream',
        'content-length': String(size),
        accept: 'application/json',
      },
      body: body as ReadableStream<Uint8Array>,
      duplex: 'half',
      redirect: 'manual',
    });
  } catch (error) {
    throw new UnreachableError(`upload failed: ${(error as Error).message}`);
  }
  if (res.status >= 400) return failure(res);
  return (await res.json()) as Image;
}

/**
 * Downloads one file of an image to `target`. The bytes go to `<target>.part` first; the file appears
 * under its name only when it was complete and its SHA-256 matches the one the server announced.
 */
export async function downloadImageFile(
  client: ApiClient,
  ref: string,
  part: ImagePart,
  target: string,
  onProgress?: Progress,
): Promise<{ sha256: string; bytes: number }> {
  if (existsSync(target)) throw new UsageError(`${target} exists; choose another file`);
  let res: Response;
  try {
    res = await fetch(fileUrl(client, ref, part), {
      headers: { ...(await client.authHeaders()), accept: 'application/octet-stream' },
      redirect: 'manual',
    });
  } catch (error) {
    throw new UnreachableError(`download failed: ${(error as Error).message}`);
  }
  if (res.status >= 400) return failure(res);
  const expected = res.headers.get('x-rampart-sha256');
  const total = Number(res.headers.get('content-length') ?? '0');
  if (!res.body || !expected) throw new GeneralError('the server sent no file (or no digest for it)');
  const hash = createHash('sha256');
  let bytes = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, callback) {
      bytes += chunk.length;
      hash.update(chunk);
      onProgress?.(bytes, total);
      callback(null, chunk);
    },
  });
  const partial = `${target}.part`;
  try {
    await pipeline(
      Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
      meter,
      createWriteStream(partial, { flags: 'wx', mode: 0o600 }),
    );
    const actual = hash.digest('hex');
    if (actual !== expected)
      throw new GeneralError(`the download does not match its digest (expected ${expected}, got ${actual})`);
    await rename(partial, target);
  } catch (error) {
    await rm(partial, { force: true });
    if (error instanceof GeneralError) throw error;
    throw new GeneralError(`download of ${part} failed: ${(error as Error).message}`);
  }
  return { sha256: expected, bytes };
}

/** A progress printer for stderr: at most one line per second and one at the end. */
export function progressPrinter(label: string, print: (line: string) => void): Progress {
  let last = 0;
  return (done, total) => {
    const now = Date.now();
    if (done < total && now - last < 1000) return;
    last = now;
    const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
    print(`${label}: ${(done / 1048576).toFixed(1)}/${(total / 1048576).toFixed(1)} MiB (${pct}%)`);
  };
}

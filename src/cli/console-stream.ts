/**
 * `vm console --follow`: the live serial console over the API's WebSocket. Output frames go to stdout
 * as they are; when stdin is a terminal it is put in raw mode and keystrokes are sent as text frames,
 * Ctrl-] detaches. Without a terminal the stream runs until Ctrl-C (SIGINT/SIGTERM) or the server
 * closes it.
 */
import { StringDecoder } from 'node:string_decoder';
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { InStream } from './context.js';
import { ApiError, GeneralError, UnreachableError } from './errors.js';
import { parseErrorBody } from './api-client.js';
import { sanitize, type OutStream } from './output.js';

/** Ctrl-] (GS), the telnet/virsh detach key. */
export const DETACH_BYTE = 0x1d;
const MAX_FRAME_BYTES = 16 * 1024 * 1024;
const HANDSHAKE_TIMEOUT_MS = 30_000;
const MAX_ERROR_BODY_BYTES = 64 * 1024;
/** The server ignores input frames above 4096 bytes; 1024 characters are at most 4096 UTF-8 bytes. */
const MAX_INPUT_CHARS = 1024;

/** Splits console input into frames the server accepts, never inside a surrogate pair. */
export function splitInput(text: string): string[] {
  const chunks: string[] = [];
  let rest = text;
  while (rest.length > MAX_INPUT_CHARS) {
    let cut = MAX_INPUT_CHARS;
    const code = rest.charCodeAt(cut - 1);
    if (code >= 0xd800 && code <= 0xdbff) cut--;
    chunks.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  if (rest.length > 0) chunks.push(rest);
  return chunks;
}

/**
 * An error for a close code of the 4000 range that carries an HTTP status (the server closes with 4404
 * when the VM is not found), so it maps to the same exit code as the REST answer would.
 */
export function closeCodeError(code: number, reason: string, name: string): Error {
  const status = code - 4000;
  const message = reason || `the console stream of ${name} was closed (code ${code})`;
  if (status >= 400 && status < 600) return new ApiError(status, `WS_CLOSE_${code}`, message);
  return new GeneralError(
    `the console stream of ${name} closed (code ${code}${reason ? `: ${reason}` : ''})`,
  );
}

export interface FollowOptions {
  url: URL;
  headers: Record<string, string>;
  name: string;
  stdin: InStream;
  stdout: OutStream;
  stderr: OutStream;
}

/** How the session ended: detached by the user, interrupted, or closed by the server. */
export type FollowEnd = 'detached' | 'interrupted' | 'closed';

function readErrorBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_ERROR_BODY_BYTES) chunks.push(chunk);
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

/** Streams the console until the user detaches or interrupts, or the server closes the stream. */
export async function followConsole(options: FollowOptions): Promise<FollowEnd> {
  const { WebSocket } = await import('ws');
  const { stdin, stdout, stderr } = options;
  const interactive = stdin.isTTY === true && typeof stdin.setRawMode === 'function';

  return new Promise<FollowEnd>((resolve, reject) => {
    const ws = new WebSocket(options.url, {
      headers: options.headers,
      maxPayload: MAX_FRAME_BYTES,
      followRedirects: false,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    });
    const decoder = new StringDecoder('utf8');
    let opened = false;
    let ending: FollowEnd | undefined;
    let settled = false;
    let rawMode = false;

    const restoreTerminal = () => {
      if (rawMode) {
        stdin.setRawMode?.(false);
        rawMode = false;
      }
    };
    const cleanup = () => {
      stdin.off('data', onInput);
      if (interactive) stdin.pause();
      restoreTerminal();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('exit', restoreTerminal);
    };
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      cleanup();
      fn();
    };
    const end = (how: FollowEnd) => {
      ending = how;
      if (ws.readyState === WebSocket.CONNECTING) {
        ws.terminate();
        finish(() => resolve(how));
      } else {
        ws.close(1000);
        // Do not hang on a peer that never answers the close.
        setTimeout(() => ws.terminate(), 2000).unref();
      }
    };
    function onSignal() {
      end('interrupted');
    }
    function onInput(chunk: Buffer | string) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      const detachAt = bytes.indexOf(DETACH_BYTE);
      const send = detachAt >= 0 ? bytes.subarray(0, detachAt) : bytes;
      const text = decoder.write(send);
      if (ws.readyState === WebSocket.OPEN) for (const frame of splitInput(text)) ws.send(frame);
      if (detachAt >= 0) end('detached');
    }

    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);

    ws.on('unexpected-response', (req: ClientRequest, res: IncomingMessage) => {
      void readErrorBody(res).then((text) => {
        req.destroy();
        const header = res.headers['x-request-id'];
        const requestId = typeof header === 'string' ? header : undefined;
        finish(() => reject(parseErrorBody(res.statusCode ?? 0, res.statusMessage ?? '', text, requestId)));
      });
    });

    ws.on('open', () => {
      opened = true;
      if (interactive) {
        stdin.setRawMode?.(true);
        rawMode = true;
        process.on('exit', restoreTerminal);
        stdin.on('data', onInput);
        stdin.resume();
        stderr.write(`Connected to the console of ${sanitize(options.name)}. Press Ctrl-] to detach.\r\n`);
      }
    });

    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
      if (Buffer.isBuffer(data)) stdout.write(data);
      else if (Array.isArray(data)) stdout.write(Buffer.concat(data));
      else stdout.write(Buffer.from(data));
    });

    ws.on('error', (err: Error) => {
      if (ending) return;
      if (!opened) {
        finish(() =>
          reject(new UnreachableError(`cannot open the console stream of ${options.name}: ${err.message}`)),
        );
      } else {
        finish(() => reject(new GeneralError(`console stream of ${options.name} failed: ${err.message}`)));
      }
    });

    ws.on('close', (code: number, reason: Buffer) => {
      const newline = interactive ? '\r\n' : '\n';
      if (ending) {
        if (ending === 'detached')
          stderr.write(`${newline}Detached from ${sanitize(options.name)}.${newline}`);
        finish(() => resolve(ending ?? 'closed'));
        return;
      }
      const why = sanitize(reason.toString('utf8'));
      if (code === 1000 || code === 1001 || code === 1005) {
        if (interactive)
          stderr.write(`${newline}Console closed by the server${why ? `: ${why}` : ''}.${newline}`);
        finish(() => resolve('closed'));
      } else {
        finish(() => reject(closeCodeError(code, why, options.name)));
      }
    });
  });
}

/**
 * Newline-delimited JSON over a byte stream: the framing of QMP, the agent protocol and the guest
 * agent channel. Lines over `maxLineBytes` are dropped and reported instead of growing memory.
 */
import type { Duplex } from 'node:stream';

export interface JsonLinesOptions {
  maxLineBytes?: number;
  onValue: (value: unknown) => void;
  onError?: (error: Error) => void;
}

/** Splits a stream into lines and parses each as JSON; returns a function that detaches the reader. */
export function readJsonLines(stream: Duplex, options: JsonLinesOptions): () => void {
  const max = options.maxLineBytes ?? 1024 * 1024;
  let chunks: Buffer[] = [];
  let size = 0;
  let overflow = false;
  const onData = (data: Buffer) => {
    let start = 0;
    for (;;) {
      const nl = data.indexOf(10, start);
      if (nl === -1) break;
      const piece = data.subarray(start, nl);
      start = nl + 1;
      if (overflow || size + piece.length > max) {
        options.onError?.(new Error(`line longer than ${max} bytes dropped`));
      } else {
        const line = Buffer.concat([...chunks, piece])
          .toString('utf8')
          .trim();
        if (line.length > 0) {
          try {
            options.onValue(JSON.parse(line));
          } catch (error) {
            options.onError?.(error as Error);
          }
        }
      }
      chunks = [];
      size = 0;
      overflow = false;
    }
    const rest = data.subarray(start);
    if (rest.length > 0) {
      if (size + rest.length > max) {
        overflow = true;
        chunks = [];
        size = 0;
      } else if (!overflow) {
        chunks.push(Buffer.from(rest));
        size += rest.length;
      }
    }
  };
  stream.on('data', onData);
  return () => stream.off('data', onData);
}

export function writeJsonLine(stream: Duplex, value: unknown): boolean {
  return stream.write(`${JSON.stringify(value)}\n`);
}

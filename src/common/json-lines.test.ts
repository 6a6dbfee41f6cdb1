/**
 * readJsonLines over a PassThrough: lines split across chunks, several lines in one chunk, invalid
 * JSON and over-long lines reported through onError without stopping the reader.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { readJsonLines, writeJsonLine } from './json-lines.js';

interface Reader {
  stream: PassThrough;
  values: unknown[];
  errors: Error[];
  detach: () => void;
}

function reader(maxLineBytes?: number): Reader {
  const stream = new PassThrough();
  const values: unknown[] = [];
  const errors: Error[] = [];
  const detach = readJsonLines(stream, {
    ...(maxLineBytes === undefined ? {} : { maxLineBytes }),
    onValue: (value) => values.push(value),
    onError: (error) => errors.push(error),
  });
  return { stream, values, errors, detach };
}

/** Writes chunks one by one and lets each 'data' event be delivered. */
async function feed(stream: PassThrough, chunks: (string | Buffer)[]): Promise<void> {
  for (const chunk of chunks) {
    stream.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

void describe('readJsonLines', () => {
  void test('one line per chunk', async () => {
    const r = reader();
    await feed(r.stream, ['{"a":1}\n', '[1,2,3]\n', '"text"\n']);
    assert.deepEqual(r.values, [{ a: 1 }, [1, 2, 3], 'text']);
    assert.deepEqual(r.errors, []);
  });

  void test('a line split over many chunks, even byte by byte', async () => {
    const r = reader();
    const line = '{"execute":"query-status","arguments":{"x":"ünïcødé €"}}\n';
    await feed(r.stream, ['{"exec', 'ute":"query-', 'status","arguments":{"x":"ünïc', 'ødé €"}}', '\n']);
    // Byte by byte also splits the multi-byte UTF-8 sequences.
    const bytes = Buffer.from(line);
    await feed(
      r.stream,
      [...bytes].map((b) => Buffer.from([b])),
    );
    const expected = { execute: 'query-status', arguments: { x: 'ünïcødé €' } };
    assert.deepEqual(r.values, [expected, expected]);
    assert.deepEqual(r.errors, []);
  });

  void test('several lines in one chunk, including a partial trailing one', async () => {
    const r = reader();
    await feed(r.stream, ['{"n":1}\n{"n":2}\n{"n":3}\n{"n":', '4}\n{"n":5}\n']);
    assert.deepEqual(r.values, [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }, { n: 5 }]);
    assert.deepEqual(r.errors, []);
  });

  void test('blank lines and CRLF are tolerated', async () => {
    const r = reader();
    await feed(r.stream, ['\n\n{"a":1}\r\n  \n{"b":2}\n']);
    assert.deepEqual(r.values, [{ a: 1 }, { b: 2 }]);
    assert.deepEqual(r.errors, []);
  });

  void test('invalid JSON is reported through onError and the next lines are still parsed', async () => {
    const r = reader();
    await feed(r.stream, ['{"ok":1}\n{not json}\n', '{"ok":2}\n', 'tru', 'e x\n{"ok":3}\n']);
    assert.deepEqual(r.values, [{ ok: 1 }, { ok: 2 }, { ok: 3 }]);
    assert.equal(r.errors.length, 2);
    for (const error of r.errors) assert.ok(error instanceof SyntaxError, String(error));
  });

  void test('without onError, invalid JSON is skipped silently and does not throw', async () => {
    const stream = new PassThrough();
    const values: unknown[] = [];
    readJsonLines(stream, { onValue: (v) => values.push(v) });
    await feed(stream, ['oops\n{"a":1}\n']);
    assert.deepEqual(values, [{ a: 1 }]);
  });

  void test('an over-long line in a single chunk is dropped and the next line parsed', async () => {
    const r = reader(64);
    const long = JSON.stringify({ pad: 'x'.repeat(200) });
    await feed(r.stream, [`${long}\n{"after":1}\n`]);
    assert.deepEqual(r.values, [{ after: 1 }]);
    assert.equal(r.errors.length, 1);
    assert.match(r.errors[0]!.message, /longer than 64 bytes/);
  });

  void test('an over-long line arriving over many chunks is dropped and the next line parsed', async () => {
    const r = reader(64);
    const long = JSON.stringify({ pad: 'y'.repeat(500) });
    const chunks: string[] = [];
    for (let i = 0; i < long.length; i += 10) chunks.push(long.slice(i, i + 10));
    await feed(r.stream, [...chunks, '\n{"after":', '2}\n']);
    assert.deepEqual(r.values, [{ after: 2 }]);
    assert.equal(r.errors.length, 1, r.errors.map((e) => e.message).join('; '));
    assert.match(r.errors[0]!.message, /longer than 64 bytes/);
  });

  void test('an over-long tail of a chunk, ended in a later chunk, is dropped', async () => {
    const r = reader(32);
    await feed(r.stream, [`{"a":1}\n${'z'.repeat(100)}`, `${'z'.repeat(5)}\n{"b":2}\n`]);
    assert.deepEqual(r.values, [{ a: 1 }, { b: 2 }]);
    assert.equal(r.errors.length, 1);
  });

  void test('a line of exactly maxLineBytes is accepted', async () => {
    const r = reader(32);
    const line = JSON.stringify({ s: 'q'.repeat(32 - 8) });
    assert.equal(Buffer.byteLength(line), 32);
    await feed(r.stream, [line.slice(0, 20), `${line.slice(20)}\n`]);
    assert.deepEqual(r.values, [JSON.parse(line)]);
    assert.deepEqual(r.errors, []);
  });

  void test('the returned function detaches the reader', async () => {
    const r = reader();
    await feed(r.stream, ['{"a":1}\n']);
    r.detach();
    await feed(r.stream, ['{"b":2}\n']);
    assert.deepEqual(r.values, [{ a: 1 }]);
  });

  void test('writeJsonLine writes one newline-terminated JSON line that readJsonLines reads back', async () => {
    const r = reader();
    const value = { type: 'hello', nested: { list: [1, 'two', null] }, text: 'line\nbreak' };
    writeJsonLine(r.stream, value);
    writeJsonLine(r.stream, 42);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(r.values, [value, 42]);
  });
});

/**
 * ConsoleLog on a real file: below the cap nothing is lost; a flood can never grow the file past the
 * cap and always keeps the newest bytes; a file left larger than the cap is compacted on open.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConsoleLog } from './console-log.js';

const dirs: string[] = [];

function tempFile(name = 'console.log'): string {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-console-log-'));
  dirs.push(dir);
  return join(dir, name);
}

after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Deterministic pseudo-random bytes so that a wrong offset cannot look right by accident. */
function pattern(length: number, seed: number): Buffer {
  const buffer = Buffer.alloc(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buffer[i] = 0x20 + (x % 95);
  }
  return buffer;
}

void describe('ConsoleLog', () => {
  void test('appends below the cap keep every byte, in order', () => {
    const path = tempFile();
    const log = new ConsoleLog(path, 4096);
    const parts = [Buffer.from('hello '), Buffer.from('world\n'), pattern(1000, 1), pattern(2000, 2)];
    for (const part of parts) log.append(part);
    const all = Buffer.concat(parts);
    assert.ok(all.length <= 4096);
    assert.deepEqual(readFileSync(path), all);
    assert.equal(statSync(path).size, all.length);
    assert.equal(log.sizeBytes, all.length);
    assert.deepEqual(log.tail(1 << 20), all);
  });

  void test('an append that lands exactly on the cap keeps everything', () => {
    const path = tempFile();
    const log = new ConsoleLog(path, 1000);
    const first = pattern(600, 3);
    const second = pattern(400, 4);
    log.append(first);
    log.append(second);
    assert.deepEqual(readFileSync(path), Buffer.concat([first, second]));
  });

  void test('an empty append changes nothing', () => {
    const path = tempFile();
    const log = new ConsoleLog(path, 1000);
    log.append(Buffer.alloc(0));
    assert.equal(log.sizeBytes, 0);
    assert.equal(log.tail(10).length, 0);
    log.append(Buffer.from('x'));
    log.append(Buffer.alloc(0));
    assert.deepEqual(readFileSync(path), Buffer.from('x'));
  });

  void test('a flood never lets the file exceed the cap and always keeps the newest bytes', () => {
    const cap = 4096;
    const path = tempFile();
    const log = new ConsoleLog(path, cap);
    let history = Buffer.alloc(0);
    // Sizes cycle through small writes, writes near half the cap, and writes larger than the cap.
    const sizes = [1, 7, 100, 1000, 2047, 2048, 2049, 3000, 4095, 4096, 4097, 9000, 13, 511];
    let written = 0;
    for (let i = 0; i < 600; i++) {
      const data = pattern(sizes[i % sizes.length]!, i + 10);
      log.append(data);
      written += data.length;
      history = Buffer.concat([history, data]).subarray(-2 * cap);
      const size = statSync(path).size;
      assert.ok(size <= cap, `write ${i}: file is ${size} bytes, cap is ${cap}`);
      assert.equal(log.sizeBytes, size, `write ${i}: tracked size`);
      const content = readFileSync(path);
      // The newest bytes are always kept: the file ends with the last write (or its last `cap` bytes)...
      const expectedEnd = data.subarray(-cap);
      assert.deepEqual(
        content.subarray(content.length - expectedEnd.length),
        expectedEnd,
        `write ${i}: tail`,
      );
      // ...and the file is exactly a suffix of everything written so far (nothing reordered or invented).
      assert.deepEqual(content, history.subarray(history.length - content.length), `write ${i}: suffix`);
      assert.deepEqual(log.tail(cap), content);
    }
    assert.ok(written > 100 * cap, 'the flood wrote far more than the cap');
    // A compaction keeps a useful amount of history: at least half the cap once it has been reached.
    log.append(Buffer.from('z'));
    assert.ok(statSync(path).size >= Math.floor(cap / 2), 'compaction keeps the newest half of the cap');
  });

  void test('a single write larger than the cap keeps exactly its last capBytes', () => {
    const path = tempFile();
    const log = new ConsoleLog(path, 1024);
    log.append(Buffer.from('old data that must go\n'));
    const big = pattern(5000, 99);
    log.append(big);
    assert.deepEqual(readFileSync(path), big.subarray(-1024));
    assert.equal(log.sizeBytes, 1024);
  });

  void test('reopening a file larger than the cap compacts it, keeping the newest bytes', () => {
    const path = tempFile();
    const original = pattern(10_000, 42);
    writeFileSync(path, original);
    const log = new ConsoleLog(path, 4096);
    const size = statSync(path).size;
    assert.ok(size <= 4096, `reopened file is ${size} bytes`);
    assert.equal(log.sizeBytes, size);
    assert.ok(size > 0, 'the newest output is kept, not everything thrown away');
    assert.deepEqual(readFileSync(path), original.subarray(original.length - size));
    // Appending after the reopen continues from the compacted content.
    log.append(Buffer.from('after'));
    const content = readFileSync(path);
    assert.ok(content.length <= 4096);
    assert.equal(content.subarray(-5).toString(), 'after');
    assert.deepEqual(
      content.subarray(0, content.length - 5),
      original.subarray(original.length - (content.length - 5)),
    );
  });

  void test('reopening a file below the cap keeps it and appends to it', () => {
    const path = tempFile();
    writeFileSync(path, 'earlier\n');
    const log = new ConsoleLog(path, 4096);
    assert.equal(log.sizeBytes, 8);
    log.append(Buffer.from('later\n'));
    assert.equal(readFileSync(path, 'utf8'), 'earlier\nlater\n');
  });

  void test('tail(n) returns at most n bytes: the last n', () => {
    const path = tempFile();
    const log = new ConsoleLog(path, 4096);
    const data = pattern(3000, 7);
    log.append(data);
    for (const n of [0, 1, 10, 2999, 3000, 3001, 100_000]) {
      const tail = log.tail(n);
      assert.ok(tail.length <= n, `tail(${n}) returned ${tail.length} bytes`);
      assert.equal(tail.length, Math.min(n, data.length));
      assert.deepEqual(tail, data.subarray(data.length - tail.length));
    }
  });

  void test('tail of a log that was never written is empty', () => {
    const path = tempFile();
    const log = new ConsoleLog(path, 4096);
    assert.equal(log.tail(100).length, 0);
    assert.equal(log.sizeBytes, 0);
  });

  void test('the file is created private to its owner (mode 0600)', () => {
    const path = tempFile();
    const log = new ConsoleLog(path, 100);
    log.append(Buffer.from('secret'));
    assert.equal(statSync(path).mode & 0o777, 0o600);
    log.append(pattern(500, 5)); // forces a compaction (rewrite via a temporary file)
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });
});

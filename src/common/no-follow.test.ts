import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeNoFollow } from './no-follow.js';

test('a link in place of the file is replaced, its target never written', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-nofollow-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'untouched');
  symlinkSync(victim, join(dir, 'log'));
  writeNoFollow(join(dir, 'log'), 'line\n', 'append');
  writeNoFollow(join(dir, 'log'), 'more\n', 'append');
  assert.equal(readFileSync(victim, 'utf8'), 'untouched');
  assert.ok(lstatSync(join(dir, 'log')).isFile());
  assert.equal(readFileSync(join(dir, 'log'), 'utf8'), 'line\nmore\n');
  assert.equal(lstatSync(join(dir, 'log')).mode & 0o777, 0o600);
  writeNoFollow(join(dir, 'log'), 'new', 'truncate');
  assert.equal(readFileSync(join(dir, 'log'), 'utf8'), 'new');
  mkdirSync(join(dir, 'sub'));
  assert.throws(() => writeNoFollow(join(dir, 'sub'), 'x', 'append'), /not a regular file/);
});

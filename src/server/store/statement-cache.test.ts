/** The statement cache: a statement is prepared once per SQL text, reused, and evicted LRU-first. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import SqliteDatabase from 'better-sqlite3';
import { withStatementCache } from './statement-cache.js';

test('prepares each SQL text once, keeps the most recent ones, and still binds fresh parameters', () => {
  const sqlite = new SqliteDatabase(':memory:');
  sqlite.exec('CREATE TABLE t (n INTEGER)');
  let prepared = 0;
  const original = sqlite.prepare.bind(sqlite);
  sqlite.prepare = (sql: string) => {
    prepared++;
    return original(sql);
  };
  const db = withStatementCache(sqlite, 2);
  const insert = 'INSERT INTO t (n) VALUES (?)';
  db.prepare(insert).run([1]);
  db.prepare(insert).run([2]);
  assert.equal(prepared, 1, 'the second use is served from the cache');
  assert.deepEqual(db.prepare('SELECT n FROM t ORDER BY n').all([]), [{ n: 1 }, { n: 2 }]);
  db.prepare('SELECT COUNT(*) AS c FROM t').all([]); // evicts the least recently used (the insert)
  assert.equal(prepared, 3);
  db.prepare(insert).run([3]);
  assert.equal(prepared, 4, 'evicted statements are prepared again');
  assert.deepEqual(db.prepare('SELECT COUNT(*) AS c FROM t').all([]), [{ c: 3 }]);
  db.close();
  assert.equal(sqlite.open, false);
});

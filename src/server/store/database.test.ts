/**
 * The engine-independent helpers of database.ts: recognising and checking a database target, and
 * masking the password of a PostgreSQL URL for logs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { databaseTargetProblem, isPostgresUrl, maskDatabaseUrl } from './database.js';

test('a PostgreSQL URL is told from a file path', () => {
  assert.equal(isPostgresUrl('postgres://u@h/db'), true);
  assert.equal(isPostgresUrl('POSTGRESQL://u@h/db'), true);
  assert.equal(isPostgresUrl('/var/lib/rampart/db/rampart.db'), false);
  assert.equal(isPostgresUrl('postgres.db'), false);
});

test('the password of a URL is masked, in the user part and in the query', () => {
  assert.equal(
    maskDatabaseUrl('postgres://rampart:s3cret@db.example:5432/rampart'),
    'postgres://rampart:***@db.example:5432/rampart',
  );
  assert.equal(
    maskDatabaseUrl('postgres://db.example/rampart?user=r&password=s3cret&sslmode=require'),
    'postgres://db.example/rampart?user=r&password=***&sslmode=require',
  );
  assert.equal(
    maskDatabaseUrl('postgres://rampart@db.example/rampart'),
    'postgres://rampart@db.example/rampart',
  );
  assert.equal(maskDatabaseUrl('/srv/rampart.db'), '/srv/rampart.db');
  assert.ok(!maskDatabaseUrl('postgres://u:s3cret@[bad/x').includes('s3cret'));
});

test('targets are checked: scheme, host and database name', () => {
  assert.equal(databaseTargetProblem('/srv/rampart.db'), null);
  assert.equal(databaseTargetProblem('postgres://u:p@h:5432/db'), null);
  assert.equal(databaseTargetProblem('postgres:///db?host=/run/postgresql'), null);
  assert.match(databaseTargetProblem('postgres://u:p@h') ?? '', /no database name/);
  assert.match(databaseTargetProblem('mysql://u:p@h/db') ?? '', /postgres:\/\//);
  assert.match(databaseTargetProblem('') ?? '', /file path or a postgres/);
  assert.match(databaseTargetProblem('a\nb') ?? '', /control characters/);
});

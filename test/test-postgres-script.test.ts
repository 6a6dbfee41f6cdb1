/**
 * scripts/test-postgres.sh, the way scripts/test.sh calls it: `url=$(bash scripts/test-postgres.sh)`
 * on a machine where PostgreSQL is not running. The script must start the server, print only the URL,
 * and return: a postmaster that kept the captured stdout open made the caller's $(...) wait for as long
 * as the server ran (a CI run spent its 90 minutes there). Runs on a cluster of its own, on a spare port,
 * created by the script and dropped afterwards; needs root and Debian's PostgreSQL (skipped otherwise).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { REPO_ROOT } from './helpers/repo.js';

const PORT = 55_433;
const CLUSTER_NAME = `rampart-${PORT}`;
const SCRIPT = join(REPO_ROOT, 'scripts', 'test-postgres.sh');
const RETURN_LIMIT_MS = 120_000;

function hasPostgresTools(): boolean {
  return spawnSync('pg_lsclusters', ['--no-header'], { stdio: 'ignore' }).status === 0;
}

const SKIP: string | false =
  process.getuid?.() !== 0
    ? 'needs root (the script starts PostgreSQL as the postgres user)'
    : !hasPostgresTools()
      ? "needs Debian's PostgreSQL (scripts/setup.sh installs it)"
      : false;

/** Version of every cluster on the spare port (normally none, or the one this test made). */
function clustersOnPort(): string[] {
  const listing = spawnSync('pg_lsclusters', ['--no-header'], { encoding: 'utf8' }).stdout;
  return listing
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[1] === CLUSTER_NAME)
    .map((fields) => fields[0]!);
}

function dropTestClusters(): void {
  for (const version of clustersOnPort()) {
    const dropped = spawnSync('pg_dropcluster', ['--stop', version, CLUSTER_NAME], { encoding: 'utf8' });
    if (dropped.status !== 0) throw new Error(`pg_dropcluster ${version} ${CLUSTER_NAME}: ${dropped.stderr}`);
  }
}

interface Captured {
  url: string;
  stderr: string;
  code: number | null;
  returned: boolean;
}

/** `url=$(bash scripts/test-postgres.sh)` as scripts/test.sh does it, given RETURN_LIMIT_MS to return. */
function captureUrl(): Promise<Captured> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', 'url=$(bash "$1") && printf %s "$url"', 'capture', SCRIPT], {
      env: { ...process.env, RAMPART_TEST_POSTGRES_PORT: String(PORT) },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    let returned = true;
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      returned = false;
      process.kill(-child.pid!, 'SIGKILL');
    }, RETURN_LIMIT_MS);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ url: stdout, stderr, code, returned });
    });
  });
}

describe('scripts/test-postgres.sh', { skip: SKIP }, () => {
  before(() => dropTestClusters());
  after(() => dropTestClusters());

  test('starts a PostgreSQL that is not running, prints only its URL, and returns', async () => {
    assert.deepEqual(clustersOnPort(), [], 'no cluster on the spare port before the test');
    const first = await captureUrl();
    assert.ok(
      first.returned,
      `the caller's $(...) did not return within ${RETURN_LIMIT_MS} ms: ${first.stderr}`,
    );
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.url, `postgres://rampart_test:rampart_test@127.0.0.1:${PORT}/rampart_test`);
    assert.equal(clustersOnPort().length, 1, 'the script created the cluster of the spare port');

    const ready = spawnSync('pg_isready', ['-h', '127.0.0.1', '-p', String(PORT)]);
    assert.equal(ready.status, 0, 'the server accepts connections');
  });

  test('a second call finds it running and gives the same URL (idempotent)', async () => {
    const again = await captureUrl();
    assert.ok(again.returned);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.url, `postgres://rampart_test:rampart_test@127.0.0.1:${PORT}/rampart_test`);
  });

  test('a stopped server with a stale pid file is started again', async () => {
    const version = clustersOnPort()[0]!;
    const stopped = spawnSync('pg_ctlcluster', [version, CLUSTER_NAME, 'stop'], { encoding: 'utf8' });
    assert.equal(stopped.status, 0, stopped.stderr);
    const pidFile = join('/var/lib/postgresql', version, CLUSTER_NAME, 'postmaster.pid');
    writeFileSync(pidFile, '999999\n', { mode: 0o600 });
    const owner = statSync(dirname(pidFile));
    chownSync(pidFile, owner.uid, owner.gid);

    const restarted = await captureUrl();
    assert.ok(restarted.returned, `did not return within ${RETURN_LIMIT_MS} ms: ${restarted.stderr}`);
    assert.equal(restarted.code, 0, restarted.stderr);
    assert.equal(restarted.url, `postgres://rampart_test:rampart_test@127.0.0.1:${PORT}/rampart_test`);
  });
});

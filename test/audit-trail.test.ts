/**
 * The audit trail end to end (SECURITY-TESTS.md items 25-27) against the real server and its real
 * SQLite database: records edited, deleted, reordered or truncated behind the server's back make
 * verification fail at the first bad record; signed checkpoints verify offline with sha256sum and
 * openssl (scripts/verify-audit-export.sh); when the log cannot be written, mutating requests fail and
 * change nothing (fail closed).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import type { AuditVerification } from '../src/api/audit.js';
import { CLI_MAIN, REPO_ROOT } from './helpers/repo.js';
import { RampartHarness } from './helpers/rampart-harness.js';

const execFileAsync = promisify(execFile);
let harness: RampartHarness;
let db: Database.Database;

before(async () => {
  harness = await RampartHarness.start({ env: { RAMPART_AUDIT_CHECKPOINT_SECONDS: '1' } });
  for (let i = 0; i < 6; i++) {
    const created = await harness.api('POST', '/v1/tenants', { name: `audited-${i}` });
    assert.equal(created.status, 201);
  }
  db = new Database(join(harness.dataDir, 'db', 'rampart.db'));
  // Wait for a signed checkpoint covering every record that exists now (reads are not audited).
  await harness.waitFor(
    async () => {
      const { covered, total } = db
        .prepare(
          'SELECT (SELECT MAX(record_count) FROM audit_checkpoints) AS covered, (SELECT COUNT(*) FROM audit_records) AS total',
        )
        .get() as { covered: number | null; total: number };
      return covered !== null && covered >= total;
    },
    10_000,
    'a signed checkpoint',
  );
  originalActor3 = (db.prepare('SELECT actor FROM audit_records WHERE seq = 3').get() as { actor: string })
    .actor;
});

after(async () => {
  db?.close();
  await harness?.cleanup();
});

let originalActor3 = '';

/** Runs the real CLI against the harness (argument array, no shell). */
async function rampartCli(args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [CLI_MAIN, ...args], {
      env: { PATH: process.env.PATH, RAMPART_URL: harness.url, RAMPART_TOKEN: harness.token },
    });
    return { code: 0, output: `${stdout}${stderr}` };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, output: `${failed.stdout}${failed.stderr}` };
  }
}

async function verify(): Promise<AuditVerification> {
  const response = await harness.api<AuditVerification>('GET', '/v1/audit/verify');
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body;
}

type Row = Record<string, unknown> & { seq: number };

/** Applies a change to the audit table, checks what verify says, then restores the table exactly. */
async function tampered(change: () => void): Promise<AuditVerification> {
  const saved = db.prepare('SELECT * FROM audit_records ORDER BY seq').all() as Row[];
  change();
  try {
    return await verify();
  } finally {
    db.transaction(() => {
      db.prepare('DELETE FROM audit_records').run();
      const columns = Object.keys(saved[0]!);
      const insert = db.prepare(
        `INSERT INTO audit_records (${columns.join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`,
      );
      for (const row of saved) insert.run(row);
    })();
    assert.equal((await verify()).ok, true, 'restored');
  }
}

test('the untouched chain verifies, with checkpoints', async () => {
  const result = await verify();
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.ok(result.records >= 7);
  assert.equal(result.firstBad, null);
});

test('an edited record is named, and `rampart audit verify` exits non-zero naming it', async () => {
  const result = await tampered(() =>
    db.prepare("UPDATE audit_records SET actor = 'mallory' WHERE seq = 3").run(),
  );
  assert.equal(result.ok, false);
  assert.deepEqual([result.firstBad?.kind, result.firstBad?.index], ['record', 3]);
  db.prepare("UPDATE audit_records SET actor = 'mallory' WHERE seq = 3").run();
  try {
    const run = await rampartCli(['audit', 'verify']);
    assert.equal(run.code, 8, run.output);
    assert.match(run.output, /record 3/);
  } finally {
    db.prepare('UPDATE audit_records SET actor = ? WHERE seq = 3').run(originalActor3);
  }
  const clean = await rampartCli(['audit', 'verify']);
  assert.equal(clean.code, 0, clean.output);
});

test('an edited record whose hash was recomputed is still caught', async () => {
  // Rewriting one record's hash breaks the link from the next one; verify names the rewritten record.
  const result = await tampered(() =>
    db.prepare("UPDATE audit_records SET outcome = 'denied', hash = ? WHERE seq = 4").run('a'.repeat(64)),
  );
  assert.equal(result.ok, false);
  assert.equal(result.firstBad?.index, 4);
});

test('a deleted record is named', async () => {
  const result = await tampered(() => db.prepare('DELETE FROM audit_records WHERE seq = 2').run());
  assert.equal(result.ok, false);
  assert.equal(result.firstBad?.index, 2);
});

test('reordered records are caught at the first moved one', async () => {
  const result = await tampered(() =>
    db.transaction(() => {
      db.prepare('UPDATE audit_records SET seq = -1 WHERE seq = 2').run();
      db.prepare('UPDATE audit_records SET seq = 2 WHERE seq = 3').run();
      db.prepare('UPDATE audit_records SET seq = 3 WHERE seq = -1').run();
    })(),
  );
  assert.equal(result.ok, false);
  assert.equal(result.firstBad?.index, 2);
});

test('a truncated tail is caught by the signed checkpoint', async () => {
  const covered = (db.prepare('SELECT MAX(record_count) AS n FROM audit_checkpoints').get() as { n: number })
    .n;
  assert.ok(covered >= 3);
  const result = await tampered(() =>
    db.prepare('DELETE FROM audit_records WHERE seq >= ?').run(covered - 1),
  );
  assert.equal(result.ok, false);
  assert.match(result.firstBad?.reason ?? '', /missing/);
});

test('a forged checkpoint signature is caught', async () => {
  const saved = db.prepare('SELECT id, signature FROM audit_checkpoints ORDER BY id LIMIT 1').get() as {
    id: number;
    signature: string;
  };
  const forged = Buffer.alloc(64, 7).toString('base64');
  db.prepare('UPDATE audit_checkpoints SET signature = ? WHERE id = ?').run(forged, saved.id);
  try {
    const result = await verify();
    assert.equal(result.ok, false);
    assert.equal(result.firstBad?.kind, 'checkpoint');
  } finally {
    db.prepare('UPDATE audit_checkpoints SET signature = ? WHERE id = ?').run(saved.signature, saved.id);
  }
  assert.equal((await verify()).ok, true);
});

test('the export verifies offline with sha256sum and openssl, and a tampered export does not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-audit-export-'));
  try {
    // Checkpoints first: records only grow, so every exported checkpoint is covered by the records.
    const text = async (path: string) => {
      const response = await fetch(`${harness.url}${path}`, {
        headers: { authorization: `Bearer ${harness.token}` },
      });
      assert.equal(response.status, 200);
      return response.text();
    };
    const checkpoints = await text('/v1/audit/export/checkpoints');
    const records = await text('/v1/audit/export/records');
    const key = await harness.api<{ publicKeyPem: string }>('GET', '/v1/audit/public-key');
    writeFileSync(join(dir, 'records.jsonl'), records);
    writeFileSync(join(dir, 'checkpoints.jsonl'), checkpoints);
    writeFileSync(join(dir, 'audit-public-key.pem'), key.body.publicKeyPem);
    const script = join(REPO_ROOT, 'scripts', 'verify-audit-export.sh');
    const good = await execFileAsync('bash', [script, dir]);
    assert.match(good.stdout, /^OK \d+ records, \d+ checkpoints/m);
    const lines = records.split('\n');
    lines[1] = lines[1]!.replace('"outcome":"success"', '"outcome":"failure"');
    writeFileSync(join(dir, 'records.jsonl'), lines.join('\n'));
    await assert.rejects(
      execFileAsync('bash', [script, dir]),
      (error: { code: number; stdout: string; stderr: string }) => {
        assert.equal(error.code, 1);
        assert.match(`${error.stdout}${error.stderr}`, /record 3/);
        return true;
      },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fail closed: when the log cannot be written, mutating requests fail and change nothing', async () => {
  db.exec(
    "CREATE TRIGGER block_audit BEFORE INSERT ON audit_records BEGIN SELECT RAISE(ABORT, 'disk says no'); END",
  );
  try {
    const refused = await harness.api<{ error: { code: string } }>('POST', '/v1/tenants', {
      name: 'not-created',
    });
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, 'RAMPART_AUDIT_UNAVAILABLE');
    const user = await harness.api('POST', '/v1/users', {
      username: 'not-created',
      password: 'Fail-closed-passw0rd',
    });
    assert.equal(user.status, 503);
  } finally {
    db.exec('DROP TRIGGER block_audit');
  }
  assert.equal((await harness.api('GET', '/v1/tenants/not-created')).status, 404);
  assert.equal((await harness.api('GET', '/v1/users/not-created')).status, 404);
  // Writable again: requests work and the chain is intact.
  assert.equal((await harness.api('POST', '/v1/tenants', { name: 'after-outage' })).status, 201);
  assert.equal((await verify()).ok, true);
});

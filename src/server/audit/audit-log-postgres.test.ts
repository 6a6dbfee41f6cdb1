/**
 * The audit log on PostgreSQL (RAMPART_TEST_POSTGRES_URL; skipped without it): the chain and group
 * commit, two server replicas (two pools and two AuditLog instances on one database, one signing key)
 * appending at once still write ONE chain (pg_advisory_xact_lock around the head read and the append),
 * checkpoints and reopen, tampering named by verify(), the fail-closed probe, queries, and the streamed
 * export checked offline by scripts/verify-audit-export.sh. The SQLite behaviour is in audit-log.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { POSTGRES_SKIP, createTestPostgres, type TestPostgres } from '../../../test/helpers/postgres.js';
import { AuditUnavailableError } from '../../api/errors.js';
import { GENESIS_HASH, verifyExport } from '../../common/audit-chain.js';
import { engineOf, openDatabase, type Db } from '../store/database.js';
import { AuditLog, type AuditEntry, type AuditLogOptions } from './audit-log.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-audit-pg-'));
after(() => rmSync(root, { recursive: true, force: true }));

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}
const VERIFY_SCRIPT = join(repoRoot(), 'scripts', 'verify-audit-export.sh');

let counter = 0;

interface Harness {
  dir: string;
  target: TestPostgres;
  db: Db;
  audit: AuditLog;
  /** Another "replica": its own pool and AuditLog on the same database and key directory. */
  replica(options?: AuditLogOptions): Promise<{ db: Db; audit: AuditLog }>;
  close(): Promise<void>;
}

async function setup(options: AuditLogOptions = {}): Promise<Harness> {
  const dir = join(root, `case-${++counter}`);
  const target = await createTestPostgres();
  const db = await openDatabase(target.url, { poolSize: 4 });
  const others: { db: Db; audit: AuditLog }[] = [];
  const h: Harness = {
    dir,
    target,
    db,
    audit: await AuditLog.open(db, dir, options),
    async replica(replicaOptions = options) {
      const other = await openDatabase(target.url, { poolSize: 4 });
      const r = { db: other, audit: await AuditLog.open(other, dir, replicaOptions) };
      others.push(r);
      return r;
    },
    async close() {
      for (const r of others) {
        await r.audit.close();
        await r.db.destroy();
      }
      await h.audit.close();
      await db.destroy();
      await target.drop();
    },
  };
  return h;
}

function entry(i: number, overrides: Partial<AuditEntry> = {}): AuditEntry {
  return {
    actorId: 'u-alice',
    actor: 'alice',
    tenantId: 't-1',
    action: 'vm.create',
    target: `vm-${i}`,
    outcome: 'success',
    status: 201,
    source: '127.0.0.1',
    requestId: `req-${i}`,
    detail: null,
    ...overrides,
  };
}

function appendMany(audit: AuditLog, n: number, start = 1) {
  return Promise.all(Array.from({ length: n }, (_, i) => audit.append(entry(start + i))));
}

async function collect(lines: AsyncIterable<string>): Promise<string> {
  let out = '';
  for await (const line of lines) out += `${line}\n`;
  return out;
}

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('AuditLog on PostgreSQL', { skip: POSTGRES_SKIP }, () => {
  test('records chain from the genesis; 500 concurrent appends get dense seqs in call order', async () => {
    const h = await setup();
    try {
      assert.equal(engineOf(h.db), 'postgres');
      const first = await h.audit.append(entry(0));
      assert.equal(first.seq, 1);
      assert.equal(first.prevHash, GENESIS_HASH);
      const rows = await appendMany(h.audit, 500, 1);
      assert.deepEqual(
        rows.map((r) => r.seq),
        Array.from({ length: 500 }, (_, i) => i + 2),
      );
      assert.equal(rows[0]!.prevHash, first.hash);
      const stored = await h.db
        .selectFrom('auditRecords')
        .selectAll()
        .where('seq', '=', 2)
        .executeTakeFirstOrThrow();
      assert.equal(stored.hash, rows[0]!.hash);
      assert.equal(typeof stored.seq, 'number');
      assert.deepEqual(h.audit.head, { seq: 501, hash: rows[499]!.hash });
      const result = await h.audit.verify();
      assert.equal(result.ok, true, JSON.stringify(result));
      assert.equal(result.records, 501);
    } finally {
      await h.close();
    }
  });

  test('two replicas appending at once write one chain, and each verifies all of it', async () => {
    const h = await setup({ checkpointEveryRecords: 50 });
    try {
      const other = await h.replica();
      const batches = [];
      for (let i = 0; i < 10; i++) {
        batches.push(appendMany(h.audit, 20, i * 40 + 1));
        batches.push(appendMany(other.audit, 20, i * 40 + 21));
      }
      const rows = (await Promise.all(batches)).flat();
      assert.deepEqual(
        rows.map((r) => r.seq).sort((a, b) => a - b),
        Array.from({ length: 400 }, (_, i) => i + 1),
      );
      for (const audit of [h.audit, other.audit]) {
        const result = await audit.verify();
        assert.equal(result.ok, true, JSON.stringify(result));
        assert.equal(result.records, 400);
        // A checkpoint at the end of each committed batch that crossed 50 records since the last one.
        assert.ok(result.checkpoints >= 2, `checkpoints: ${result.checkpoints}`);
      }
      // Both replicas sign checkpoints over the shared head; the chain still verifies.
      await other.audit.checkpoint();
      await h.audit.append(entry(999));
      await h.audit.checkpoint();
      const final = await other.audit.verify();
      assert.equal(final.ok, true, JSON.stringify(final));
      assert.equal(final.records, 401);
    } finally {
      await h.close();
    }
  });

  test('close writes a final checkpoint; reopening continues the chain', async () => {
    const h = await setup();
    try {
      await appendMany(h.audit, 5);
      await h.audit.close();
      const checkpoints = await h.db.selectFrom('auditCheckpoints').selectAll().execute();
      assert.equal(checkpoints.length, 1);
      assert.equal(checkpoints[0]!.recordCount, 5);
      h.audit = await AuditLog.open(h.db, h.dir);
      assert.equal(h.audit.head.seq, 5);
      assert.equal((await h.audit.append(entry(6))).seq, 6);
      assert.equal((await h.audit.verify()).ok, true);
    } finally {
      await h.close();
    }
  });

  test('an edited record and a deleted one are named by verify()', async () => {
    const h = await setup();
    try {
      await appendMany(h.audit, 10);
      const raw = h.db.withoutPlugins();
      await sql`UPDATE audit_records SET outcome = 'denied' WHERE seq = 5`.execute(raw);
      let result = await h.audit.verify();
      assert.equal(result.ok, false);
      assert.deepEqual(result.firstBad, {
        kind: 'record',
        index: 5,
        reason: 'record 5: content does not match its hash',
      });
      await sql`UPDATE audit_records SET outcome = 'success' WHERE seq = 5`.execute(raw);
      await sql`DELETE FROM audit_records WHERE seq = 7`.execute(raw);
      result = await h.audit.verify();
      assert.equal(result.ok, false);
      assert.equal(result.firstBad?.index, 7);
    } finally {
      await h.close();
    }
  });

  test('fails closed while audit_records cannot be written, and recovers with a valid chain', async () => {
    const h = await setup();
    try {
      await appendMany(h.audit, 2);
      await h.audit.assertWritable();
      const raw = h.db.withoutPlugins();
      await sql`ALTER TABLE audit_records RENAME TO audit_records_away`.execute(raw);
      await assert.rejects(async () => h.audit.assertWritable(), AuditUnavailableError);
      await assert.rejects(h.audit.append(entry(3)), AuditUnavailableError);
      assert.equal(h.audit.head.seq, 2);
      await sql`ALTER TABLE audit_records_away RENAME TO audit_records`.execute(raw);
      await h.audit.assertWritable();
      assert.equal((await h.audit.append(entry(3))).seq, 3);
      assert.equal((await h.audit.verify()).ok, true);
      // The probe left nothing behind.
      const count = await h.db
        .selectFrom('auditRecords')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      assert.equal(Number(count.n), 3);
    } finally {
      await h.close();
    }
  });

  test('query filters and pages forward', async () => {
    const h = await setup();
    try {
      for (let i = 1; i <= 6; i++)
        await h.audit.append(
          entry(i, { tenantId: i % 2 ? 't-1' : null, outcome: i === 3 ? 'denied' : 'success' }),
        );
      const page = await h.audit.query({ tenantId: 't-1', limit: 2 });
      assert.deepEqual(
        page.items.map((r) => r.seq),
        [1, 3],
      );
      assert.equal(page.next, '3');
      const rest = await h.audit.query({ tenantId: 't-1', after: 3 });
      assert.deepEqual(
        rest.items.map((r) => r.seq),
        [5],
      );
      assert.deepEqual(
        (await h.audit.query({ tenantId: null })).items.map((r) => r.seq),
        [2, 4, 6],
      );
      assert.deepEqual(
        (await h.audit.query({ outcome: 'denied' })).items.map((r) => r.seq),
        [3],
      );
    } finally {
      await h.close();
    }
  });

  test('the streamed export verifies offline (TypeScript and shell)', async () => {
    const h = await setup({ checkpointEveryRecords: 40 });
    try {
      const other = await h.replica();
      await appendMany(h.audit, 60);
      await appendMany(other.audit, 60, 61);
      await h.audit.append(entry(121, { actor: 'ünïcödé 😀 "q" \\ \n' }));
      await h.audit.checkpoint();
      const cut = await h.audit.exportCutAsync();
      const records = await collect(h.audit.exportRecordsAsync(cut));
      const checkpoints = await collect(h.audit.exportCheckpointsAsync(cut));
      const ts = verifyExport(records, checkpoints, h.audit.publicKeyPem);
      assert.equal(ts.ok, true, JSON.stringify(ts));
      assert.equal(ts.records, 121);
      const dir = join(h.dir, 'export');
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'records.jsonl'), records);
      writeFileSync(join(dir, 'checkpoints.jsonl'), checkpoints);
      writeFileSync(join(dir, 'audit-public-key.pem'), h.audit.publicKeyPem);
      const good = await run('bash', [VERIFY_SCRIPT, dir]);
      assert.equal(good.code, 0, good.stdout + good.stderr);
      assert.match(good.stdout, /^OK 121 records, \d+ checkpoints, head [0-9a-f]{64}$/m);
      // The synchronous export is SQLite's.
      assert.throws(() => h.audit.exportCut(), /SQLite only/);
    } finally {
      await h.close();
    }
  });
});

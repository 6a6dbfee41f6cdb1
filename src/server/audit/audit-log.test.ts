/**
 * The audit log against a real SQLite database in a temp dir: the chain and its hashes, group commit
 * (one transaction per event-loop turn, all or nothing), the head surviving close + reopen, tampering
 * with raw SQL (each kind named by verify()), forged checkpoints, control-character escaping, failing
 * closed while the table cannot be written, the offline export checked by scripts/verify-audit-export.sh,
 * and the signing key's file modes.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AuditUnavailableError } from '../../api/errors.js';
import {
  GENESIS_HASH,
  canonicalLine,
  recordHash,
  signCheckpoint,
  verifyExport,
  type AuditRecordFields,
} from '../../common/audit-chain.js';
import { openDatabase, rawSqlite, type Db } from '../store/database.js';
import { auditKeyPath } from './audit-keys.js';
import { AuditLog, type AuditEntry, type AuditLogOptions } from './audit-log.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-audit-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('repository root not found');
    dir = parent;
  }
  return dir;
}
const VERIFY_SCRIPT = join(repoRoot(), 'scripts', 'verify-audit-export.sh');

let counter = 0;

interface Harness {
  dir: string;
  db: Db;
  audit: AuditLog;
  reopen(options?: AuditLogOptions): Promise<AuditLog>;
  close(): Promise<void>;
}

async function setup(options: AuditLogOptions = {}): Promise<Harness> {
  const dir = join(root, `case-${++counter}`);
  const db = await openDatabase(join(dir, 'rampart.db'));
  const h: Harness = {
    dir,
    db,
    audit: await AuditLog.open(db, dir, options),
    async reopen(reopenOptions = options) {
      await h.audit.close();
      h.audit = await AuditLog.open(db, dir, reopenOptions);
      return h.audit;
    },
    async close() {
      await h.audit.close();
      await db.destroy();
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

async function appendMany(audit: AuditLog, n: number, start = 1) {
  return Promise.all(Array.from({ length: n }, (_, i) => audit.append(entry(start + i))));
}

function sqlite(h: Harness) {
  return rawSqlite(h.db);
}

function isUnavailable(error: unknown): boolean {
  assert.ok(error instanceof AuditUnavailableError, `expected AuditUnavailableError, got ${String(error)}`);
  assert.equal(error.code, 'RAMPART_AUDIT_UNAVAILABLE');
  assert.equal(error.status, 503);
  return true;
}

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function writeExport(audit: AuditLog, dir: string): void {
  mkdirSync(dir, { recursive: true });
  const cut = audit.exportCut();
  writeFileSync(join(dir, 'records.jsonl'), [...audit.exportRecords(cut)].map((l) => `${l}\n`).join(''));
  writeFileSync(
    join(dir, 'checkpoints.jsonl'),
    [...audit.exportCheckpoints(cut)].map((l) => `${l}\n`).join(''),
  );
  writeFileSync(join(dir, 'audit-public-key.pem'), audit.publicKeyPem);
}

describe('AuditLog: the chain', () => {
  test('records chain by hash from the genesis, and the stored rows say so', async () => {
    const h = await setup();
    try {
      const a = await h.audit.append(entry(1, { time: '2025-03-01T10:00:00Z' }));
      const b = await h.audit.append(entry(2, { actorId: null, tenantId: null, target: null, detail: 'x' }));
      assert.equal(a.seq, 1);
      assert.equal(a.time, '2025-03-01T10:00:00.000Z');
      assert.equal(a.prevHash, GENESIS_HASH);
      assert.equal(a.hash, recordHash(canonicalLine(GENESIS_HASH, a as AuditRecordFields)));
      assert.equal(b.seq, 2);
      assert.equal(b.prevHash, a.hash);
      assert.match(b.time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      assert.equal(b.hash, recordHash(canonicalLine(a.hash, b as AuditRecordFields)));
      const stored = (await h.audit.query({})).items;
      assert.deepEqual(stored, [a, b]);
      assert.deepEqual(h.audit.head, { seq: 2, hash: b.hash });
      assert.deepEqual(await h.audit.verify(), {
        ok: true,
        records: 2,
        checkpoints: 0,
        head: b.hash,
        firstBad: null,
      });
    } finally {
      await h.close();
    }
  });

  test('rejects an entry with a bad outcome, status or time', async () => {
    const h = await setup();
    try {
      await assert.rejects(h.audit.append(entry(1, { outcome: 'maybe' as 'success' })), TypeError);
      await assert.rejects(h.audit.append(entry(1, { status: 2.5 })), TypeError);
      await assert.rejects(h.audit.append(entry(1, { time: 'yesterday' })), /not a valid time/);
      assert.equal(h.audit.head.seq, 0);
    } finally {
      await h.close();
    }
  });

  test('group commit: 1000 concurrent appends get dense seqs in call order and one valid chain', async () => {
    const h = await setup();
    try {
      const rows = await appendMany(h.audit, 1000);
      assert.deepEqual(
        rows.map((r) => r.seq),
        Array.from({ length: 1000 }, (_, i) => i + 1),
      );
      rows.forEach((r, i) => assert.equal(r.target, `vm-${i + 1}`));
      for (let i = 1; i < rows.length; i++) assert.equal(rows[i]!.prevHash, rows[i - 1]!.hash);
      // checkpointEveryRecords (1000) was reached: the checkpoint went into the same transaction.
      const cps = sqlite(h).prepare('SELECT record_count AS count FROM audit_checkpoints').all();
      assert.deepEqual(cps, [{ count: 1000 }]);
      const result = await h.audit.verify();
      assert.equal(result.ok, true);
      assert.equal(result.records, 1000);
      assert.equal(result.checkpoints, 1);
    } finally {
      await h.close();
    }
  });

  test('group commit is all or nothing: one failing row rejects the whole turn and rolls the head back', async () => {
    const h = await setup();
    try {
      await appendMany(h.audit, 3);
      const headBefore = h.audit.head;
      sqlite(h).exec(`CREATE TRIGGER fail_one BEFORE INSERT ON audit_records WHEN NEW.seq = 250
        BEGIN SELECT RAISE(ABORT, 'blocked'); END`);
      const results = await Promise.allSettled(
        Array.from({ length: 500 }, (_, i) => h.audit.append(entry(100 + i))),
      );
      assert.ok(results.every((r) => r.status === 'rejected' && isUnavailable(r.reason)));
      assert.equal(
        (sqlite(h).prepare('SELECT count(*) AS n FROM audit_records').get() as { n: number }).n,
        3,
      );
      assert.deepEqual(h.audit.head, headBefore);
      sqlite(h).exec('DROP TRIGGER fail_one');
      const next = await h.audit.append(entry(4));
      assert.equal(next.seq, 4);
      assert.equal(next.prevHash, headBefore.hash);
      assert.equal((await h.audit.verify()).ok, true);
    } finally {
      await h.close();
    }
  });

  test('verify crosses record pages and interleaves checkpoints', async () => {
    const h = await setup({ checkpointEveryRecords: 700 });
    try {
      for (let i = 0; i < 9; i++) await appendMany(h.audit, 1000, i * 1000 + 1);
      await h.audit.checkpoint();
      const result = await h.audit.verify();
      assert.equal(result.ok, true, JSON.stringify(result.firstBad));
      assert.equal(result.records, 9000);
      assert.equal(result.checkpoints, 9);
      assert.equal(result.head, h.audit.head.hash);
    } finally {
      await h.close();
    }
  });

  test('after close and reopen the head continues, and close wrote a final checkpoint', async () => {
    const h = await setup();
    try {
      const first = await appendMany(h.audit, 5);
      await h.reopen();
      assert.deepEqual(h.audit.head, { seq: 5, hash: first[4]!.hash });
      const cps = sqlite(h)
        .prepare('SELECT record_count AS count, head_hash AS head FROM audit_checkpoints')
        .all();
      assert.deepEqual(cps, [{ count: 5, head: first[4]!.hash }]);
      const next = await h.audit.append(entry(6));
      assert.equal(next.seq, 6);
      assert.equal(next.prevHash, first[4]!.hash);
      // Closing twice is harmless, and a closed log refuses appends.
      await h.reopen();
      await h.audit.close();
      await h.audit.close();
      await assert.rejects(h.audit.append(entry(7)), isUnavailable);
      assert.throws(() => h.audit.assertWritable(), isUnavailable);
      h.audit = await AuditLog.open(h.db, h.dir);
      const result = await h.audit.verify();
      assert.deepEqual([result.ok, result.records, result.checkpoints], [true, 6, 2]);
    } finally {
      await h.close();
    }
  });

  test('the timer signs a checkpoint when records arrived since the last one', async () => {
    const h = await setup({ checkpointIntervalMs: 30 });
    try {
      await appendMany(h.audit, 3);
      const deadline = Date.now() + 5000;
      let count = 0;
      while (count === 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        count = (sqlite(h).prepare('SELECT count(*) AS n FROM audit_checkpoints').get() as { n: number }).n;
      }
      assert.equal(count, 1);
      await new Promise((resolve) => setTimeout(resolve, 100));
      // Nothing new: no further checkpoint.
      assert.equal(
        (sqlite(h).prepare('SELECT count(*) AS n FROM audit_checkpoints').get() as { n: number }).n,
        1,
      );
    } finally {
      await h.close();
    }
  });

  test('a replica that does not lead signs no periodic checkpoint; it does once it leads', async () => {
    const h = await setup({ checkpointIntervalMs: 30 });
    const count = () =>
      (sqlite(h).prepare('SELECT count(*) AS n FROM audit_checkpoints').get() as { n: number }).n;
    try {
      h.audit.periodicCheckpoints = false;
      await appendMany(h.audit, 3);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(count(), 0);
      h.audit.periodicCheckpoints = true;
      const deadline = Date.now() + 5000;
      while (count() === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(count(), 1);
    } finally {
      await h.close();
    }
  });
});

describe('AuditLog: tampering with the database', () => {
  async function tenRecords(): Promise<Harness> {
    const h = await setup();
    await appendMany(h.audit, 10);
    return h;
  }

  async function firstBad(h: Harness) {
    const result = await h.audit.verify();
    assert.equal(result.ok, false);
    return result.firstBad;
  }

  test('an edited field names that record', async () => {
    const h = await tenRecords();
    try {
      sqlite(h).exec(`UPDATE audit_records SET outcome = 'denied' WHERE seq = 5`);
      assert.deepEqual(await firstBad(h), {
        kind: 'record',
        index: 5,
        reason: 'record 5: content does not match its hash',
      });
    } finally {
      await h.close();
    }
  });

  test('an edited field with the hash recomputed still names that record', async () => {
    const h = await tenRecords();
    try {
      const row = sqlite(h)
        .prepare(
          `SELECT seq, time, actor_id AS actorId, actor, tenant_id AS tenantId, action, target, outcome, status,
            source, request_id AS requestId, detail, prev_hash AS prevHash FROM audit_records WHERE seq = 6`,
        )
        .get() as AuditRecordFields & { prevHash: string };
      const forged = { ...row, actor: 'mallory' };
      const hash = recordHash(canonicalLine(row.prevHash, forged));
      sqlite(h).prepare(`UPDATE audit_records SET actor = 'mallory', hash = ? WHERE seq = 6`).run(hash);
      const bad = await firstBad(h);
      assert.equal(bad?.kind, 'record');
      assert.equal(bad?.index, 6);
      assert.match(bad.reason, /^record 6: altered/);
    } finally {
      await h.close();
    }
  });

  test('a deleted record is reported missing', async () => {
    const h = await tenRecords();
    try {
      sqlite(h).exec('DELETE FROM audit_records WHERE seq = 4');
      assert.deepEqual(await firstBad(h), {
        kind: 'record',
        index: 4,
        reason: 'record 4 missing (next is 5)',
      });
    } finally {
      await h.close();
    }
  });

  test('two records with their seqs swapped: the first of them is named', async () => {
    const h = await tenRecords();
    try {
      sqlite(h).exec(`UPDATE audit_records SET seq = -1 WHERE seq = 3;
        UPDATE audit_records SET seq = 3 WHERE seq = 7;
        UPDATE audit_records SET seq = 7 WHERE seq = -1;`);
      const bad = await firstBad(h);
      assert.equal(bad?.kind, 'record');
      assert.equal(bad?.index, 3);
    } finally {
      await h.close();
    }
  });

  test('a tail truncated after a checkpoint: named by the checkpoint, live and after a restart', async () => {
    const h = await tenRecords();
    try {
      await h.audit.checkpoint();
      sqlite(h).exec('DELETE FROM audit_records WHERE seq > 7');
      const expected = { kind: 'record', index: 8, reason: 'records 8..10 missing (checkpoint 1 covers 10)' };
      assert.deepEqual(await firstBad(h), expected);
      await h.reopen();
      assert.equal(h.audit.head.seq, 7);
      assert.deepEqual(await firstBad(h), expected);
    } finally {
      await h.close();
    }
  });

  test('a tail truncated behind the running log (no checkpoint yet) is still named', async () => {
    const h = await tenRecords();
    try {
      sqlite(h).exec('DELETE FROM audit_records WHERE seq > 8');
      assert.deepEqual(await firstBad(h), {
        kind: 'record',
        index: 9,
        reason: 'records 9..10 missing (the audit log committed 10)',
      });
    } finally {
      await h.close();
    }
  });

  test('a forged checkpoint signature, a deleted checkpoint and a wrong head are named', async () => {
    const h = await tenRecords();
    try {
      await h.audit.checkpoint();
      await appendMany(h.audit, 2, 11);
      await h.audit.checkpoint();
      const forger = generateKeyPairSync('ed25519').privateKey;
      const cp = sqlite(h)
        .prepare('SELECT record_count AS count, head_hash AS head, time FROM audit_checkpoints WHERE id = 2')
        .get() as {
        count: number;
        head: string;
        time: string;
      };
      const original = (
        sqlite(h).prepare('SELECT signature FROM audit_checkpoints WHERE id = 2').get() as {
          signature: string;
        }
      ).signature;
      sqlite(h)
        .prepare('UPDATE audit_checkpoints SET signature = ? WHERE id = 2')
        .run(signCheckpoint(cp.count, cp.head, cp.time, forger));
      assert.deepEqual(await firstBad(h), {
        kind: 'checkpoint',
        index: 2,
        reason: 'checkpoint 2: signature does not verify',
      });
      sqlite(h).prepare('UPDATE audit_checkpoints SET signature = ? WHERE id = 2').run(original);
      assert.equal((await h.audit.verify()).ok, true);
      sqlite(h).exec(`UPDATE audit_checkpoints SET record_count = 11 WHERE id = 2`);
      assert.deepEqual(await firstBad(h), {
        kind: 'checkpoint',
        index: 2,
        reason: 'checkpoint 2: signature does not verify',
      });
      sqlite(h).exec(
        `UPDATE audit_checkpoints SET record_count = 12 WHERE id = 2; DELETE FROM audit_checkpoints WHERE id = 1`,
      );
      assert.deepEqual(await firstBad(h), { kind: 'checkpoint', index: 1, reason: 'checkpoint 1 missing' });
    } finally {
      await h.close();
    }
  });
});

describe('AuditLog: fields, fail closed, queries', () => {
  test('control characters are escaped before storage, and SQL builds the same canonical line', async () => {
    const h = await setup();
    try {
      const row = await h.audit.append(
        entry(1, {
          actor: 'eve\n[2025] fake log line\r',
          target: 'vm\u001b[2J',
          detail: 'quote " backslash \\ sep \u2028 nul \u0000 emoji 😀 lone \ud800',
          requestId: 'r\u0085',
        }),
      );
      assert.equal(row.actor, 'eve\\x0a[2025] fake log line\\x0d');
      assert.equal(row.target, 'vm\\x1b[2J');
      assert.equal(row.detail, 'quote " backslash \\ sep \\u2028 nul \\x00 emoji 😀 lone \\ud800');
      assert.equal(row.requestId, 'r\\x85');
      const long = await h.audit.append(entry(2, { actor: 'a'.repeat(10_000) }));
      assert.equal(long.actor.length, 500);
      // The fast path of verify(): SQLite's json_object() must give the very bytes of canonicalLine().
      const lines = sqlite(h)
        .prepare(
          `SELECT prev_hash AS prevHash, json_object('prev', prev_hash, 'seq', seq, 'time', time, 'actorId', actor_id,
            'actor', actor, 'tenantId', tenant_id, 'action', action, 'target', target, 'outcome', outcome,
            'status', status, 'source', source, 'requestId', request_id, 'detail', detail) AS line
          FROM audit_records ORDER BY seq`,
        )
        .all() as { prevHash: string; line: string }[];
      assert.equal(lines[0]!.line, canonicalLine(row.prevHash, row as AuditRecordFields));
      assert.equal(lines[1]!.line, canonicalLine(long.prevHash, long as AuditRecordFields));
      assert.equal((await h.audit.verify()).ok, true);
    } finally {
      await h.close();
    }
  });

  test('fails closed while audit_records cannot be written, and recovers with a valid chain', async () => {
    const h = await setup();
    try {
      await appendMany(h.audit, 2);
      assert.equal(h.audit.assertWritable(), undefined); // synchronous on SQLite
      sqlite(h).exec(
        `CREATE TRIGGER audit_block BEFORE INSERT ON audit_records BEGIN SELECT RAISE(ABORT, 'blocked'); END`,
      );
      await assert.rejects(h.audit.append(entry(3)), (error) => {
        isUnavailable(error);
        assert.match((error as Error).message, /^audit log cannot be written: blocked/);
        return true;
      });
      assert.throws(
        () => h.audit.assertWritable(),
        (error) => isUnavailable(error) && /blocked/.test((error as Error).message),
      );
      assert.equal(h.audit.head.seq, 2);
      // The probe left nothing behind and no transaction open.
      assert.equal(sqlite(h).inTransaction, false);
      sqlite(h).exec('DROP TRIGGER audit_block');
      assert.equal(h.audit.assertWritable(), undefined);
      const rows = await appendMany(h.audit, 3, 3);
      assert.deepEqual(
        rows.map((r) => r.seq),
        [3, 4, 5],
      );
      assert.equal(
        (sqlite(h).prepare('SELECT count(*) AS n FROM audit_records').get() as { n: number }).n,
        5,
      );
      const result = await h.audit.verify();
      assert.deepEqual([result.ok, result.records], [true, 5]);
    } finally {
      await h.close();
    }
  });

  test('the probe works inside an open Kysely transaction and leaves it alone', async () => {
    const h = await setup();
    try {
      await h.db.transaction().execute(async (trx) => {
        await trx
          .insertInto('flavors')
          .values({
            id: 'f1',
            name: 'f1',
            vcpus: 1,
            memoryMib: 64,
            diskGib: 1,
            cpuWeight: 100,
            pidsMax: 512,
            createdAt: 'x',
          })
          .execute();
        assert.equal(h.audit.assertWritable(), undefined);
        assert.equal(sqlite(h).inTransaction, true);
      });
      assert.equal(
        (sqlite(h).prepare('SELECT count(*) AS n FROM flavors WHERE id = ?').get('f1') as { n: number }).n,
        1,
      );
      // An append issued during someone's transaction waits for it, then commits on its own.
      const appended: Promise<unknown>[] = [];
      await h.db.transaction().execute(async () => {
        appended.push(h.audit.append(entry(1)));
        await new Promise((resolve) => setTimeout(resolve, 20));
      });
      await Promise.all(appended);
      assert.equal(h.audit.head.seq, 1);
    } finally {
      await h.close();
    }
  });

  test('query filters by tenant, actor, action, outcome and time, and pages forward', async () => {
    const h = await setup();
    try {
      await h.audit.append(entry(1, { time: '2025-01-01T00:00:00.000Z' }));
      await h.audit.append(
        entry(2, { tenantId: 't-2', actor: 'bob', actorId: 'u-bob', time: '2025-01-02T00:00:00.000Z' }),
      );
      await h.audit.append(
        entry(3, { tenantId: null, action: 'user.create', time: '2025-01-03T00:00:00.000Z' }),
      );
      await h.audit.append(entry(4, { outcome: 'denied', status: 403, time: '2025-01-04T00:00:00.000Z' }));
      const seqs = async (filter: Parameters<AuditLog['query']>[0]) =>
        (await h.audit.query(filter)).items.map((r) => r.seq);
      assert.deepEqual(await seqs({}), [1, 2, 3, 4]);
      assert.deepEqual(await seqs({ tenantId: 't-1' }), [1, 4]);
      assert.deepEqual(await seqs({ tenantId: null }), [3]);
      assert.deepEqual(await seqs({ actor: 'bob' }), [2]);
      assert.deepEqual(await seqs({ actor: 'u-bob' }), [2]);
      assert.deepEqual(await seqs({ action: 'user.create' }), [3]);
      assert.deepEqual(await seqs({ outcome: 'denied' }), [4]);
      assert.deepEqual(await seqs({ since: '2025-01-02T00:00:00Z', until: '2025-01-04T00:00:00Z' }), [2, 3]);
      const page1 = await h.audit.query({ limit: 3 });
      assert.deepEqual([page1.items.map((r) => r.seq), page1.next], [[1, 2, 3], '3']);
      const page2 = await h.audit.query({ limit: 3, after: Number(page1.next) });
      assert.deepEqual([page2.items.map((r) => r.seq), page2.next], [[4], null]);
      assert.equal((await h.audit.query({ limit: 4 })).next, null);
      await assert.rejects(h.audit.query({ since: 'soon' }), /since is not a valid time/);
    } finally {
      await h.close();
    }
  });
});

describe('AuditLog: export and offline verification', () => {
  test('a good export verifies (TypeScript and shell); a tampered one names the record', async () => {
    const h = await setup({ checkpointEveryRecords: 40 });
    try {
      for (let i = 0; i < 3; i++) await appendMany(h.audit, 50, i * 50 + 1);
      await h.audit.append(entry(151, { actor: 'ünïcödé 😀 "q" \\ \n' }));
      await h.audit.checkpoint();
      const dir = join(h.dir, 'export');
      writeExport(h.audit, dir);
      const records = readFileSync(join(dir, 'records.jsonl'), 'utf8');
      const checkpoints = readFileSync(join(dir, 'checkpoints.jsonl'), 'utf8');
      assert.ok(records.split('\n')[0]!.startsWith(`{"prev":"${GENESIS_HASH}","seq":1,`));
      const ts = verifyExport(records, checkpoints, h.audit.publicKeyPem);
      assert.deepEqual([ts.ok, ts.records, ts.checkpoints, ts.head], [true, 151, 4, h.audit.head.hash]);

      const good = await run('bash', [VERIFY_SCRIPT, dir]);
      assert.equal(good.code, 0, good.stdout + good.stderr);
      assert.match(
        good.stdout,
        new RegExp(`^OK 151 records, 4 checkpoints, head ${h.audit.head.hash}$`, 'm'),
      );

      // Edit one field of record 77 in the export.
      const tampered = join(h.dir, 'tampered');
      mkdirSync(tampered);
      const lines = records.split('\n');
      lines[76] = lines[76]!.replace('"status":201', '"status":204');
      writeFileSync(join(tampered, 'records.jsonl'), lines.join('\n'));
      writeFileSync(join(tampered, 'checkpoints.jsonl'), checkpoints);
      writeFileSync(join(tampered, 'audit-public-key.pem'), h.audit.publicKeyPem);
      const bad = await run('bash', [VERIFY_SCRIPT, tampered]);
      assert.equal(bad.code, 1, bad.stdout + bad.stderr);
      assert.match(bad.stdout, /^FAIL: record 77: altered/m);
      assert.equal(verifyExport(lines, checkpoints, h.audit.publicKeyPem).firstBad?.index, 77);

      // A truncated export and a forged checkpoint.
      writeFileSync(join(tampered, 'records.jsonl'), records.split('\n').slice(0, 100).join('\n'));
      const truncated = await run('bash', [VERIFY_SCRIPT, tampered]);
      assert.equal(truncated.code, 1);
      assert.match(truncated.stdout, /^FAIL: records 101\.\.150 missing \(checkpoint 3 covers 150\)$/m);
      writeFileSync(join(tampered, 'records.jsonl'), records);
      const cpLines = checkpoints.split('\n');
      cpLines[1] = cpLines[1]!.replace(
        /"signature":"[A-Za-z0-9+/]/,
        (m) => m.slice(0, -1) + (m.endsWith('A') ? 'B' : 'A'),
      );
      writeFileSync(join(tampered, 'checkpoints.jsonl'), cpLines.join('\n'));
      const forged = await run('bash', [VERIFY_SCRIPT, tampered]);
      assert.equal(forged.code, 1);
      assert.match(forged.stdout, /^FAIL: checkpoint 2: signature does not verify$/m);

      // Another key than the server's: every checkpoint fails.
      const other = generateKeyPairSync('ed25519')
        .publicKey.export({ type: 'spki', format: 'pem' })
        .toString();
      writeFileSync(join(tampered, 'checkpoints.jsonl'), checkpoints);
      writeFileSync(join(tampered, 'other.pem'), other);
      const wrongKey = await run('bash', [VERIFY_SCRIPT, tampered, join(tampered, 'other.pem')]);
      assert.equal(wrongKey.code, 1);
      assert.match(wrongKey.stdout, /^FAIL: checkpoint 1: signature does not verify$/m);

      const usage = await run('bash', [VERIFY_SCRIPT, join(h.dir, 'nope')]);
      assert.equal(usage.code, 2);
    } finally {
      await h.close();
    }
  });
});

describe('audit keys', () => {
  test('the key file is created 0600 in a 0700 directory and reused', async () => {
    const h = await setup();
    try {
      const path = auditKeyPath(h.dir);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.equal(statSync(dirname(path)).mode & 0o777, 0o700);
      assert.match(h.audit.publicKeyPem, /^-----BEGIN PUBLIC KEY-----\n/);
      assert.doesNotMatch(readFileSync(path, 'utf8'), /PUBLIC/);
      const pem = h.audit.publicKeyPem;
      await h.reopen();
      assert.equal(h.audit.publicKeyPem, pem);
    } finally {
      await h.close();
    }
  });

  test('a key file readable by group or others stops the start, naming path and mode only', async () => {
    const h = await setup();
    try {
      await h.audit.close();
      const path = auditKeyPath(h.dir);
      const secret = readFileSync(path, 'utf8');
      chmodSync(path, 0o644);
      await assert.rejects(AuditLog.open(h.db, h.dir), (error: Error) => {
        assert.match(error.message, /audit signing key .* is accessible by group or others \(mode 0644\)/);
        assert.ok(!error.message.includes(secret.split('\n')[1]!));
        return true;
      });
      chmodSync(path, 0o600);
      h.audit = await AuditLog.open(h.db, h.dir);
    } finally {
      await h.close();
    }
  });
});

/**
 * Audit log benchmark: durable appends per second with group commit, and verification throughput
 * against raw SHA-256 over the same bytes, in the same run on the same machine.
 *
 *   npm run build && node dist/bench/audit.bench.js
 *   RAMPART_BENCH_AUDIT_APPENDS=100000 RAMPART_BENCH_AUDIT_BURST=1000 node dist/bench/audit.bench.js
 *
 * Appends: a fresh SQLite database in a temp dir (WAL, synchronous=FULL: a commit is on disk), appends
 * issued in bursts of concurrent promises; a burst is awaited before the next starts, so every append
 * counted was acknowledged as durable. Group commit turns one burst into one transaction.
 * Verify: AuditLog.verify() over the whole database (records read from SQLite, hashed, chained, every
 * checkpoint signature checked) and verifyExport() over the exported lines (the offline path), against
 * one SHA-256 over the concatenated canonical lines — and, for context, one SHA-256 per line, the
 * floor of any hash-chain verifier. Medians of several runs.
 * Targets: >= 20,000 durable appends/s; verify >= 0.5x the raw hash speed. A miss is reported, not
 * failed: the exit code is 0 unless something broke.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { recordHash, verifyExport } from '../src/common/audit-chain.js';
import { AuditLog, type AuditEntry } from '../src/server/audit/audit-log.js';
import { openDatabase, rawSqlite } from '../src/server/store/database.js';
import { intFromEnv, median } from './lib/stats.js';

const TARGET_APPENDS_PER_S = 20_000;
const TARGET_VERIFY_RATIO = 0.5;
const RUNS = 5;

function entry(i: number): AuditEntry {
  return {
    actorId: '3f1c2a9e-7b4d-4c1a-9e2f-0a1b2c3d4e5f',
    actor: 'alice',
    tenantId: '9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a',
    action: 'vm.create',
    target: `vm-${i % 997}`,
    outcome: i % 50 === 0 ? 'denied' : 'success',
    status: i % 50 === 0 ? 403 : 201,
    source: '192.0.2.17',
    requestId: `req-${i.toString(36)}`,
    detail: i % 10 === 0 ? 'flavor=small image=debian-12' : null,
  };
}

/** Appends `total` records in bursts of `burst` concurrent appends; returns the elapsed ms. */
async function appendBursts(audit: AuditLog, total: number, burst: number, start: number): Promise<number> {
  const t0 = performance.now();
  for (let done = 0; done < total; done += burst) {
    const n = Math.min(burst, total - done);
    const pending = new Array<Promise<unknown>>(n);
    for (let i = 0; i < n; i++) pending[i] = audit.append(entry(start + done + i));
    await Promise.all(pending);
  }
  return performance.now() - t0;
}

async function timeRuns(fn: () => unknown): Promise<number> {
  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return median(times);
}

const line = (label: string, value: string): void => console.log(`${label.padEnd(52)} ${value}`);
const rate = (n: number, ms: number): string => `${Math.round((n / ms) * 1000).toLocaleString('en-US')}/s`;
const mbps = (bytes: number, ms: number): string => `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
const verdict = (pass: boolean): string => (pass ? 'PASS' : 'MISS');

async function main(): Promise<void> {
  const total = intFromEnv('RAMPART_BENCH_AUDIT_APPENDS', 50_000, 1000, 10_000_000);
  const burst = intFromEnv('RAMPART_BENCH_AUDIT_BURST', 500, 1, 100_000);
  const dir = mkdtempSync(join(tmpdir(), 'rampart-audit-bench-'));
  const db = await openDatabase(join(dir, 'rampart.db'));
  try {
    const audit = await AuditLog.open(db, dir, { checkpointIntervalMs: 3_600_000 });
    const synchronous = String(rawSqlite(db).pragma('synchronous', { simple: true }));
    console.log(
      `audit benchmark: ${total.toLocaleString('en-US')} appends in bursts of ${burst}, SQLite WAL ` +
        `synchronous=${synchronous} (2 = FULL), database in ${dir}`,
    );
    let seq = 0;
    const warmup = 2000;
    await appendBursts(audit, warmup, 500, seq);
    seq += warmup;

    // ---------------------------------------------------------------- appends
    console.log('');
    console.log('durable appends (each acknowledged after its transaction committed):');
    for (const size of [1, 10, 100, 1000]) {
      const n = Math.min(total, size === 1 ? 300 : size === 10 ? 3000 : 10_000);
      const ms = await appendBursts(audit, n, size, seq);
      seq += n;
      line(`  bursts of ${size} (${n} appends, ~${Math.ceil(n / size)} commits)`, rate(n, ms));
    }
    const ms = await appendBursts(audit, total, burst, seq);
    seq += total;
    const appendsPerS = (total / ms) * 1000;
    line(`  bursts of ${burst} (${total} appends): headline`, rate(total, ms));
    await audit.checkpoint();

    // ---------------------------------------------------------------- verify
    const cut = audit.exportCut();
    const lines = [...audit.exportRecords(cut)];
    const checkpoints = [...audit.exportCheckpoints(cut)];
    const bytes = Buffer.from(lines.join(''), 'utf8');
    const check = await audit.verify();
    if (!check.ok || check.records !== cut.records)
      throw new Error(`verify failed on an untouched log: ${JSON.stringify(check)}`);
    const rawMs = await timeRuns(() => createHash('sha256').update(bytes).digest('hex'));
    const perLineMs = await timeRuns(() => {
      for (const l of lines) recordHash(l);
    });
    const verifyMs = await timeRuns(() => audit.verify());
    const exportMs = await timeRuns(() => verifyExport(lines, checkpoints, audit.publicKeyPem));
    const ratio = rawMs / verifyMs;
    console.log('');
    console.log(
      `verification: ${cut.records.toLocaleString('en-US')} records, ${checkpoints.length} checkpoints, ` +
        `${(bytes.length / 1e6).toFixed(1)} MB of canonical lines (median of ${RUNS} runs)`,
    );
    line('  raw SHA-256 over the concatenated lines', `${rawMs.toFixed(1)} ms  ${mbps(bytes.length, rawMs)}`);
    line(
      '  SHA-256 of each line alone (the chain floor)',
      `${perLineMs.toFixed(1)} ms  ${mbps(bytes.length, perLineMs)}`,
    );
    line(
      '  AuditLog.verify() (SQLite -> chain + signatures)',
      `${verifyMs.toFixed(1)} ms  ${mbps(bytes.length, verifyMs)}`,
    );
    line(
      '  verifyExport() (offline, lines in memory)',
      `${exportMs.toFixed(1)} ms  ${mbps(bytes.length, exportMs)}`,
    );

    await audit.close();
    console.log('');
    console.log(
      `appends: ${Math.round(appendsPerS).toLocaleString('en-US')}/s = ${(appendsPerS / TARGET_APPENDS_PER_S).toFixed(2)}x ` +
        `the target of ${TARGET_APPENDS_PER_S.toLocaleString('en-US')}/s: ${verdict(appendsPerS >= TARGET_APPENDS_PER_S)}`,
    );
    console.log(
      `verify: ${ratio.toFixed(2)}x the raw hash speed (target >= ${TARGET_VERIFY_RATIO}x): ` +
        `${verdict(ratio >= TARGET_VERIFY_RATIO)}`,
    );
    console.log(
      `  context: verify = ${(perLineMs / verifyMs).toFixed(2)}x per-line hashing; verifyExport = ` +
        `${(rawMs / exportMs).toFixed(2)}x raw, ${(perLineMs / exportMs).toFixed(2)}x per-line; ` +
        `per-line hashing alone = ${(rawMs / perLineMs).toFixed(2)}x raw`,
    );
  } finally {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(
    `audit benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  process.exitCode = 1;
});

/**
 * The audit hash chain without a database: control-character escaping, the canonical line and its
 * hash, checkpoint signatures, and ChainVerifier / verifyExport naming the first bad record or
 * checkpoint for each kind of tampering.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  ChainVerifier,
  GENESIS_HASH,
  canonicalLine,
  checkpointLine,
  checkpointMessage,
  escapeControl,
  recordHash,
  signCheckpoint,
  verifyExport,
  type AuditRecordFields,
  type CheckpointFields,
} from './audit-chain.js';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();

function fields(seq: number, overrides: Partial<AuditRecordFields> = {}): AuditRecordFields {
  return {
    seq,
    time: new Date(Date.UTC(2025, 0, 1, 0, 0, 0, seq)).toISOString(),
    actorId: 'u-1',
    actor: 'alice',
    tenantId: 't-1',
    action: 'vm.create',
    target: `vm-${seq}`,
    outcome: 'success',
    status: 201,
    source: '127.0.0.1',
    requestId: `req-${seq}`,
    detail: null,
    ...overrides,
  };
}

interface Row {
  fields: AuditRecordFields;
  prevHash: string;
  hash: string;
  line: string;
}

function chain(n: number): Row[] {
  const rows: Row[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const f = fields(seq);
    const line = canonicalLine(prev, f);
    const hash = recordHash(line);
    rows.push({ fields: f, prevHash: prev, hash, line });
    prev = hash;
  }
  return rows;
}

function checkpoint(rows: Row[], count: number): CheckpointFields {
  const head = count === 0 ? GENESIS_HASH : rows[count - 1]!.hash;
  const time = new Date(Date.UTC(2025, 0, 2)).toISOString();
  return { count, head, time, signature: signCheckpoint(count, head, time, privateKey) };
}

/** Feeds database-style rows and checkpoints the way AuditLog.verify() does. */
function verifyRows(rows: Row[], checkpoints: CheckpointFields[]) {
  const v = new ChainVerifier();
  let k = 0;
  const due = (final: boolean) => {
    while (k < checkpoints.length) {
      if (!final && checkpoints[k]!.count > v.records) return true;
      if (!v.checkCheckpoint(checkpoints[k]!, publicKey, k + 1)) return false;
      k++;
    }
    return true;
  };
  if (due(false)) {
    for (const r of rows) if (!v.addRecord(r.fields, r.prevHash, r.hash) || !due(false)) break;
    if (v.ok) due(true);
  }
  return v.result();
}

describe('escapeControl', () => {
  test('control characters, DEL, C1, U+2028/9 and lone surrogates become visible escapes', () => {
    assert.equal(escapeControl('a\nb\tc\r\0'), 'a\\x0ab\\x09c\\x0d\\x00');
    assert.equal(escapeControl('\u001b[31mred\u007f'), '\\x1b[31mred\\x7f');
    assert.equal(escapeControl('x\u0085y\u009f'), 'x\\x85y\\x9f');
    assert.equal(escapeControl('p\u2028q\u2029'), 'p\\u2028q\\u2029');
    assert.equal(escapeControl('lone \ud800 and \udc00'), 'lone \\ud800 and \\udc00');
    assert.equal(escapeControl('emoji 😀 é ü 中'), 'emoji 😀 é ü 中');
    assert.equal(escapeControl('back\\slash "quoted"'), 'back\\slash "quoted"');
  });

  test('caps the length without splitting an escape or a surrogate pair', () => {
    assert.equal(escapeControl('x'.repeat(500)), 'x'.repeat(500));
    const long = escapeControl('x'.repeat(501));
    assert.equal(long.length, 500);
    assert.ok(long.endsWith('…'));
    assert.equal(escapeControl('abcdef', 4), 'abc…');
    // 'ab' + '\x0a' is 6 long: the escape does not fit whole before the ellipsis, so it goes.
    assert.equal(escapeControl('ab\ncdef', 6), 'ab…');
    assert.equal(escapeControl('ab😀cd', 4), 'ab…');
    assert.equal(escapeControl('ab😀', 4), 'ab😀');
    for (let max = 1; max < 30; max++) {
      const out = escapeControl('a\n😀\u2028b'.repeat(5), max);
      assert.ok(out.length <= max, `max ${max}: ${out}`);
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch(out, /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
      assert.ok(!/[\ud800-\udbff]$/.test(out.replace(/…$/, '')), 'no dangling high surrogate');
    }
  });
});

describe('canonical lines, hashes and checkpoints', () => {
  test('the line has its keys in the fixed order and starts with the prev hash', () => {
    const line = canonicalLine(GENESIS_HASH, fields(1, { detail: 'x' }));
    assert.ok(line.startsWith(`{"prev":"${GENESIS_HASH}","seq":1,"time":"`));
    assert.deepEqual(Object.keys(JSON.parse(line) as object), [
      'prev',
      'seq',
      'time',
      'actorId',
      'actor',
      'tenantId',
      'action',
      'target',
      'outcome',
      'status',
      'source',
      'requestId',
      'detail',
    ]);
    assert.equal(recordHash(line), createHash('sha256').update(Buffer.from(line, 'utf8')).digest('hex'));
    assert.match(recordHash(line), /^[0-9a-f]{64}$/);
    // Non-ASCII is hashed as UTF-8.
    const utf8 = canonicalLine(GENESIS_HASH, fields(1, { actor: 'jürgen 😀' }));
    assert.equal(recordHash(utf8), createHash('sha256').update(Buffer.from(utf8, 'utf8')).digest('hex'));
  });

  test('records link: each prev is the hash of the line before', () => {
    const rows = chain(5);
    assert.equal(rows[0]!.prevHash, GENESIS_HASH);
    for (let i = 1; i < rows.length; i++) assert.equal(rows[i]!.prevHash, recordHash(rows[i - 1]!.line));
    assert.deepEqual(verifyRows(rows, []), {
      ok: true,
      records: 5,
      checkpoints: 0,
      head: rows[4]!.hash,
      firstBad: null,
    });
  });

  test('the checkpoint message and its line', () => {
    const rows = chain(3);
    const cp = checkpoint(rows, 3);
    assert.equal(
      checkpointMessage(3, rows[2]!.hash, cp.time),
      `rampart-audit-checkpoint v1 count=3 head=${rows[2]!.hash} time=${cp.time}`,
    );
    assert.deepEqual(JSON.parse(checkpointLine(cp)), {
      count: 3,
      head: rows[2]!.hash,
      time: cp.time,
      message: checkpointMessage(3, rows[2]!.hash, cp.time),
      signature: cp.signature,
    });
    assert.equal(Buffer.from(cp.signature, 'base64').length, 64);
  });
});

describe('ChainVerifier over database rows', () => {
  const rows = chain(10);
  const cps = [checkpoint(rows, 4), checkpoint(rows, 10)];

  test('a good chain with checkpoints verifies', () => {
    const result = verifyRows(rows, cps);
    assert.equal(result.ok, true);
    assert.equal(result.records, 10);
    assert.equal(result.checkpoints, 2);
    assert.equal(result.head, rows[9]!.hash);
  });

  test('an edited field names that record', () => {
    const bad = rows.map((r) => ({ ...r }));
    bad[5] = { ...bad[5]!, fields: { ...bad[5]!.fields, outcome: 'denied' } };
    const result = verifyRows(bad, cps);
    assert.deepEqual(result.firstBad, {
      kind: 'record',
      index: 6,
      reason: 'record 6: content does not match its hash',
    });
    assert.equal(result.records, 5);
    assert.equal(result.head, rows[4]!.hash);
  });

  test('an edited record with its hash recomputed is named, not its successor', () => {
    const bad = rows.map((r) => ({ ...r }));
    const f = { ...bad[6]!.fields, actor: 'mallory' };
    bad[6] = { ...bad[6]!, fields: f, hash: recordHash(canonicalLine(bad[6]!.prevHash, f)) };
    const result = verifyRows(bad, cps);
    assert.equal(result.firstBad?.kind, 'record');
    assert.equal(result.firstBad?.index, 7);
    assert.match(result.firstBad.reason, /record 7: altered/);
    assert.equal(result.records, 6);
  });

  test('a record covered exactly by a checkpoint is proven authentic: its successor is blamed', () => {
    const bad = rows.map((r) => ({ ...r }));
    const f = { ...bad[4]!.fields, actor: 'mallory' };
    bad[4] = { ...bad[4]!, prevHash: 'f'.repeat(64), fields: f };
    bad[4].hash = recordHash(canonicalLine(bad[4].prevHash, f));
    const result = verifyRows(bad, cps);
    assert.equal(result.firstBad?.index, 5);
    assert.match(result.firstBad.reason, /record 5: prev hash does not match the hash of record 4/);
  });

  test('a deleted record is reported missing', () => {
    const result = verifyRows([...rows.slice(0, 2), ...rows.slice(3)], cps);
    assert.deepEqual(result.firstBad, {
      kind: 'record',
      index: 3,
      reason: 'record 3 missing (next is 4)',
    });
  });

  test('a truncated tail is reported by the checkpoint that covers it', () => {
    const result = verifyRows(rows.slice(0, 7), cps);
    assert.deepEqual(result.firstBad, {
      kind: 'record',
      index: 8,
      reason: 'records 8..10 missing (checkpoint 2 covers 10)',
    });
    assert.equal(result.checkpoints, 1);
  });

  test('a forged signature, a wrong head and a skipped checkpoint are named', () => {
    const forged = { ...cps[1]!, signature: Buffer.alloc(64, 7).toString('base64') };
    assert.deepEqual(verifyRows(rows, [cps[0]!, forged]).firstBad, {
      kind: 'checkpoint',
      index: 2,
      reason: 'checkpoint 2: signature does not verify',
    });
    const time = cps[1]!.time;
    const wrongHead = {
      count: 10,
      head: rows[8]!.hash,
      time,
      signature: signCheckpoint(10, rows[8]!.hash, time, privateKey),
    };
    assert.equal(
      verifyRows(rows, [cps[0]!, wrongHead]).firstBad?.reason,
      'checkpoint 2: head does not match the hash of record 10',
    );
    const other = generateKeyPairSync('ed25519').privateKey;
    const foreign = { ...cps[0]!, signature: signCheckpoint(4, cps[0]!.head, cps[0]!.time, other) };
    assert.equal(verifyRows(rows, [foreign]).firstBad?.index, 1);
    const v = new ChainVerifier();
    for (const r of rows.slice(0, 4)) v.addRecord(r.fields, r.prevHash, r.hash);
    assert.equal(v.checkCheckpoint(cps[0]!, publicKeyPem, 2), false);
    assert.deepEqual(v.firstBad, { kind: 'checkpoint', index: 1, reason: 'checkpoint 1 missing' });
  });

  test('checkpoints going backwards are reported', () => {
    const result = verifyRows(rows, [cps[1]!, cps[0]!]);
    assert.equal(result.firstBad?.kind, 'checkpoint');
    assert.equal(result.firstBad?.index, 2);
    assert.match(result.firstBad.reason, /fewer than the 10 of checkpoint 1/);
  });

  test('checkEnd reports records missing behind the writer', () => {
    const v = new ChainVerifier();
    for (const r of rows.slice(0, 8)) v.addRecord(r.fields, r.prevHash, r.hash);
    assert.equal(v.checkEnd(8, rows[7]!.hash, 'the audit log'), true);
    assert.equal(v.checkEnd(10, rows[9]!.hash, 'the audit log'), false);
    assert.deepEqual(v.firstBad, {
      kind: 'record',
      index: 9,
      reason: 'records 9..10 missing (the audit log committed 10)',
    });
  });
});

describe('verifyExport', () => {
  const rows = chain(12);
  const lines = rows.map((r) => r.line);
  const cpLines = [checkpoint(rows, 5), checkpoint(rows, 12)].map(checkpointLine);
  const text = (ls: string[]) => ls.map((l) => `${l}\n`).join('');

  test('a good export verifies, as text and as lines', () => {
    const expected = { ok: true, records: 12, checkpoints: 2, head: rows[11]!.hash, firstBad: null };
    assert.deepEqual(verifyExport(text(lines), text(cpLines), publicKeyPem), expected);
    assert.deepEqual(verifyExport(lines, cpLines, publicKeyPem), expected);
    assert.deepEqual(verifyExport('', '', publicKeyPem), {
      ok: true,
      records: 0,
      checkpoints: 0,
      head: GENESIS_HASH,
      firstBad: null,
    });
  });

  test('an edited line is named', () => {
    const bad = [...lines];
    bad[7] = bad[7]!.replace('"status":201', '"status":200');
    assert.deepEqual(verifyExport(bad, cpLines, publicKeyPem).firstBad, {
      kind: 'record',
      index: 8,
      reason: 'record 8: altered (its hash differs from the prev hash that record 9 carries)',
    });
    // The last line has no successor: the checkpoint covering it catches the edit.
    const last = [...lines];
    last[11] = last[11]!.replace('"status":201', '"status":200');
    assert.equal(
      verifyExport(last, cpLines, publicKeyPem).firstBad?.reason,
      'checkpoint 2: head does not match the hash of record 12',
    );
  });

  test('deleted, reordered and truncated lines are named', () => {
    assert.equal(
      verifyExport([...lines.slice(0, 3), ...lines.slice(4)], cpLines, publicKeyPem).firstBad?.reason,
      'record 4 missing (next is 5)',
    );
    const swapped = [...lines];
    [swapped[2], swapped[3]] = [swapped[3]!, swapped[2]!];
    assert.equal(
      verifyExport(swapped, cpLines, publicKeyPem).firstBad?.reason,
      'record 3 missing (next is 4)',
    );
    assert.deepEqual(verifyExport(lines.slice(0, 9), cpLines, publicKeyPem).firstBad, {
      kind: 'record',
      index: 10,
      reason: 'records 10..12 missing (checkpoint 2 covers 12)',
    });
  });

  test('malformed lines and checkpoints are named', () => {
    const bad = [...lines];
    bad[2] = 'not json';
    assert.equal(
      verifyExport(bad, cpLines, publicKeyPem).firstBad?.reason,
      'record 3: line is not valid JSON',
    );
    const cpBad = [cpLines[0]!, cpLines[1]!.replace('"count":12', '"count":11')];
    assert.equal(
      verifyExport(lines, cpBad, publicKeyPem).firstBad?.reason,
      'checkpoint 2: message does not match its count, head and time',
    );
  });
});

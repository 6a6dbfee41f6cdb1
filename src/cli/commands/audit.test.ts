import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditRecordView, AuditVerification } from '../../api/audit.js';
import {
  GENESIS_HASH,
  canonicalLine,
  checkpointLine,
  recordHash,
  signCheckpoint,
} from '../../common/audit-chain.js';
import { run } from '../program.js';
import { startFakeApi, tempDir, testIo, type FakeApi, type Handler } from '../testing.js';

function record(seq: number, overrides: Partial<AuditRecordView> = {}): AuditRecordView {
  return {
    seq,
    time: '2026-01-01T11:00:00.000Z',
    actorId: 'eeeeeeee-2222-4333-8444-555555555555',
    actor: 'admin',
    tenantId: null,
    action: 'auth:login',
    target: null,
    outcome: 'success',
    status: 200,
    source: '127.0.0.1',
    requestId: `req-${seq}`,
    detail: null,
    prevHash: GENESIS_HASH,
    hash: GENESIS_HASH,
    ...overrides,
  };
}

/** A valid export of `n` records with one signed checkpoint over the first `signed` of them. */
function buildExport(n: number, signed: number) {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const lines: string[] = [];
  let prev = GENESIS_HASH;
  let signedHead = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const { prevHash: _p, hash: _h, ...fields } = record(seq);
    const line = canonicalLine(prev, fields);
    lines.push(line);
    prev = recordHash(line);
    if (seq === signed) signedHead = prev;
  }
  const time = '2026-01-01T11:30:00.000Z';
  const signature = signCheckpoint(signed, signedHead, time, privateKey);
  return {
    records: lines.map((l) => `${l}\n`).join(''),
    checkpoints: `${checkpointLine({ count: signed, head: signedHead, time, signature })}\n`,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

const OK: AuditVerification = { ok: true, records: 12, checkpoints: 2, head: 'a'.repeat(64), firstBad: null };
const BAD: AuditVerification = {
  ok: false,
  records: 2,
  checkpoints: 0,
  head: 'b'.repeat(64),
  firstBad: { kind: 'record', index: 3, reason: 'record 3: content does not match its hash' },
};

void describe('audit commands', () => {
  let api: FakeApi;
  let handler: Handler = () => undefined;
  let dir: ReturnType<typeof tempDir>;
  before(async () => {
    api = await startFakeApi((req) => handler(req));
  });
  after(() => api.close());
  beforeEach(() => {
    api.requests.length = 0;
    dir = tempDir();
  });
  afterEach(() => dir.remove());
  const env = (extra: Record<string, string> = {}) => ({
    RAMPART_URL: api.url,
    RAMPART_TOKEN: 'auditor-token',
    ...extra,
  });

  void it('prints OK with the counts and exits 0 when the server verifies the log', async () => {
    handler = (req) => (req.url === '/v1/audit/verify' ? { body: OK } : undefined);
    const io = testIo(env());
    assert.equal(await run(['audit', 'verify'], io), 0, io.stderr.text);
    assert.match(io.stdout.text, /^Result: +OK\nRecords: +12\nCheckpoints: +2\nHead: +a{64}\n$/);
    assert.equal(io.stderr.text, '');
  });

  void it('prints the first bad record and exits 8 when verification fails', async () => {
    handler = (req) => (req.url === '/v1/audit/verify' ? { body: BAD } : undefined);
    const io = testIo(env());
    assert.equal(await run(['audit', 'verify'], io), 8);
    assert.match(io.stdout.text, /Result: +FAILED\n/);
    assert.match(io.stdout.text, /First bad: +record 3: content does not match its hash\n/);
    assert.equal(
      io.stderr.text,
      'rampart: audit verification failed: record 3: content does not match its hash\n',
    );
    const json = testIo(env());
    assert.equal(await run(['audit', 'verify', '-o', 'json'], json), 8);
    assert.deepEqual(JSON.parse(json.stdout.text), BAD);
  });

  void it('lists records as a table, with filters as query parameters', async () => {
    handler = (req) =>
      req.url.startsWith('/v1/audit?') ? { body: { items: [record(7)], next: '7' } } : undefined;
    const io = testIo(env({ RAMPART_TENANT: 'acme' }));
    assert.equal(
      await run(
        [
          'audit',
          'list',
          '--actor',
          'admin',
          '--action',
          'auth:login',
          '--outcome',
          'denied',
          '--since',
          '1h',
        ],
        io,
      ),
      0,
      io.stderr.text,
    );
    const url = new URL(api.requests[0]?.url ?? '', api.url);
    assert.equal(url.pathname, '/v1/audit');
    assert.deepEqual(Object.fromEntries(url.searchParams), {
      tenant: 'acme',
      actor: 'admin',
      action: 'auth:login',
      outcome: 'denied',
      since: '2026-01-01T11:00:00.000Z',
    });
    assert.equal(
      io.stdout.text,
      'SEQ   TIME                       ACTOR   ACTION       TARGET   OUTCOME   STATUS   SOURCE\n' +
        '7     2026-01-01T11:00:00.000Z   admin   auth:login   -        success   200      127.0.0.1\n',
    );
    assert.match(io.stderr.text, /more records follow: add --after 7/);
    assert.equal(await run(['audit', 'list', '--outcome', 'maybe'], testIo(env())), 2);
    assert.equal(await run(['audit', 'list', '--since', 'yesterday'], testIo(env())), 2);
  });

  void it('follows `next` page by page up to --limit, on /v1/platform/audit with --all', async () => {
    handler = (req) => {
      const url = new URL(req.url, api.url);
      if (url.pathname !== '/v1/platform/audit') return undefined;
      const after = Number(url.searchParams.get('after') ?? '0');
      const limit = Number(url.searchParams.get('limit'));
      const items = Array.from({ length: limit }, (_, i) => record(after + i + 1));
      return { body: { items, next: String(after + limit) } };
    };
    const io = testIo(env());
    assert.equal(
      await run(['audit', 'list', '--all', '--limit', '1500', '-o', 'json'], io),
      0,
      io.stderr.text,
    );
    assert.deepEqual(
      api.requests.map((r) => r.url),
      ['/v1/platform/audit?limit=1000', '/v1/platform/audit?after=1000&limit=500'],
    );
    const page = JSON.parse(io.stdout.text) as { items: AuditRecordView[]; next: string };
    assert.equal(page.items.length, 1500);
    assert.equal(page.next, '1500');
  });

  void it('exports to an empty directory and refuses a non-empty one', async () => {
    const exported = buildExport(3, 2);
    handler = (req) => {
      if (req.url === '/v1/audit/public-key')
        return { body: { algorithm: 'ed25519', publicKeyPem: exported.publicKeyPem } };
      if (req.url === '/v1/audit/export/checkpoints') return { raw: exported.checkpoints };
      if (req.url === '/v1/audit/export/records') return { raw: exported.records };
      return undefined;
    };
    const target = join(dir.path, 'export');
    const io = testIo(env());
    assert.equal(await run(['audit', 'export', target], io), 0, io.stderr.text);
    assert.deepEqual(readdirSync(target).sort(), [
      'audit-public-key.pem',
      'checkpoints.jsonl',
      'records.jsonl',
    ]);
    assert.equal(readFileSync(join(target, 'records.jsonl'), 'utf8'), exported.records);
    assert.equal(statSync(join(target, 'records.jsonl')).mode & 0o777, 0o600);
    assert.equal(io.stdout.text, `exported 3 records and 1 checkpoints to ${target}\n`);
    assert.match(io.stderr.text, /scripts\/verify-audit-export\.sh /);
    assert.deepEqual(
      api.requests.map((r) => r.url),
      ['/v1/audit/public-key', '/v1/audit/export/checkpoints', '/v1/audit/export/records'],
    );

    const again = testIo(env());
    assert.equal(await run(['audit', 'export', target], again), 2);
    assert.match(again.stderr.text, /refusing to export into .*: it is not empty/);

    // ...and the export verifies offline; a record edited afterwards does not (exit 8).
    const verified = testIo(env({ RAMPART_URL: 'http://127.0.0.1:1' }));
    assert.equal(await run(['audit', 'verify', '--offline', target], verified), 0, verified.stderr.text);
    assert.match(verified.stdout.text, /^Result: +OK\nRecords: +3\nCheckpoints: +1\n/);
    assert.match(verified.stderr.text, /the last 1 record\(s\) come after the last signed checkpoint/);

    const recordsPath = join(target, 'records.jsonl');
    writeFileSync(recordsPath, readFileSync(recordsPath, 'utf8').replace('"req-2"', '"req-X"'));
    const tampered = testIo(env({ RAMPART_URL: 'http://127.0.0.1:1' }));
    assert.equal(await run(['audit', 'verify', '--offline', target], tampered), 8);
    assert.match(tampered.stdout.text, /Result: +FAILED\n/);
    // Record 2 is covered by the signed checkpoint, so the signature is what catches the edit.
    assert.equal(
      tampered.stderr.text,
      'rampart: audit verification failed: checkpoint 1: head does not match the hash of record 2\n',
    );
  });

  void it('says what is missing from an offline directory', async () => {
    const io = testIo(env());
    assert.equal(await run(['audit', 'verify', '--offline', dir.path], io), 2);
    assert.match(io.stderr.text, /records\.jsonl does not exist/);
  });
});

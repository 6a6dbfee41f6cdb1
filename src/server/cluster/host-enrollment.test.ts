/**
 * Join tokens: only their hash is stored, they expire, and each is used once (also when two joins race);
 * a bad CSR leaves the token usable; issued certificates are valid until revoked.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { run } from '../../common/subprocess.js';
import { openDatabase } from '../store/database.js';
import { HostCa } from './host-ca.js';
import { HostEnrollment, hashJoinToken } from './host-enrollment.js';

async function csrFor(dir: string, name: string): Promise<string> {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
  const file = join(dir, `${name}-${Math.random()}.key`);
  writeFileSync(file, key, { mode: 0o600 });
  return (await run('openssl', ['req', '-new', '-key', file, '-subj', `/CN=${name}`])).stdout;
}

test('join tokens: hash only, expiry, single use; revocation', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-join-'));
  const db = await openDatabase(join(dir, 'db', 'rampart.db'));
  t.after(async () => {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  let now = Date.parse('2026-01-01T00:00:00Z');
  const closed: string[] = [];
  const enrollment = new HostEnrollment({
    db,
    ca: await HostCa.open(dir),
    agentEndpoint: '127.0.0.1:9443',
    closeHost: (id) => closed.push(id),
    now: () => now,
  });

  const created = await enrollment.createJoinToken({ hostname: 'node-1', createdBy: null });
  assert.match(created.token, /^rjt_[A-Za-z0-9_-]{43}$/);
  assert.match(created.caFingerprint, /^sha256:[0-9a-f]{64}$/);
  const rows = await db.selectFrom('hostJoinTokens').selectAll().execute();
  assert.equal(rows.length, 1);
  assert.equal(rows[0]!.tokenHash, hashJoinToken(created.token));
  assert.ok(!JSON.stringify(rows).includes(created.token.slice(4)), 'the token itself is not stored');
  assert.equal(rows[0]!.expiresAt, '2026-01-01T01:00:00.000Z', 'default expiry 1 h');

  // A CSR for another name is refused and leaves the token usable.
  await assert.rejects(
    enrollment.join({ token: created.token, csr: await csrFor(dir, 'node-2') }, 'a'),
    /CN/,
  );
  const csr = await csrFor(dir, 'node-1');
  // Two joins at once: exactly one wins.
  const results = await Promise.allSettled([
    enrollment.join({ token: created.token, csr }, 'a'),
    enrollment.join({ token: created.token, csr }, 'a'),
  ]);
  const won = results.filter((r) => r.status === 'fulfilled');
  assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status)));
  const joined = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<HostEnrollment['join']>>>).value;
  assert.equal(joined.hostname, 'node-1');
  assert.equal(joined.agentEndpoint, '127.0.0.1:9443');
  await assert.rejects(enrollment.join({ token: created.token, csr }, 'a'), /already used/);

  // Expiry.
  const short = await enrollment.createJoinToken({ ttlSeconds: 60, createdBy: null });
  now += 61_000;
  await assert.rejects(enrollment.join({ token: short.token, csr: await csrFor(dir, 'x') }, 'b'), /expired/);
  await assert.rejects(enrollment.createJoinToken({ ttlSeconds: 10, createdBy: null }), /ttlSeconds/);
  await assert.rejects(enrollment.createJoinToken({ hostname: 'node-1', createdBy: null }), /already joined/);

  // Certificates: valid for their host only, until revoked.
  const cert = await db.selectFrom('hostCertificates').selectAll().executeTakeFirstOrThrow();
  assert.equal(cert.hostId, joined.hostId);
  assert.equal(await enrollment.certificateValid(cert.serial, joined.hostId), true);
  assert.equal(await enrollment.certificateValid(`00${cert.serial.toLowerCase()}`, joined.hostId), true);
  assert.equal(await enrollment.certificateValid(cert.serial, '11111111-1111-4111-8111-111111111111'), false);
  const revoked = await enrollment.revoke('node-1');
  assert.deepEqual(revoked, { hostId: joined.hostId, hostname: 'node-1', revoked: 1 });
  assert.deepEqual(closed, [joined.hostId]);
  assert.equal(await enrollment.certificateValid(cert.serial, joined.hostId), false);
  await assert.rejects(enrollment.revoke('no-such-host'), /not found/i);
});

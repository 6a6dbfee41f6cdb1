/**
 * Join tokens: only their hash is stored, they expire, and each is used once (also when two joins race);
 * a bad CSR leaves the token usable; issued certificates are valid until revoked; a renewal over the
 * host's link (with the agent's own renewal code) issues a new certificate for the same host, and the
 * older ones are revoked once the host presents it.
 */
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CertificateRenewal } from '../../agent/link/certificate-renewal.js';
import { agentRequestValidator } from '../../api/agent-protocol.js';
import { run } from '../../common/subprocess.js';
import { openDatabase } from '../store/database.js';
import type { AgentChannel } from './agent-forwarding.js';
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

test('renewal over the host link: a new certificate for the same host; the older ones revoked once used', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-renew-'));
  const db = await openDatabase(join(dir, 'db', 'rampart.db'));
  t.after(async () => {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const ca = await HostCa.open(join(dir, 'server'));
  const enrollment = new HostEnrollment({ db, ca, agentEndpoint: '127.0.0.1:9443' });
  const { token } = await enrollment.createJoinToken({ hostname: 'node-1', createdBy: null });
  // The agent's data directory, joined with a key made by the agent's renewal code.
  const agentDir = join(dir, 'agent');
  mkdirSync(agentDir);
  writeFileSync(join(agentDir, 'ca.crt'), ca.certificatePem);
  const agent = new CertificateRenewal(agentDir, () => undefined);
  const joined = await enrollment.join({ token, csr: (await agent.request('node-1')).csr }, 'a');
  writeFileSync(join(agentDir, 'host-id'), joined.hostId);
  const first = new X509Certificate(joined.certificate).serialNumber;

  // The link to the agent: requests go to its renewal code, as over the wire (validated first).
  const requests: string[] = [];
  const channel: AgentChannel = {
    request: (async (type: string, body: Record<string, unknown>) => {
      requests.push(type);
      const message = { ...body, type, id: requests.length };
      assert.ok(agentRequestValidator.Check(message), `${type} matches the protocol`);
      if (type === 'certificate.request') return agent.request(body.subject as string);
      if (type === 'certificate.install') return agent.install(body.certificate as string);
      throw new Error(`unexpected ${type}`);
    }) as AgentChannel['request'],
  };
  await assert.rejects(
    new HostEnrollment({ db, ca, agentEndpoint: null, channelFor: () => null }).renewHost('node-1'),
    /not connected/,
  );
  const renewed = await new HostEnrollment({
    db,
    ca,
    agentEndpoint: '127.0.0.1:9443',
    channelFor: (id) => (id === joined.hostId ? channel : null),
  }).renewHost('node-1');
  assert.deepEqual(requests, ['certificate.request', 'certificate.install']);
  assert.equal(renewed.hostId, joined.hostId);
  assert.equal(renewed.hostname, 'node-1');
  assert.notEqual(renewed.serial, first);
  const installed = new X509Certificate(readFileSync(join(agentDir, 'host.crt')));
  assert.equal(installed.serialNumber.replace(/^0+/, ''), renewed.serial);
  assert.equal(installed.subject.trim(), `CN=${joined.hostId}`);
  // Both valid until the host presents the new one; then the old one is revoked.
  assert.equal(await enrollment.certificateValid(first, joined.hostId), true);
  assert.equal(await enrollment.certificateValid(renewed.serial, joined.hostId), true);
  assert.equal(await enrollment.supersede(joined.hostId, first), 0, 'the old one supersedes nothing');
  assert.equal(await enrollment.supersede(joined.hostId, renewed.serial), 1);
  assert.equal(await enrollment.certificateValid(first, joined.hostId), false);
  assert.equal(await enrollment.certificateValid(renewed.serial, joined.hostId), true);
});

/**
 * Shared secrets over a real (SQLite) database and real key files: the first server records their
 * fingerprints; a server with the same secrets starts; one with secrets of its own is refused, naming
 * each that differs; a secret only some servers hold (the host CA) is checked where present;
 * RAMPART_ACCEPT_NEW_SECRETS replaces the record; fingerprints reveal no key.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadOrCreateAuditKeys } from '../audit/audit-keys.js';
import { loadSessionKey } from '../iam/session-tokens.js';
import { PlatformSigner } from '../images/platform-signer.js';
import { openDatabase, type Db } from '../store/database.js';
import { HostCa } from './host-ca.js';
import { SecretsMismatchError, checkSharedSecrets, sharedSecretFingerprints } from './shared-secrets.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-shared-secrets-'));
let db: Db;

/** A data directory with the secrets a server creates at start (and the host CA with `ca`). */
async function dataDir(name: string, ca: boolean): Promise<string> {
  const dir = join(root, name);
  loadSessionKey(dir);
  loadOrCreateAuditKeys(dir);
  PlatformSigner.load(dir);
  if (ca) await HostCa.open(dir);
  return dir;
}

before(async () => {
  db = await openDatabase(join(root, 'rampart.db'));
});

after(async () => {
  await db.destroy();
  rmSync(root, { recursive: true, force: true });
});

test('the first server records its secrets; the same secrets pass, others are refused by name', async () => {
  const first = await dataDir('first', true);
  assert.deepEqual(await checkSharedSecrets(db, first), []);
  const recorded = await db.selectFrom('sharedSecrets').select(['name', 'fingerprint']).execute();
  assert.deepEqual(recorded.map((r) => r.name).sort(), [
    'audit signing key',
    'host CA',
    'platform image signing key',
    'session signing key',
  ]);
  // Again, and from a copy of its secrets/ (a replica set up as the README says).
  assert.deepEqual(await checkSharedSecrets(db, first), []);
  const copy = join(root, 'copy');
  cpSync(join(first, 'secrets'), join(copy, 'secrets'), { recursive: true });
  assert.deepEqual(await checkSharedSecrets(db, copy), []);

  // A fresh data directory: keys of its own. No host CA there (no agent listener): not checked.
  const stranger = await dataDir('stranger', false);
  await assert.rejects(checkSharedSecrets(db, stranger), (error: unknown) => {
    assert.ok(error instanceof SecretsMismatchError);
    assert.deepEqual(error.names, ['audit signing key', 'platform image signing key', 'session signing key']);
    assert.match(error.message, /holds a different .*session signing key than the other servers/);
    assert.match(error.message, /copy secrets\/ from a server already running on it/);
    assert.match(error.message, /RAMPART_ACCEPT_NEW_SECRETS=1/);
    return true;
  });
  // Nothing was changed by the refusal.
  assert.deepEqual(await db.selectFrom('sharedSecrets').select(['name', 'fingerprint']).execute(), recorded);

  // Only the session key copied: the other two still differ.
  cpSync(join(first, 'secrets', 'session-hs256.key'), join(stranger, 'secrets', 'session-hs256.key'));
  await assert.rejects(
    checkSharedSecrets(db, stranger),
    (error: unknown) =>
      error instanceof SecretsMismatchError &&
      error.names.join() === 'audit signing key,platform image signing key',
  );
});

test('accepting new secrets replaces the record; then the old ones are refused', async () => {
  const old = join(root, 'first');
  const fresh = await dataDir('fresh', true);
  const replaced = await checkSharedSecrets(db, fresh, { acceptNew: true });
  assert.deepEqual(replaced.sort(), [
    'audit signing key',
    'host CA',
    'platform image signing key',
    'session signing key',
  ]);
  assert.deepEqual(await checkSharedSecrets(db, fresh), []);
  await assert.rejects(checkSharedSecrets(db, old), SecretsMismatchError);
});

test('a fingerprint reveals no key and changes with the key', async () => {
  const dir = join(root, 'first');
  const fingerprints = sharedSecretFingerprints(dir);
  const sessionKey = readFileSync(join(dir, 'secrets', 'session-hs256.key'));
  for (const fingerprint of fingerprints.values()) {
    assert.match(fingerprint, /^[0-9a-f]{64}$/);
    assert.ok(!fingerprint.includes(sessionKey.toString('hex').slice(0, 16)));
  }
  assert.notEqual(
    fingerprints.get('session signing key'),
    sharedSecretFingerprints(join(root, 'fresh')).get('session signing key'),
  );
  // The host CA is known by its public key: a certificate re-made from the same key matches.
  const caCert = readFileSync(join(dir, 'secrets', 'host-ca.crt'), 'utf8');
  rmSync(join(dir, 'secrets', 'host-ca.crt'));
  await HostCa.open(dir);
  assert.notEqual(readFileSync(join(dir, 'secrets', 'host-ca.crt'), 'utf8'), caCert);
  assert.equal(sharedSecretFingerprints(dir).get('host CA'), fingerprints.get('host CA'));
});

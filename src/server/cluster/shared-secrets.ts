/**
 * The secrets every server on one database must share, checked at start. Each server keeps them in
 * its data directory's `secrets/`; the database records a fingerprint of each the first time a server
 * starts with it, and a server whose secret differs refuses to start, naming it. Without this, a
 * replica given a fresh data directory would create keys of its own and run with them: its session
 * tokens refused by the others, its audit checkpoints failing verification, its platform image
 * signatures untrusted, and its host certificates unknown to the others.
 *
 * Fingerprints reveal nothing of a key: the SHA-256 of the public key (audit, platform signing, host
 * CA), an HMAC keyed with the secret itself (session key). The master key is not checked here: it is
 * rotated online, and every wrapped data key names the master key it was wrapped with.
 *
 * `RAMPART_ACCEPT_NEW_SECRETS=1` records this server's fingerprints instead (after the old secrets were
 * lost for good); what was signed or issued with the old keys stops verifying.
 */
import {
  createHmac,
  createHash,
  createPrivateKey,
  createPublicKey,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUDIT_KEY_FILE } from '../audit/audit-keys.js';
import { PLATFORM_SIGNING_KEY_FILE } from '../images/platform-signer.js';
import { nowIso, type Db } from '../store/database.js';

export const ACCEPT_NEW_SECRETS_ENV = 'RAMPART_ACCEPT_NEW_SECRETS';

interface SharedSecret {
  name: string;
  file: string;
  fingerprint(content: Buffer): string;
}

/** The SHA-256 of a public key (DER SubjectPublicKeyInfo). */
function publicKeyFingerprint(key: KeyObject): string {
  return createHash('sha256')
    .update(key.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/** The fingerprint of the public half of a PEM private key. */
function privateKeyFingerprint(pem: Buffer): string {
  return publicKeyFingerprint(createPublicKey(createPrivateKey(pem)));
}

const SHARED_SECRETS: readonly SharedSecret[] = [
  {
    name: 'session signing key',
    file: 'session-hs256.key',
    fingerprint: (key) =>
      createHmac('sha256', key).update('rampart shared secret fingerprint v1').digest('hex'),
  },
  {
    name: 'audit signing key',
    file: AUDIT_KEY_FILE,
    fingerprint: privateKeyFingerprint,
  },
  {
    name: 'platform image signing key',
    file: PLATFORM_SIGNING_KEY_FILE,
    fingerprint: privateKeyFingerprint,
  },
  {
    name: 'host CA',
    file: 'host-ca.crt',
    fingerprint: (pem) => publicKeyFingerprint(new X509Certificate(pem).publicKey),
  },
];

/** Fingerprints of the shared secrets present in `<dataDir>/secrets/`, by name. */
export function sharedSecretFingerprints(dataDir: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const secret of SHARED_SECRETS) {
    const path = join(dataDir, 'secrets', secret.file);
    if (!existsSync(path)) continue;
    const content = readFileSync(path);
    try {
      found.set(secret.name, secret.fingerprint(content));
    } finally {
      content.fill(0);
    }
  }
  return found;
}

export class SecretsMismatchError extends Error {
  constructor(
    readonly names: readonly string[],
    dataDir: string,
  ) {
    super(
      `${join(dataDir, 'secrets')} holds a different ${names.join(', ')} than the other servers on this ` +
        `database: copy secrets/ from a server already running on it (see README, Server replicas). ` +
        `If the old secrets are lost for good, start once with ${ACCEPT_NEW_SECRETS_ENV}=1 ` +
        `(what they signed or issued stops verifying).`,
    );
    this.name = 'SecretsMismatchError';
  }
}

/**
 * Records the fingerprints the database does not know yet and compares the others; throws a
 * SecretsMismatchError naming every secret that differs. With `acceptNew`, this server's fingerprints
 * replace the recorded ones; answers the names replaced.
 */
export async function checkSharedSecrets(
  db: Db,
  dataDir: string,
  options: { acceptNew?: boolean } = {},
): Promise<string[]> {
  const mine = sharedSecretFingerprints(dataDir);
  const recordedAt = nowIso();
  for (const [name, fingerprint] of mine) {
    await db
      .insertInto('sharedSecrets')
      .values({ name, fingerprint, recordedAt })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
  }
  const recorded = await db.selectFrom('sharedSecrets').select(['name', 'fingerprint']).execute();
  const differing = recorded
    .filter((row) => mine.has(row.name) && mine.get(row.name) !== row.fingerprint)
    .map((row) => row.name)
    .sort();
  if (differing.length === 0) return [];
  if (!options.acceptNew) throw new SecretsMismatchError(differing, dataDir);
  for (const name of differing)
    await db
      .updateTable('sharedSecrets')
      .set({ fingerprint: mine.get(name)!, recordedAt })
      .where('name', '=', name)
      .execute();
  return differing;
}

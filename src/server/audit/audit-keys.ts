/**
 * The audit log's Ed25519 signing key: <dataDir>/secrets/audit-ed25519.pem (PKCS#8 PEM, mode 0600 in a
 * 0700 directory), created on first start. Checkpoint signatures are only worth something while this key
 * stays private, so the server refuses to start when the file is open to group or others instead of
 * quietly using (or replacing) a key that may have leaked. Errors name the path and mode, never the key.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomUUID,
  type KeyObject,
} from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

export const AUDIT_KEY_FILE = 'audit-ed25519.pem';

export interface AuditKeys {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** SPKI PEM: what `rampart audit export` writes as audit-public-key.pem. */
  publicKeyPem: string;
  path: string;
}

export function auditKeyPath(dataDir: string): string {
  return join(dataDir, 'secrets', AUDIT_KEY_FILE);
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes a new key next to the final path, then links it into place (never overwriting a key). */
function createKeyFile(path: string, dir: string): void {
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const tmp = `${path}.${randomUUID()}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, pem);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (error) {
    // Another process created the key at the same moment: use theirs.
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    unlinkSync(tmp);
  }
  fsyncDir(dir);
}

/** Loads the audit key pair, creating it on first use. Throws a clear error on an unsafe key file. */
export function loadOrCreateAuditKeys(dataDir: string): AuditKeys {
  const dir = join(dataDir, 'secrets');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const dirStat = lstatSync(dir);
  if (!dirStat.isDirectory()) throw new Error(`audit key directory ${dir} is not a directory`);
  if ((dirStat.mode & 0o077) !== 0) chmodSync(dir, 0o700);
  const path = join(dir, AUDIT_KEY_FILE);
  let stat;
  try {
    stat = lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    createKeyFile(path, dir);
    stat = lstatSync(path);
  }
  if (!stat.isFile()) throw new Error(`audit signing key ${path} is not a regular file`);
  const mode = stat.mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new Error(
      `audit signing key ${path} is accessible by group or others (mode ${mode.toString(8).padStart(4, '0')}); ` +
        `it may have leaked: check it, then run chmod 600 ${path} (or move it away to create a new key)`,
    );
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: readFileSync(path), format: 'pem' });
  } catch {
    throw new Error(`audit signing key ${path} is not a readable PKCS#8 PEM private key`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519')
    throw new Error(`audit signing key ${path} is not an Ed25519 key (${privateKey.asymmetricKeyType})`);
  const publicKey = createPublicKey(privateKey);
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  return { privateKey, publicKey, publicKeyPem, path };
}

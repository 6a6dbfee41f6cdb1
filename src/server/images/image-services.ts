/**
 * Wires the protected-image services of one server: the master key and tenant keyring, the encrypted
 * store, the platform signer, the import pipeline (qemu-img checks, ClamAV, zstd, AES-256-GCM) and the
 * periodic re-scan when the scanner's databases change.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConflictError } from '../../api/errors.js';
import type { TrustedKey } from '../../common/dsse.js';
import { createSecretFile, readSecretFile } from '../../common/secret-file.js';
import { newId } from '../../common/ids.js';
import type { Logger } from '../../common/logger.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { ImagesConfig } from '../config.js';
import type { QuotaService } from '../quota/quota-service.js';
import type { SecurityEventLog } from '../security/security-events.js';
import type { Db } from '../store/database.js';
import type { ImagesTable } from '../store/schema.js';
import { loadMasterKey, MasterKey, TenantKeyring, type LoadedMasterKey } from './crypto/envelope-keys.js';
import { inspectDiskImage } from './disk-inspection.js';
import { ImageImporter } from './image-import.js';
import { ImageStore } from './image-store.js';
import { PlatformSigner } from './platform-signer.js';
import { describeDatabases, scanFile, SHIPPED_DATABASE_DIR, type ScanResult } from './scanner.js';

export interface ImageServices {
  master: LoadedMasterKey;
  keyring: TenantKeyring;
  store: ImageStore;
  signer: PlatformSigner;
  importer: ImageImporter;
  /** The keys platform images are checked against (the platform signer's public key). */
  platformKeys: readonly TrustedKey[];
  /** Rotates a file-based master key: new key file, every data key re-wrapped, nothing re-encrypted. */
  rotateMasterKey(): Promise<{ masterKeyId: string; rewrapped: number }>;
  /** Stops the periodic re-scan check. */
  stop(): void;
}

export interface ImageServicesInput {
  db: Db;
  dataDir: string;
  config: ImagesConfig;
  quotas: QuotaService;
  audit: AuditLog;
  securityEvents: SecurityEventLog;
  log: Logger;
}

export async function openImageServices(input: ImageServicesInput): Promise<ImageServices> {
  const { db, config, log, audit, securityEvents } = input;
  const master = await recoverMasterKeyRotation(db, input.dataDir, loadMasterKey(input.dataDir), log);
  if (master.source === 'created')
    log.warn({ path: master.path }, 'created a new master key: back it up, images are unreadable without it');
  const keyring = new TenantKeyring(db, master.key);
  const store = new ImageStore(db, keyring, input.dataDir);
  await store.init();
  const signer = PlatformSigner.load(input.dataDir);
  const scanOptions = { extraDatabaseDirs: config.clamavDatabaseDirs };
  const databaseDirs = [SHIPPED_DATABASE_DIR, ...config.clamavDatabaseDirs];

  /** Audit record and security event for a scan that did not come back clean. */
  const onVerdict = async (image: ImagesTable, scan: ScanResult, trigger: 'import' | 'rescan') => {
    const infected = scan.verdict === 'infected';
    const detail = infected
      ? `quarantined: ${scan.signatures.join(', ')}`
      : `scan failed: ${scan.error ?? 'unknown error'}`;
    await audit
      .append({
        actorId: null,
        actor: 'system:scanner',
        tenantId: image.tenantId,
        action: infected ? 'image:quarantine' : 'image:scan',
        target: image.id,
        outcome: 'failure',
        status: 0,
        source: 'server',
        requestId: newId(),
        detail,
      })
      .catch((error: unknown) => log.error({ err: (error as Error).message }, 'audit append failed'));
    await securityEvents
      .record({
        kind: infected ? 'image.quarantined' : 'image.scan_error',
        severity: infected ? 'high' : 'medium',
        tenantId: image.tenantId,
        subjectType: 'image',
        subjectId: image.id,
        summary: infected
          ? `image ${image.name} quarantined: ${scan.signatures.join(', ')}`
          : `image ${image.name} could not be scanned`,
        detail: {
          trigger,
          imageName: image.name,
          verdict: scan.verdict,
          signatures: scan.signatures,
          engine: scan.engineVersion,
          database: scan.databaseVersion,
          ...(scan.error ? { error: scan.error } : {}),
        },
      })
      .catch((error: unknown) => log.error({ err: (error as Error).message }, 'security event failed'));
  };

  const importer = new ImageImporter({
    db,
    store,
    quotas: input.quotas,
    log,
    maxFileBytes: config.maxFileBytes,
    scan: (path) => scanFile(path, scanOptions),
    scanDatabaseVersion: async () => (await describeDatabases(databaseDirs)).databaseVersion,
    inspectDisk: (path, format) => inspectDiskImage(path, format),
    signPlatformImage: (image) => signer.signImage(image),
    onVerdict,
  });

  // Re-scan images scanned with older databases: at start (in the background) and periodically.
  let running = false;
  const check = () => {
    if (running) return;
    running = true;
    void importer
      .rescanStale()
      .then((count) => {
        if (count > 0) log.info({ count }, 're-scanned images after a scanner database change');
      })
      .catch((error: unknown) => log.warn({ err: (error as Error).message }, 're-scan check failed'))
      .finally(() => {
        running = false;
      });
  };
  const timer = config.rescanCheckSeconds > 0 ? setInterval(check, config.rescanCheckSeconds * 1000) : null;
  timer?.unref();
  setTimeout(check, 2000).unref();

  return {
    master,
    keyring,
    store,
    signer,
    importer,
    platformKeys: [signer.trustedKey()],
    rotateMasterKey: () => rotateMasterKey(keyring, master),
    stop: () => {
      if (timer) clearInterval(timer);
    },
  };
}

const NEXT_SUFFIX = '.next';

function keyFromFile(path: string): MasterKey | null {
  const content = readSecretFile(path, 'master key file');
  if (content === null) return null;
  const raw = Buffer.from(content.toString('utf8').trim(), 'base64');
  content.fill(0);
  try {
    return new MasterKey(raw);
  } finally {
    raw.fill(0);
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Rotation protocol (file-based keys): (1) the new key is written to master.key.next (0600, fsync);
 * (2) every data key is re-wrapped under it in one transaction; (3) master.key.next is renamed over
 * master.key. A crash after (2) leaves rows wrapped by the .next key: the next start sees that and
 * finishes the rename; a crash before (2) committed leaves an unused .next file, which is removed.
 */
async function rotateMasterKey(
  keyring: TenantKeyring,
  master: LoadedMasterKey,
): Promise<{ masterKeyId: string; rewrapped: number }> {
  if (master.source === 'env' || !master.path)
    throw new ConflictError(
      'the master key comes from RAMPART_MASTER_KEY; online rotation needs the key file <data>/secrets/master.key (unset the variable and put the key there)',
    );
  const next = `${master.path}${NEXT_SUFFIX}`;
  rmSync(next, { force: true });
  const raw = randomBytes(32);
  const text = Buffer.from(`${raw.toString('base64')}\n`);
  let newKey: MasterKey;
  try {
    newKey = new MasterKey(raw);
    createSecretFile(next, text);
  } finally {
    raw.fill(0);
    text.fill(0);
  }
  const rewrapped = await keyring.rotateMaster(newKey);
  renameSync(next, master.path);
  fsyncDir(dirname(master.path));
  master.key = newKey;
  return { masterKeyId: newKey.id, rewrapped };
}

/** Finishes (or discards) a rotation a crash interrupted; see rotateMasterKey. */
async function recoverMasterKeyRotation(
  db: Db,
  _dataDir: string,
  loaded: LoadedMasterKey,
  log: Logger,
): Promise<LoadedMasterKey> {
  if (!loaded.path) return loaded;
  const next = `${loaded.path}${NEXT_SUFFIX}`;
  if (!existsSync(next)) return loaded;
  const candidate = keyFromFile(next);
  if (!candidate) return loaded;
  const used = await db
    .selectFrom('tenantKeys')
    .select('tenantId')
    .where('masterKeyId', '=', candidate.id)
    .limit(1)
    .executeTakeFirst();
  if (!used) {
    rmSync(next, { force: true });
    log.warn('removed an unused master key left by an interrupted rotation');
    return loaded;
  }
  renameSync(next, loaded.path);
  fsyncDir(dirname(loaded.path));
  log.warn({ masterKeyId: candidate.id }, 'finished a master key rotation a crash had interrupted');
  return { key: candidate, source: 'file', path: loaded.path };
}

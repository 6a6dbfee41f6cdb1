/**
 * Envelope encryption keys: one master key per deployment wraps a random data key per tenant (and key
 * version); blobs are encrypted with the tenant's data key (chunked-aead.ts).
 *
 * Why envelopes: rotating the master key only re-wraps a few dozen 32-byte data keys in one transaction,
 * without re-encrypting any image; and deleting a tenant's wrapped keys (crypto-shredding) makes every
 * blob of that tenant unreadable at once, including copies in backups of the blob store.
 *
 * The master key comes from RAMPART_MASTER_KEY (base64 of 32 bytes) or from <data>/secrets/master.key,
 * which must not be readable by group or others (0600); it is created there at first start when neither
 * exists. Its id is a short domain-separated SHA-256 of the key, stored with each wrapped row so an unwrap
 * under the wrong master fails with a clear message rather than a bare authentication error.
 *
 * Wrapping: AES-256-GCM under the master key with a random 12-byte nonce (few wraps per key: random
 * nonces are safe), stored as base64(nonce | ciphertext | tag). The AAD binds the tenant id, the key
 * version and the master key id, so a wrapped key copied onto another tenant's row or version does not
 * unwrap. Key material is never logged (MasterKey hides it from inspect/JSON); buffers are zeroed when done.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { sql } from 'kysely';
import { createSecretFile, readSecretFile } from '../../../common/secret-file.js';
import type { Db } from '../../store/database.js';
import { engineOf, nowIso } from '../../store/database.js';

export const MASTER_KEY_ENV = 'RAMPART_MASTER_KEY';
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** The deployment's master key. The bytes stay inside; logs and JSON see only the id. */
export class MasterKey {
  readonly #key: Buffer;
  /** Short hash of the key (16 hex digits): names the master that wrapped a row, reveals nothing. */
  readonly id: string;

  constructor(key: Buffer) {
    if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES)
      throw new Error(`the master key must be ${KEY_BYTES} bytes`);
    this.#key = Buffer.from(key);
    this.id = masterKeyId(this.#key);
  }

  static generate(): MasterKey {
    const raw = randomBytes(KEY_BYTES);
    try {
      return new MasterKey(raw);
    } finally {
      raw.fill(0);
    }
  }

  /** For this module only: wrap/unwrap under the master key. */
  withKey<T>(fn: (key: Buffer) => T): T {
    return fn(this.#key);
  }

  /** Zeroes the key; the object is unusable afterwards (e.g. the old master after a rotation). */
  destroy(): void {
    this.#key.fill(0);
  }

  toJSON(): { id: string } {
    return { id: this.id };
  }

  toString(): string {
    return `MasterKey(${this.id})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

export function masterKeyId(key: Buffer): string {
  return createHash('sha256').update('rampart master key id\0').update(key).digest('hex').slice(0, 16);
}

export interface LoadedMasterKey {
  key: MasterKey;
  /** Where it came from; 'created' means a new key was written to path at this start. */
  source: 'env' | 'file' | 'created';
  path?: string;
}

function decodeKey(text: string, where: string): Buffer {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed)) throw new Error(`${where}: not base64`);
  const key = Buffer.from(trimmed, 'base64');
  if (key.length !== KEY_BYTES) {
    key.fill(0);
    throw new Error(`${where}: must decode to ${KEY_BYTES} bytes`);
  }
  return key;
}

/**
 * Loads the master key: RAMPART_MASTER_KEY if set, else <dataDir>/secrets/master.key (which must be a
 * regular file with no group/other permission bits, e.g. mode 0600), else creates that file with a new
 * random key. The file holds the key as base64 on one line.
 */
export function loadMasterKey(dataDir: string, env: NodeJS.ProcessEnv = process.env): LoadedMasterKey {
  const fromEnv = env[MASTER_KEY_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    const raw = decodeKey(fromEnv, `${MASTER_KEY_ENV}`);
    try {
      return { key: new MasterKey(raw), source: 'env' };
    } finally {
      raw.fill(0);
    }
  }
  const path = join(dataDir, 'secrets', 'master.key');
  const content = readSecretFile(path, 'master key file');
  if (content === null) return { key: createMasterKeyFile(path), source: 'created', path };
  try {
    const raw = decodeKey(content.toString('utf8'), `master key file ${path}`);
    try {
      return { key: new MasterKey(raw), source: 'file', path };
    } finally {
      raw.fill(0);
    }
  } finally {
    content.fill(0);
  }
}

function createMasterKeyFile(path: string): MasterKey {
  const raw = randomBytes(KEY_BYTES);
  const text = Buffer.from(`${raw.toString('base64')}\n`);
  try {
    createSecretFile(path, text);
    return new MasterKey(raw);
  } finally {
    raw.fill(0);
    text.fill(0);
  }
}

function wrapAad(tenantId: string, version: number, masterId: string): Buffer {
  const tenant = Buffer.from(tenantId, 'utf8');
  const head = Buffer.alloc(2);
  head.writeUInt16BE(tenant.length);
  const tail = Buffer.alloc(4);
  tail.writeUInt32BE(version);
  return Buffer.concat([
    Buffer.from('rampart tenant key v1\0'),
    head,
    tenant,
    tail,
    Buffer.from(masterId, 'latin1'),
  ]);
}

function wrap(master: MasterKey, tenantId: string, version: number, dataKey: Buffer): string {
  const nonce = randomBytes(NONCE_BYTES);
  return master.withKey((key) => {
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    cipher.setAAD(wrapAad(tenantId, version, master.id));
    const sealed = Buffer.concat([nonce, cipher.update(dataKey), cipher.final(), cipher.getAuthTag()]);
    try {
      return sealed.toString('base64');
    } finally {
      sealed.fill(0);
    }
  });
}

/** A wrapped data key that does not unwrap: wrong master, or a row that was modified or moved. */
export class KeyUnwrapError extends Error {
  override name = 'KeyUnwrapError';
}

function unwrap(
  master: MasterKey,
  row: { tenantId: string; version: number; wrapped: string; masterKeyId: string },
) {
  const where = `data key ${row.version} of tenant ${row.tenantId}`;
  if (row.masterKeyId !== master.id) {
    throw new KeyUnwrapError(
      `${where} is wrapped by master key ${row.masterKeyId}, but the loaded master key is ${master.id}`,
    );
  }
  const sealed = Buffer.from(row.wrapped, 'base64');
  if (sealed.length !== NONCE_BYTES + KEY_BYTES + TAG_BYTES) throw new KeyUnwrapError(`${where}: malformed`);
  return master.withKey((key) => {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, NONCE_BYTES));
    decipher.setAAD(wrapAad(row.tenantId, row.version, master.id));
    decipher.setAuthTag(sealed.subarray(NONCE_BYTES + KEY_BYTES));
    const dataKey = decipher.update(sealed.subarray(NONCE_BYTES, NONCE_BYTES + KEY_BYTES));
    try {
      decipher.final();
    } catch {
      dataKey.fill(0);
      throw new KeyUnwrapError(
        `${where} does not unwrap under master key ${master.id} (modified or moved row)`,
      );
    } finally {
      sealed.fill(0);
    }
    return dataKey;
  });
}

export interface DataKey {
  tenantId: string;
  version: number;
  /** The 32-byte key. The caller owns it and should zero it (key.fill(0)) when done. */
  key: Buffer;
  /** The key id to record in a blob header: "<tenantId>/v<version>". */
  keyId: string;
}

/** The key domain of the platform's own images (tenant ids are UUIDs, so it cannot collide). */
export const PLATFORM_KEY_OWNER = 'platform';

export function dataKeyId(tenantId: string, version: number): string {
  return `${tenantId}/v${version}`;
}

/** Per-tenant data keys, stored only wrapped by the master key in tenant_keys. */
export class TenantKeyring {
  #master: MasterKey;

  constructor(
    private readonly db: Db,
    master: MasterKey,
  ) {
    this.#master = master;
  }

  get masterKeyId(): string {
    return this.#master.id;
  }

  /** The tenant's newest data key version, or null when it has none yet. */
  async currentVersion(tenantId: string): Promise<number | null> {
    const row = await this.db
      .selectFrom('tenantKeys')
      .select((eb) => eb.fn.max('version').as('version'))
      .where('tenantId', '=', tenantId)
      .executeTakeFirst();
    // MAX() is a string on some drivers (pg with numeric results): always a number here.
    return row?.version === null || row?.version === undefined ? null : Number(row.version);
  }

  /**
   * Unwraps a data key. Without a version: the tenant's current key, creating version 1 on first use.
   * With a version: exactly that one, or an error if it does not exist (never created, or destroyed).
   */
  async dataKey(tenantId: string, version?: number): Promise<DataKey> {
    let wanted = version;
    if (wanted === undefined) {
      wanted = (await this.currentVersion(tenantId)) ?? (await this.#createFirst(tenantId));
    }
    const row = await this.db
      .selectFrom('tenantKeys')
      .select(['tenantId', 'version', 'wrapped', 'masterKeyId'])
      .where('tenantId', '=', tenantId)
      .where('version', '=', wanted)
      .executeTakeFirst();
    if (!row)
      throw new KeyUnwrapError(
        `tenant ${tenantId} has no data key version ${wanted} (never created or destroyed)`,
      );
    return { tenantId, version: wanted, key: unwrap(this.#master, row), keyId: dataKeyId(tenantId, wanted) };
  }

  /**
   * A key lookup for createDecryptStream()/verifyBlob() scoped to one tenant: a blob whose header names
   * another tenant's key is refused rather than decrypted with it.
   */
  keyLookup(tenantId: string): (keyId: string) => Promise<Buffer> {
    return async (keyId) => {
      const prefix = `${tenantId}/v`;
      const version = keyId.startsWith(prefix) ? Number(keyId.slice(prefix.length)) : NaN;
      if (!Number.isSafeInteger(version) || version < 1) {
        throw new KeyUnwrapError(`key id "${keyId}" is not a data key of tenant ${tenantId}`);
      }
      return (await this.dataKey(tenantId, version)).key;
    };
  }

  /**
   * The first key of a key domain: only for a tenant that exists (or the platform's own domain), so a
   * late caller cannot quietly give a deleted tenant a fresh key.
   */
  async #createFirst(tenantId: string): Promise<number> {
    if (tenantId !== PLATFORM_KEY_OWNER) {
      const tenant = await this.db
        .selectFrom('tenants')
        .select('id')
        .where('id', '=', tenantId)
        .executeTakeFirst();
      if (!tenant)
        throw new KeyUnwrapError(`tenant ${tenantId} does not exist: no data key is created for it`);
    }
    return this.#create(tenantId, 1);
  }

  /** Adds the tenant's next data key version (new blobs use it; old blobs keep theirs). */
  async rotateDataKey(tenantId: string): Promise<number> {
    return this.#create(tenantId, ((await this.currentVersion(tenantId)) ?? 0) + 1);
  }

  /** Inserts a new wrapped key at version; if a concurrent caller got there first, keeps theirs. */
  async #create(tenantId: string, version: number): Promise<number> {
    const key = randomBytes(KEY_BYTES);
    try {
      await this.db
        .insertInto('tenantKeys')
        .values({
          tenantId,
          version,
          wrapped: wrap(this.#master, tenantId, version, key),
          masterKeyId: this.#master.id,
          createdAt: nowIso(),
        })
        .onConflict((oc) => oc.columns(['tenantId', 'version']).doNothing())
        .execute();
    } finally {
      key.fill(0);
    }
    return version;
  }

  /**
   * Re-wraps every data key under newMaster in one transaction (no blob is touched) and switches this
   * keyring to it. Rows already wrapped by newMaster are skipped, so a repeated rotation is harmless.
   * Returns the number of keys re-wrapped. Persisting the new master key is the caller's job, before
   * calling this (a crash in between must not leave rows wrapped by a key that exists nowhere).
   */
  async rotateMaster(newMaster: MasterKey): Promise<number> {
    const oldMaster = this.#master;
    const count = await this.db.transaction().execute(async (trx) => {
      const rows = await trx
        .selectFrom('tenantKeys')
        .select(['tenantId', 'version', 'wrapped', 'masterKeyId'])
        .where('masterKeyId', '!=', newMaster.id)
        .execute();
      for (const row of rows) {
        const key = unwrap(oldMaster, row);
        try {
          await trx
            .updateTable('tenantKeys')
            .set({ wrapped: wrap(newMaster, row.tenantId, row.version, key), masterKeyId: newMaster.id })
            .where('tenantId', '=', row.tenantId)
            .where('version', '=', row.version)
            .execute();
        } finally {
          key.fill(0);
        }
      }
      return rows.length;
    });
    this.#master = newMaster;
    return count;
  }

  /**
   * Crypto-shredding: deletes all of the tenant's wrapped data keys, after which none of its blobs can be
   * decrypted. secure_delete overwrites the freed rows and the WAL is checkpointed and truncated, so the
   * wrapped keys do not linger in the database files. Returns the number of keys destroyed.
   */
  async destroyTenantKeys(tenantId: string): Promise<number> {
    if (engineOf(this.db) === 'postgres') {
      // PostgreSQL has no secure_delete: a DELETE leaves the old tuple in the heap page (and in the WAL
      // and any base backup) until VACUUM marks the space reusable, and VACUUM does not overwrite it
      // either — it is not a secure erase. The wrapped keys are encrypted under the master key, which
      // never enters the database, so what lingers cannot be unwrapped without it; rotating the master
      // key (rewrap) and then retiring the old one completes the shredding there. Encrypt the database
      // volume and its backups on the PostgreSQL host as well.
      const result = await this.db
        .deleteFrom('tenantKeys')
        .where('tenantId', '=', tenantId)
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    }
    const previous = await sql<{ secureDelete: number }>`PRAGMA secure_delete`.execute(this.db);
    const was = previous.rows[0]?.secureDelete ?? 0;
    await sql`PRAGMA secure_delete = ON`.execute(this.db);
    try {
      const result = await this.db
        .deleteFrom('tenantKeys')
        .where('tenantId', '=', tenantId)
        .executeTakeFirst();
      await sql`PRAGMA wal_checkpoint(TRUNCATE)`.execute(this.db);
      return Number(result.numDeletedRows);
    } finally {
      if (!was) await sql`PRAGMA secure_delete = OFF`.execute(this.db);
    }
  }
}

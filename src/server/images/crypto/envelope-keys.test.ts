/**
 * Envelope keys on a real SQLite database (all migrations, 0004_tenant_keys included): data keys survive
 * a reopen, master rotation keeps blobs readable, a wrong master fails clearly, crypto-shredding makes a
 * tenant's blobs unreadable while others stay readable, and the master key file must be private.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { inspect } from 'node:util';
import { after, test } from 'node:test';
import { openDatabase, type Db } from '../../store/database.js';
import { createDecryptStream, createEncryptStream, verifyBlob, type KeySource } from './chunked-aead.js';
import { KeyUnwrapError, loadMasterKey, MASTER_KEY_ENV, MasterKey, TenantKeyring } from './envelope-keys.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-keys-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirCounter = 0;
const freshDir = (): string => mkdtempSync(join(root, `d${dirCounter++}-`));

async function addTenant(db: Db, id: string): Promise<void> {
  await db
    .insertInto('tenants')
    .values({
      id,
      name: id,
      requireMfaForAdmins: 0,
      allowNestedVirtualization: 0,
      dedicatedHosts: 0,
      createdAt: new Date().toISOString(),
    })
    .execute();
}

async function encryptFor(
  keyring: TenantKeyring,
  tenantId: string,
  plain: Buffer,
  path: string,
): Promise<void> {
  const dataKey = await keyring.dataKey(tenantId);
  try {
    await pipeline(
      Readable.from([plain]),
      createEncryptStream(dataKey.key, { keyId: dataKey.keyId, chunkSize: 4096 }),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          writeFileSync(path, chunk, { flag: 'a' });
          cb();
        },
      }),
    );
  } finally {
    dataKey.key.fill(0);
  }
}

async function decryptFile(path: string, key: KeySource): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    Readable.from([readFileSync(path)]),
    createDecryptStream(key),
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

test('data keys are created once, survive a reopen and stay wrapped in the table', async () => {
  const dir = freshDir();
  const master = loadMasterKey(dir, {});
  assert.equal(master.source, 'created');
  let db = await openDatabase(join(dir, 'db.sqlite'));
  await addTenant(db, 'acme');
  let keyring = new TenantKeyring(db, master.key);
  assert.equal(await keyring.currentVersion('acme'), null);
  const first = await keyring.dataKey('acme');
  assert.equal(first.version, 1);
  assert.equal(first.keyId, 'acme/v1');
  assert.equal(await keyring.currentVersion('acme'), 1);
  assert.deepEqual((await keyring.dataKey('acme')).key, first.key);
  const rows = await db.selectFrom('tenantKeys').selectAll().execute();
  assert.equal(rows.length, 1);
  assert.equal(rows[0]?.masterKeyId, master.key.id);
  assert.ok(
    !Buffer.from(rows[0]?.wrapped ?? '', 'base64').includes(first.key),
    'the data key is stored wrapped',
  );
  await db.destroy();

  const reloaded = loadMasterKey(dir, {});
  assert.equal(reloaded.source, 'file');
  assert.equal(reloaded.key.id, master.key.id);
  db = await openDatabase(join(dir, 'db.sqlite'));
  keyring = new TenantKeyring(db, reloaded.key);
  assert.deepEqual((await keyring.dataKey('acme')).key, first.key);
  assert.deepEqual((await keyring.dataKey('acme', 1)).key, first.key);
  assert.equal(await keyring.rotateDataKey('acme'), 2);
  const second = await keyring.dataKey('acme');
  assert.equal(second.version, 2);
  assert.notDeepEqual(second.key, first.key);
  await assert.rejects(keyring.dataKey('acme', 3), /no data key version 3/);
  await db.destroy();
});

test('master rotation re-wraps every key and old blobs still decrypt; the old master no longer does', async () => {
  const dir = freshDir();
  const db = await openDatabase(join(dir, 'db.sqlite'));
  try {
    await addTenant(db, 'a');
    await addTenant(db, 'b');
    const oldMaster = MasterKey.generate();
    const keyring = new TenantKeyring(db, oldMaster);
    const plain = randomBytes(20_000);
    const blob = join(dir, 'a.blob');
    await encryptFor(keyring, 'a', plain, blob);
    await keyring.dataKey('b');
    await keyring.rotateDataKey('b');

    const newMaster = MasterKey.generate();
    assert.equal(await keyring.rotateMaster(newMaster), 3);
    assert.equal(keyring.masterKeyId, newMaster.id);
    assert.equal(await keyring.rotateMaster(newMaster), 0, 'a repeated rotation re-wraps nothing');
    const ids = await db.selectFrom('tenantKeys').select('masterKeyId').distinct().execute();
    assert.deepEqual(ids, [{ masterKeyId: newMaster.id }]);

    assert.deepEqual(await decryptFile(blob, keyring.keyLookup('a')), plain);
    assert.equal((await verifyBlob(blob, keyring.keyLookup('a'))).plaintextBytes, plain.length);
    // A keyring still holding the old master is told exactly why it cannot unwrap.
    const stale = new TenantKeyring(db, oldMaster);
    await assert.rejects(
      stale.dataKey('a'),
      (err: unknown) =>
        err instanceof KeyUnwrapError &&
        err.message.includes(`wrapped by master key ${newMaster.id}`) &&
        err.message.includes(`loaded master key is ${oldMaster.id}`),
    );
  } finally {
    await db.destroy();
  }
});

test('a wrapped key moved to another tenant or version does not unwrap', async () => {
  const dir = freshDir();
  const db = await openDatabase(join(dir, 'db.sqlite'));
  try {
    await addTenant(db, 'a');
    await addTenant(db, 'b');
    const keyring = new TenantKeyring(db, MasterKey.generate());
    await keyring.dataKey('a');
    await keyring.dataKey('b');
    const rowA = await db
      .selectFrom('tenantKeys')
      .selectAll()
      .where('tenantId', '=', 'a')
      .executeTakeFirstOrThrow();
    await db.updateTable('tenantKeys').set({ wrapped: rowA.wrapped }).where('tenantId', '=', 'b').execute();
    await assert.rejects(keyring.dataKey('b'), /data key 1 of tenant b does not unwrap under master key/);
  } finally {
    await db.destroy();
  }
});

test('destroying a tenant (keys, then the row) makes its blobs unreadable; other tenants are unaffected', async () => {
  const dir = freshDir();
  const db = await openDatabase(join(dir, 'db.sqlite'));
  try {
    await addTenant(db, 'doomed');
    await addTenant(db, 'kept');
    await addTenant(db, 'cascaded');
    const keyring = new TenantKeyring(db, MasterKey.generate());
    const plain = randomBytes(10_000);
    for (const tenant of ['doomed', 'kept', 'cascaded'])
      await encryptFor(keyring, tenant, plain, join(dir, tenant));

    // One tenant's key cannot decrypt another's blob, and its lookup refuses another tenant's key id.
    const kept = await keyring.dataKey('kept');
    await assert.rejects(decryptFile(join(dir, 'doomed'), kept.key), /header: authentication failed/);
    await assert.rejects(
      decryptFile(join(dir, 'doomed'), keyring.keyLookup('kept')),
      /key id "doomed\/v1" is not a data key of tenant kept/,
    );

    const doomedRow = await db
      .selectFrom('tenantKeys')
      .select('wrapped')
      .where('tenantId', '=', 'doomed')
      .executeTakeFirstOrThrow();
    assert.equal(await keyring.destroyTenantKeys('doomed'), 1);
    await db.deleteFrom('tenants').where('id', '=', 'doomed').execute();
    await assert.rejects(
      decryptFile(join(dir, 'doomed'), keyring.keyLookup('doomed')),
      /no data key version 1/,
    );
    await assert.rejects(keyring.dataKey('doomed'), /does not exist/, 'no new key for a deleted tenant');

    // Deleting the tenant row alone cascades to its keys.
    await db.deleteFrom('tenants').where('id', '=', 'cascaded').execute();
    const left = await db.selectFrom('tenantKeys').select('tenantId').execute();
    assert.deepEqual(left, [{ tenantId: 'kept' }]);
    await assert.rejects(verifyBlob(join(dir, 'cascaded'), keyring.keyLookup('cascaded')), /no data key/);

    assert.deepEqual(await decryptFile(join(dir, 'kept'), keyring.keyLookup('kept')), plain);
    // The destroyed wrapped key does not linger in the database files (secure_delete + WAL truncate).
    for (const name of ['db.sqlite', 'db.sqlite-wal']) {
      const content = statSync(join(dir, name), { throwIfNoEntry: false })
        ? readFileSync(join(dir, name))
        : null;
      assert.ok(!content?.includes(Buffer.from(doomedRow.wrapped)), `wrapped key left in ${name}`);
    }
  } finally {
    await db.destroy();
  }
});

test('master key file: created 0600, group/other-readable or symlinked files refused, env wins', () => {
  const dir = freshDir();
  const created = loadMasterKey(dir, {});
  const path = join(dir, 'secrets', 'master.key');
  assert.equal(created.path, path);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'secrets')).mode & 0o777, 0o700);
  assert.equal(Buffer.from(readFileSync(path, 'utf8').trim(), 'base64').length, 32);
  // Key material never shows in logs.
  const keyText = readFileSync(path, 'utf8').trim();
  assert.ok(!inspect(created).includes(keyText));
  assert.ok(!JSON.stringify(created).includes(keyText));
  assert.equal(String(created.key), `MasterKey(${created.key.id})`);

  chmodSync(path, 0o644);
  assert.throws(() => loadMasterKey(dir, {}), /has mode 0644; it must not be accessible by group or others/);
  chmodSync(path, 0o640);
  assert.throws(() => loadMasterKey(dir, {}), /mode 0640/);
  chmodSync(path, 0o600);
  assert.equal(loadMasterKey(dir, {}).key.id, created.key.id);

  const linkDir = freshDir();
  mkdirSync(join(linkDir, 'secrets'), { mode: 0o700 });
  symlinkSync(path, join(linkDir, 'secrets', 'master.key'));
  assert.throws(() => loadMasterKey(linkDir, {}), /cannot open master key file/);

  const badDir = freshDir();
  mkdirSync(join(badDir, 'secrets'), { mode: 0o700 });
  writeFileSync(join(badDir, 'secrets', 'master.key'), 'c2hvcnQ=\n', { mode: 0o600 });
  assert.throws(() => loadMasterKey(badDir, {}), /must decode to 32 bytes/);

  const envKey = randomBytes(32);
  const fromEnv = loadMasterKey(dir, { [MASTER_KEY_ENV]: envKey.toString('base64') });
  assert.equal(fromEnv.source, 'env');
  assert.equal(fromEnv.key.id, new MasterKey(envKey).id);
  assert.notEqual(fromEnv.key.id, created.key.id);
  assert.throws(
    () => loadMasterKey(dir, { [MASTER_KEY_ENV]: randomBytes(16).toString('base64') }),
    /32 bytes/,
  );
  assert.throws(() => loadMasterKey(dir, { [MASTER_KEY_ENV]: 'not base64!' }), /not base64/);
});

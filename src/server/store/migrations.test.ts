/**
 * Upgrading a real SQLite database from the first schema: VMs created before tenants existed land in
 * the default tenant, and VM names become unique per tenant instead of globally.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import SqliteDatabase from 'better-sqlite3';
import { CamelCasePlugin, Kysely, Migrator, SqliteDialect } from 'kysely';
import { DEFAULT_TENANT, migrationProvider } from './migrations.js';
import type { Database } from './schema.js';

test('0002 moves existing VMs into the default tenant and scopes VM names to tenants', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-migrate-'));
  const sqlite = new SqliteDatabase(join(dir, 'db.sqlite'));
  sqlite.pragma('foreign_keys = ON');
  const db = new Kysely<Database>({
    dialect: new SqliteDialect({ database: sqlite }),
    plugins: [new CamelCasePlugin()],
  });
  try {
    const migrator = new Migrator({ db, provider: migrationProvider });
    assert.equal((await migrator.migrateTo('0001_initial')).error, undefined);
    const now = new Date().toISOString();
    sqlite
      .prepare(
        `INSERT INTO flavors (id, name, vcpus, memory_mib, disk_gib, created_at) VALUES ('f1', 'tiny', 1, 128, 1, ?)`,
      )
      .run(now);
    sqlite
      .prepare(
        `INSERT INTO images (id, name, format, sha256, size_bytes, kernel_path, initrd_path, created_at)
         VALUES ('i1', 'tiny', 'kernel-initrd', 'x', 1, '/k', '/i', ?)`,
      )
      .run(now);
    sqlite
      .prepare(
        `INSERT INTO vms (id, name, image_id, flavor_id, vcpus, memory_mib, disk_gib, state, power,
           stop_timeout_ms, restart_policy, created_at, updated_at)
         VALUES ('v1', 'web', 'i1', 'f1', 1, 128, 1, 'stopped', 'stopped', 1000, 'never', ?, ?)`,
      )
      .run(now, now);
    const result = await migrator.migrateToLatest();
    assert.equal(result.error, undefined);
    const tenant = await db
      .selectFrom('tenants')
      .selectAll()
      .where('name', '=', DEFAULT_TENANT)
      .executeTakeFirstOrThrow();
    const vm = await db.selectFrom('vms').selectAll().where('id', '=', 'v1').executeTakeFirstOrThrow();
    assert.equal(vm.tenantId, tenant.id);
    assert.equal(vm.name, 'web');
    assert.equal(vm.stopTimeoutMs, 1000);
    // Another tenant may now use the same VM name; the same tenant may not.
    await db
      .insertInto('tenants')
      .values({
        id: 't2',
        name: 'other',
        requireMfaForAdmins: 0,
        allowNestedVirtualization: 0,
        dedicatedHosts: 0,
        createdAt: now,
      })
      .execute();
    const copy = { ...vm, id: 'v2', tenantId: 't2' };
    await db.insertInto('vms').values(copy).execute();
    await assert.rejects(
      db
        .insertInto('vms')
        .values({ ...vm, id: 'v3' })
        .execute(),
      /UNIQUE/,
    );
  } finally {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('0006 makes existing images platform-public; new images default to private', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-migrate-'));
  const sqlite = new SqliteDatabase(join(dir, 'db.sqlite'));
  sqlite.pragma('foreign_keys = ON');
  const db = new Kysely<Database>({
    dialect: new SqliteDialect({ database: sqlite }),
    plugins: [new CamelCasePlugin()],
  });
  try {
    const migrator = new Migrator({ db, provider: migrationProvider });
    assert.equal((await migrator.migrateTo('0005_image_file_digests')).error, undefined);
    const now = new Date().toISOString();
    sqlite
      .prepare(
        `INSERT INTO images (id, name, format, sha256, size_bytes, kernel_path, initrd_path, created_at)
         VALUES ('i1', 'tiny', 'kernel-initrd', 'x', 1, '/k', '/i', ?)`,
      )
      .run(now);
    assert.equal((await migrator.migrateToLatest()).error, undefined);
    const tiny = sqlite.prepare(`SELECT tenant_id, visibility FROM images WHERE id = 'i1'`).get();
    assert.deepEqual(tiny, { tenant_id: null, visibility: 'public' });
    const tenant = sqlite.prepare(`SELECT id FROM tenants LIMIT 1`).get() as { id: string };
    sqlite
      .prepare(
        `INSERT INTO images (id, name, format, sha256, size_bytes, kernel_path, initrd_path, created_at, tenant_id)
         VALUES ('i2', 'mine', 'kernel-initrd', 'y', 1, '/k', '/i', ?, ?)`,
      )
      .run(now, tenant.id);
    const mine = sqlite.prepare(`SELECT visibility FROM images WHERE id = 'i2'`).get();
    assert.deepEqual(mine, { visibility: 'private' });
    assert.throws(
      () => sqlite.prepare(`UPDATE images SET visibility = 'everyone' WHERE id = 'i2'`).run(),
      /CHECK/,
    );
    sqlite
      .prepare(
        `INSERT INTO trusted_keys (id, tenant_id, name, keyid, public_key_pem, created_at) VALUES ('k1', ?, 'a', 'kid', 'pem', ?)`,
      )
      .run(tenant.id, now);
    assert.throws(
      () =>
        sqlite
          .prepare(
            `INSERT INTO trusted_keys (id, tenant_id, name, keyid, public_key_pem, created_at) VALUES ('k2', ?, 'b', 'kid', 'pem', ?)`,
          )
          .run(tenant.id, now),
      /UNIQUE/,
    );
    sqlite.prepare(`INSERT INTO trust_policies (tenant_id, updated_at) VALUES (?, ?)`).run(tenant.id, now);
    const policy = sqlite
      .prepare(`SELECT require_signatures, accept_platform_images FROM trust_policies`)
      .get();
    assert.deepEqual(policy, { require_signatures: 1, accept_platform_images: 1 });
  } finally {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('0008 makes image names unique per owner and keeps rows, shares, signatures and references', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-migrate-'));
  const sqlite = new SqliteDatabase(join(dir, 'db.sqlite'));
  sqlite.pragma('foreign_keys = ON');
  const db = new Kysely<Database>({
    dialect: new SqliteDialect({ database: sqlite }),
    plugins: [new CamelCasePlugin()],
  });
  const image = (id: string, name: string, tenantId: string | null) =>
    sqlite
      .prepare(
        `INSERT INTO images (id, name, format, sha256, size_bytes, kernel_path, initrd_path, created_at, tenant_id)
         VALUES (?, ?, 'kernel-initrd', 'x', 1, '/k', '/i', ?, ?)`,
      )
      .run(id, name, new Date().toISOString(), tenantId);
  try {
    const migrator = new Migrator({ db, provider: migrationProvider });
    assert.equal((await migrator.migrateTo('0007_image_signatures')).error, undefined);
    const now = new Date().toISOString();
    const t1 = (sqlite.prepare(`SELECT id FROM tenants LIMIT 1`).get() as { id: string }).id;
    sqlite
      .prepare(
        `INSERT INTO tenants (id, name, require_mfa_for_admins, created_at) VALUES ('t2', 'other', 0, ?)`,
      )
      .run(now);
    sqlite
      .prepare(
        `INSERT INTO flavors (id, name, vcpus, memory_mib, disk_gib, created_at) VALUES ('f1', 'tiny', 1, 128, 1, ?)`,
      )
      .run(now);
    image('i1', 'tiny', null);
    sqlite.prepare(`UPDATE images SET visibility = 'public' WHERE id = 'i1'`).run();
    image('i2', 'web', t1);
    sqlite.prepare(`UPDATE images SET visibility = 'shared', description = 'd' WHERE id = 'i2'`).run();
    sqlite.prepare(`INSERT INTO image_shares (image_id, tenant_id) VALUES ('i2', 't2')`).run();
    sqlite
      .prepare(
        `INSERT INTO image_signatures (id, image_id, tenant_id, keyid, envelope, created_at) VALUES ('s1', 'i2', ?, 'k', '{}', ?)`,
      )
      .run(t1, now);
    sqlite
      .prepare(
        `INSERT INTO vms (id, tenant_id, name, image_id, flavor_id, vcpus, memory_mib, disk_gib, state, power,
           stop_timeout_ms, restart_policy, created_at, updated_at)
         VALUES ('v1', ?, 'vm', 'i2', 'f1', 1, 128, 1, 'stopped', 'stopped', 1000, 'never', ?, ?)`,
      )
      .run(t1, now, now);
    const before = sqlite.prepare(`SELECT * FROM images ORDER BY id`).all();

    assert.equal((await migrator.migrateTo('0008_image_names_per_owner')).error, undefined);
    assert.equal(sqlite.pragma('foreign_keys', { simple: true }), 1, 'foreign keys back on');
    assert.deepEqual(sqlite.prepare(`SELECT * FROM images ORDER BY id`).all(), before);
    assert.deepEqual(sqlite.pragma('foreign_key_check'), []);
    assert.equal(sqlite.prepare(`SELECT count(*) AS n FROM image_shares`).pluck().get(), 1);
    assert.equal(sqlite.prepare(`SELECT count(*) AS n FROM image_signatures`).pluck().get(), 1);
    const indexes = sqlite
      .prepare(
        `SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'images' AND sql IS NOT NULL`,
      )
      .pluck()
      .all();
    assert.deepEqual([...indexes].sort(), ['images_owner_name', 'images_tenant']);

    // Two tenants may each have an image named `web`; one tenant may not have two; nor may the platform.
    image('i3', 'web', 't2');
    assert.throws(() => image('i4', 'web', t1), /UNIQUE/);
    image('i5', 'web', null);
    assert.throws(() => image('i6', 'tiny', null), /UNIQUE/);

    // The references into images still hold: cascades, and refusals for absent images.
    assert.throws(
      () => sqlite.prepare(`INSERT INTO image_shares (image_id, tenant_id) VALUES ('nope', 't2')`).run(),
      /FOREIGN KEY/,
    );
    assert.throws(() => sqlite.prepare(`DELETE FROM images WHERE id = 'i2'`).run(), /FOREIGN KEY/);
    sqlite.prepare(`DELETE FROM vms WHERE id = 'v1'`).run();
    sqlite.prepare(`DELETE FROM images WHERE id = 'i2'`).run();
    assert.equal(sqlite.prepare(`SELECT count(*) FROM image_shares`).pluck().get(), 0);
    assert.equal(sqlite.prepare(`SELECT count(*) FROM image_signatures`).pluck().get(), 0);
    // Deleting a tenant still removes its images.
    sqlite.prepare(`DELETE FROM tenants WHERE id = 't2'`).run();
    assert.equal(sqlite.prepare(`SELECT count(*) FROM images WHERE id = 'i3'`).pluck().get(), 0);
  } finally {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('0009 keeps images active and data keys, allows platform keys, and tenant deletion still removes keys', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-migrate-'));
  const sqlite = new SqliteDatabase(join(dir, 'db.sqlite'));
  sqlite.pragma('foreign_keys = ON');
  const db = new Kysely<Database>({
    dialect: new SqliteDialect({ database: sqlite }),
    plugins: [new CamelCasePlugin()],
  });
  try {
    const migrator = new Migrator({ db, provider: migrationProvider });
    assert.equal((await migrator.migrateTo('0008_image_names_per_owner')).error, undefined);
    const now = new Date().toISOString();
    sqlite
      .prepare(
        `INSERT INTO tenants (id, name, require_mfa_for_admins, created_at) VALUES ('t2', 'other', 0, ?)`,
      )
      .run(now);
    sqlite
      .prepare(
        `INSERT INTO images (id, name, format, sha256, size_bytes, kernel_path, initrd_path, created_at, tenant_id)
         VALUES ('i1', 'tiny', 'kernel-initrd', 'x', 1, '/k', '/i', ?, NULL)`,
      )
      .run(now);
    sqlite
      .prepare(
        `INSERT INTO tenant_keys (tenant_id, version, wrapped, master_key_id, created_at) VALUES ('t2', 1, 'w', 'm', ?)`,
      )
      .run(now);
    assert.equal((await migrator.migrateTo('0009_protected_images')).error, undefined);
    assert.deepEqual(sqlite.prepare(`SELECT status, scan_verdict FROM images`).get(), {
      status: 'active',
      scan_verdict: null,
    });
    assert.throws(() => sqlite.prepare(`UPDATE images SET status = 'bogus'`).run(), /CHECK/);
    assert.deepEqual(sqlite.prepare(`SELECT tenant_id, wrapped FROM tenant_keys`).all(), [
      { tenant_id: 't2', wrapped: 'w' },
    ]);
    // The platform's own key domain has no tenant row.
    sqlite
      .prepare(
        `INSERT INTO tenant_keys (tenant_id, version, wrapped, master_key_id, created_at) VALUES ('platform', 1, 'p', 'm', ?)`,
      )
      .run(now);
    sqlite.prepare(`DELETE FROM tenants WHERE id = 't2'`).run();
    assert.deepEqual(sqlite.prepare(`SELECT tenant_id FROM tenant_keys`).pluck().all(), ['platform']);
  } finally {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

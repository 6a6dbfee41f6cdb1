/**
 * Upgrading a real SQLite database from the first schema: VMs created before tenants existed land in
 * the default tenant, and VM names become unique per tenant instead of globally. On PostgreSQL
 * (RAMPART_TEST_POSTGRES_URL): the same migrations give an equivalent schema, and the upgrade paths
 * that branch on the engine keep the data.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import SqliteDatabase from 'better-sqlite3';
import { CamelCasePlugin, Kysely, Migrator, SqliteDialect, sql } from 'kysely';
import { POSTGRES_SKIP, createTestPostgres, openTestPostgres } from '../../../test/helpers/postgres.js';
import { createMigrator, engineOf, isUniqueViolation, openDatabase, rawSqlite } from './database.js';
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

// ---------------------------------------------------------------- PostgreSQL: the same migrations

interface ColumnShape {
  type: string;
  notNull: boolean;
  hasDefault: boolean;
}
interface SchemaShape {
  tables: Record<string, Record<string, ColumnShape>>;
  primaryKeys: Record<string, string[]>;
  unique: string[];
  foreignKeys: string[];
  checks: Record<string, number>;
  indexes: string[];
}

const IGNORED_TABLES = /^(kysely_|sqlite_)/;

/** SQLite's declared types as the PostgreSQL types the migrations map them to. */
const SQLITE_TO_PG: Record<string, string> = {
  text: 'text',
  integer: 'bigint',
  real: 'double precision',
  blob: 'bytea',
};

function sqliteShape(sqlite: SqliteDatabase.Database): SchemaShape {
  const shape: SchemaShape = {
    tables: {},
    primaryKeys: {},
    unique: [],
    foreignKeys: [],
    checks: {},
    indexes: [],
  };
  const tables = sqlite
    .prepare(`SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name`)
    .all() as { name: string; sql: string }[];
  for (const { name, sql } of tables) {
    if (IGNORED_TABLES.test(name)) continue;
    const columns: Record<string, ColumnShape> = {};
    const pk: { name: string; pk: number }[] = [];
    for (const c of sqlite.pragma(`table_info(${name})`) as {
      name: string;
      type: string;
      notnull: number;
      dflt_value: unknown;
      pk: number;
    }[]) {
      // An INTEGER PRIMARY KEY is NOT NULL in effect (the rowid).
      columns[c.name] = {
        type: SQLITE_TO_PG[c.type.toLowerCase()] ?? c.type,
        notNull: c.notnull === 1 || c.pk > 0,
        hasDefault: c.dflt_value !== null,
      };
      if (c.pk > 0) pk.push({ name: c.name, pk: c.pk });
    }
    shape.tables[name] = columns;
    shape.primaryKeys[name] = pk.sort((a, b) => a.pk - b.pk).map((c) => c.name);
    shape.checks[name] = (sql.match(/\bcheck\s*\(/gi) ?? []).length;
    for (const index of sqlite.pragma(`index_list(${name})`) as {
      name: string;
      unique: number;
      origin: string;
    }[]) {
      const cols = (
        sqlite.pragma(`index_xinfo(${index.name})`) as { cid: number; name: string | null; key: number }[]
      )
        .filter((c) => c.key === 1)
        .map((c) => (c.cid === -2 ? 'expr' : c.name));
      if (index.origin === 'pk') continue;
      if (index.unique === 1) shape.unique.push(`${name}(${cols.join(',')})`);
      else shape.indexes.push(`${name}:${index.name}(${cols.join(',')})`);
    }
    for (const fk of sqlite.pragma(`foreign_key_list(${name})`) as {
      table: string;
      from: string;
      to: string;
      on_delete: string;
    }[])
      shape.foreignKeys.push(
        `${name}.${fk.from} -> ${fk.table}.${fk.to} on delete ${fk.on_delete.toLowerCase()}`,
      );
  }
  shape.unique.sort();
  shape.indexes.sort();
  shape.foreignKeys.sort();
  return shape;
}

async function postgresShape(db: Kysely<Database>): Promise<SchemaShape> {
  const shape: SchemaShape = {
    tables: {},
    primaryKeys: {},
    unique: [],
    foreignKeys: [],
    checks: {},
    indexes: [],
  };
  const q = async <T>(query: ReturnType<typeof sql>) =>
    (await query.execute(db.withoutPlugins())).rows as T[];
  const columns = await q<{
    table_name: string;
    column_name: string;
    data_type: string;
    is_nullable: string;
    column_default: string | null;
    is_identity: string;
  }>(sql`SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity
    FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`);
  for (const c of columns) {
    if (IGNORED_TABLES.test(c.table_name)) continue;
    shape.tables[c.table_name] ??= {};
    shape.tables[c.table_name]![c.column_name] = {
      type: c.data_type,
      notNull: c.is_nullable === 'NO',
      // An identity column numbers itself like SQLite's INTEGER PRIMARY KEY, which has no DEFAULT clause.
      hasDefault: c.column_default !== null,
    };
  }
  const constraints = await q<{
    table: string;
    type: string;
    def: string;
    cols: string[] | null;
    name: string;
  }>(
    sql`SELECT c.conrelid::regclass::text AS table, c.contype AS type, pg_get_constraintdef(c.oid) AS def,
      c.conname AS name,
      ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i)::text[] AS cols
      FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public'`,
  );
  for (const c of constraints) {
    if (IGNORED_TABLES.test(c.table)) continue;
    if (c.type === 'p') shape.primaryKeys[c.table] = c.cols ?? [];
    else if (c.type === 'u') shape.unique.push(`${c.table}(${(c.cols ?? []).join(',')})`);
    else if (c.type === 'c') shape.checks[c.table] = (shape.checks[c.table] ?? 0) + 1;
    else if (c.type === 'f') {
      const m = /REFERENCES (\w+)\((\w+)\)(?: ON DELETE (\w+(?: \w+)?))?/.exec(c.def)!;
      shape.foreignKeys.push(
        `${c.table}.${c.cols![0]} -> ${m[1]}.${m[2]} on delete ${(m[3] ?? 'no action').toLowerCase()}`,
      );
    }
  }
  for (const table of Object.keys(shape.tables)) {
    shape.primaryKeys[table] ??= [];
    shape.checks[table] ??= 0;
  }
  // Indexes that are not behind a constraint: unique (expression) ones and plain ones.
  const indexes = await q<{ table: string; name: string; unique: boolean; cols: string[] }>(
    sql`SELECT t.relname AS table, i.relname AS name, x.indisunique AS unique,
      ARRAY(SELECT COALESCE(a.attname, 'expr') FROM unnest(x.indkey) WITH ORDINALITY k(n, o)
        LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n AND k.n > 0 ORDER BY k.o)::text[] AS cols
      FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = 'public' AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)`,
  );
  for (const index of indexes) {
    if (IGNORED_TABLES.test(index.table)) continue;
    if (index.unique) shape.unique.push(`${index.table}(${index.cols.join(',')})`);
    else shape.indexes.push(`${index.table}:${index.name}(${index.cols.join(',')})`);
  }
  shape.unique.sort();
  shape.indexes.sort();
  shape.foreignKeys.sort();
  return shape;
}

test(
  'PostgreSQL: the migrations build the same schema as on SQLite (tables, columns, types, keys, indexes, checks)',
  { skip: POSTGRES_SKIP },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rampart-migrate-'));
    const lite = await openDatabase(join(dir, 'db.sqlite'));
    const pgDb = await openTestPostgres();
    try {
      assert.equal(engineOf(lite), 'sqlite');
      assert.equal(engineOf(pgDb.db), 'postgres');
      const expected = sqliteShape(rawSqlite(lite));
      const actual = await postgresShape(pgDb.db);
      assert.deepEqual(Object.keys(actual.tables).sort(), Object.keys(expected.tables).sort());
      for (const table of Object.keys(expected.tables))
        assert.deepEqual(actual.tables[table], expected.tables[table], `columns of ${table}`);
      assert.deepEqual(actual.primaryKeys, expected.primaryKeys);
      assert.deepEqual(actual.unique, expected.unique);
      assert.deepEqual(actual.foreignKeys, expected.foreignKeys);
      assert.deepEqual(actual.checks, expected.checks);
      assert.deepEqual(actual.indexes, expected.indexes);
      // The same migrations were recorded.
      const names = async (db: Kysely<Database>) =>
        (await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(db)).rows.map(
          (r) => r.name,
        );
      assert.deepEqual(await names(pgDb.db), await names(lite));
    } finally {
      await lite.destroy();
      await pgDb.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  'PostgreSQL: upgrading from 0001 keeps VMs (default tenant, names per tenant), image names per owner, tenant keys and their trigger',
  { skip: POSTGRES_SKIP },
  async () => {
    const target = await createTestPostgres();
    const db = await openDatabase(target.url, { migrate: false });
    const raw = db.withoutPlugins();
    try {
      const migrator = createMigrator(db);
      assert.equal((await migrator.migrateTo('0001_initial')).error, undefined);
      const now = new Date().toISOString();
      await sql`INSERT INTO flavors (id, name, vcpus, memory_mib, disk_gib, created_at)
        VALUES ('f1', 'tiny', 1, 128, 1, ${now})`.execute(raw);
      await sql`INSERT INTO images (id, name, format, sha256, size_bytes, kernel_path, initrd_path, created_at)
        VALUES ('i1', 'tiny', 'kernel-initrd', 'x', 5000000000, '/k/${sql.raw('a'.repeat(64))}',
          '/i/${sql.raw('b'.repeat(64))}', ${now})`.execute(raw);
      await sql`INSERT INTO vms (id, name, image_id, flavor_id, vcpus, memory_mib, disk_gib, state, power,
        stop_timeout_ms, restart_policy, created_at, updated_at)
        VALUES ('v1', 'web', 'i1', 'f1', 1, 128, 1, 'stopped', 'stopped', 1000, 'never', ${now}, ${now})`.execute(
        raw,
      );
      assert.equal((await migrator.migrateTo('0008_image_names_per_owner')).error, undefined);
      const tenant = await db
        .selectFrom('tenants')
        .selectAll()
        .where('name', '=', DEFAULT_TENANT)
        .executeTakeFirstOrThrow();
      const vm = await db.selectFrom('vms').selectAll().where('id', '=', 'v1').executeTakeFirstOrThrow();
      assert.equal(vm.tenantId, tenant.id);
      assert.equal(vm.stopTimeoutMs, 1000);
      const image = await db
        .selectFrom('images')
        .selectAll()
        .where('id', '=', 'i1')
        .executeTakeFirstOrThrow();
      // 0005's digests from the path's last 64 characters; sizes beyond 2^31 are kept exactly.
      assert.equal(image.kernelSha256, 'a'.repeat(64));
      assert.equal(image.initrdSha256, 'b'.repeat(64));
      assert.equal(image.sizeBytes, 5_000_000_000);
      await sql`INSERT INTO tenants (id, name, require_mfa_for_admins, created_at)
        VALUES ('t2', 'other', 0, ${now})`.execute(raw);
      await sql`INSERT INTO tenant_keys (tenant_id, version, wrapped, master_key_id, created_at)
        VALUES ('t2', 1, 'w', 'm', ${now})`.execute(raw);
      // Image names: unique per owner now (the platform's own, and each tenant's).
      await sql`INSERT INTO images (id, name, format, sha256, size_bytes, kernel_path, initrd_path, created_at, tenant_id)
        VALUES ('i2', 'tiny', 'kernel-initrd', 'x', 1, '/k', '/i', ${now}, 't2')`.execute(raw);
      await assert.rejects(
        sql`INSERT INTO images (id, name, format, sha256, size_bytes, kernel_path, initrd_path, created_at)
          VALUES ('i3', 'tiny', 'kernel-initrd', 'x', 1, '/k', '/i', ${now})`.execute(raw),
        /images_owner_name/,
      );
      assert.equal((await migrator.migrateToLatest()).error, undefined);
      // VM names: per tenant.
      await db
        .insertInto('vms')
        .values({ ...vm, id: 'v2', tenantId: 't2' })
        .execute();
      await assert.rejects(
        db
          .insertInto('vms')
          .values({ ...vm, id: 'v3' })
          .execute(),
        (error: unknown) =>
          isUniqueViolation(error, { sqliteColumns: 'vms.tenant_id, vms.name', postgres: 'vms_tenant_name' }),
      );
      await db.deleteFrom('vms').where('id', '=', 'v2').execute();
      // Platform keys without a tenant row; deleting a tenant deletes its keys (the trigger).
      await sql`INSERT INTO tenant_keys (tenant_id, version, wrapped, master_key_id, created_at)
        VALUES ('platform', 1, 'p', 'm', ${now})`.execute(raw);
      await sql`DELETE FROM images WHERE tenant_id = 't2'`.execute(raw);
      await sql`DELETE FROM tenants WHERE id = 't2'`.execute(raw);
      assert.deepEqual(
        (await sql<{ tenant_id: string }>`SELECT tenant_id FROM tenant_keys`.execute(raw)).rows,
        [{ tenant_id: 'platform' }],
      );
      await assert.rejects(sql`UPDATE images SET status = 'bogus'`.execute(raw), /check constraint/);
    } finally {
      await db.destroy();
      await target.drop();
    }
  },
);

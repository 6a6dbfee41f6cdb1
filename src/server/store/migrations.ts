/**
 * Versioned schema migrations, kept in code so a build carries exactly its schema. Append only: never
 * edit a migration that has shipped; add the next one.
 */
import { randomUUID } from 'node:crypto';
import {
  PostgresAdapter,
  sql,
  type ColumnDefinitionBuilder,
  type Kysely,
  type Migration,
  type MigrationProvider,
} from 'kysely';

/** The tenant that exists from the first start (like Incus's default project). */
export const DEFAULT_TENANT = 'default';

/**
 * Every migration runs on SQLite and on PostgreSQL. Most use Kysely's portable schema builder (on
 * PostgreSQL, database.ts maps `integer` to bigint and `real` to double precision); the few that rebuild a
 * table, use a PRAGMA or a trigger branch on the engine and produce the equivalent schema.
 */
function onPostgres(db: Kysely<unknown>): boolean {
  return db.getExecutor().adapter instanceof PostgresAdapter;
}

/** An INTEGER PRIMARY KEY that numbers itself when omitted (SQLite's rowid alias; identity on PostgreSQL). */
function autoKey(db: Kysely<unknown>): (c: ColumnDefinitionBuilder) => ColumnDefinitionBuilder {
  return onPostgres(db) ? (c) => c.primaryKey().generatedByDefaultAsIdentity() : (c) => c.primaryKey();
}

/** 0002 on SQLite: vms gains tenant_id and loses its global unique name (the table is rebuilt). */
async function rebuildVms0002(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE vms RENAME TO vms_0001`.execute(db);
  await sql`DROP INDEX vms_host_id`.execute(db);
  await db.schema
    .createTable('vms')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('image_id', 'text', (c) => c.notNull().references('images.id'))
    .addColumn('flavor_id', 'text', (c) => c.notNull().references('flavors.id'))
    .addColumn('vcpus', 'integer', (c) => c.notNull())
    .addColumn('memory_mib', 'integer', (c) => c.notNull())
    .addColumn('disk_gib', 'integer', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('power', 'text', (c) => c.notNull())
    .addColumn('boot_id', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('reboot_id', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('stop_timeout_ms', 'integer', (c) => c.notNull())
    .addColumn('restart_policy', 'text', (c) => c.notNull())
    .addColumn('restart_count', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('host_id', 'text', (c) => c.references('hosts.id'))
    .addColumn('accelerator', 'text')
    .addColumn('pid', 'integer')
    .addColumn('guest_ips', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('last_heartbeat_at', 'text')
    .addColumn('guest_uptime_seconds', 'real')
    .addColumn('boot_ms', 'integer')
    .addColumn('error', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addUniqueConstraint('vms_tenant_name', ['tenant_id', 'name'])
    .execute();
  await sql`INSERT INTO vms SELECT id, (SELECT id FROM tenants WHERE name = ${DEFAULT_TENANT}), name,
      image_id, flavor_id, vcpus, memory_mib, disk_gib, state, power, boot_id, reboot_id, stop_timeout_ms,
      restart_policy, restart_count, host_id, accelerator, pid, guest_ips, last_heartbeat_at,
      guest_uptime_seconds, boot_ms, error, created_at, updated_at FROM vms_0001`.execute(db);
  await sql`DROP TABLE vms_0001`.execute(db);
  await db.schema.createIndex('vms_host_id').on('vms').column('host_id').execute();
}

/** 0009 on SQLite: tenant_keys loses its foreign key (rebuilt); a trigger keeps the cascade. */
async function rebuildTenantKeys0009(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('tenant_keys_0009')
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('wrapped', 'text', (c) => c.notNull())
    .addColumn('master_key_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('tenant_keys_0009_pk', ['tenant_id', 'version'])
    .execute();
  await sql`INSERT INTO tenant_keys_0009 SELECT tenant_id, version, wrapped, master_key_id, created_at FROM tenant_keys`.execute(
    db,
  );
  await sql`DROP TABLE tenant_keys`.execute(db);
  await sql`ALTER TABLE tenant_keys_0009 RENAME TO tenant_keys`.execute(db);
  // What the foreign key's cascade did, for tenants: deleting a tenant row deletes its keys.
  await sql`CREATE TRIGGER tenants_delete_keys AFTER DELETE ON tenants
    BEGIN DELETE FROM tenant_keys WHERE tenant_id = OLD.id; END`.execute(db);
}

const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('flavors')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('vcpus', 'integer', (c) => c.notNull())
        .addColumn('memory_mib', 'integer', (c) => c.notNull())
        .addColumn('disk_gib', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('images')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('format', 'text', (c) => c.notNull())
        .addColumn('sha256', 'text', (c) => c.notNull())
        .addColumn('size_bytes', 'integer', (c) => c.notNull())
        .addColumn('kernel_path', 'text', (c) => c.notNull())
        .addColumn('initrd_path', 'text', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('hosts')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('hostname', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('accelerator', 'text', (c) => c.notNull())
        .addColumn('accelerator_reason', 'text', (c) => c.notNull())
        .addColumn('qemu_version', 'text', (c) => c.notNull())
        .addColumn('agent_version', 'text', (c) => c.notNull())
        .addColumn('cpus', 'integer', (c) => c.notNull())
        .addColumn('memory_mib', 'integer', (c) => c.notNull())
        .addColumn('vcpus_allocatable', 'integer', (c) => c.notNull())
        .addColumn('memory_mib_allocatable', 'integer', (c) => c.notNull())
        .addColumn('last_seen_at', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('vms')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('image_id', 'text', (c) => c.notNull().references('images.id'))
        .addColumn('flavor_id', 'text', (c) => c.notNull().references('flavors.id'))
        .addColumn('vcpus', 'integer', (c) => c.notNull())
        .addColumn('memory_mib', 'integer', (c) => c.notNull())
        .addColumn('disk_gib', 'integer', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('power', 'text', (c) => c.notNull())
        .addColumn('boot_id', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('reboot_id', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('stop_timeout_ms', 'integer', (c) => c.notNull())
        .addColumn('restart_policy', 'text', (c) => c.notNull())
        .addColumn('restart_count', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('host_id', 'text', (c) => c.references('hosts.id'))
        .addColumn('accelerator', 'text')
        .addColumn('pid', 'integer')
        .addColumn('guest_ips', 'text', (c) => c.notNull().defaultTo('[]'))
        .addColumn('last_heartbeat_at', 'text')
        .addColumn('guest_uptime_seconds', 'real')
        .addColumn('boot_ms', 'integer')
        .addColumn('error', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('vms_host_id').on('vms').column('host_id').execute();
      await db.schema
        .createTable('api_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('token_sha256', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0002_identity_and_audit': {
    async up(db: Kysely<unknown>) {
      const now = new Date().toISOString();
      await db.schema
        .createTable('tenants')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('require_mfa_for_admins', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await sql`INSERT INTO tenants (id, name, require_mfa_for_admins, created_at)
        VALUES (${randomUUID()}, ${DEFAULT_TENANT}, 0, ${now})`.execute(db);
      await db.schema
        .createTable('users')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('username', 'text', (c) => c.notNull().unique())
        .addColumn('password_hash', 'text', (c) => c.notNull())
        .addColumn('must_change_password', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('totp_secret', 'text')
        .addColumn('totp_pending_secret', 'text')
        .addColumn('totp_last_step', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('password_changed_at', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('recovery_codes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('code_sha256', 'text', (c) => c.notNull())
        .addColumn('used_at', 'text')
        .execute();
      await db.schema
        .createTable('roles')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('permissions', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addUniqueConstraint('roles_tenant_name', ['tenant_id', 'name'])
        .execute();
      await db.schema
        .createTable('role_bindings')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
        // '' stands for the platform scope so that the unique constraint also holds there.
        .addColumn('scope', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addUniqueConstraint('role_bindings_unique', ['user_id', 'scope', 'role'])
        .execute();
      await db.schema
        .createTable('sessions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('refresh_sha256', 'text', (c) => c.notNull().unique())
        .addColumn('previous_refresh_sha256', 'text')
        .addColumn('restriction', 'text')
        .addColumn('mfa', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('last_used_at', 'text', (c) => c.notNull())
        .addColumn('revoked_at', 'text')
        .execute();
      await db.schema.createIndex('sessions_user_id').on('sessions').column('user_id').execute();
      await db.schema.dropTable('api_tokens').execute();
      await db.schema
        .createTable('api_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('token_sha256', 'text', (c) => c.notNull().unique())
        .addColumn('permissions', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('last_used_at', 'text')
        .addColumn('revoked_at', 'text')
        .addUniqueConstraint('api_tokens_user_name', ['user_id', 'name'])
        .execute();
      // VMs belong to a tenant and their names are unique per tenant: rebuild the table (SQLite cannot
      // change a unique constraint in place); existing VMs move into the default tenant.
      if (onPostgres(db)) {
        await db.schema
          .alterTable('vms')
          .addColumn('tenant_id', 'text', (c) => c.references('tenants.id'))
          .execute();
        await sql`UPDATE vms SET tenant_id = (SELECT id FROM tenants WHERE name = ${DEFAULT_TENANT})`.execute(
          db,
        );
        await sql`ALTER TABLE vms ALTER COLUMN tenant_id SET NOT NULL`.execute(db);
        await sql`ALTER TABLE vms DROP CONSTRAINT vms_name_key`.execute(db);
        await sql`ALTER TABLE vms ADD CONSTRAINT vms_tenant_name UNIQUE (tenant_id, name)`.execute(db);
      } else await rebuildVms0002(db);
      await db.schema.createIndex('vms_tenant_id').on('vms').column('tenant_id').execute();
      // The audit log: an append-only hash chain; seq is dense and starts at 1.
      await db.schema
        .createTable('audit_records')
        .addColumn('seq', 'integer', autoKey(db))
        .addColumn('time', 'text', (c) => c.notNull())
        .addColumn('actor_id', 'text')
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('tenant_id', 'text')
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('target', 'text')
        .addColumn('outcome', 'text', (c) => c.notNull())
        .addColumn('status', 'integer', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('request_id', 'text', (c) => c.notNull())
        .addColumn('detail', 'text')
        .addColumn('prev_hash', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('audit_records_tenant')
        .on('audit_records')
        .columns(['tenant_id', 'seq'])
        .execute();
      await db.schema
        .createTable('audit_checkpoints')
        .addColumn('id', 'integer', autoKey(db))
        .addColumn('record_count', 'integer', (c) => c.notNull())
        .addColumn('head_hash', 'text', (c) => c.notNull())
        .addColumn('time', 'text', (c) => c.notNull())
        .addColumn('signature', 'text', (c) => c.notNull())
        .execute();
    },
  },
};

migrations['0003_limits_and_quotas'] = {
  async up(db: Kysely<unknown>) {
    for (const table of ['flavors', 'vms']) {
      await db.schema.alterTable(table).addColumn('cpu_limit_percent', 'integer').execute();
      await db.schema
        .alterTable(table)
        .addColumn('cpu_weight', 'integer', (c) => c.notNull().defaultTo(100))
        .execute();
      await db.schema
        .alterTable(table)
        .addColumn('pids_max', 'integer', (c) => c.notNull().defaultTo(512))
        .execute();
    }
    await db.schema
      .createTable('quotas')
      .addColumn('tenant_id', 'text', (c) => c.primaryKey().references('tenants.id').onDelete('cascade'))
      .addColumn('limits', 'text', (c) => c.notNull().defaultTo('{}'))
      .addColumn('version', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
  },
};

migrations['0004_tenant_keys'] = {
  async up(db: Kysely<unknown>) {
    // Per-tenant data keys, stored only wrapped by the master key (see images/crypto/envelope-keys.ts).
    await db.schema
      .createTable('tenant_keys')
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('wrapped', 'text', (c) => c.notNull())
      .addColumn('master_key_id', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('tenant_keys_pk', ['tenant_id', 'version'])
      .execute();
  },
};

migrations['0005_image_file_digests'] = {
  async up(db: Kysely<unknown>) {
    for (const column of ['kernel_sha256', 'initrd_sha256'])
      await db.schema
        .alterTable('images')
        .addColumn(column, 'text', (c) => c.notNull().defaultTo(''))
        .execute();
    // The store is content-addressed: each file's name is its SHA-256.
    // (substr with a negative start counts from the end on SQLite only; right() is PostgreSQL's.)
    if (onPostgres(db))
      await sql`UPDATE images SET kernel_sha256 = right(kernel_path, 64), initrd_sha256 = right(initrd_path, 64)`.execute(
        db,
      );
    else
      await sql`UPDATE images SET kernel_sha256 = substr(kernel_path, -64), initrd_sha256 = substr(initrd_path, -64)`.execute(
        db,
      );
  },
};

migrations['0006_image_trust'] = {
  async up(db: Kysely<unknown>) {
    // Ownership and visibility: null tenant = published by the platform. New rows default to private.
    await db.schema
      .alterTable('images')
      .addColumn('tenant_id', 'text', (c) => c.references('tenants.id').onDelete('cascade'))
      .execute();
    await db.schema
      .alterTable('images')
      .addColumn('visibility', 'text', (c) =>
        c
          .notNull()
          .defaultTo('private')
          .check(sql`visibility IN ('private', 'shared', 'public')`),
      )
      .execute();
    await sql`UPDATE images SET visibility = 'public' WHERE tenant_id IS NULL`.execute(db);
    await db.schema.createIndex('images_tenant').on('images').column('tenant_id').execute();
    await db.schema
      .createTable('image_shares')
      .addColumn('image_id', 'text', (c) => c.notNull().references('images.id').onDelete('cascade'))
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addPrimaryKeyConstraint('image_shares_pk', ['image_id', 'tenant_id'])
      .execute();
    await db.schema.createIndex('image_shares_tenant').on('image_shares').column('tenant_id').execute();
    await db.schema
      .createTable('trusted_keys')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('keyid', 'text', (c) => c.notNull())
      .addColumn('public_key_pem', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('trusted_keys_tenant_keyid', ['tenant_id', 'keyid'])
      .addUniqueConstraint('trusted_keys_tenant_name', ['tenant_id', 'name'])
      .execute();
    await db.schema
      .createTable('trust_policies')
      .addColumn('tenant_id', 'text', (c) => c.primaryKey().references('tenants.id').onDelete('cascade'))
      .addColumn('require_signatures', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('accept_platform_images', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
  },
};

migrations['0007_image_signatures'] = {
  async up(db: Kysely<unknown>) {
    // Attestations: a signature a tenant attached to an image; it counts for that tenant only.
    await db.schema
      .createTable('image_signatures')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('image_id', 'text', (c) => c.notNull().references('images.id').onDelete('cascade'))
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('keyid', 'text', (c) => c.notNull())
      .addColumn('envelope', 'text', (c) => c.notNull().check(sql`length(envelope) <= 65536`))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('image_signatures_image_tenant_keyid', ['image_id', 'tenant_id', 'keyid'])
      .execute();
    await db.schema
      .createIndex('image_signatures_tenant')
      .on('image_signatures')
      .column('tenant_id')
      .execute();
  },
};

migrations['0008_image_names_per_owner'] = {
  async up(db: Kysely<unknown>) {
    // Image names become unique per owner (each tenant, and the platform among its own images) instead
    // of globally. SQLite cannot change a unique constraint in place: rebuild the table with the
    // documented procedure (foreign keys off, create new, copy, drop old, rename, check). Kysely runs
    // SQLite migrations outside a transaction, so the pragma takes effect and the rebuild gets its own.
    // Read by position: the caller's plugins (CamelCasePlugin) may rename the column.
    // PostgreSQL changes the constraint in place (the migration runs in a transaction there).
    if (onPostgres(db)) {
      await sql`ALTER TABLE images DROP CONSTRAINT images_name_key`.execute(db);
      // '' stands for the platform (NULL tenant): NULLs are distinct in a UNIQUE index.
      await sql`CREATE UNIQUE INDEX images_owner_name ON images (COALESCE(tenant_id, ''), name)`.execute(db);
      return;
    }
    const fkBefore = await sql<Record<string, number>>`PRAGMA foreign_keys`.execute(db);
    const restoreForeignKeys = Object.values(fkBefore.rows[0] ?? {})[0] === 1;
    await sql`PRAGMA foreign_keys = OFF`.execute(db);
    try {
      await sql`BEGIN IMMEDIATE`.execute(db);
      try {
        await db.schema
          .createTable('images_0008')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('format', 'text', (c) => c.notNull())
          .addColumn('sha256', 'text', (c) => c.notNull())
          .addColumn('size_bytes', 'integer', (c) => c.notNull())
          .addColumn('kernel_path', 'text', (c) => c.notNull())
          .addColumn('initrd_path', 'text', (c) => c.notNull())
          .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('kernel_sha256', 'text', (c) => c.notNull().defaultTo(''))
          .addColumn('initrd_sha256', 'text', (c) => c.notNull().defaultTo(''))
          .addColumn('tenant_id', 'text', (c) => c.references('tenants.id').onDelete('cascade'))
          .addColumn('visibility', 'text', (c) =>
            c
              .notNull()
              .defaultTo('private')
              .check(sql`visibility IN ('private', 'shared', 'public')`),
          )
          .execute();
        await sql`INSERT INTO images_0008 (id, name, format, sha256, size_bytes, kernel_path, initrd_path,
          description, created_at, kernel_sha256, initrd_sha256, tenant_id, visibility)
          SELECT id, name, format, sha256, size_bytes, kernel_path, initrd_path, description, created_at,
          kernel_sha256, initrd_sha256, tenant_id, visibility FROM images`.execute(db);
        // With foreign keys off, dropping the old table neither cascades into image_shares or
        // image_signatures nor trips vms.image_id; those references name `images` and resolve to the
        // renamed table.
        await sql`DROP TABLE images`.execute(db);
        await sql`ALTER TABLE images_0008 RENAME TO images`.execute(db);
        await db.schema.createIndex('images_tenant').on('images').column('tenant_id').execute();
        // '' stands for the platform (NULL tenant): NULLs are distinct in a UNIQUE index.
        await sql`CREATE UNIQUE INDEX images_owner_name ON images (COALESCE(tenant_id, ''), name)`.execute(
          db,
        );
        const violations = await sql`PRAGMA foreign_key_check`.execute(db);
        if (violations.rows.length > 0)
          throw new Error(
            `foreign key check failed after rebuilding images: ${JSON.stringify(violations.rows)}`,
          );
        await sql`COMMIT`.execute(db);
      } catch (err) {
        await sql`ROLLBACK`.execute(db);
        throw err;
      }
    } finally {
      if (restoreForeignKeys) await sql`PRAGMA foreign_keys = ON`.execute(db);
    }
  },
};

migrations['0009_protected_images'] = {
  async up(db: Kysely<unknown>) {
    // Image lifecycle: queued (awaiting its files) -> importing -> active | quarantined | error.
    const imageColumns: [string, 'text', (c: ColumnDefinitionBuilder) => ColumnDefinitionBuilder][] = [
      [
        'status',
        'text',
        (c) =>
          c
            .notNull()
            .defaultTo('active')
            .check(sql`status IN ('queued', 'importing', 'active', 'quarantined', 'error')`),
      ],
      ['status_reason', 'text', (c) => c.notNull().defaultTo('')],
      ['disk_sha256', 'text', (c) => c],
      ['scan_verdict', 'text', (c) => c],
      ['scan_signatures', 'text', (c) => c.notNull().defaultTo('[]')],
      ['scan_engine', 'text', (c) => c],
      ['scan_database', 'text', (c) => c],
      ['scanned_at', 'text', (c) => c],
      ['platform_signature', 'text', (c) => c],
    ];
    for (const [name, type, build] of imageColumns)
      await db.schema.alterTable('images').addColumn(name, type, build).execute();

    // Encrypted, compressed blobs, content-addressed per key domain (a tenant id, or 'platform').
    await db.schema
      .createTable('image_blobs')
      .addColumn('key_domain', 'text', (c) => c.notNull())
      .addColumn('sha256', 'text', (c) => c.notNull())
      .addColumn('size_bytes', 'integer', (c) => c.notNull())
      .addColumn('stored_bytes', 'integer', (c) => c.notNull())
      .addColumn('key_id', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('image_blobs_pk', ['key_domain', 'sha256'])
      .execute();

    // Data keys now also exist for the platform's own images (tenant_id 'platform'), so tenant_keys
    // loses its foreign key; a trigger keeps the cascade, and tenant deletion also destroys the keys
    // explicitly with secure_delete and a WAL truncation (crypto-shredding).
    if (onPostgres(db)) {
      // In place: drop the foreign key, and a PL/pgSQL trigger function does what the SQLite trigger does.
      await sql`ALTER TABLE tenant_keys DROP CONSTRAINT tenant_keys_tenant_id_fkey`.execute(db);
      await sql`ALTER TABLE tenant_keys RENAME CONSTRAINT tenant_keys_pk TO tenant_keys_0009_pk`.execute(db);
      await sql`CREATE FUNCTION tenants_delete_keys() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN DELETE FROM tenant_keys WHERE tenant_id = OLD.id; RETURN OLD; END $$`.execute(db);
      await sql`CREATE TRIGGER tenants_delete_keys AFTER DELETE ON tenants
        FOR EACH ROW EXECUTE FUNCTION tenants_delete_keys()`.execute(db);
    } else await rebuildTenantKeys0009(db);

    // Security events (the engine of a later issue reads and extends this stream).
    await db.schema
      .createTable('security_events')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('seq', 'integer', (c) => c.notNull().unique())
      .addColumn('occurred_at', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('severity', 'text', (c) =>
        c.notNull().check(sql`severity IN ('info', 'low', 'medium', 'high', 'critical')`),
      )
      .addColumn('tenant_id', 'text')
      .addColumn('subject_type', 'text', (c) => c.notNull())
      .addColumn('subject_id', 'text')
      .addColumn('summary', 'text', (c) => c.notNull())
      .addColumn('detail', 'text', (c) => c.notNull().defaultTo('{}'))
      .execute();
    await db.schema
      .createIndex('security_events_tenant')
      .on('security_events')
      .columns(['tenant_id', 'seq'])
      .execute();
  },
};

migrations['0010_networks'] = {
  async up(db: Kysely<unknown>) {
    // Tenant networks: one bridge per network on each host; `zone` numbers its conntrack zone.
    await db.schema
      .createTable('networks')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('cidr', 'text', (c) => c.notNull())
      .addColumn('zone', 'integer', (c) => c.notNull().unique())
      .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('networks_tenant_name', ['tenant_id', 'name'])
      .execute();
    await db.schema
      .createTable('security_groups')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('security_groups_tenant_name', ['tenant_id', 'name'])
      .execute();
    await db.schema
      .createTable('security_group_rules')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('group_id', 'text', (c) => c.notNull().references('security_groups.id').onDelete('cascade'))
      .addColumn('direction', 'text', (c) => c.notNull().check(sql`direction IN ('ingress', 'egress')`))
      .addColumn('protocol', 'text', (c) => c.notNull().check(sql`protocol IN ('tcp', 'udp', 'icmp', 'any')`))
      .addColumn('port_min', 'integer')
      .addColumn('port_max', 'integer')
      .addColumn('remote_cidr', 'text')
      .addColumn('remote_group_id', 'text', (c) => c.references('security_groups.id').onDelete('cascade'))
      .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addCheckConstraint(
        'security_group_rules_remote',
        sql`(remote_cidr IS NULL) <> (remote_group_id IS NULL)`,
      )
      .execute();
    await db.schema
      .createIndex('security_group_rules_group')
      .on('security_group_rules')
      .column('group_id')
      .execute();
    // A VM's interface on a network: its tap on the host, its addresses, its security groups.
    await db.schema
      .createTable('ports')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('network_id', 'text', (c) => c.notNull().references('networks.id'))
      .addColumn('vm_id', 'text', (c) => c.notNull().references('vms.id').onDelete('cascade'))
      .addColumn('tag', 'integer', (c) => c.notNull().unique())
      .addColumn('mac', 'text', (c) => c.notNull().unique())
      .addColumn('ipv4', 'text', (c) => c.notNull())
      .addColumn('allowed_addresses', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('ports_network_ipv4', ['network_id', 'ipv4'])
      .execute();
    await db.schema.createIndex('ports_vm').on('ports').column('vm_id').execute();
    await db.schema
      .createTable('port_security_groups')
      .addColumn('port_id', 'text', (c) => c.notNull().references('ports.id').onDelete('cascade'))
      .addColumn('group_id', 'text', (c) => c.notNull().references('security_groups.id'))
      .addPrimaryKeyConstraint('port_security_groups_pk', ['port_id', 'group_id'])
      .execute();
  },
};

migrations['0011_network_outbound'] = {
  async up(db: Kysely<unknown>) {
    // Outbound access through NAT on the host, off by default.
    await db.schema
      .alterTable('networks')
      .addColumn('outbound', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
  },
};

migrations['0012_network_limits'] = {
  async up(db: Kysely<unknown>) {
    // Per-VM network rate limit (each direction, Mbit/s), from the flavor; null: unshaped.
    for (const table of ['flavors', 'vms'])
      await db.schema.alterTable(table).addColumn('network_mbps', 'integer').execute();
  },
};

migrations['0013_nested_virtualization'] = {
  async up(db: Kysely<unknown>) {
    // Nested virtualization for a tenant's guests: off unless a platform admin allows it.
    await db.schema
      .alterTable('tenants')
      .addColumn('allow_nested_virtualization', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
  },
};

migrations['0014_host_maintenance'] = {
  async up(db: Kysely<unknown>) {
    // A host in maintenance gets no new VMs (its running ones stay).
    await db.schema
      .alterTable('hosts')
      .addColumn('maintenance', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
  },
};

migrations['0015_dedicated_hosts'] = {
  async up(db: Kysely<unknown>) {
    // A tenant whose VMs never share a host with another tenant's (a platform admin's decision).
    await db.schema
      .alterTable('tenants')
      .addColumn('dedicated_hosts', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
  },
};

migrations['0016_placement_groups'] = {
  async up(db: Kysely<unknown>) {
    // Affinity (same host) and anti-affinity (different hosts) groups of a tenant's VMs.
    await db.schema
      .createTable('placement_groups')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('policy', 'text', (c) => c.notNull().check(sql`policy IN ('affinity', 'anti-affinity')`))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('placement_groups_tenant_name', ['tenant_id', 'name'])
      .execute();
    await db.schema
      .alterTable('vms')
      .addColumn('placement_group_id', 'text', (c) => c.references('placement_groups.id'))
      .execute();
  },
};

migrations['0017_dedicated_cpus'] = {
  async up(db: Kysely<unknown>) {
    // Flavors with cpu_policy 'dedicated' get whole physical cores of their own (pinned_cpus on the
    // VM, from the host's dedicated_cores: JSON arrays of logical CPU ids, SMT siblings together).
    await db.schema
      .alterTable('flavors')
      .addColumn('cpu_policy', 'text', (c) =>
        c
          .notNull()
          .defaultTo('shared')
          .check(sql`cpu_policy IN ('shared', 'dedicated')`),
      )
      .execute();
    await db.schema.alterTable('vms').addColumn('pinned_cpus', 'text').execute();
    await db.schema
      .alterTable('hosts')
      .addColumn('dedicated_cores', 'text', (c) => c.notNull().defaultTo('[]'))
      .execute();
  },
};

migrations['0018_volumes'] = {
  async up(db: Kysely<unknown>) {
    // A tenant's volumes: LUKS files on one host each, with a key of their own wrapped by the tenant's
    // data key (wrapped_key: base64 of nonce | ciphertext | tag; key_version: the data key's version).
    await db.schema
      .createTable('volumes')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('size_gib', 'integer', (c) => c.notNull())
      .addColumn('status', 'text', (c) =>
        c.notNull().check(sql`status IN ('creating', 'available', 'attached', 'deleting')`),
      )
      .addColumn('host_id', 'text', (c) => c.references('hosts.id'))
      .addColumn('vm_id', 'text', (c) => c.references('vms.id'))
      .addColumn('attached_at', 'text')
      .addColumn('wrapped_key', 'text', (c) => c.notNull())
      .addColumn('key_version', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('volumes_tenant_name', ['tenant_id', 'name'])
      .execute();
    await db.schema.createIndex('volumes_vm').on('volumes').column('vm_id').execute();
  },
};

migrations['0019_volume_snapshots'] = {
  async up(db: Kysely<unknown>) {
    // Point-in-time copies of a volume's encrypted file on its host (same key as the volume).
    await db.schema
      .createTable('volume_snapshots')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
      .addColumn('volume_id', 'text', (c) => c.notNull().references('volumes.id'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('size_gib', 'integer', (c) => c.notNull())
      .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.id'))
      .addColumn('status', 'text', (c) => c.notNull().check(sql`status IN ('available', 'deleting')`))
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('volume_snapshots_volume_name', ['volume_id', 'name'])
      .execute();
    // Lineage of a clone: the snapshot and volume it was made from (kept after they are deleted).
    await db.schema.alterTable('volumes').addColumn('source_snapshot_id', 'text').execute();
    await db.schema.alterTable('volumes').addColumn('source_volume_id', 'text').execute();
    // A tenant may forbid clones (new volumes from snapshots) altogether.
    await db.schema
      .alterTable('tenants')
      .addColumn('allow_clones', 'integer', (c) => c.notNull().defaultTo(1))
      .execute();
  },
};

migrations['0020_volume_backups'] = {
  async up(db: Kysely<unknown>) {
    // Backups: a volume's encrypted file kept by the server, with a manifest signed by the platform key
    // (its digest and size). The volume's wrapped key is kept with it (bound to the source volume id), so
    // a backup restores after its volume is gone.
    await db.schema
      .createTable('volume_backups')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('volume_id', 'text', (c) => c.notNull())
      .addColumn('volume_name', 'text', (c) => c.notNull())
      .addColumn('size_gib', 'integer', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull().check(sql`status IN ('creating', 'available')`))
      .addColumn('bytes', 'integer')
      .addColumn('sha256', 'text')
      .addColumn('manifest', 'text')
      .addColumn('wrapped_key', 'text', (c) => c.notNull())
      .addColumn('key_version', 'integer', (c) => c.notNull())
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('volume_backups_tenant_name', ['tenant_id', 'name'])
      .execute();
    await db.schema.alterTable('volumes').addColumn('source_backup_id', 'text').execute();
  },
};

migrations['0021_disk_limits'] = {
  async up(db: Kysely<unknown>) {
    // Disk I/O limits per disk of the VM (QEMU throttle groups); null: unlimited.
    for (const table of ['flavors', 'vms']) {
      await db.schema.alterTable(table).addColumn('disk_iops', 'integer').execute();
      await db.schema.alterTable(table).addColumn('disk_mibps', 'integer').execute();
    }
  },
};

migrations['0022_root_disks'] = {
  async up(db: Kysely<unknown>) {
    // A disk image's guest-visible size (qemu-img), so a flavor's root disk can be checked against it.
    await db.schema.alterTable('images').addColumn('virtual_size_bytes', 'integer').execute();
    // Volume file format: 'luks' (raw LUKS) or 'qcow2' (qcow2 with LUKS encryption); the image it was
    // made from (bootable), whether its file is an overlay of that image, and whether it is a VM's root
    // disk made from the image with the VM (counted in the VM's diskGiB, erased with the VM).
    await db.schema
      .alterTable('volumes')
      .addColumn('format', 'text', (c) => c.notNull().defaultTo('luks'))
      .execute();
    await db.schema.alterTable('volumes').addColumn('image_id', 'text').execute();
    await db.schema
      .alterTable('volumes')
      .addColumn('image_backed', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema
      .alterTable('volumes')
      .addColumn('vm_root', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    // A backup keeps what its volume was made from: a restored volume stays bootable.
    await db.schema.alterTable('volume_backups').addColumn('image_id', 'text').execute();
    await db.schema
      .alterTable('volume_backups')
      .addColumn('format', 'text', (c) => c.notNull().defaultTo('luks'))
      .execute();
    // The VM's root disk (a volume), the SSH keys for its seed (public keys, JSON), its generation id.
    await db.schema.alterTable('vms').addColumn('root_volume_id', 'text').execute();
    await db.schema.alterTable('vms').addColumn('ssh_keys', 'text').execute();
    await db.schema.alterTable('vms').addColumn('generation_id', 'text').execute();
  },
};

migrations['0023_security_alerts'] = {
  async up(db: Kysely<unknown>) {
    // Alerts raised by the detection engine: one per rule and group while open (repeats count up),
    // with a lifecycle (open, acknowledged, resolved), an assignee, notes, and the response taken.
    await db.schema
      .createTable('security_alerts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text')
      .addColumn('rule_id', 'text', (c) => c.notNull())
      .addColumn('severity', 'text', (c) =>
        c.notNull().check(sql`severity IN ('info', 'low', 'medium', 'high', 'critical')`),
      )
      .addColumn('status', 'text', (c) =>
        c.notNull().check(sql`status IN ('open', 'acknowledged', 'resolved')`),
      )
      .addColumn('group_key', 'text', (c) => c.notNull())
      .addColumn('summary', 'text', (c) => c.notNull())
      .addColumn('subject_type', 'text', (c) => c.notNull())
      .addColumn('subject_id', 'text')
      .addColumn('event_seqs', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('count', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('first_at', 'text', (c) => c.notNull())
      .addColumn('last_at', 'text', (c) => c.notNull())
      .addColumn('response', 'text', (c) => c.notNull().defaultTo('{}'))
      .addColumn('assignee', 'text')
      .addColumn('notes', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('security_alerts_open')
      .on('security_alerts')
      .columns(['rule_id', 'group_key', 'status'])
      .execute();
    await db.schema
      .createIndex('security_alerts_tenant')
      .on('security_alerts')
      .columns(['tenant_id', 'created_at'])
      .execute();
  },
};

migrations['0024_port_quarantine'] = {
  async up(db: Kysely<unknown>) {
    // An isolated (quarantined) port: the host drops every frame from and to it.
    await db.schema
      .alterTable('ports')
      .addColumn('quarantined', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
  },
};

migrations['0025_compliance'] = {
  async up(db: Kysely<unknown>) {
    // Runs of the compliance benchmark: the score, the counts and every check's result (JSON).
    await db.schema
      .createTable('compliance_runs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('started_at', 'text', (c) => c.notNull())
      .addColumn('finished_at', 'text', (c) => c.notNull())
      .addColumn('score', 'real', (c) => c.notNull())
      .addColumn('passed', 'integer', (c) => c.notNull())
      .addColumn('failed', 'integer', (c) => c.notNull())
      .addColumn('results', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('trigger', 'text', (c) => c.notNull().check(sql`"trigger" IN ('schedule', 'manual')`))
      .execute();
    await db.schema
      .createIndex('compliance_runs_started')
      .on('compliance_runs')
      .column('started_at')
      .execute();
  },
};

migrations['0026_host_certificates'] = {
  async up(db: Kysely<unknown>) {
    // One-time join tokens for remote hosts: only the SHA-256 of the token is kept.
    await db.schema
      .createTable('host_join_tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('token_hash', 'text', (c) => c.notNull().unique())
      .addColumn('hostname', 'text')
      .addColumn('created_by', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('used_at', 'text')
      .addColumn('host_id', 'text')
      .execute();
    // Host certificates issued by the server's host CA (serial: uppercase hex), and their revocation.
    await db.schema
      .createTable('host_certificates')
      .addColumn('serial', 'text', (c) => c.primaryKey())
      .addColumn('host_id', 'text', (c) => c.notNull())
      .addColumn('hostname', 'text', (c) => c.notNull())
      .addColumn('not_before', 'text', (c) => c.notNull())
      .addColumn('not_after', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('revoked_at', 'text')
      .execute();
    await db.schema.createIndex('host_certificates_host').on('host_certificates').column('host_id').execute();
  },
};

migrations['0027_host_tunnel_ip'] = {
  async up(db: Kysely<unknown>) {
    // The host's VXLAN underlay address (networks spanning hosts), as its agent reports it.
    await db.schema.alterTable('hosts').addColumn('tunnel_ip', 'text').execute();
  },
};

migrations['0028_server_replicas'] = {
  async up(db: Kysely<unknown>) {
    // The server replicas on this database, each renewing its row while it runs (where agents dial it).
    await db.schema
      .createTable('server_replicas')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('agent_endpoint', 'text')
      .addColumn('started_at', 'text', (c) => c.notNull())
      .addColumn('last_seen_at', 'text', (c) => c.notNull())
      .execute();
    // The replica a host's agent is linked to now (null: none).
    await db.schema.alterTable('hosts').addColumn('linked_replica', 'text').execute();
    // Agent requests one replica forwards to the replica a host is linked to (agent-forwarding.ts):
    // a row per request, taken and answered by the target; short-lived.
    await db.schema
      .createTable('agent_forwards')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('origin_replica', 'text', (c) => c.notNull())
      .addColumn('target_replica', 'text', (c) => c.notNull())
      .addColumn('host_id', 'text', (c) => c.notNull())
      // The origin's order: a host's requests reach its agent in the order they were made.
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('body', 'text', (c) => c.notNull())
      .addColumn('timeout_ms', 'integer', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('result', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('agent_forwards_target')
      .on('agent_forwards')
      .columns(['target_replica', 'state'])
      .execute();
    await db.schema
      .createIndex('agent_forwards_origin')
      .on('agent_forwards')
      .columns(['origin_replica', 'state'])
      .execute();
  },
};

migrations['0029_detection_progress'] = {
  async up(db: Kysely<unknown>) {
    // How far the detection engine got in the security event stream (detection-progress.ts): the next
    // leader, or this server after a restart, goes on from there with its windows filled again.
    await db.schema
      .createTable('detection_progress')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
  },
};

migrations['0030_shared_secrets'] = {
  async up(db: Kysely<unknown>) {
    // A fingerprint of each secret every server on this database must share (shared-secrets.ts).
    await db.schema
      .createTable('shared_secrets')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('fingerprint', 'text', (c) => c.notNull())
      .addColumn('recorded_at', 'text', (c) => c.notNull())
      .execute();
  },
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};

/**
 * Versioned schema migrations, kept in code so a build carries exactly its schema. Append only: never
 * edit a migration that has shipped; add the next one.
 */
import { type Kysely, type Migration, type MigrationProvider } from 'kysely';

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
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};

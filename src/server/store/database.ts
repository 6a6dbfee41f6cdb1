/**
 * Opens the control-plane database: SQLite (better-sqlite3, WAL, foreign keys, synchronous=FULL so an
 * acknowledged write survives a crash) through Kysely, and runs pending migrations.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { CamelCasePlugin, Kysely, Migrator, SqliteDialect } from 'kysely';
import { migrationProvider } from './migrations.js';
import type { Database } from './schema.js';
import { withStatementCache } from './statement-cache.js';

export type Db = Kysely<Database>;

/** The better-sqlite3 connection behind each Db, for the rare hot path that needs it (see rawSqlite). */
const rawHandles = new WeakMap<Db, SqliteDatabase.Database>();

export async function openDatabase(file: string): Promise<Db> {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const sqlite = new SqliteDatabase(file);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  // Deleted rows (wrapped keys, sessions, tokens) are overwritten, not left in free pages.
  sqlite.pragma('secure_delete = ON');
  const db = new Kysely<Database>({
    dialect: new SqliteDialect({ database: withStatementCache(sqlite) }),
    plugins: [new CamelCasePlugin()],
  });
  rawHandles.set(db, sqlite);
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    await db.destroy();
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`database migration ${failed} failed: ${(error as Error).message}`);
  }
  return db;
}

/**
 * The raw better-sqlite3 connection of a Db opened by openDatabase(): prepared statements and synchronous
 * transactions for the audit log's group commit and its fail-closed probe. Everything else uses Kysely.
 */
export function rawSqlite(db: Db): SqliteDatabase.Database {
  const sqlite = rawHandles.get(db);
  if (!sqlite) throw new Error('rawSqlite: this Db was not opened by openDatabase()');
  return sqlite;
}

export function nowIso(): string {
  return new Date().toISOString();
}

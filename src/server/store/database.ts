/**
 * Opens the control-plane database and runs pending migrations. Two engines behind the same Kysely
 * queries and the same migrations:
 * - SQLite (better-sqlite3, WAL, foreign keys, synchronous=FULL so an acknowledged write survives a
 *   crash): the embedded default, a file in the data directory.
 * - PostgreSQL (pg, a connection pool) for cluster mode: a `postgres://` or `postgresql://` URL. Several
 *   server replicas may share one database; work that must be serialized across them takes a
 *   transaction-scoped advisory lock (see lockOnPostgres()).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import {
  CamelCasePlugin,
  Kysely,
  Migrator,
  OperationNodeTransformer,
  PostgresAdapter,
  PostgresDialect,
  SqliteDialect,
  sql,
  type DataTypeNode,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';
import pg from 'pg';
import { migrationProvider } from './migrations.js';
import type { Database } from './schema.js';
import { withStatementCache } from './statement-cache.js';

export type Db = Kysely<Database>;
export type Engine = 'sqlite' | 'postgres';

/** The better-sqlite3 connection behind each Db, for the rare hot path that needs it (see rawSqlite). */
const rawHandles = new WeakMap<Db, SqliteDatabase.Database>();
/** The pg pool behind each PostgreSQL Db, for a dedicated LISTEN connection (see postgresPool). */
const pools = new WeakMap<Db, pg.Pool>();

/** True for a PostgreSQL connection URL (the only form of a PostgreSQL target). */
export function isPostgresUrl(target: string): boolean {
  return /^postgres(?:ql)?:\/\//i.test(target);
}

/**
 * A PostgreSQL URL with its password replaced by `***`, for logs and messages. Anything that does not
 * parse is reduced to its scheme: a malformed URL could still carry a password.
 */
export function maskDatabaseUrl(target: string): string {
  if (!isPostgresUrl(target)) return target;
  try {
    const url = new URL(target);
    if (url.password) url.password = '***';
    url.searchParams.forEach((_value, key) => {
      if (/pass|secret|key/i.test(key)) url.searchParams.set(key, '***');
    });
    return url.toString();
  } catch {
    return 'postgres://(unparseable URL)';
  }
}

/**
 * Validates a --database value: a PostgreSQL URL with a host and a database name, or a file path.
 * Returns an error message, or null when it is acceptable.
 */
export function databaseTargetProblem(target: string): string | null {
  if (target.trim() === '') return 'the database must be a file path or a postgres:// URL';
  if (/[\0\n\r]/.test(target)) return 'the database must not contain control characters';
  if (!isPostgresUrl(target)) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target))
      return 'the database URL must start with postgres:// or postgresql://';
    return null;
  }
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return 'the database URL is not a valid URL';
  }
  if (!url.hostname && !url.searchParams.get('host')) return 'the database URL has no host';
  if (url.pathname.replace(/^\//, '') === '') return 'the database URL has no database name';
  return null;
}

/** Which engine a Db runs on. */
export function engineOf(db: Kysely<unknown> | Kysely<Database>): Engine {
  return db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite';
}

/**
 * Serializes a section across server replicas on PostgreSQL: a transaction-scoped advisory lock on
 * (class, key), released at COMMIT or ROLLBACK. A no-op on SQLite, whose writes are serialized anyway
 * (one connection, one writer). Call it first thing inside the transaction that must be serialized.
 */
export async function lockOnPostgres(
  trx: Kysely<Database>,
  lockClass: number,
  key: string | number = 0,
): Promise<void> {
  if (engineOf(trx) !== 'postgres') return;
  if (typeof key === 'number') await sql`SELECT pg_advisory_xact_lock(${lockClass}, ${key})`.execute(trx);
  else await sql`SELECT pg_advisory_xact_lock(${lockClass}, hashtext(${key}))`.execute(trx);
}

/** Advisory lock classes (the first key of pg_advisory_xact_lock(int, int)); one per serialized section. */
export const LOCK_CLASS = {
  auditChain: 0x52_41_01,
  securityEvents: 0x52_41_02,
  quotaTenant: 0x52_41_03,
  networkNumbers: 0x52_41_04,
  placement: 0x52_41_05,
} as const;

/**
 * In migrations on PostgreSQL: SQLite's 64-bit `integer` becomes `bigint` (sizes in bytes exceed 2^31)
 * and its 8-byte `real` becomes `double precision`; `blob` becomes `bytea`. SQLite is left alone.
 */
class PostgresTypes extends OperationNodeTransformer {
  protected override transformDataType(node: DataTypeNode): DataTypeNode {
    const map: Partial<Record<string, DataTypeNode['dataType']>> = {
      integer: 'bigint',
      real: 'double precision',
      blob: 'bytea',
    };
    const to = map[node.dataType];
    return to ? { ...node, dataType: to } : node;
  }
}

class PostgresTypesPlugin implements KyselyPlugin {
  readonly #transformer = new PostgresTypes();
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return this.#transformer.transformNode(args.node);
  }
  transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return Promise.resolve(args.result);
  }
}

/** int8 (COUNT(*), bigint columns) and numeric (SUM of bigint) as JS numbers, as SQLite returns them. */
function parseInt8(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`database integer ${value} exceeds the safe range`);
  return n;
}

const PG_INT8 = 20;
const PG_NUMERIC = 1700;
const defaultTypeParser = pg.types.getTypeParser as (oid: number, format?: string) => unknown;

const pgTypes = {
  getTypeParser: ((oid: number, format?: string) => {
    if (oid === PG_INT8) return parseInt8;
    if (oid === PG_NUMERIC) return (value: string) => Number(value);
    return defaultTypeParser(oid, format ?? 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * The migrator of a Db: on PostgreSQL its migrations see SQLite's column types mapped (PostgresTypes).
 * Kysely runs each PostgreSQL migration in a transaction under its own advisory lock, so replicas that
 * start together migrate once.
 */
export function createMigrator(db: Db): Migrator {
  const migrationDb =
    engineOf(db) === 'postgres' ? db.withPlugin(new PostgresTypesPlugin()) : (db as Kysely<unknown>);
  return new Migrator({ db: migrationDb as Kysely<unknown>, provider: migrationProvider });
}

async function migrate(db: Db): Promise<void> {
  const { error, results } = await createMigrator(db).migrateToLatest();
  if (error) {
    await db.destroy();
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`database migration ${failed} failed: ${(error as Error).message}`);
  }
}

export interface OpenDatabaseOptions {
  /** Connections in the PostgreSQL pool (default 10). */
  poolSize?: number;
  /** false: do not run the migrations (tests of the migrations themselves). */
  migrate?: boolean;
}

/** Opens a SQLite file or a PostgreSQL URL (postgres://user:password@host[:port]/database). */
export async function openDatabase(target: string, options: OpenDatabaseOptions = {}): Promise<Db> {
  return isPostgresUrl(target) ? openPostgres(target, options) : openSqlite(target, options);
}

async function openSqlite(file: string, options: OpenDatabaseOptions): Promise<Db> {
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
  if (options.migrate !== false) await migrate(db);
  return db;
}

async function openPostgres(url: string, options: OpenDatabaseOptions): Promise<Db> {
  const problem = databaseTargetProblem(url);
  if (problem) throw new Error(`${problem}: ${maskDatabaseUrl(url)}`);
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    types: pgTypes,
    // Every session of the pool: UTC, and synchronous commit (durable before acknowledged).
    options: '-c TimeZone=UTC -c synchronous_commit=on',
  });
  // A client that loses its server (idle in the pool, or checked out: a held transaction or lease) must
  // not crash the process with an unhandled 'error' event; its next query fails instead, and the pool
  // drops a client that is no longer queryable when it comes back.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    plugins: [new CamelCasePlugin()],
  });
  pools.set(db, pool);
  try {
    await sql`SELECT 1`.execute(db);
  } catch (error) {
    await db.destroy();
    // pg's messages name the user and host but never the password; the URL is masked all the same.
    throw new Error(`cannot connect to PostgreSQL at ${maskDatabaseUrl(url)}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (options.migrate !== false) await migrate(db);
  return db;
}

/**
 * The raw better-sqlite3 connection of a Db opened by openDatabase() on SQLite: prepared statements and
 * synchronous transactions for the audit log's group commit and its fail-closed probe. Everything else
 * uses Kysely. Throws on PostgreSQL (check engineOf() first).
 */
export function rawSqlite(db: Db): SqliteDatabase.Database {
  const sqlite = rawHandles.get(db);
  if (!sqlite) throw new Error('rawSqlite: this Db was not opened by openDatabase() on SQLite');
  return sqlite;
}

/** Whether an error is any unique-constraint violation, on either engine. */
export function isUniqueError(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown };
  return e?.code === '23505' || (typeof e?.message === 'string' && e.message.includes('UNIQUE'));
}

/**
 * Whether an error is a unique-constraint violation of the named constraint: SQLite names the columns
 * ("UNIQUE constraint failed: vms.tenant_id, vms.name"), PostgreSQL the constraint (code 23505).
 */
export function isUniqueViolation(
  error: unknown,
  constraint: { sqliteColumns: string; postgres: string },
): boolean {
  const e = error as { code?: unknown; constraint?: unknown; message?: unknown };
  if (e?.code === '23505') return e.constraint === constraint.postgres;
  return (
    typeof e?.message === 'string' &&
    e.message.includes(`UNIQUE constraint failed: ${constraint.sqliteColumns}`)
  );
}

/**
 * The pg pool of a Db opened by openDatabase() on PostgreSQL: for the one client that must stay checked
 * out for LISTEN (the change feed). Throws on SQLite.
 */
export function postgresPool(db: Db): pg.Pool {
  const pool = pools.get(db);
  if (!pool) throw new Error('postgresPool: this Db was not opened by openDatabase() on PostgreSQL');
  return pool;
}

export function nowIso(): string {
  return new Date().toISOString();
}

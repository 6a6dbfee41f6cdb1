/**
 * The PostgreSQL engine in tests. RAMPART_TEST_POSTGRES_URL names a database the test role can connect
 * to (its role needs CREATEDB); every test database is created fresh from it with a random name and
 * dropped afterwards. scripts/test.sh and .ci/run start PostgreSQL and set the variable; when it is unset
 * the PostgreSQL tests skip with POSTGRES_SKIP as the reason.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openDatabase, type Db } from '../../src/server/store/database.js';

export const POSTGRES_URL: string | undefined = process.env.RAMPART_TEST_POSTGRES_URL || undefined;

/** For node:test's `skip` option: false when PostgreSQL is available, else the reason. */
export const POSTGRES_SKIP: string | false = POSTGRES_URL
  ? false
  : 'RAMPART_TEST_POSTGRES_URL is not set (scripts/test.sh and .ci/run start PostgreSQL and set it)';

export interface TestPostgres {
  /** The URL of the fresh database. */
  url: string;
  /** Drops the database (its connections are terminated first). */
  drop(): Promise<void>;
}

/** The URL, checked: a malformed one (say, with a line a start-up script printed before it) would
 *  otherwise be resolved by pg against the placeholder host "base" and fail with ENOTFOUND. */
function postgresUrl(): URL {
  if (!POSTGRES_URL) throw new Error(POSTGRES_SKIP || 'no PostgreSQL');
  let url: URL | undefined;
  try {
    url = new URL(POSTGRES_URL);
  } catch {
    url = undefined;
  }
  if (!url || !['postgres:', 'postgresql:'].includes(url.protocol) || !url.hostname) {
    throw new Error(
      `RAMPART_TEST_POSTGRES_URL is not a postgres:// URL with a host (${JSON.stringify(POSTGRES_URL.slice(0, 40))}...)`,
    );
  }
  return url;
}

async function admin<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: postgresUrl().toString() });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

/** Creates an empty database with a random name (rampart_t_<hex>). */
export async function createTestPostgres(): Promise<TestPostgres> {
  const name = `rampart_t_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  const url = postgresUrl();
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    url: url.toString(),
    async drop() {
      if (dropped) return;
      dropped = true;
      await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

/** A fresh, migrated PostgreSQL database; close() destroys the Db and drops the database. */
export async function openTestPostgres(): Promise<{ db: Db; url: string; close(): Promise<void> }> {
  const pgDb = await createTestPostgres();
  let db: Db;
  try {
    db = await openDatabase(pgDb.url, { poolSize: 4 });
  } catch (error) {
    await pgDb.drop();
    throw error;
  }
  let closed = false;
  return {
    db,
    url: pgDb.url,
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
      await pgDb.drop();
    },
  };
}

/**
 * Kysely's SQLite dialect prepares every query afresh; preparing is a fifth of the database time on
 * the create path. This wraps the better-sqlite3 connection so the dialect gets cached prepared
 * statements, keyed by their SQL text (parameters are bound per call, so reuse is safe), in a bounded
 * least-recently-used map. Statements are used synchronously on the one connection Kysely serialises,
 * so a cached statement is never in use twice at once.
 */
import type SqliteDatabase from 'better-sqlite3';
import type { SqliteDatabase as DialectDatabase, SqliteStatement } from 'kysely';

export const STATEMENT_CACHE_SIZE = 500;

export function withStatementCache(
  sqlite: SqliteDatabase.Database,
  size = STATEMENT_CACHE_SIZE,
): DialectDatabase {
  const cache = new Map<string, SqliteDatabase.Statement>();
  return {
    close: () => {
      cache.clear();
      sqlite.close();
    },
    prepare(sql: string): SqliteStatement {
      let statement = cache.get(sql);
      if (statement) {
        // Refresh its place in the LRU order.
        cache.delete(sql);
      } else {
        statement = sqlite.prepare(sql);
        if (cache.size >= size) cache.delete(cache.keys().next().value!);
      }
      cache.set(sql, statement);
      return statement;
    },
  };
}

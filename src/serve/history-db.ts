import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type SqliteDatabase } from "kysely";
import pg from "pg";
import { NixpoolError } from "../core/errors.js";
import { registerSecret } from "../core/redact.js";
import type { DatabaseTarget } from "../core/database-url.js";
import {
  MIGRATION_TABLE,
  historyMigrations,
  migrationProvider,
  type HistoryTables,
} from "./history-schema.js";

/** An open history database of either engine, migrated to this binary's schema. */
export interface HistoryDb {
  db: Kysely<HistoryTables>;
  target: DatabaseTarget;
}

const INT8_OID = 20;
// bigint columns (ms since the epoch, ord) come back as numbers: they stay far below 2^53.
const pgTypes = {
  getTypeParser: ((oid: number, format?: "text" | "binary"): ((v: string) => unknown) =>
    oid === INT8_OID && format !== "binary"
      ? (v: string) => Number(v)
      : (pg.types.getTypeParser(oid, format ?? "text") as (
          v: string,
        ) => unknown)) as typeof pg.types.getTypeParser,
};

/** Opens the database (SQLite: creating the file, WAL) and applies the migrations this binary has. */
export async function openHistoryDb(target: DatabaseTarget): Promise<HistoryDb> {
  if (target.engine === "postgres" && target.password) registerSecret(target.password);
  let db: Kysely<HistoryTables>;
  if (target.engine === "sqlite") {
    try {
      mkdirSync(dirname(target.path), { recursive: true, mode: 0o700 });
      const file = new Database(target.path);
      file.pragma("journal_mode = WAL");
      file.pragma("synchronous = NORMAL");
      file.pragma("busy_timeout = 5000");
      db = new Kysely<HistoryTables>({ dialect: new SqliteDialect({ database: cachingStatements(file) }) });
    } catch (e) {
      throw historyUnopenable(target, e);
    }
  } else {
    const pool = new pg.Pool({
      connectionString: target.url,
      max: 10,
      connectionTimeoutMillis: 5_000,
      // A database cut off the network answers nothing: a query gives up rather than wait for TCP.
      query_timeout: 15_000,
      keepAlive: true,
      types: pgTypes,
    });
    // A connection the server dropped (a restart, a stop) is an error event on its client, idle or
    // checked out between two queries: the query that uses it fails instead, and the pool replaces it.
    pool.on("error", () => undefined);
    pool.on("connect", (client) => client.on("error", () => undefined));
    db = new Kysely<HistoryTables>({ dialect: new PostgresDialect({ pool }) });
    try {
      await sql`SELECT 1`.execute(db);
    } catch (e) {
      await db.destroy().catch(() => undefined);
      throw databaseUnreachable(target, e);
    }
  }
  try {
    await migrate(db, target);
  } catch (e) {
    await db.destroy().catch(() => undefined);
    throw e;
  }
  return { db, target };
}

/**
 * better-sqlite3 with its prepared statements kept by SQL text: Kysely prepares each query it runs,
 * and the coordinator runs the same few (a derivation's upsert) thousands of times.
 */
function cachingStatements(file: Database.Database): SqliteDatabase {
  const cache = new Map<string, Database.Statement>();
  return {
    close: () => file.close(),
    prepare: (text: string) => {
      let stmt = cache.get(text);
      if (!stmt) {
        stmt = file.prepare(text);
        if (cache.size < 256) cache.set(text, stmt);
      }
      return stmt;
    },
  };
}

/** Refuses a database migrated by a newer nixpool; applies the missing migrations in order. */
async function migrate(db: Kysely<HistoryTables>, target: DatabaseTarget): Promise<void> {
  const known = Object.keys(historyMigrations(target.engine));
  const applied = await appliedMigrations(db, target);
  const unknown = applied.filter((n) => !known.includes(n));
  if (unknown.length > 0) {
    throw new NixpoolError(
      "HISTORY_TOO_NEW",
      `The coordinator's database ${target.display} was migrated by a newer nixpool (migration ${unknown.join(", ")} is unknown to this one).`,
      {
        hint: "Run the newer nixpool (nixpool --version on the machine that migrated it), or point this one at another database (docs/coordinator.md).",
      },
    );
  }
  const migrator = new Migrator({ db, provider: migrationProvider(target.engine) });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName;
    throw target.engine === "postgres" && isConnectionError(error)
      ? databaseUnreachable(target, error)
      : new NixpoolError(
          "HISTORY_INVALID",
          `The coordinator's database ${target.display} could not be migrated${failed ? ` (migration ${failed})` : ""}.`,
          {
            hint:
              target.engine === "sqlite"
                ? `Move it aside (mv ${target.path} ${target.path}.bad) and start nixpool serve again.`
                : "Check the database user's rights (it creates tables), then start nixpool serve again.",
            cause: error,
          },
        );
  }
}

async function appliedMigrations(db: Kysely<HistoryTables>, target: DatabaseTarget): Promise<string[]> {
  try {
    const tables = await db.introspection.getTables({ withInternalKyselyTables: true });
    if (!tables.some((t) => t.name === MIGRATION_TABLE)) return [];
    const rows = await sql<{ name: string }>`SELECT name FROM ${sql.table(MIGRATION_TABLE)}`.execute(db);
    return rows.rows.map((r) => r.name);
  } catch (e) {
    throw target.engine === "postgres" ? databaseUnreachable(target, e) : historyUnopenable(target, e);
  }
}

function historyUnopenable(target: DatabaseTarget, cause: unknown): NixpoolError {
  const path = target.engine === "sqlite" ? target.path : target.display;
  return new NixpoolError("HISTORY_INVALID", `The coordinator's history ${path} cannot be opened.`, {
    hint: `Move it aside (mv ${path} ${path}.bad) and start nixpool serve again.`,
    cause,
  });
}

/** Connection refused, reset, timed out, or the server shutting down (57P01…): the database is away. */
export function isConnectionError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  return (
    (typeof code === "string" &&
      (/^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH)$/.test(code) ||
        code.startsWith("57P") ||
        code.startsWith("08"))) ||
    /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout/i.test(
      message,
    )
  );
}

export function databaseUnreachable(target: DatabaseTarget, cause: unknown): NixpoolError {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new NixpoolError(
    "DATABASE_UNREACHABLE",
    `The coordinator's database ${target.display} cannot be reached: ${why}.`,
    {
      hint: "Check that PostgreSQL runs and takes connections (pg_isready -h HOST -p PORT), then try again; builds resume once it is back.",
      cause,
    },
  );
}

import { existsSync } from "node:fs";
import type { Kysely } from "kysely";
import { NixpoolError, configError } from "../core/errors.js";
import type { DatabaseTarget } from "../core/database-url.js";
import { openHistoryDb } from "./history-db.js";
import type { HistoryTables } from "./history-schema.js";

/** Rows copied per INSERT (PostgreSQL binds at most 65535 values). */
const CHUNK = 500;

export interface MigrateCounts {
  builds: number;
  derivations: number;
  build_records: number;
  builder_events: number;
  worker_costs: number;
}

/**
 * `nixpool serve --migrate-from FILE`: copies a SQLite history (builds, derivations, records,
 * builder events, worker costs) into the PostgreSQL database, in one transaction. Refused unless
 * the target is PostgreSQL and holds no build yet (a second run copies nothing twice).
 */
export async function migrateHistoryFrom(sqlitePath: string, target: DatabaseTarget): Promise<MigrateCounts> {
  if (target.engine !== "postgres") {
    throw configError(
      "HISTORY_MIGRATE_REFUSED",
      "serve --migrate-from copies into PostgreSQL, and no database is set.",
      {
        hint: "Set NIXPOOL_DATABASE_URL=postgresql://… (or [coordinator] database in the inventory), then run nixpool serve --migrate-from again.",
      },
    );
  }
  if (!existsSync(sqlitePath)) {
    throw configError("HISTORY_MIGRATE_REFUSED", `There is no history ${sqlitePath} to migrate.`, {
      hint: "Name the SQLite history of the coordinator: STATE/serve/history.sqlite (nixpool serve --migrate-from /var/lib/nixpool/serve/history.sqlite).",
    });
  }
  const source = await openHistoryDb({ engine: "sqlite", path: sqlitePath, display: sqlitePath });
  try {
    const dest = await openHistoryDb(target);
    try {
      return await dest.db.transaction().execute(async (tx) => {
        const there = await tx
          .selectFrom("builds")
          .select((eb) => eb.fn.countAll<number>().as("n"))
          .executeTakeFirst();
        if (Number(there?.n ?? 0) > 0) {
          throw configError(
            "HISTORY_MIGRATE_REFUSED",
            `The database ${target.display} already holds builds: nothing was copied.`,
            { hint: "Migrate into an empty database (createdb nixpool_new), or keep the history it has." },
          );
        }
        return copyAll(source.db, tx);
      });
    } finally {
      await dest.db.destroy();
    }
  } catch (e) {
    if (e instanceof NixpoolError) throw e;
    throw new NixpoolError(
      "HISTORY_INVALID",
      `The history ${sqlitePath} could not be copied to ${target.display}.`,
      {
        hint: "Check both databases (the SQLite file opens with sqlite3; PostgreSQL with psql), then run it again.",
        cause: e,
      },
    );
  } finally {
    await source.db.destroy();
  }
}

async function copyAll(from: Kysely<HistoryTables>, to: Kysely<HistoryTables>): Promise<MigrateCounts> {
  const counts: MigrateCounts = {
    builds: 0,
    derivations: 0,
    build_records: 0,
    builder_events: 0,
    worker_costs: 0,
  };
  const builds = await from.selectFrom("builds").selectAll().orderBy("seq").execute();
  counts.builds = await insertChunks(builds, (rows) => to.insertInto("builds").values(rows).execute());
  const drvs = await from.selectFrom("derivations").selectAll().orderBy("ord").execute();
  counts.derivations = await insertChunks(drvs, (rows) =>
    to.insertInto("derivations").values(rows).execute(),
  );
  const records = await from.selectFrom("build_records").selectAll().execute();
  // Records can be large (a build's whole timeline): a few at a time.
  counts.build_records = await insertChunks(
    records,
    (rows) => to.insertInto("build_records").values(rows).execute(),
    20,
  );
  const events = await from.selectFrom("builder_events").selectAll().orderBy("ord").execute();
  counts.builder_events = await insertChunks(events, (rows) =>
    to.insertInto("builder_events").values(rows).execute(),
  );
  const workers = await from.selectFrom("worker_costs").selectAll().execute();
  counts.worker_costs = await insertChunks(workers, (rows) =>
    to.insertInto("worker_costs").values(rows).execute(),
  );
  return counts;
}

async function insertChunks<T>(
  rows: T[],
  insert: (rows: T[]) => Promise<unknown>,
  size = CHUNK,
): Promise<number> {
  for (let i = 0; i < rows.length; i += size) await insert(rows.slice(i, i + size));
  return rows.length;
}

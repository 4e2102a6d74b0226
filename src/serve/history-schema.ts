import { sql, type Kysely, type Migration, type MigrationProvider } from "kysely";

/**
 * The coordinator's history tables, one schema for both engines (SQLite under STATE, or
 * PostgreSQL), and the versioned migrations that make them. Migration 1 is the schema the SQLite
 * history had before migrations existed (CREATE … IF NOT EXISTS), so an existing history file
 * opens as it is; later migrations change it one step at a time. Times are ISO strings; JSON
 * columns are text, validated where they are read (history-store.ts).
 */

export type HistoryEngine = "sqlite" | "postgres";

export interface BuildsTable {
  id: string;
  seq: number;
  label: string;
  client: string;
  status: string;
  submitted_at: string;
  started_at: string | null;
  finished_at: string | null;
  counts: string;
  outputs: string;
  error_code: string | null;
  error_message: string | null;
  request: string;
  /** The coordinator running it (migration 6; null before, and on SQLite's one coordinator). */
  coordinator: string | null;
}

export interface DerivationsTable {
  build_id: string;
  drv: string;
  name: string;
  builder: string | null;
  trust: string | null;
  status: string;
  started_at: string | null;
  finished_at: string | null;
  attempts: number;
  error: string | null;
  /** Order of first insertion (migration 2; SQLite's rowid before it). */
  ord: number | null;
}

export interface BuildRecordsTable {
  build_id: string;
  started_at_ms: number;
  wall_ms: number;
  builders: string;
  stats: string;
  records: string;
  /** Order of the last write (migration 4; what the binary cache reads after). */
  ord: number | null;
}

export interface BuilderEventsTable {
  at: string;
  builder: string;
  health: string;
  reason: string | null;
  ord: number | null;
}

export interface WorkerCostsTable {
  name: string;
  server_type: string;
  started_at: string;
  cost: number;
  currency: string;
  updated_at: string;
}

/** Named leases with expiry (migration 3): see pool-lease.ts. */
export interface LeasesTable {
  name: string;
  holder: string;
  expires_at_ms: number;
}

/** Coordinators sharing the database, each with its last heartbeat (migration 6): pool-claims.ts. */
export interface CoordinatorsTable {
  id: string;
  url: string | null;
  started_ms: number;
  heartbeat_ms: number;
  /**
   * The derivations waiting for a slot in its builds, as JSON `[{drv, system, features}]`, written
   * with each heartbeat (migration 7; null: none, or a coordinator from before): the autoscaler's
   * leader plans from every coordinator's queue (docs/autoscale.md, "Several coordinators").
   */
  waiting: string | null;
}

/** Who builds a derivation now, or where it was last built (migration 6): pool-claims.ts. */
export interface ClaimsTable {
  drv: string;
  holder: string;
  build_id: string | null;
  builder: string;
  state: string;
  updated_ms: number;
}

/** The builder slots in use, each held by one coordinator (migration 6): pool-claims.ts. */
export interface SlotLeasesTable {
  builder: string;
  slot: number;
  holder: string;
  drv: string;
  since_ms: number;
}

export interface AutoscaleDecisionsTable {
  at: string;
  action: string;
  worker: string | null;
  server_type: string | null;
  reason: string;
  ord: number;
}

export interface AutoscaleWorkersTable {
  rental: string;
  worker: string | null;
  server_type: string;
  started_ms: number;
  ended_ms: number | null;
  hourly: number;
}

export interface HistoryTables {
  autoscale_decisions: AutoscaleDecisionsTable;
  autoscale_workers: AutoscaleWorkersTable;
  builds: BuildsTable;
  claims: ClaimsTable;
  coordinators: CoordinatorsTable;
  derivations: DerivationsTable;
  build_records: BuildRecordsTable;
  builder_events: BuilderEventsTable;
  worker_costs: WorkerCostsTable;
  leases: LeasesTable;
  slot_leases: SlotLeasesTable;
}

/** The table Kysely's Migrator records applied migrations in. */
export const MIGRATION_TABLE = "kysely_migration";

/**
 * The migrations in order (names sort in order). `engine` picks the column types that differ:
 * PostgreSQL's integer is 32 bits (ms since the epoch need bigint) and its real is 4 bytes.
 */
export function historyMigrations(engine: HistoryEngine): Record<string, Migration> {
  const big = engine === "postgres" ? "bigint" : "integer";
  const float = engine === "postgres" ? sql`double precision` : sql`real`;
  return {
    "0001_initial": {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration sees the schema as it was then
      async up(db: Kysely<any>) {
        await db.schema
          .createTable("builds")
          .ifNotExists()
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("seq", big, (c) => c.notNull())
          .addColumn("label", "text", (c) => c.notNull())
          .addColumn("client", "text", (c) => c.notNull())
          .addColumn("status", "text", (c) => c.notNull())
          .addColumn("submitted_at", "text", (c) => c.notNull())
          .addColumn("started_at", "text")
          .addColumn("finished_at", "text")
          .addColumn("counts", "text", (c) => c.notNull())
          .addColumn("outputs", "text", (c) => c.notNull().defaultTo("[]"))
          .addColumn("error_code", "text")
          .addColumn("error_message", "text")
          .addColumn("request", "text", (c) => c.notNull())
          .execute();
        await db.schema.createIndex("builds_seq").ifNotExists().on("builds").column("seq").execute();
        await db.schema
          .createTable("derivations")
          .ifNotExists()
          .addColumn("build_id", "text", (c) => c.notNull())
          .addColumn("drv", "text", (c) => c.notNull())
          .addColumn("name", "text", (c) => c.notNull())
          .addColumn("builder", "text")
          .addColumn("trust", "text")
          .addColumn("status", "text", (c) => c.notNull())
          .addColumn("started_at", "text")
          .addColumn("finished_at", "text")
          .addColumn("attempts", "integer", (c) => c.notNull())
          .addColumn("error", "text")
          .addPrimaryKeyConstraint("derivations_pkey", ["build_id", "drv"])
          .execute();
        await db.schema
          .createTable("build_records")
          .ifNotExists()
          .addColumn("build_id", "text", (c) => c.primaryKey())
          .addColumn("started_at_ms", big, (c) => c.notNull())
          .addColumn("wall_ms", big, (c) => c.notNull())
          .addColumn("builders", "text", (c) => c.notNull())
          .addColumn("stats", "text", (c) => c.notNull())
          .addColumn("records", "text", (c) => c.notNull())
          .execute();
        await db.schema
          .createTable("builder_events")
          .ifNotExists()
          .addColumn("at", "text", (c) => c.notNull())
          .addColumn("builder", "text", (c) => c.notNull())
          .addColumn("health", "text", (c) => c.notNull())
          .addColumn("reason", "text")
          .execute();
        await db.schema
          .createTable("worker_costs")
          .ifNotExists()
          .addColumn("name", "text", (c) => c.primaryKey())
          .addColumn("server_type", "text", (c) => c.notNull())
          .addColumn("started_at", "text", (c) => c.notNull())
          .addColumn("cost", float, (c) => c.notNull())
          .addColumn("currency", "text", (c) => c.notNull())
          .addColumn("updated_at", "text", (c) => c.notNull())
          .execute();
      },
    },
    "0002_order": {
      // Rows keep the order they were first written in on both engines (PostgreSQL has no rowid).
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration sees the schema as it was then
      async up(db: Kysely<any>) {
        await db.schema.alterTable("derivations").addColumn("ord", big).execute();
        await db.schema.alterTable("builder_events").addColumn("ord", big).execute();
        if (engine === "sqlite") {
          await sql`UPDATE derivations SET ord = rowid`.execute(db);
          await sql`UPDATE builder_events SET ord = rowid`.execute(db);
        }
        await db.schema
          .createIndex("derivations_order")
          .on("derivations")
          .columns(["build_id", "ord"])
          .execute();
        await db.schema
          .createIndex("builder_events_order")
          .on("builder_events")
          .columns(["builder", "at", "ord"])
          .execute();
      },
    },
    "0003_leases": {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration sees the schema as it was then
      async up(db: Kysely<any>) {
        await db.schema
          .createTable("leases")
          .addColumn("name", "text", (c) => c.primaryKey())
          .addColumn("holder", "text", (c) => c.notNull())
          .addColumn("expires_at_ms", big, (c) => c.notNull())
          .execute();
      },
    },
    "0004_records_order": {
      // The binary cache reads the records written since its last look (rowid before, on SQLite).
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration sees the schema as it was then
      async up(db: Kysely<any>) {
        await db.schema.alterTable("build_records").addColumn("ord", big).execute();
        if (engine === "sqlite") await sql`UPDATE build_records SET ord = rowid`.execute(db);
        await db.schema.createIndex("build_records_order").on("build_records").column("ord").execute();
      },
    },
    "0005_autoscale": {
      // The autoscaler's decisions (with their reasons) and its rentals, for the budget (docs/autoscale.md).
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration sees the schema as it was then
      async up(db: Kysely<any>) {
        await db.schema
          .createTable("autoscale_decisions")
          .addColumn("at", "text", (c) => c.notNull())
          .addColumn("action", "text", (c) => c.notNull())
          .addColumn("worker", "text")
          .addColumn("server_type", "text")
          .addColumn("reason", "text", (c) => c.notNull())
          .addColumn("ord", big, (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex("autoscale_decisions_order")
          .on("autoscale_decisions")
          .column("ord")
          .execute();
        await db.schema
          .createTable("autoscale_workers")
          .addColumn("rental", "text", (c) => c.primaryKey())
          .addColumn("worker", "text")
          .addColumn("server_type", "text", (c) => c.notNull())
          .addColumn("started_ms", big, (c) => c.notNull())
          .addColumn("ended_ms", big)
          .addColumn("hourly", float, (c) => c.notNull())
          .execute();
      },
    },
    "0006_several_coordinators": {
      // Several coordinators on one database: who runs which build, heartbeats, claims, slots.
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration sees the schema as it was then
      async up(db: Kysely<any>) {
        await db.schema.alterTable("builds").addColumn("coordinator", "text").execute();
        await db.schema
          .createTable("coordinators")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("url", "text")
          .addColumn("started_ms", big, (c) => c.notNull())
          .addColumn("heartbeat_ms", big, (c) => c.notNull())
          .execute();
        await db.schema
          .createTable("claims")
          .addColumn("drv", "text", (c) => c.primaryKey())
          .addColumn("holder", "text", (c) => c.notNull())
          .addColumn("build_id", "text")
          .addColumn("builder", "text", (c) => c.notNull())
          .addColumn("state", "text", (c) => c.notNull())
          .addColumn("updated_ms", big, (c) => c.notNull())
          .execute();
        await db.schema
          .createTable("slot_leases")
          .addColumn("builder", "text", (c) => c.notNull())
          .addColumn("slot", "integer", (c) => c.notNull())
          .addColumn("holder", "text", (c) => c.notNull())
          .addColumn("drv", "text", (c) => c.notNull())
          .addColumn("since_ms", big, (c) => c.notNull())
          .addPrimaryKeyConstraint("slot_leases_pk", ["builder", "slot"])
          .execute();
      },
    },
    "0007_coordinator_waiting": {
      // Each coordinator's waiting derivations, for the autoscaler's leader.
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration sees the schema as it was then
      async up(db: Kysely<any>) {
        await db.schema.alterTable("coordinators").addColumn("waiting", "text").execute();
      },
    },
  };
}

export function migrationProvider(engine: HistoryEngine): MigrationProvider {
  return { getMigrations: () => Promise.resolve(historyMigrations(engine)) };
}

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { z } from "zod";
import { NixpoolError } from "../core/errors.js";
import type { DerivationRecord } from "../core/build-record.js";
import type {
  BuildDetail,
  BuildReport,
  BuildStatus,
  BuildSummary,
  DerivationView,
  SubmitRequest,
  WorkerView,
} from "./coordinator-types.js";

/**
 * The coordinator's history in SQLite (STATE/serve/history.sqlite): builds, their derivations
 * (builder, status, times, attempts, error), the dispatcher's records of finished builds (for
 * their timelines), builder health changes and the cost of rented workers. Every change is written
 * when it happens, in WAL mode with synchronous=NORMAL: a killed coordinator loses no finished
 * build. Rows read back are validated; a damaged row is an error naming the file and the row.
 */

const SCHEMA = `
CREATE TABLE IF NOT EXISTS builds (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  label TEXT NOT NULL,
  client TEXT NOT NULL,
  status TEXT NOT NULL,
  submitted_at TEXT NOT NULL,
  started_at TEXT,
  finished_at TEXT,
  counts TEXT NOT NULL,
  outputs TEXT NOT NULL DEFAULT '[]',
  error_code TEXT,
  error_message TEXT,
  request TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS builds_seq ON builds (seq);
CREATE TABLE IF NOT EXISTS derivations (
  build_id TEXT NOT NULL,
  drv TEXT NOT NULL,
  name TEXT NOT NULL,
  builder TEXT,
  trust TEXT,
  status TEXT NOT NULL,
  started_at TEXT,
  finished_at TEXT,
  attempts INTEGER NOT NULL,
  error TEXT,
  PRIMARY KEY (build_id, drv)
);
CREATE TABLE IF NOT EXISTS build_records (
  build_id TEXT PRIMARY KEY,
  started_at_ms INTEGER NOT NULL,
  wall_ms INTEGER NOT NULL,
  builders TEXT NOT NULL,
  stats TEXT NOT NULL,
  records TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS builder_events (
  at TEXT NOT NULL,
  builder TEXT NOT NULL,
  health TEXT NOT NULL,
  reason TEXT
);
CREATE TABLE IF NOT EXISTS worker_costs (
  name TEXT PRIMARY KEY,
  server_type TEXT NOT NULL,
  started_at TEXT NOT NULL,
  cost REAL NOT NULL,
  currency TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS autoscale_decisions (
  at TEXT NOT NULL,
  action TEXT NOT NULL,
  worker TEXT,
  server_type TEXT,
  reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS autoscale_workers (
  rental TEXT PRIMARY KEY,
  worker TEXT,
  server_type TEXT NOT NULL,
  started_ms INTEGER NOT NULL,
  ended_ms INTEGER,
  hourly REAL NOT NULL
);
`;

const BUILD_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"] as const;
const DERIVATION_STATUSES = [
  "queued",
  "running",
  "built",
  "cached",
  "failed",
  "skipped",
  "cancelled",
] as const;
const isoOrNull = z.string().nullable();
const countsSchema = z.object({
  total: z.number().int().nonnegative(),
  done: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
  running: z.number().int().nonnegative(),
  queued: z.number().int().nonnegative(),
});
const buildRow = z.object({
  id: z.string().min(1),
  seq: z.number().int(),
  label: z.string(),
  client: z.string(),
  status: z.enum(BUILD_STATUSES),
  submitted_at: z.string(),
  started_at: isoOrNull,
  finished_at: isoOrNull,
  counts: z.string(),
  outputs: z.string(),
  error_code: z.string().nullable(),
  error_message: z.string().nullable(),
});
const derivationRow = z.object({
  drv: z.string(),
  name: z.string(),
  builder: z.string().nullable(),
  trust: z.string().nullable(),
  status: z.enum(DERIVATION_STATUSES),
  started_at: isoOrNull,
  finished_at: isoOrNull,
  attempts: z.number().int().nonnegative(),
  error: z.string().nullable(),
});
const recordsRow = z.object({
  started_at_ms: z.number(),
  wall_ms: z.number(),
  builders: z.string(),
  stats: z.string(),
  records: z.string(),
});
const statsJson = z.object({
  evalMs: z.number(),
  connectMs: z.number(),
  pathsUploaded: z.number(),
  pathsDownloaded: z.number(),
  derivationsInClosure: z.number(),
  cpuMs: z.number(),
  maxRssMb: z.number(),
});
const buildersJson = z.array(z.object({ name: z.string(), slots: z.number().int().nonnegative() }));
const workerRow = z.object({
  name: z.string(),
  server_type: z.string(),
  started_at: z.string(),
  cost: z.number(),
  currency: z.string(),
});

const decisionRow = z.object({
  at: z.string(),
  action: z.string(),
  worker: z.string().nullable(),
  server_type: z.string().nullable(),
  reason: z.string(),
});
const autoscaleWorkerRow = z.object({
  rental: z.string(),
  worker: z.string().nullable(),
  server_type: z.string(),
  started_ms: z.number(),
  ended_ms: z.number().nullable(),
  hourly: z.number(),
});

/** One autoscaler decision as recorded (src/serve/autoscale/autoscaler.ts). */
export interface AutoscaleDecisionRow {
  at: string;
  action: string;
  worker: string | null;
  serverType: string | null;
  reason: string;
}

/** One rental of the autoscaler, for its budget: billed from startedMs until endedMs (null: running). */
export interface AutoscaleWorkerRow {
  rental: string;
  worker: string | null;
  serverType: string;
  startedMs: number;
  endedMs: number | null;
  /** EUR per started hour, gross. */
  hourly: number;
}

/** A finished build's dispatcher records (for its timeline and the client's report). */
export type StoredRecords = BuildReport;

export class HistoryStore {
  private constructor(
    private readonly db: Database.Database,
    readonly path: string,
  ) {}

  /** Opens (creating) the history file; WAL, so that readers never block the writer. */
  static open(path: string): HistoryStore {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    let db: Database.Database;
    try {
      db = new Database(path);
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.pragma("busy_timeout = 5000");
      db.exec(SCHEMA);
    } catch (e) {
      throw new NixpoolError("HISTORY_INVALID", `The coordinator's history ${path} cannot be opened.`, {
        hint: `Move it aside (mv ${path} ${path}.bad) and start nixpool serve again.`,
        cause: e,
      });
    }
    return new HistoryStore(db, path);
  }

  /**
   * Builds left queued or running by a coordinator that stopped without finishing them: each is
   * failed with `reason`, and its unfinished derivations are cancelled. Returns their ids.
   */
  failUnfinished(reason: string, at: string): string[] {
    const ids = this.db
      .prepare("SELECT id FROM builds WHERE status IN ('queued', 'running')")
      .pluck()
      .all()
      .map((v) => z.string().parse(v));
    const tx = this.db.transaction(() => {
      this.db
        .prepare(
          "UPDATE builds SET status = 'failed', finished_at = ?, error_code = 'COORDINATOR_STOPPED', error_message = ? WHERE status IN ('queued', 'running')",
        )
        .run(at, reason);
      for (const id of ids) {
        this.db
          .prepare(
            "UPDATE derivations SET status = 'cancelled', error = ?, finished_at = COALESCE(finished_at, ?) WHERE build_id = ? AND status IN ('queued', 'running')",
          )
          .run(reason, at, id);
      }
    });
    tx();
    return ids;
  }

  /** The largest submission number so far (ids and order continue after a restart). */
  lastSeq(): number {
    const v: unknown = this.db.prepare("SELECT MAX(seq) FROM builds").pluck().get();
    return typeof v === "number" ? v : 0;
  }

  insertBuild(b: BuildSummary, seq: number, req: SubmitRequest): void {
    this.db
      .prepare(
        "INSERT INTO builds (id, seq, label, client, status, submitted_at, counts, request) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      )
      .run(
        b.id,
        seq,
        b.label,
        b.client,
        b.status,
        b.submittedAt,
        JSON.stringify(b.counts),
        JSON.stringify(req),
      );
  }

  /** A build's status, times, counts, outputs and error as they are now. */
  updateBuild(b: BuildDetail): void {
    this.db
      .prepare(
        "UPDATE builds SET status = ?, started_at = ?, finished_at = ?, counts = ?, outputs = ?, error_code = ?, error_message = ? WHERE id = ?",
      )
      .run(
        b.status,
        b.startedAt ?? null,
        b.finishedAt ?? null,
        JSON.stringify(b.counts),
        JSON.stringify(b.outputs),
        b.error?.code ?? null,
        b.error?.message ?? null,
        b.id,
      );
  }

  /** Writes derivations as they are now (insert or replace), in one transaction. */
  saveDerivations(buildId: string, views: readonly DerivationView[]): void {
    if (views.length === 0) return;
    const stmt = this.db.prepare(
      "INSERT OR REPLACE INTO derivations (build_id, drv, name, builder, trust, status, started_at, finished_at, attempts, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    this.db.transaction(() => {
      for (const d of views) {
        stmt.run(
          buildId,
          d.drv,
          d.name,
          d.builder ?? null,
          d.trust ?? null,
          d.status,
          d.startedAt ?? null,
          d.finishedAt ?? null,
          d.attempts,
          d.error ?? null,
        );
      }
    })();
  }

  saveRecords(buildId: string, r: StoredRecords): void {
    this.db
      .prepare(
        "INSERT OR REPLACE INTO build_records (build_id, started_at_ms, wall_ms, builders, stats, records) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(
        buildId,
        Math.round(r.startedAtMs),
        Math.round(r.wallMs),
        JSON.stringify(r.builders),
        JSON.stringify(r.stats),
        JSON.stringify(r.records),
      );
  }

  builderEvent(at: string, builder: string, health: string, reason: string | undefined): void {
    this.db
      .prepare("INSERT INTO builder_events (at, builder, health, reason) VALUES (?, ?, ?, ?)")
      .run(at, builder, health, reason ?? null);
  }

  /** Health changes of one builder, newest first. */
  builderEvents(builder: string, limit = 100): { at: string; health: string; reason: string | null }[] {
    const rows: unknown[] = this.db
      .prepare("SELECT at, health, reason FROM builder_events WHERE builder = ? ORDER BY rowid DESC LIMIT ?")
      .all(builder, limit);
    const row = z.object({ at: z.string(), health: z.string(), reason: z.string().nullable() });
    return rows.map((r, i) => this.valid(row, r, `builder_events of ${builder} #${i}`));
  }

  saveWorkerCost(w: WorkerView, at: string): void {
    this.db
      .prepare(
        "INSERT OR REPLACE INTO worker_costs (name, server_type, started_at, cost, currency, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(w.name, w.serverType, w.startedAt, w.costSoFar, w.currency, at);
  }

  /** Every rented worker ever seen, with its last known cost. */
  workerCosts(): WorkerView[] {
    const rows: unknown[] = this.db.prepare("SELECT * FROM worker_costs ORDER BY started_at").all();
    return rows.map((r, i) => {
      const w = this.valid(workerRow, r, `worker_costs #${i}`);
      return {
        name: w.name,
        serverType: w.server_type,
        startedAt: w.started_at,
        costSoFar: w.cost,
        currency: w.currency,
      };
    });
  }

  recordAutoscaleDecision(d: AutoscaleDecisionRow): void {
    this.db
      .prepare(
        "INSERT INTO autoscale_decisions (at, action, worker, server_type, reason) VALUES (?, ?, ?, ?, ?)",
      )
      .run(d.at, d.action, d.worker, d.serverType, d.reason);
  }

  /** The autoscaler's decisions, newest first. */
  autoscaleDecisions(limit = 50): AutoscaleDecisionRow[] {
    const rows: unknown[] = this.db
      .prepare("SELECT * FROM autoscale_decisions ORDER BY rowid DESC LIMIT ?")
      .all(Math.max(0, Math.min(limit, 10_000)));
    return rows.map((r, i) => {
      const d = this.valid(decisionRow, r, `autoscale_decisions #${i}`);
      return { at: d.at, action: d.action, worker: d.worker, serverType: d.server_type, reason: d.reason };
    });
  }

  saveAutoscaleWorker(w: AutoscaleWorkerRow): void {
    this.db
      .prepare(
        "INSERT OR REPLACE INTO autoscale_workers (rental, worker, server_type, started_ms, ended_ms, hourly) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(
        w.rental,
        w.worker,
        w.serverType,
        Math.round(w.startedMs),
        w.endedMs === null ? null : Math.round(w.endedMs),
        w.hourly,
      );
  }

  /** Rentals running, or ended at or after `sinceMs` (the budget's month). */
  autoscaleWorkers(sinceMs: number): AutoscaleWorkerRow[] {
    const rows: unknown[] = this.db
      .prepare("SELECT * FROM autoscale_workers WHERE ended_ms IS NULL OR ended_ms >= ? ORDER BY started_ms")
      .all(Math.round(sinceMs));
    return rows.map((r, i) => {
      const w = this.valid(autoscaleWorkerRow, r, `autoscale_workers #${i}`);
      return {
        rental: w.rental,
        worker: w.worker,
        serverType: w.server_type,
        startedMs: w.started_ms,
        endedMs: w.ended_ms,
        hourly: w.hourly,
      };
    });
  }

  /** Ends the rentals a stopped coordinator left open (worker gc deletes their servers), at `atMs`. */
  closeAutoscaleWorkers(atMs: number): number {
    return this.db
      .prepare("UPDATE autoscale_workers SET ended_ms = ? WHERE ended_ms IS NULL")
      .run(Math.round(atMs)).changes;
  }

  /** Builds newest first. */
  builds(q: { limit?: number; status?: BuildStatus; client?: string } = {}): BuildSummary[] {
    const limit = Math.max(0, Math.min(q.limit ?? 100, 10_000));
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.status) {
      where.push("status = ?");
      args.push(q.status);
    }
    if (q.client !== undefined) {
      where.push("client = ?");
      args.push(q.client);
    }
    const rows: unknown[] = this.db
      .prepare(
        `SELECT * FROM builds ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY seq DESC LIMIT ?`,
      )
      .all(...args, limit);
    return rows.map((r) => this.summary(r));
  }

  build(id: string): BuildDetail | undefined {
    const row: unknown = this.db.prepare("SELECT * FROM builds WHERE id = ?").get(id);
    if (row === undefined) return undefined;
    const s = this.summary(row);
    const b = this.valid(buildRow, row, `build ${id}`);
    const outputs = this.json(z.array(z.string()), b.outputs, `build ${id} outputs`);
    const drvRows: unknown[] = this.db
      .prepare("SELECT * FROM derivations WHERE build_id = ? ORDER BY rowid")
      .all(id);
    const derivations = drvRows.map((r, i) => {
      const d = this.valid(derivationRow, r, `build ${id} derivation #${i}`);
      const v: DerivationView = { drv: d.drv, name: d.name, status: d.status, attempts: d.attempts };
      if (d.builder !== null) v.builder = d.builder;
      if (d.trust !== null) v.trust = d.trust;
      if (d.started_at !== null) v.startedAt = d.started_at;
      if (d.finished_at !== null) v.finishedAt = d.finished_at;
      if (d.error !== null) v.error = d.error;
      return v;
    });
    const report = this.records(id);
    return {
      ...s,
      derivations,
      outputs,
      ...(report ? { report } : {}),
      ...(b.error_code !== null ? { error: { code: b.error_code, message: b.error_message ?? "" } } : {}),
    };
  }

  records(id: string): StoredRecords | undefined {
    const row: unknown = this.db.prepare("SELECT * FROM build_records WHERE build_id = ?").get(id);
    if (row === undefined) return undefined;
    const r = this.valid(recordsRow, row, `records of build ${id}`);
    return {
      startedAtMs: r.started_at_ms,
      wallMs: r.wall_ms,
      stats: this.json(statsJson, r.stats, `records of build ${id}`),
      builders: this.json(buildersJson, r.builders, `records of build ${id}`),
      // The dispatcher's own records: their shape is checked where they are drawn (timeline-svg).
      records: this.json(
        z.array(z.looseObject({ drv: z.string(), spans: z.array(z.unknown()) })),
        r.records,
        `records of build ${id}`,
      ) as unknown as DerivationRecord[],
    };
  }

  private summary(row: unknown): BuildSummary {
    const b = this.valid(buildRow, row, "a build");
    const s: BuildSummary = {
      id: b.id,
      label: b.label,
      client: b.client,
      status: b.status,
      submittedAt: b.submitted_at,
      counts: this.json(countsSchema, b.counts, `build ${b.id} counts`),
    };
    if (b.started_at !== null) s.startedAt = b.started_at;
    if (b.finished_at !== null) s.finishedAt = b.finished_at;
    return s;
  }

  private valid<T>(schema: z.ZodType<T>, row: unknown, what: string): T {
    const r = schema.safeParse(row);
    if (r.success) return r.data;
    throw new NixpoolError(
      "HISTORY_INVALID",
      `The coordinator's history ${this.path} has a damaged row: ${what}.`,
      {
        hint: `Move it aside (mv ${this.path} ${this.path}.bad) and start nixpool serve again.`,
        details: { issues: r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`) },
      },
    );
  }

  private json<T>(schema: z.ZodType<T>, text: string, what: string): T {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return this.valid(schema, parsed, what);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

import { sql, type Kysely } from "kysely";
import { waitFor } from "../adapters/wait-for.js";
import { z } from "zod";
import { NixpoolError } from "../core/errors.js";
import type { DatabaseTarget } from "../core/database-url.js";
import type { DerivationRecord } from "../core/build-record.js";
import type {
  BuildDetail,
  BuildReport,
  BuildStatus,
  BuildSummary,
  DerivationView,
  SubmitRequest,
} from "./coordinator-types.js";
import { databaseUnreachable, isConnectionError, openHistoryDb } from "./history-db.js";
import type { HistoryTables } from "./history-schema.js";
import { leaseHolder, releaseLease, tryLease } from "./pool-lease.js";
import {
  buildRow,
  builtRecords,
  builtRow,
  buildersJson,
  countsSchema,
  derivationRow,
  recordsRow,
  statsJson,
} from "./history-rows.js";
import type { BuiltDerivation } from "./history-rows.js";
export type { BuiltDerivation } from "./history-rows.js";

/**
 * The coordinator's history: builds, their derivations (builder, status, times, attempts, error),
 * the dispatcher's records of finished builds (for their timelines), builder health changes and
 * the cost of rented workers. One set of queries (Kysely) over either engine: SQLite under STATE
 * (WAL, synchronous=NORMAL) or PostgreSQL (history-db.ts opens and migrates it).
 *
 * Writes are queued in order and never awaited by the coordinator's hot paths (one per derivation
 * start and end): each read waits for the writes before it, so a reader sees every change made
 * so far. A killed coordinator loses no finished build. Rows read back are validated; a damaged
 * row is an error naming the database and the row.
 */

/** A finished build's dispatcher records (for its timeline and the client's report). */
export type StoredRecords = BuildReport;

/** Rows per INSERT (SQLite binds at most 32766 values; 10 columns a row). */
const CHUNK = 500;

export class HistoryStore {
  /** The writes queued so far, in order. */
  private tail: Promise<void> = Promise.resolve();
  /** Orders rows by first insertion across restarts (ms × 1000 + a counter: below 2^53). */
  private ord: number;
  private closed = false;
  /** Set while PostgreSQL is away (a write failed to connect): cleared once a write goes through. */
  private away: NixpoolError | undefined;
  /** Resolves when the database is found away (reads stop waiting for the queued writes). */
  private awaySignal = deferred();
  /** The coordinator whose builds this history writes (several coordinators: its id; else null). */
  owner: string | null = null;

  private constructor(
    private readonly db: Kysely<HistoryTables>,
    readonly target: DatabaseTarget,
    private readonly onWriteError: (e: NixpoolError | undefined) => void,
  ) {
    this.ord = Date.now() * 1000;
  }

  /** Where the history is, as logs and errors show it (a PostgreSQL URL without its password). */
  get path(): string {
    return this.target.display;
  }

  /**
   * Opens (creating) the history and applies this binary's migrations. `onWriteError` hears a
   * queued write that failed (the database went away), and undefined once it answers again: the
   * coordinator logs both.
   */
  static async open(
    target: DatabaseTarget,
    onWriteError: (e: NixpoolError | undefined) => void = () => undefined,
  ): Promise<HistoryStore> {
    const { db } = await openHistoryDb(target);
    return new HistoryStore(db, target, onWriteError);
  }

  /**
   * Opens the history for a coordinator starting at `at`: builds a stopped coordinator left
   * unfinished are failed (with the reason); `seq` is the last submission number.
   */
  static async openForCoordinator(
    target: DatabaseTarget,
    at: string,
    onWriteError: (e: NixpoolError | undefined) => void,
    /** Several coordinators (PostgreSQL): another one adopts unfinished builds (coordinator-peers.ts). */
    shared = false,
  ): Promise<{ history: HistoryStore; seq: number }> {
    const history = await HistoryStore.open(target, onWriteError);
    try {
      if (!shared)
        await history.failUnfinished(
          `coordinator stopped (it ended before the build finished; marked at ${at})`,
          at,
        );
      return { history, seq: await history.lastSeq() };
    } catch (e) {
      await history.close().catch(() => undefined);
      throw e;
    }
  }

  /**
   * Takes (or renews) the lease `name` for `holder` until ttlMs from now; false while another
   * holder's lease runs. The seam for "only one coordinator runs the autoscaler": call it every
   * ttl/3 and act only while it returns true (pool-lease.ts).
   */
  tryLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    return this.read(`lease ${name}`, (db) => tryLease(db, this.target.engine, name, holder, ttlMs));
  }

  /** Gives the lease up (only its holder can). */
  releaseLease(name: string, holder: string): Promise<void> {
    return this.read(`lease ${name}`, (db) => releaseLease(db, name, holder));
  }

  /** Who holds the lease `name` now (undefined: nobody, or it expired). */
  leaseHolder(name: string): Promise<string | undefined> {
    return this.read(`lease ${name}`, (db) => leaseHolder(db, this.target.engine, name));
  }

  /** The Kysely handle (the coordinator's shared-pool tables and --migrate-from use it). */
  get kysely(): Kysely<HistoryTables> {
    return this.db;
  }

  /** The next row order (for the history's companions too: history-autoscale.ts). */
  nextOrd(): number {
    // By the clock (µs), so that several coordinators' rows interleave in time order.
    this.ord = Math.max(this.ord + 1, Date.now() * 1000);
    return this.ord;
  }

  /** Several coordinators: whether this one still owns build `id` (a late write must not undo an adoption). */
  private async owns(db: Kysely<HistoryTables>, id: string): Promise<boolean> {
    if (this.owner === null) return true;
    const row = await db
      .selectFrom("builds")
      .select("id")
      .where("id", "=", id)
      .where("coordinator", "=", this.owner)
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * Queues a write after the ones before it. A database that went away keeps the write (and every
   * one after it) queued: it is tried again, in order, once the database answers, so the history
   * misses nothing. Any other failure is reported and the write dropped.
   */
  /** Queues a write (see above); the history's companions (history-autoscale.ts) share the queue. */
  write(what: string, fn: (db: Kysely<HistoryTables>) => Promise<unknown>): void {
    if (this.closed) return;
    this.tail = this.tail.then(() => this.attempt(what, fn));
  }

  private async attempt(what: string, fn: (db: Kysely<HistoryTables>) => Promise<unknown>): Promise<void> {
    for (;;) {
      // Closed while the database is away: what is still queued is lost (close() says so once).
      if (this.closed && this.away) return;
      try {
        await fn(this.db);
        if (this.away) {
          this.away = undefined;
          this.awaySignal = deferred();
          this.onWriteError(undefined);
        }
        return;
      } catch (e) {
        const failure = this.failure(e, what);
        if (failure.code !== "DATABASE_UNREACHABLE" || this.closed) {
          this.onWriteError(failure);
          return;
        }
        if (!this.away) {
          this.away = failure;
          this.awaySignal.resolve();
          this.onWriteError(failure);
        }
        // Until it answers again (or the coordinator closes: the write is then lost, and said so).
        await waitFor(
          async () =>
            this.closed ||
            (await sql`SELECT 1`.execute(this.db).then(
              () => true,
              () => false,
            )),
          { timeoutMs: Number.MAX_SAFE_INTEGER, intervalMs: 500 },
        );
      }
    }
  }

  /** The database is away (DATABASE_UNREACHABLE, with its hint), or undefined when it answers. */
  get unavailable(): NixpoolError | undefined {
    return this.away;
  }

  /** Resolves once every write queued so far is done. */
  flush(): Promise<void> {
    return this.tail;
  }

  /** Resolves once every write queued so far is done, or at once while the database is away. */
  settled(): Promise<void> {
    return Promise.race([this.tail, this.awaySignal.promise]);
  }

  private failure(e: unknown, what: string): NixpoolError {
    if (this.target.engine === "postgres" && isConnectionError(e)) return databaseUnreachable(this.target, e);
    return new NixpoolError(
      "HISTORY_INVALID",
      `The coordinator's history ${this.path} refused a write: ${what}.`,
      {
        hint: "Check the database (disk space, rights) and the coordinator's log, then restart nixpool serve.",
        cause: e,
      },
    );
  }

  /** Runs a read after the queued writes; a database that is away is DATABASE_UNREACHABLE. */
  async read<T>(what: string, fn: (db: Kysely<HistoryTables>) => Promise<T>): Promise<T> {
    await Promise.race([this.tail, this.awaySignal.promise]);
    if (this.away) throw this.away;
    try {
      return await fn(this.db);
    } catch (e) {
      if (e instanceof NixpoolError) throw e;
      throw this.failure(e, what);
    }
  }

  /**
   * Builds left queued or running by a coordinator that stopped without finishing them: each is
   * failed with `reason`, and its unfinished derivations are cancelled. Returns their ids.
   */
  async failUnfinished(reason: string, at: string): Promise<string[]> {
    await this.tail;
    return this.db.transaction().execute(async (tx) => {
      const ids = (
        await tx.selectFrom("builds").select("id").where("status", "in", ["queued", "running"]).execute()
      ).map((r) => z.string().parse(r.id));
      if (ids.length === 0) return ids;
      await tx
        .updateTable("builds")
        .set({ status: "failed", finished_at: at, error_code: "COORDINATOR_STOPPED", error_message: reason })
        .where("id", "in", ids)
        .execute();
      await tx
        .updateTable("derivations")
        .set((eb) => ({
          status: "cancelled",
          error: reason,
          finished_at: eb.fn.coalesce("finished_at", eb.val(at)),
        }))
        .where("build_id", "in", ids)
        .where("status", "in", ["queued", "running"])
        .execute();
      return ids;
    });
  }

  /** The largest submission number so far (ids and order continue after a restart). */
  async lastSeq(): Promise<number> {
    const row = await this.read("the last build number", (db) =>
      db
        .selectFrom("builds")
        .select((eb) => eb.fn.max("seq").as("max"))
        .executeTakeFirst(),
    );
    const v = row?.max;
    return typeof v === "number" ? v : typeof v === "string" ? Number(v) : 0;
  }

  insertBuild(b: BuildSummary, seq: number, req: SubmitRequest): void {
    const row = {
      id: b.id,
      seq,
      label: b.label,
      client: b.client,
      status: b.status,
      submitted_at: b.submittedAt,
      counts: JSON.stringify(b.counts),
      outputs: "[]",
      request: JSON.stringify(req),
      coordinator: this.owner,
    };
    this.write(`build ${b.id}`, (db) => db.insertInto("builds").values(row).execute());
  }

  /** A build's status, times, counts, outputs and error as they are now. */
  updateBuild(b: BuildDetail): void {
    const set = {
      status: b.status,
      started_at: b.startedAt ?? null,
      finished_at: b.finishedAt ?? null,
      counts: JSON.stringify(b.counts),
      outputs: JSON.stringify(b.outputs),
      error_code: b.error?.code ?? null,
      error_message: b.error?.message ?? null,
    };
    // With several coordinators, only the one running it: a late write never undoes an adoption.
    const owner = this.owner;
    this.write(`build ${b.id}`, (db) => {
      const q = db.updateTable("builds").set(set).where("id", "=", b.id);
      return (owner === null ? q : q.where("coordinator", "=", owner)).execute();
    });
  }

  /** Writes derivations as they are now (insert, or update the one there), in one transaction. */
  saveDerivations(buildId: string, views: readonly DerivationView[]): void {
    if (views.length === 0) return;
    const rows = views.map((d) => ({
      build_id: buildId,
      drv: d.drv,
      name: d.name,
      builder: d.builder ?? null,
      trust: d.trust ?? null,
      status: d.status,
      started_at: d.startedAt ?? null,
      finished_at: d.finishedAt ?? null,
      attempts: d.attempts,
      error: d.error ?? null,
      ord: this.nextOrd(),
    }));
    const upsert = (db: Kysely<HistoryTables>, chunk: typeof rows) =>
      db
        .insertInto("derivations")
        .values(chunk)
        .onConflict((oc) =>
          oc.columns(["build_id", "drv"]).doUpdateSet((eb) => ({
            name: eb.ref("excluded.name"),
            builder: eb.ref("excluded.builder"),
            trust: eb.ref("excluded.trust"),
            status: eb.ref("excluded.status"),
            started_at: eb.ref("excluded.started_at"),
            finished_at: eb.ref("excluded.finished_at"),
            attempts: eb.ref("excluded.attempts"),
            error: eb.ref("excluded.error"),
          })),
        )
        .execute();
    this.write(`derivations of build ${buildId}`, async (db) => {
      if (!(await this.owns(db, buildId))) return;
      if (rows.length <= CHUNK) return upsert(db, rows);
      return db.transaction().execute(async (tx) => {
        for (let i = 0; i < rows.length; i += CHUNK) await upsert(tx, rows.slice(i, i + CHUNK));
      });
    });
  }

  saveRecords(buildId: string, r: StoredRecords): void {
    const row = {
      build_id: buildId,
      started_at_ms: Math.round(r.startedAtMs),
      wall_ms: Math.round(r.wallMs),
      builders: JSON.stringify(r.builders),
      stats: JSON.stringify(r.stats),
      records: JSON.stringify(r.records),
      ord: this.nextOrd(),
    };
    this.write(`records of build ${buildId}`, async (db) =>
      !(await this.owns(db, buildId))
        ? undefined
        : db
            .insertInto("build_records")
            .values(row)
            .onConflict((oc) =>
              oc.column("build_id").doUpdateSet((eb) => ({
                started_at_ms: eb.ref("excluded.started_at_ms"),
                wall_ms: eb.ref("excluded.wall_ms"),
                builders: eb.ref("excluded.builders"),
                stats: eb.ref("excluded.stats"),
                records: eb.ref("excluded.records"),
                ord: eb.ref("excluded.ord"),
              })),
            )
            .execute(),
    );
  }

  builderEvent(at: string, builder: string, health: string, reason: string | undefined): void {
    const row = { at, builder, health, reason: reason ?? null, ord: this.nextOrd() };
    this.write(`a health change of ${builder}`, (db) =>
      db.insertInto("builder_events").values(row).execute(),
    );
  }

  /** Health changes of one builder, newest first. */
  async builderEvents(
    builder: string,
    limit = 100,
  ): Promise<{ at: string; health: string; reason: string | null }[]> {
    const rows = await this.read(`builder_events of ${builder}`, (db) =>
      db
        .selectFrom("builder_events")
        .select(["at", "health", "reason"])
        .where("builder", "=", builder)
        .orderBy("at", "desc")
        .orderBy("ord", "desc")
        .limit(limit)
        .execute(),
    );
    const row = z.object({ at: z.string(), health: z.string(), reason: z.string().nullable() });
    return rows.map((r, i) => this.valid(row, r, `builder_events of ${builder} #${i}`));
  }

  /** Builds newest first. */
  async builds(q: { limit?: number; status?: BuildStatus; client?: string } = {}): Promise<BuildSummary[]> {
    const limit = Math.max(0, Math.min(q.limit ?? 100, 10_000));
    const rows = await this.read("the builds", (db) => {
      let query = db.selectFrom("builds").selectAll();
      if (q.status) query = query.where("status", "=", q.status);
      if (q.client !== undefined) query = query.where("client", "=", q.client);
      return query.orderBy("seq", "desc").limit(limit).execute();
    });
    return rows.map((r) => this.summary(r));
  }

  async build(id: string): Promise<BuildDetail | undefined> {
    const found = await this.read(`build ${id}`, async (db) => {
      const row = await db.selectFrom("builds").selectAll().where("id", "=", id).executeTakeFirst();
      if (row === undefined) return undefined;
      const drvs = await db
        .selectFrom("derivations")
        .selectAll()
        .where("build_id", "=", id)
        .orderBy("ord")
        .orderBy("drv")
        .execute();
      const rec = await db
        .selectFrom("build_records")
        .selectAll()
        .where("build_id", "=", id)
        .executeTakeFirst();
      return { row, drvs, rec };
    });
    if (!found) return undefined;
    const { row, drvs, rec } = found;
    const s = this.summary(row);
    const b = this.valid(buildRow, row, `build ${id}`);
    const outputs = this.json(z.array(z.string()), b.outputs, `build ${id} outputs`);
    const derivations = drvs.map((r, i) => {
      const d = this.valid(derivationRow, r, `build ${id} derivation #${i}`);
      const v: DerivationView = { drv: d.drv, name: d.name, status: d.status, attempts: d.attempts };
      if (d.builder !== null) v.builder = d.builder;
      if (d.trust !== null) v.trust = d.trust;
      if (d.started_at !== null) v.startedAt = d.started_at;
      if (d.finished_at !== null) v.finishedAt = d.finished_at;
      if (d.error !== null) v.error = d.error;
      return v;
    });
    const report = rec ? this.toRecords(id, rec) : undefined;
    return {
      ...s,
      derivations,
      outputs,
      ...(report ? { report } : {}),
      ...(b.error_code !== null ? { error: { code: b.error_code, message: b.error_message ?? "" } } : {}),
    };
  }

  async records(id: string): Promise<StoredRecords | undefined> {
    const row = await this.read(`records of build ${id}`, (db) =>
      db.selectFrom("build_records").selectAll().where("build_id", "=", id).executeTakeFirst(),
    );
    return row === undefined ? undefined : this.toRecords(id, row);
  }

  private toRecords(id: string, row: unknown): StoredRecords {
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

  /**
   * Who built what, for the binary cache: each finished build's derivations with their successful
   * builds (builder, trust, NAR hash per output), in rows written after `afterRow` (0: all), oldest
   * first. A build's records written again move to the end, so the cache sees them again.
   */
  async builtResults(
    afterRow = 0,
  ): Promise<{ row: number; finishedAt: string | null; records: BuiltDerivation[] }[]> {
    const rows = await this.read("the builds' records", (db) =>
      db
        .selectFrom("build_records as r")
        .leftJoin("builds as b", "b.id", "r.build_id")
        .select(["r.ord as row", "b.finished_at as finished_at", "r.records as records"])
        .where("r.ord", ">", afterRow)
        .orderBy("r.ord")
        .execute(),
    );
    return rows.map((raw) => {
      const r = this.valid(
        builtRow,
        { ...raw, row: raw.row === null ? null : Number(raw.row) },
        "records of a build",
      );
      return {
        row: r.row,
        finishedAt: r.finished_at,
        records: this.json(builtRecords, r.records, `build records row ${r.row}`),
      };
    });
  }

  /** A builds row as the API shows it. */
  summary(row: unknown): BuildSummary {
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

  valid<T>(schema: z.ZodType<T>, row: unknown, what: string): T {
    const r = schema.safeParse(row);
    if (r.success) return r.data;
    throw new NixpoolError(
      "HISTORY_INVALID",
      `The coordinator's history ${this.path} has a damaged row: ${what}.`,
      {
        hint:
          this.target.engine === "sqlite"
            ? `Move it aside (mv ${this.path} ${this.path}.bad) and start nixpool serve again.`
            : "Look at the row in the database (psql), delete or repair it, and start nixpool serve again.",
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

  /** Waits for the queued writes, then closes the database. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail;
    if (this.away) this.onWriteError(this.away);
    await this.db.destroy();
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
